"""The generated project's images, checked the way a deployment would use them.

For the default project and for ``gpu_image=no``:
- hadolint finds nothing in the Dockerfiles, DL3057 (a HEALTHCHECK in the final stage) included;
  every FROM line that names an image pins it the way Dependabot can update (tag and digest on
  a literal line, no ARG);
- the CPU image builds with BuildKit on a locally built Python base image that a named build
  context puts in place of the pinned base (as ``make image-cpu BASE_IMAGE=...`` does), runs the
  base's Python (the test says which), Docker reports it healthy, it answers health, serves a
  prediction, rejects a bad request with a 4xx and runs as a non-root user; the project's own
  ``make smoke`` passes against it;
- inside it, every shared object loads (the build strips them), every module the service
  imports at start has bytecode, and the monitor checks logged traffic without matplotlib;
- the project's image benchmark (``make bench-image``) times a start of the CPU image, from
  ``docker run`` to the first prediction, and each of its steps (the runtime alone, the
  interpreter, the service's imports, a bare uvicorn app) runs in the image;
- the GPU image (when chosen) builds against the same base and its command line answers.

The base image comes from ``scripts/build-base-image.sh`` (no registry is needed): Debian's
python3 of the serving image's pinned Python minor version. Set ``BASE_IMAGE`` to test against
another one (``local/python-base:3.11``, made with ``PYTHON_VERSION=3.11``, for the supported
floor). Images and containers made here are removed; the base image stays.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import baking
import commands
from conftest import load_module
from image_builds import (BASE_IMAGE_SCRIPT, DEPENDABOT_FROM_LINE, BuildFailed,
                          build_image, external_from_lines, python_version_in)

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
COMBINATIONS = {"default": {}, "gpu_image_no": {"gpu_image": "no"}}
APP_UID = "10001"
# Upper bound for a container to become healthy; Docker's first check runs one
# HEALTHCHECK interval (10 s) after the start. Not a speed requirement.
HEALTHY_WITHIN = 120
# Upper bound from `docker run` to the first prediction, timed as `make bench-image` times it.
# Measured at 1.2 s on a quiet machine and up to 3.5 s on two busy shared cores: ten times
# that fails a service that does not start, does not predict or trains at start, never a slow
# but working one (how fast it starts is the benchmark's to say, not a test's).
FIRST_PREDICTION_WITHIN = 30
# The labels' build arguments, as a release build passes them.
BUILD_ARGS = {"REVISION": "test", "VERSION": "0.1.0"}


def hadolint():
    """The hadolint binary installed with the template's test requirements."""
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else "hadolint"


def example_record(project):
    """The project's example input record (``examples/record.json``, as ``make smoke`` sends)."""
    return json.loads((project / "examples" / "record.json").read_text(encoding="utf-8"))


def http(url, body=None):
    """GET ``url``, or POST ``body`` as JSON; return (status, text)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def build(client, project, dockerfile, base_image):
    """Build ``dockerfile`` of ``project`` on ``base_image``; return the image and its tag
    (unique to this build)."""
    tag = f"template-test/{project.name}-{uuid.uuid4().hex[:8]}:{Path(dockerfile).stem}"
    try:
        image_id = build_image(project, dockerfile, tag, base_image, BUILD_ARGS)
    except BuildFailed as error:
        pytest.fail(str(error), pytrace=False)
    return client.images.get(image_id), tag


def remove_tag(client, tag):
    """Remove a build's own tag; the image goes with it unless something else, such as an
    identical build of another combination or a parallel run, still tags or uses it. (The
    image's first tag is not necessarily this build's: identical builds share one image.)"""
    import docker

    try:
        client.images.remove(tag)
    except docker.errors.APIError:  # gone already, or still in use elsewhere
        pass


def wait_until_healthy(container):
    """Wait for Docker's verdict on the container; return its health status."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        status = (state.get("Health") or {}).get("Status", "no healthcheck")
        if status in ("healthy", "unhealthy", "no healthcheck") or not state["Running"]:
            return status if state["Running"] else f"exited ({state['ExitCode']})"
        time.sleep(0.5)
    return f"still {status} after {HEALTHY_WITHIN} s"


@pytest.fixture(scope="module")
def projects(tmp_path_factory, cookiecutter_config):
    """Each combination under test, baked once: {name: project folder}."""
    return {
        name: baking.bake(tmp_path_factory.mktemp(name), answers, config_file=cookiecutter_config)
        for name, answers in COMBINATIONS.items()
    }


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def project(request, projects):
    """One baked combination."""
    return projects[request.param]


@pytest.fixture(scope="module")
def cpu_image(docker_required, project, base_image):
    """The project's CPU serving image, removed afterwards."""
    image, tag = build(docker_required, project, "docker/cpu.Dockerfile", base_image)
    yield image
    remove_tag(docker_required, tag)


@pytest.fixture(scope="module")
def serving(docker_required, cpu_image):
    """A running container of the CPU image: (container, base URL, health status)."""
    container = docker_required.containers.run(
        cpu_image.id, detach=True, ports={"8000/tcp": ("127.0.0.1", None)})
    try:
        health = wait_until_healthy(container)
        port = container.ports["8000/tcp"][0]["HostPort"]
        yield container, f"http://127.0.0.1:{port}", health
    finally:
        container.remove(force=True)


def test_base_image_script_passes_shellcheck():
    shellcheck = Path(sys.executable).with_name("shellcheck")
    result = subprocess.run([str(shellcheck) if shellcheck.exists() else "shellcheck",
                             str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def local_base_image(base_image):
    """The base image, when it is the one built by the template's script."""
    if os.environ.get("BASE_IMAGE"):
        pytest.skip(f"the image tests use BASE_IMAGE={base_image}, not the script's image")
    return base_image


def test_base_image_script_does_nothing_when_the_image_exists(local_base_image):
    result = subprocess.run([str(BASE_IMAGE_SCRIPT), local_base_image],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "already exists" in result.stdout, result.stderr


def test_base_image_trusts_the_hosts_certificates(docker_required, local_base_image):
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    inside = docker_required.containers.run(local_base_image, ["cat", bundle], remove=True)
    assert inside == Path(bundle).read_bytes(), (
        f"{local_base_image} has another CA bundle than this machine: rebuild it with "
        f"FORCE=1 {BASE_IMAGE_SCRIPT.relative_to(TEMPLATE_DIR)}")


def test_hadolint_finds_nothing_in_the_dockerfiles(project):
    dockerfiles = sorted(str(path) for path in (project / "docker").glob("*.Dockerfile"))
    result = subprocess.run([hadolint(), "--error", "DL3057", *dockerfiles],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def pinned_python_version(project):
    """The Python minor version in the tag of the serving image's pinned base
    (``FROM python:3.14-slim-...``)."""
    text = (project / "docker" / "cpu.Dockerfile").read_text(encoding="utf-8")
    return re.search(r"^FROM\s+python:(\d+\.\d+)", text, re.M)[1]


def test_base_image_runs_the_serving_images_pinned_python(docker_required, local_base_image,
                                                          project):
    # The script's base stands in for the pinned one: the same Python minor version, so that
    # a problem of that version (a wheel, bytecode, the strip step) shows itself here.
    found = python_version_in(docker_required, local_base_image)
    print(f"{local_base_image} runs Python {found}")
    assert found == pinned_python_version(project)


def test_cpu_image_runs_the_base_images_python(docker_required, cpu_image, base_image,
                                               record_property):
    found = python_version_in(docker_required, cpu_image.id)
    record_property("python_version", found)
    print(f"the CPU image runs Python {found} (base {base_image})")
    assert found == python_version_in(docker_required, base_image)


def test_the_build_context_put_the_base_image_under_the_cpu_image(docker_required, cpu_image,
                                                                  base_image):
    # The Dockerfile names its pinned base; the named build context replaced it: the image's
    # first layers are the base image's own.
    base_layers = docker_required.images.get(base_image).attrs["RootFS"]["Layers"]
    assert cpu_image.attrs["RootFS"]["Layers"][:len(base_layers)] == base_layers


def test_make_image_cpu_builds_on_the_base_image_given(docker_required, project, base_image):
    # The Makefile's knob, BASE_IMAGE, becomes the same named build context.
    tag = f"template-test/{project.name}-{uuid.uuid4().hex[:8]}:make"
    commands.run(["make", "image-cpu", f"BASE_IMAGE={base_image}", f"IMAGE_CPU={tag}"],
                 cwd=project)
    try:
        base_layers = docker_required.images.get(base_image).attrs["RootFS"]["Layers"]
        layers = docker_required.images.get(tag).attrs["RootFS"]["Layers"]
        assert layers[:len(base_layers)] == base_layers
    finally:
        remove_tag(docker_required, tag)


def test_every_base_image_is_pinned_on_a_from_line_dependabot_updates(project):
    # Dependabot's docker ecosystem updates what its FROM_LINE pattern captures: the image, a
    # tag (what it compares versions by) and the digest; an ARG in FROM is invisible to it.
    dockerfiles = sorted((project / "docker").glob("*.Dockerfile"))
    assert dockerfiles
    for dockerfile in dockerfiles:
        lines = external_from_lines(dockerfile.read_text(encoding="utf-8"))
        assert lines, f"{dockerfile.name} names no base image"
        for line, reference in lines:
            match = DEPENDABOT_FROM_LINE.match(line)
            assert match and match["tag"] and match["digest"], f"{dockerfile.name}: {line}"
            assert reference.endswith(f":{match['tag']}@{match['digest']}"), line


def test_cpu_image_becomes_healthy(serving):
    container, _, health = serving
    logs = container.logs(tail=30).decode(errors="replace")
    assert health == "healthy", f"health: {health}\n{logs}"


def test_cpu_image_answers_health(serving):
    _, url, _ = serving
    status, text = http(url + "/health")
    assert status == 200, text


def test_cpu_image_serves_a_prediction(serving, project):
    _, url, _ = serving
    status, text = http(url + "/predict", example_record(project))
    assert status == 200, text
    assert "model_version" in json.loads(text)


def test_cpu_image_rejects_a_bad_request_with_a_4xx(serving):
    _, url, _ = serving
    status, text = http(url + "/predict", {"age": "not a number"})
    assert 400 <= status < 500, f"{status} {text}"


def test_cpu_image_runs_as_a_non_root_user(serving):
    container, _, _ = serving
    exit_code, output = container.exec_run(["id", "-u"])
    assert (exit_code, output.decode().strip()) == (0, APP_UID)


# Every shared object of the installed packages, loaded with the dynamic loader (dlopen, no
# module initialisation): a file the build's strip step damaged fails here, with the loader's
# reason ("ELF load command address/offset not page-aligned" for a patchelf-rewritten library).
LOAD_EVERY_SHARED_OBJECT = """
import ctypes, pathlib, sysconfig
site = pathlib.Path(sysconfig.get_path("purelib"))
libraries = sorted(path for path in site.rglob("*.so*") if path.is_file())
failed = []
for library in libraries:
    try:
        ctypes.CDLL(str(library))
    except OSError as error:
        failed.append(str(error))
print(len(libraries))
print(*failed, sep="\\n")
"""


def test_every_shared_object_in_the_cpu_image_loads(serving):
    container, _, _ = serving
    exit_code, output = container.exec_run(["python", "-c", LOAD_EVERY_SHARED_OBJECT])
    assert exit_code == 0, output.decode()
    count, *failed = output.decode().strip().splitlines()
    assert int(count) > 100, "the image's packages carry far fewer libraries than expected"
    assert failed == [], "\n".join(failed)


# The image's own command, `model serve`, run in a thread of a second process on another port
# until it has answered /health and one prediction; then each source file it imported that has
# no bytecode is printed.
SERVICE_START_WITHOUT_BYTECODE = """
import importlib.util, json, os, sys, threading, time, urllib.request
os.environ["MODEL_PORT"] = "8001"
from {package} import cli
threading.Thread(target=cli.main, args=(["serve"],), daemon=True).start()
url = "http://127.0.0.1:8001"
for attempt in range(200):
    try:
        urllib.request.urlopen(url + "/ready", timeout=1)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("the second server did not become ready")
request = urllib.request.Request(url + "/predict", data=json.dumps({record}).encode(),
                                 headers={{"Content-Type": "application/json"}})
urllib.request.urlopen(request, timeout=5)
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None) or ""
    if source.startswith("/opt/") and source.endswith(".py"):
        if not os.path.exists(importlib.util.cache_from_source(source)):
            print(source)
"""


def test_everything_the_service_imports_at_start_has_bytecode(serving, project):
    # The image compiles bytecode for the service only (batch-only libraries compile when a
    # batch command runs): a start-up import that lost its bytecode would slow every start.
    container, _, _ = serving
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    # demux: the server's own log lines go to stderr, the files without bytecode to stdout.
    exit_code, (stdout, stderr) = container.exec_run(
        ["python", "-c", SERVICE_START_WITHOUT_BYTECODE.format(
            package=package, record=repr(example_record(project)))], demux=True)
    assert exit_code == 0, (stderr or b"").decode()
    assert (stdout or b"").decode().split() == []


def test_the_monitor_runs_in_the_cpu_image_and_says_it_drew_no_plot(serving, project):
    # What the Kubernetes CronJob runs: the image has no matplotlib (the `plots` extra) and
    # no bytecode for the scientific stack, and the monitor must still check the traffic.
    container, url, _ = serving
    record = example_record(project)
    status, text = http(url + "/predict", {"records": [record] * 40})
    assert status == 200, text
    exit_code, output = container.exec_run(["model", "monitor"])
    text = output.decode()
    assert exit_code in (0, 1), text  # passed or failed a check; not "nothing to monitor"
    assert "RESULT:" in text and "matplotlib is not installed" in text, text


def image_benchmark(project):
    """The project's image benchmark, ``benchmarks/images.py``, imported."""
    return load_module(project / "benchmarks" / "images.py", "image_benchmark")


def test_image_benchmark_times_the_first_prediction_from_docker_run(
        docker_required, cpu_image, project):
    benchmark = image_benchmark(project)
    ready, first = benchmark.time_start(cpu_image.id, example_record(project),
                                        timeout=HEALTHY_WITHIN)
    assert 0 < ready <= first <= FIRST_PREDICTION_WITHIN, (ready, first)


def test_image_benchmark_steps_of_the_start_run_in_the_cpu_image(
        docker_required, cpu_image, project):
    benchmark = image_benchmark(project)
    package = benchmark.package_name(project)
    for name, command in benchmark.start_commands(package).items():
        assert benchmark.time_command(cpu_image.id, *command) > 0, name
    assert benchmark.time_bare_start(cpu_image.id, timeout=HEALTHY_WITHIN) > 0
    slowest = benchmark.import_profile(cpu_image.id, package)
    assert "fastapi" in dict(slowest), slowest
    assert all(seconds > 0 for _, seconds in slowest), slowest


def test_cpu_image_is_labelled_with_source_revision_version_and_model_version(cpu_image):
    labels = cpu_image.labels
    assert labels["org.opencontainers.image.revision"] == "test"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["model.version"] == "0.1"
    assert "org.opencontainers.image.source" in labels


def test_make_smoke_passes_against_the_cpu_image(project, cpu_image):
    # By id: identical builds of two combinations share one image, so its first tag may be
    # the other build's, already removed.
    output = commands.run(["make", "smoke", f"IMAGE_CPU={cpu_image.id}"], cwd=project)
    assert "smoke test passed" in output


def test_gpu_image_builds_and_its_command_line_answers(docker_required, projects, base_image):
    image, tag = build(docker_required, projects["default"], "docker/gpu.Dockerfile",
                       base_image)
    try:
        output = docker_required.containers.run(image.id, ["--help"], remove=True)
        assert "train" in output.decode()
        assert image.attrs["Config"]["User"].split(":")[0] == APP_UID
    finally:
        remove_tag(docker_required, tag)


def test_gpu_image_is_left_out_when_not_chosen(projects):
    assert not (projects["gpu_image_no"] / "docker" / "gpu.Dockerfile").exists()
