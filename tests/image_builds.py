"""Build the generated project's images the way its Makefile does, on a base of one's choosing.

The Dockerfiles pin their base on a literal ``FROM image:tag@digest`` line, the form that
Dependabot reads and updates. Another base (a mirror, or the air-gapped image that
``scripts/build-base-image.sh`` builds) replaces it without editing the file through a BuildKit
named build context: ``--build-context REFERENCE=docker-image://IMAGE`` makes every ``FROM
REFERENCE`` use IMAGE (Docker docs, "docker buildx build", ``--build-context``). The Docker SDK
for Python drives only the classic builder, which has no named contexts, so builds run
``docker buildx build``; the SDK stays for running and inspecting the images. Docker's default
builder (the ``docker`` driver) sees the local image store, so a local base image needs no
registry.

- ``build_image(project_dir, dockerfile, tag, base_image)``: build, return the image id.
- ``pinned_base(dockerfile)``: the image reference of a Dockerfile's first external ``FROM``.
- ``external_from_lines(text)``: each ``FROM`` line that names an image, not a build stage.
- ``DEPENDABOT_FROM_LINE``: the pattern with which Dependabot finds a Dockerfile's images.
- ``air_gapped_base(python_version)``: the script's base image, built when it is missing.
- ``project_runner(python_version)``: that base with ``make``, to run a project's targets in.
- ``python_version_in(client, image)``: the Python minor version an image runs, e.g. "3.14".
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
BASE_IMAGE_SCRIPT = TEMPLATE_DIR / "scripts" / "build-base-image.sh"
OUTPUT_TAIL_CHARS = 6000

# Dependabot's FROM_LINE, from dependabot-core's docker/lib/dependabot/docker/file_parser.rb,
# in Python's syntax. Dependabot keeps a FROM line as a dependency only when this matches and
# gives a tag or a digest; `FROM ${BASE_IMAGE}` never matches (IMAGE cannot start with "$":
# dependabot-core issue 2057, ARG in FROM, is open), so such a base is never updated.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})+)"
_REGISTRY = rf"(?P<registry>{_DOMAIN}(?::\d+)?)"
_NAME_COMPONENT = r"(?:[a-z\d]+(?:(?:[._]|__|[-]*)[a-z\d]+)*)"
_IMAGE = rf"(?P<image>{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)"
_PLATFORM = r"--platform=(?P<platform>\S+)"
_TAG = r":(?P<tag>\w[\w.-]{0,127})"
_DIGEST = r"@(?P<digest>\S+)"
_NAME = r"\s+AS\s+(?P<name>[\w-]+)"
DEPENDABOT_FROM_LINE = re.compile(
    rf"^(?i:FROM)\s+(?:{_PLATFORM}\s+)?(?:{_REGISTRY}/)?{_IMAGE}(?:{_TAG})?(?:{_DIGEST})?"
    rf"(?:{_NAME})?")

# A FROM instruction as Docker reads it: options, the image (or stage), an optional stage name.
_FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(?P<reference>\S+)(?:\s+AS\s+(?P<stage>\S+))?",
                   re.IGNORECASE | re.MULTILINE)

_GLOBAL_ARG = re.compile(r"^ARG\s+(\w+)=(\S+)", re.IGNORECASE | re.MULTILINE)
_ARG_USE = re.compile(r"\$(?:\{(?P<name>\w+)\}|(?P<bare>\w+))")


class BuildFailed(AssertionError):
    """``docker buildx build`` failed; the message carries the end of its output."""


def external_from_lines(text):
    """Return (line, reference) for each ``FROM`` of Dockerfile ``text`` that names an image,
    not an earlier build stage nor ``scratch``."""
    stages, found = set(), []
    for match in _FROM.finditer(text):
        reference = match["reference"]
        if reference.lower() not in stages and reference != "scratch":
            found.append((match[0], reference))
        if match["stage"]:
            stages.add(match["stage"].lower())
    return found


def pinned_base(dockerfile):
    """Return the image reference of the first ``FROM`` in ``dockerfile`` that names an image:
    the base that a named build context replaces.

    A reference made of ``ARG``s (``FROM ${BASE_IMAGE}``) is expanded with the defaults of the
    ``ARG``s before the first ``FROM``: BuildKit looks the named context up by that expansion.
    """
    text = Path(dockerfile).read_text(encoding="utf-8")
    lines = external_from_lines(text)
    if not lines:
        raise ValueError(f"{dockerfile} has no FROM line that names an image")
    defaults = dict(_GLOBAL_ARG.findall(text.split(lines[0][0], 1)[0]))
    return _ARG_USE.sub(lambda use: defaults.get(use["name"] or use["bare"], ""), lines[0][1])


def build_image(project_dir, dockerfile, tag, base_image=None, build_args=None, timeout=1800):
    """Build ``dockerfile`` (relative to ``project_dir``, the build context) as ``tag``; return
    the image id.

    ``base_image``, when given, replaces the Dockerfile's pinned base (its first ``FROM``
    image) through a named build context; ``build_args`` ({name: value}) become
    ``--build-arg``. Raises ``BuildFailed`` with the end of the build's output.
    """
    project_dir = Path(project_dir)
    command = ["docker", "buildx", "build", "--progress", "plain",
               "--file", str(project_dir / dockerfile), "--tag", tag]
    reference = pinned_base(project_dir / dockerfile)
    if base_image and base_image != reference:  # the pinned base itself needs no context
        command += ["--build-context", f"{reference}=docker-image://{base_image}"]
    for name, value in (build_args or {}).items():
        command += ["--build-arg", f"{name}={value}"]
    with tempfile.TemporaryDirectory() as scratch:
        id_file = Path(scratch) / "image-id"
        result = subprocess.run([*command, "--iidfile", str(id_file), str(project_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=timeout)
        if result.returncode != 0 or not id_file.exists():
            raise BuildFailed(f"{dockerfile} did not build (exit {result.returncode}): "
                              f"{' '.join(command)}\n{result.stdout[-OUTPUT_TAIL_CHARS:]}")
        return id_file.read_text(encoding="utf-8").strip()


def air_gapped_base(python_version=None):
    """Return the name of the base image that ``scripts/build-base-image.sh`` builds for
    ``python_version`` (default: the serving image's pinned Python), building it when missing.

    Raises ``RuntimeError`` with the script's message when it cannot be built.
    """
    env = dict(os.environ)
    env.pop("PYTHON_VERSION", None)
    if python_version:
        env["PYTHON_VERSION"] = python_version
    name = subprocess.run([str(BASE_IMAGE_SCRIPT), "--name"], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    result = subprocess.run([str(BASE_IMAGE_SCRIPT), name], env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{BASE_IMAGE_SCRIPT.name} could not build {name}: "
                           f"{result.stderr.strip()[-500:]}")
    return name


RUNNER_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make \\
    && rm -rf /var/lib/apt/lists/*
"""


def project_runner(python_version):
    """Return an image with Debian's python3 of ``python_version`` and ``make``: the
    air-gapped base and one package, to run a generated project's make targets where this
    machine has no such interpreter. Built once; later builds are BuildKit cache hits."""
    base = air_gapped_base(python_version)
    tag = f"{base}-make"
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Dockerfile").write_text(RUNNER_DOCKERFILE.format(base=base),
                                               encoding="utf-8")
        build_image(context, "Dockerfile", tag, base_image=base)
    return tag


def python_version_in(client, image):
    """Return the minor version ("3.14") of the ``python3`` that ``image`` runs."""
    output = client.containers.run(
        image, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        entrypoint="python3", remove=True)
    return output.decode().strip()
