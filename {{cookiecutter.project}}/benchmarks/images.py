"""Measure the serving image: size, cold build, rebuild, start to the first prediction.

    python benchmarks/images.py [--base-image IMAGE]

Builds docker/cpu.Dockerfile from a copy of the build context (the project itself is never
touched), then:

- the image size, and the size of a naive single-stage build of the same project
  (``FROM`` the same base, ``COPY . .``, ``pip install .``, ``model train``, ``CMD ["model",
  "serve"]``: ``NAIVE_DOCKERFILE``) for comparison, twice: once of the
  project folder as it is, without a ``.dockerignore`` (what a first Dockerfile ships: the
  virtual environment, ``.git``, local models and logs come along), and once of exactly the
  files the real build uses (what the multi-stage build and the cleaning save by themselves);
- the cold build time (``--no-cache``) and the rebuild time after a change to one source file,
  once with the model trained during the build (the default) and once with a model shipped in
  ``docker/model/`` (what a pipeline that trains first does);
- the start, from ``docker run`` to the first prediction answered 200 with a probability (the
  example record, ``examples/record.json``), and to the first 200 from ``/ready``, for the
  image and for the naive build, in interleaved rounds (``--runs``, default 10): the median
  and the range [min-max] of each. The service is polled every 10 ms on a port fixed before
  the start (no ``docker port`` call in between), so each figure is up to 10 ms late.
  Beside it, where the time goes, measured the same way: the container runtime alone
  (``docker run IMAGE true``, the floor no image goes below), the interpreter
  (``python3 -c pass``) and the service's imports (``python3 -c "import PACKAGE.serving.service,
  uvicorn"``, leaving without the interpreter's clean-up) and the same imports without the
  image's bytecode (compiled in memory), each until the container exits; and, once per image,
  the slowest imports by package (``python3 -X importtime``). And the server's own floor: a
  bare ASGI app of a few lines under uvicorn, in the same image, to its first 200.

The machine's load average is printed before and after: on a shared machine every figure moves
with it.

``--base-image`` builds on another base than the Dockerfile's pinned one (a mirror, an air-gapped
image), as ``make image-cpu BASE_IMAGE=...`` does: a BuildKit named build context replaces the
image of the Dockerfile's first ``FROM`` line. Prints one line per number and its target. Needs
only the standard library, ``docker`` and its buildx plugin.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import re
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

PROJECT = Path(__file__).resolve().parents[1]
CONTEXT_PATHS = ("pyproject.toml", "README.md", "LICENSE", ".dockerignore", "requirements",
                 "src", "docker")
# What a first Dockerfile for the project looks like: one stage, root, the latest dependencies
# that pyproject.toml allows (pip compiles their bytecode as it installs them), a model trained
# in the build as the real image does, and the address that a published port reaches.
NAIVE_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY . .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install .
ENV PATH=/opt/venv/bin:$PATH MODEL_HOST=0.0.0.0
RUN model train --quiet
CMD ["model", "serve"]
"""
# How often the start benchmark asks the starting service: the figures are up to this late.
POLL_SECONDS = 0.01


def docker(*args: str) -> str:
    """Run ``docker ARGS``; return its standard output, exit with its error on failure."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"docker {args[0]} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip()


def pinned_base(dockerfile: Path) -> str:
    """The image reference (tag and digest) on the first ``FROM`` line of ``dockerfile``."""
    text = dockerfile.read_text(encoding="utf-8")
    match = re.search(r"^FROM\s+(?:--\S+\s+)*(\S+)", text, re.MULTILINE)
    if match is None:
        sys.exit(f"{dockerfile} has no FROM line")
    return match[1]


def base_options(base_image: str | None) -> list[str]:
    """The build options that put ``base_image`` in place of the pinned base, if given."""
    if not base_image:
        return []
    reference = pinned_base(PROJECT / "docker" / "cpu.Dockerfile")
    return ["--build-context", f"{reference}=docker-image://{base_image}"]


def timed_build(context: Path, dockerfile: str, tag: str, base_image: str | None,
                *extra: str) -> float:
    """Build ``tag`` from ``context``; return the wall-clock seconds it took."""
    start = time.monotonic()
    docker("buildx", "build", "--quiet", "--file", str(context / dockerfile), "--tag", tag,
           *base_options(base_image), *extra, str(context))
    return time.monotonic() - start


def timed_build_of_folder(folder: Path, dockerfile: str, tag: str,
                          base_image: str | None) -> float:
    """Build ``tag`` from ``dockerfile`` (text) with all of ``folder`` as the context, its
    ``.dockerignore`` left out; return the wall-clock seconds it took.

    The context goes to ``docker buildx build -`` as a tar stream, so nothing is copied on disk.
    """
    start = time.monotonic()
    build = subprocess.Popen(["docker", "buildx", "build", "--quiet", "--no-cache", "--tag", tag,
                              *base_options(base_image), "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=build.stdin, mode="w|") as tar:
            text = dockerfile.encode("utf-8")
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
            for entry in sorted(folder.iterdir()):
                if entry.name != ".dockerignore":
                    tar.add(entry, arcname=entry.name)
    except BrokenPipeError:  # docker stopped reading: its own message below says why
        pass
    _, error = build.communicate()  # closes the stream: the end of the context
    if build.returncode != 0:
        sys.exit(f"docker buildx build of {folder} failed:\n{error.decode()[-2000:]}")
    return time.monotonic() - start


def folder_size(folder: Path) -> int:
    """The bytes of the files under ``folder`` (symbolic links not followed)."""
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file()
               and not path.is_symlink())


def image_size(tag: str) -> int:
    """The image's size in bytes, as ``docker image ls`` reports it (all layers)."""
    return json.loads(docker("image", "inspect", tag))[0]["Size"]


def copy_context(destination: Path) -> Path:
    """Copy the files the images are built from into ``destination``; return it."""
    for name in CONTEXT_PATHS:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, symlinks=True)
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


def touch_source(context: Path) -> Path:
    """Change one source file (a comment line) the way a code-only commit would."""
    source = sorted(context.glob("src/*/__init__.py"))[0]
    with source.open("a", encoding="utf-8") as file:
        file.write(f"# benchmark change {time.time_ns()}\n")
    return source


def ship_model_from(tag: str, context: Path) -> None:
    """Put the model registry of image ``tag`` into the context's ``docker/model/``, as a
    pipeline that trained and checked a model would before building the image."""
    container = docker("create", tag)
    try:
        docker("cp", f"{container}:/srv/models/.", str(context / "docker" / "model"))
    finally:
        docker("rm", container)


def naive_dockerfile(base: str) -> str:
    """The naive single-stage Dockerfile of the project, on the image reference ``base``."""
    return NAIVE_DOCKERFILE.format(base=base)


def package_name(project: Path = PROJECT) -> str:
    """The import name of the project's package (the one folder under ``src/``)."""
    packages = [path.name for path in (project / "src").iterdir()
                if (path / "__init__.py").is_file()]
    if len(packages) != 1:
        sys.exit(f"expected one package under {project / 'src'}, found {packages}")
    return packages[0]


class Spread(NamedTuple):
    """The median and the range of repeated measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        """The median, minimum and maximum of ``values`` (at least one)."""
        if not values:
            raise ValueError("no measurements to summarise")
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.2f} s [{self.low:.2f}-{self.high:.2f}]"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_prediction(status: int, body: bytes) -> bool:
    """Whether an answer of POST /predict is a successful prediction: 200 and a probability."""
    if status != 200:
        return False
    try:
        probabilities = json.loads(body).get("probabilities")
    except (ValueError, AttributeError):
        return False
    return (isinstance(probabilities, list) and len(probabilities) > 0
            and all(isinstance(p, float) and 0 <= p <= 1 for p in probabilities))


def is_ok(status: int, body: bytes) -> bool:
    """Whether an answer is a 200, whatever it says."""
    return status == 200


def poll(request: urllib.request.Request, accept, start: float,
         deadline: float) -> float | None:
    """Send ``request`` every ``POLL_SECONDS`` until ``accept(status, body)`` holds; return the
    seconds since ``start`` (a ``time.monotonic()`` reading) when it did, None at ``deadline``.

    Refused and reset connections (the port is published before the server listens) and error
    statuses count as "not yet".
    """
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            with error:  # it holds the response; Python 3.14 warns when it is left open
                status, body = error.code, error.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            status, body = 0, b""
        if accept(status, body):
            return time.monotonic() - start
        time.sleep(POLL_SECONDS)
    return None


@contextlib.contextmanager
def started(tag: str, port: int, *command: str):
    """Start a container of ``tag`` (its own command, or ``command``: entrypoint and arguments)
    with its port 8000 published on ``port``; yield the ``time.monotonic()`` reading taken
    just before ``docker run``, and remove the container afterwards."""
    entrypoint = ["--entrypoint", command[0], tag, *command[1:]] if command else [tag]
    start = time.monotonic()
    container = docker("run", "--detach", "--publish", f"127.0.0.1:{port}:8000", *entrypoint)
    try:
        yield start
    except SystemExit as failure:
        logs = subprocess.run(["docker", "logs", "--tail", "20", container],
                              capture_output=True, text=True)
        sys.exit(f"{failure}; the container's last lines:\n{logs.stdout}{logs.stderr}")
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


def time_start(tag: str, record: dict, timeout: float = 120) -> tuple[float, float]:
    """Seconds from ``docker run`` of the image ``tag`` (its own command) to the first 200 of
    ``/ready``, and to the first successful prediction of ``record``.

    The port is chosen before the start, so polling begins as soon as ``docker run`` returns.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    predict = urllib.request.Request(f"{url}/predict", data=json.dumps(record).encode(),
                                     headers={"Content-Type": "application/json"})
    with started(tag, port) as start:
        deadline = start + timeout
        ready = poll(urllib.request.Request(f"{url}/ready"), is_ok, start, deadline)
        first = poll(predict, is_prediction, start, deadline) if ready is not None else None
        if first is None:
            sys.exit(f"{tag} answered no prediction within {timeout:.0f} s")
        return ready, first


# The server's own floor: uvicorn, as the service runs it, serving an ASGI app of a few lines
# that answers 200 to everything (no framework, no validation, no model).
BARE_APP = """\
import uvicorn


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


uvicorn.run(app, host="0.0.0.0", port=8000, log_level="warning", lifespan="off")
"""


def time_bare_start(tag: str, timeout: float = 120) -> float:
    """Seconds from ``docker run`` of ``tag`` with ``BARE_APP`` to its first 200."""
    port = free_port()
    with started(tag, port, "python3", "-c", BARE_APP) as start:
        seconds = poll(urllib.request.Request(f"http://127.0.0.1:{port}/"), is_ok, start,
                       start + timeout)
        if seconds is None:
            sys.exit(f"the bare uvicorn app in {tag} did not answer within {timeout:.0f} s")
        return seconds


def time_command(tag: str, *command: str) -> float:
    """Seconds from ``docker run`` of ``tag`` with ``command`` (entrypoint, arguments) to the
    container's exit; exits with its output if the command fails."""
    name = f"image-benchmark-{os.getpid()}-{time.monotonic_ns()}"
    start = time.monotonic()
    result = subprocess.run(["docker", "run", "--name", name, "--entrypoint", command[0], tag,
                             *command[1:]], capture_output=True, text=True)
    seconds = time.monotonic() - start
    subprocess.run(["docker", "rm", "--force", name], capture_output=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {tag}:\n{result.stderr[-2000:]}")
    return seconds


def start_commands(package: str) -> dict[str, tuple[str, ...]]:
    """The commands that split a start into its parts, by name, each run until it exits: the
    container runtime alone, then the interpreter, then the imports of the service.

    The imports end with ``os._exit``: the interpreter's clean-up of the modules (a few
    hundred milliseconds on a busy machine) is no part of a server's start.
    """
    imports = f"import {package}.serving.service, uvicorn, os; os._exit(0)"
    return {
        "runtime": ("true",),
        "interpreter": ("python3", "-c", "pass"),
        "imports": ("python3", "-c", imports),
        # The same imports compiled in memory, as without the image's bytecode: -X
        # pycache_prefix points the lookup of .pyc files at an empty tree, -B writes none.
        "imports_uncompiled": ("python3", "-B", "-X", "pycache_prefix=/nonexistent", "-c",
                               imports),
    }


def slowest_imports(importtime: str, top: int = 6) -> list[tuple[str, float]]:
    """The ``top`` top-level packages whose modules took longest to import, with their seconds,
    from the standard error of ``python3 -X importtime``.

    Each module's own time (not the cumulative one, which counts its imports again) goes to its
    top-level package: ``fastapi.routing`` to ``fastapi``.
    """
    totals: dict[str, float] = defaultdict(float)
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+(\d+)\s+\|\s+\d+\s+\|\s*(\S+)$", line)
        if match:
            totals[match[2].split(".")[0]] += int(match[1]) / 1e6
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:top]


def import_profile(tag: str, package: str) -> list[tuple[str, float]]:
    """The slowest imports of the service in image ``tag``, by package."""
    result = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python3", tag, "-X",
                             "importtime", "-c", f"import {package}.serving.service, uvicorn"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"the imports of {package}.serving.service failed in {tag}:\n"
                 f"{result.stderr[-2000:]}")
    return slowest_imports(result.stderr)


def measure_starts(tags: list[str], record: dict, package: str,
                   runs: int) -> dict[str, dict[str, Spread]]:
    """Each start figure of each image, over ``runs`` rounds; within a round the images take
    turns, the first one changing every round, so that a busy spell hits them alike.

    Returns {tag: {name: Spread}}, with the names of ``START_LABELS``.
    """
    times: dict[str, dict[str, list[float]]] = {tag: defaultdict(list) for tag in tags}
    for round_ in range(runs):
        order = tags[round_ % len(tags):] + tags[:round_ % len(tags)]
        for name, command in start_commands(package).items():
            for tag in order:
                times[tag][name].append(time_command(tag, *command))
        for tag in order:
            times[tag]["bare"].append(time_bare_start(tag))
        for tag in order:
            ready, first = time_start(tag, record)
            times[tag]["ready"].append(ready)
            times[tag]["prediction"].append(first)
    return {tag: {name: Spread.of(values) for name, values in figures.items()}
            for tag, figures in times.items()}


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages and the number of CPUs."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def report(name: str, value: str, target: str = "", met: bool | None = None) -> None:
    """Print one measurement, its target and whether it is met."""
    verdict = "" if met is None else ("  ok" if met else "  MISSED")
    print(f"{name:<34} {value:>12}   {target}{verdict}")


def untagged_images() -> set[str]:
    """The ids of the untagged images (build stages, replaced images) present now."""
    return set(docker("image", "ls", "--quiet", "--no-trunc", "--filter", "dangling=true")
               .split())


def report_builds(figures: dict[str, float]) -> None:
    """Print the sizes and the build times."""
    mb = 1e6
    size, naive_size, naive_folder_size = (figures["size"], figures["naive_size"],
                                           figures["naive_folder_size"])
    cold, rebuild, rebuild_shipped = (figures["cold"], figures["rebuild"],
                                      figures["rebuild_shipped"])
    report("CPU image size", f"{size / mb:.0f} MB", "<= 350 MB", size <= 350 * mb)
    report("naive image, project folder as is", f"{naive_folder_size / mb:.0f} MB",
           f"context {folder_size(PROJECT) / mb:.0f} MB, no .dockerignore")
    report("size / naive, project folder", f"{size / naive_folder_size:.2f}", "<= 0.35",
           size / naive_folder_size <= 0.35)
    report("naive image, the build's files", f"{naive_size / mb:.0f} MB")
    report("size / naive, the build's files", f"{size / naive_size:.2f}", "<= 0.35",
           size / naive_size <= 0.35)
    report("cold build (--no-cache)", f"{cold:.1f} s")
    report("naive build (--no-cache)", f"{figures['naive_build']:.1f} s")
    report("rebuild after a source change", f"{rebuild:.1f} s", "retrains the model")
    report("rebuild / cold", f"{rebuild / cold:.2f}", "<= 0.15", rebuild / cold <= 0.15)
    report("rebuild, model in docker/model/", f"{rebuild_shipped:.1f} s", "no training")
    report("rebuild / cold, model shipped", f"{rebuild_shipped / cold:.2f}", "<= 0.15",
           rebuild_shipped / cold <= 0.15)


START_LABELS = {
    "runtime": "container runtime (`true`)",
    "interpreter": "interpreter (`python3 -c pass`)",
    "imports": "the service's imports",
    "imports_uncompiled": "the same, no bytecode",
    "bare": "bare uvicorn app: first 200",
    "ready": "serve: first 200 of /ready",
    "prediction": "serve: first prediction (200)",
}


def report_starts(starts: dict[str, dict[str, Spread]], imports: dict[str, list],
                  tag: str, naive_tag: str, runs: int) -> None:
    """Print the start figures of the image beside the naive build's, and their ratio."""
    print(f"\nStart from `docker run`, {runs} interleaved runs per image, median [min-max] "
          f"(polled every {POLL_SECONDS * 1000:.0f} ms)")
    print(f"{'':<34} {'image':>20} {'naive build':>20}")
    for name, label in START_LABELS.items():
        print(f"{label:<34} {str(starts[tag][name]):>20} {str(starts[naive_tag][name]):>20}")
    image_start = starts[tag]["prediction"].median
    naive_start, floor = starts[naive_tag]["prediction"].median, starts[tag]["runtime"].median
    report("start / naive start (medians)", f"{image_start / naive_start:.2f}",
           "first prediction, image over naive build")
    report("start above the runtime floor", f"{image_start - floor:.2f} s",
           "image: first prediction - `true`")
    report("start above a bare uvicorn app", f"{image_start - starts[tag]['bare'].median:.2f} s",
           "image: first prediction - bare app's first 200")
    for image, label in ((tag, "image"), (naive_tag, "naive build")):
        slowest = ", ".join(f"{name} {seconds:.2f}" for name, seconds in imports[image])
        print(f"slowest imports by package, {label} (s): {slowest}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="image to build on in place of the Dockerfile's "
                        "pinned base (default: that base)")
    parser.add_argument("--tag", default="image-benchmark", help="image name to build")
    parser.add_argument("--runs", type=int, default=10,
                        help="rounds of starts of each image (default 10)")
    parser.add_argument("--start-only", action="store_true",
                        help="build both images with the cache and measure only the start")
    parser.add_argument("--keep", action="store_true",
                        help="keep the images and the build stages afterwards")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    record = json.loads((PROJECT / "examples" / "record.json").read_text(encoding="utf-8"))
    package = package_name()
    load_before = load_average()
    tag, naive_tag, naive_folder_tag = (f"{args.tag}:cpu", f"{args.tag}:naive",
                                        f"{args.tag}:naive-folder")
    untagged_before = untagged_images()
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        context = copy_context(Path(tmp))
        naive = naive_dockerfile(pinned_base(context / "docker" / "cpu.Dockerfile"))
        (context / "naive.Dockerfile").write_text(naive, encoding="utf-8")
        cache = [] if args.start_only else ["--no-cache"]
        try:
            figures["cold"] = timed_build(context, "docker/cpu.Dockerfile", tag,
                                          args.base_image, *cache)
            figures["naive_build"] = timed_build(context, "naive.Dockerfile", naive_tag,
                                                 args.base_image, *cache)
            if not args.start_only:
                touch_source(context)
                figures["rebuild"] = timed_build(context, "docker/cpu.Dockerfile", tag,
                                                 args.base_image)
                figures["size"] = image_size(tag)
                ship_model_from(tag, context)
                timed_build(context, "docker/cpu.Dockerfile", tag, args.base_image)
                touch_source(context)
                figures["rebuild_shipped"] = timed_build(context, "docker/cpu.Dockerfile", tag,
                                                         args.base_image)
                figures["naive_size"] = image_size(naive_tag)
                timed_build_of_folder(PROJECT, naive, naive_folder_tag, args.base_image)
                figures["naive_folder_size"] = image_size(naive_folder_tag)
            starts = measure_starts([tag, naive_tag], record, package, args.runs)
            imports = {image: import_profile(image, package) for image in (tag, naive_tag)}
        finally:
            if not args.keep:
                # The images, then the build stages and replaced images the builds left.
                subprocess.run(["docker", "image", "rm", tag, naive_tag, naive_folder_tag],
                               capture_output=True)
                leftovers = sorted(untagged_images() - untagged_before)
                if leftovers:
                    subprocess.run(["docker", "image", "rm", *leftovers], capture_output=True)

    if not args.start_only:
        report_builds(figures)
    report_starts(starts, imports, tag, naive_tag, args.runs)
    print(f"load average: {load_before} before, {load_average()} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
