"""Run a generated project's commands (make targets) the way a new user would."""

import glob
import os
import shutil
import subprocess
from pathlib import Path

OUTPUT_TAIL_CHARS = 6000
"""How much of a failed command's output a test failure shows."""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""The host's CA bundle (Debian's path), which a container's pip and uv trust too."""


def uv_cache_dir():
    """Return the uv cache every test's fresh virtual environment shares.

    uv links packages from its cache into each new environment, so the many
    environments this suite creates cost seconds, not minutes.
    """
    configured = os.environ.get("UV_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "uv"


def project_env():
    """Return the environment for a generated project's commands.

    The suite's own virtual environment is taken off PATH, so the project's
    Makefile finds the machine's Python and builds its own environment.
    """
    env = dict(os.environ)
    active = env.pop("VIRTUAL_ENV", None)
    if active:
        own_bin = str(Path(active, "bin"))
        env["PATH"] = os.pathsep.join(
            part for part in env.get("PATH", "").split(os.pathsep) if part != own_bin
        )
    # The suite runs under `make test`; its make variables (VENV, PYTHON, ...)
    # must not leak into the project's make.
    for name in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(name, None)
    env["UV_CACHE_DIR"] = str(uv_cache_dir())
    return env


def run(args, cwd, timeout=1800, extra_env=None):
    """Run ``args`` in ``cwd``; return the combined output, fail the test if it fails.

    ``extra_env`` adds or overrides environment variables for this command.
    """
    result = subprocess.run(
        args,
        cwd=cwd,
        env={**project_env(), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(map(str, args))}` in {cwd} exited with {result.returncode}:\n"
            + result.stdout[-OUTPUT_TAIL_CHARS:]
        )
    return result.stdout


def run_in_container(image, args, cwd, timeout=1800):
    """Run ``args`` in ``cwd`` inside a container of ``image``, as this user; return the output
    (``run``'s rules).

    ``cwd`` is mounted at its own path, so the files the command writes land here, owned by
    this user; so are the suite's uv cache and the host's CA bundle (pip and uv then reach the
    index as they do here, behind a TLS-intercepting proxy too).
    """
    cache = uv_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    mounts = [f"{cwd}:{cwd}", f"{cache}:{cache}"]
    if CA_BUNDLE.exists():
        mounts.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
    command = ["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}",
               "--workdir", str(cwd), "--env", "HOME=/tmp", "--env", f"UV_CACHE_DIR={cache}"]
    for mount in mounts:
        command += ["--volume", mount]
    return run([*command, image, *map(str, args)], cwd=cwd, timeout=timeout)


def interpreter_version(executable):
    """Return "3.X" for a working Python executable, or None if it does not run.

    pyenv puts shims on PATH for versions that are not active; they exist
    but fail, so finding the file is not enough.
    """
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_interpreter(version):
    """Return the path of a working ``python<version>``, or None.

    Looks on PATH, then in pyenv's installed versions.
    """
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        if interpreter_version(candidate) == version:
            return candidate
    return None
