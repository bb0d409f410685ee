"""Measure the serving image: size, cold build, rebuild after a code change, start to healthy.

    python benchmarks/images.py [--base-image IMAGE]

Builds docker/cpu.Dockerfile from a copy of the build context (the project itself is never
touched), then:

- the image size, and the size of a naive single-stage build of the same project
  (``FROM`` the same base, ``COPY . .``, ``pip install .``) for comparison, twice: once of the
  project folder as it is, without a ``.dockerignore`` (what a first Dockerfile ships: the
  virtual environment, ``.git``, local models and logs come along), and once of exactly the
  files the real build uses (what the multi-stage build and the cleaning save by themselves);
- the cold build time (``--no-cache``) and the rebuild time after a change to one source file,
  once with the model trained during the build (the default) and once with a model shipped in
  ``docker/model/`` (what a pipeline that trains first does);
- the time from ``docker run`` to the first 200 from the health endpoint (polled over HTTP
  every 50 ms), and to Docker's own *healthy* status, which Docker first checks one
  HEALTHCHECK interval after the start.

``--base-image`` builds on another base than the Dockerfile's pinned one (a mirror, an air-gapped
image), as ``make image-cpu BASE_IMAGE=...`` does: a BuildKit named build context replaces the
image of the Dockerfile's first ``FROM`` line. Prints one line per number and its target. Needs
only the standard library, ``docker`` and its buildx plugin.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CONTEXT_PATHS = ("pyproject.toml", "README.md", "LICENSE", ".dockerignore", "requirements",
                 "src", "docker")
NAIVE_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY . .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install .
ENV PATH=/opt/venv/bin:$PATH
CMD ["model", "serve"]
"""


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


def start_to_healthy(tag: str, timeout: float = 120) -> tuple[float, float]:
    """Seconds from ``docker run`` to the first healthy answer over HTTP, and to Docker's
    *healthy* status."""
    start = time.monotonic()
    container = docker("run", "--detach", "--publish", "127.0.0.1::8000", tag)
    try:
        port = docker("port", container, "8000/tcp").splitlines()[0].rsplit(":", 1)[1]
        http_seconds = None
        while http_seconds is None and time.monotonic() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        http_seconds = time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        while time.monotonic() - start < timeout:
            health = json.loads(docker("inspect", container))[0]["State"].get("Health") or {}
            if health.get("Status") == "healthy":
                return http_seconds, time.monotonic() - start
            time.sleep(0.1)
        sys.exit(f"{tag} did not become healthy in {timeout:.0f} s")
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


def report(name: str, value: str, target: str = "", met: bool | None = None) -> None:
    """Print one measurement, its target and whether it is met."""
    verdict = "" if met is None else ("  ok" if met else "  MISSED")
    print(f"{name:<34} {value:>12}   {target}{verdict}")


def untagged_images() -> set[str]:
    """The ids of the untagged images (build stages, replaced images) present now."""
    return set(docker("image", "ls", "--quiet", "--no-trunc", "--filter", "dangling=true")
               .split())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", help="image to build on in place of the Dockerfile's "
                        "pinned base (default: that base)")
    parser.add_argument("--tag", default="image-benchmark", help="image name to build")
    parser.add_argument("--keep", action="store_true",
                        help="keep the images and the build stages afterwards")
    args = parser.parse_args(argv)
    tag, naive_tag, naive_folder_tag = (f"{args.tag}:cpu", f"{args.tag}:naive",
                                        f"{args.tag}:naive-folder")
    untagged_before = untagged_images()

    with tempfile.TemporaryDirectory() as tmp:
        context = copy_context(Path(tmp))
        try:
            cold = timed_build(context, "docker/cpu.Dockerfile", tag, args.base_image,
                               "--no-cache")
            touch_source(context)
            rebuild = timed_build(context, "docker/cpu.Dockerfile", tag, args.base_image)
            size = image_size(tag)
            ship_model_from(tag, context)
            timed_build(context, "docker/cpu.Dockerfile", tag, args.base_image)
            touch_source(context)
            rebuild_shipped = timed_build(context, "docker/cpu.Dockerfile", tag, args.base_image)
            http_seconds, docker_seconds = start_to_healthy(tag)
            naive_dockerfile = NAIVE_DOCKERFILE.format(
                base=pinned_base(context / "docker" / "cpu.Dockerfile"))
            (context / "naive.Dockerfile").write_text(naive_dockerfile, encoding="utf-8")
            naive_build = timed_build(context, "naive.Dockerfile", naive_tag, args.base_image,
                                      "--no-cache")
            naive_size = image_size(naive_tag)
            timed_build_of_folder(PROJECT, naive_dockerfile, naive_folder_tag, args.base_image)
            naive_folder_size = image_size(naive_folder_tag)
        finally:
            if not args.keep:
                # The images, then the build stages and replaced images the builds left.
                subprocess.run(["docker", "image", "rm", tag, naive_tag, naive_folder_tag],
                               capture_output=True)
                leftovers = sorted(untagged_images() - untagged_before)
                if leftovers:
                    subprocess.run(["docker", "image", "rm", *leftovers], capture_output=True)

    mb = 1e6
    report("CPU image size", f"{size / mb:.0f} MB", "<= 350 MB", size <= 350 * mb)
    report("naive image, project folder as is", f"{naive_folder_size / mb:.0f} MB",
           f"context {folder_size(PROJECT) / mb:.0f} MB, no .dockerignore")
    report("size / naive, project folder", f"{size / naive_folder_size:.2f}", "<= 0.35",
           size / naive_folder_size <= 0.35)
    report("naive image, the build's files", f"{naive_size / mb:.0f} MB")
    report("size / naive, the build's files", f"{size / naive_size:.2f}", "<= 0.35",
           size / naive_size <= 0.35)
    report("cold build (--no-cache)", f"{cold:.1f} s")
    report("naive build (--no-cache)", f"{naive_build:.1f} s")
    report("rebuild after a source change", f"{rebuild:.1f} s", "retrains the model")
    report("rebuild / cold", f"{rebuild / cold:.2f}", "<= 0.15", rebuild / cold <= 0.15)
    report("rebuild, model in docker/model/", f"{rebuild_shipped:.1f} s", "no training")
    report("rebuild / cold, model shipped", f"{rebuild_shipped / cold:.2f}", "<= 0.15",
           rebuild_shipped / cold <= 0.15)
    report("start to healthy (HTTP /health)", f"{http_seconds:.2f} s", "<= 1.5 s",
           http_seconds <= 1.5)
    report("start to healthy (docker health)", f"{docker_seconds:.1f} s",
           "first check after one interval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
