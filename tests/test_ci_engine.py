"""`.ci/run` on a fresh machine: the Docker engine it installs, and what it leaves alone.

A machine of this project's kind has a Docker client and no daemon; `.ci/run` installs the
engine (and buildx) when `dockerd` (or the plugin) is missing. The engine comes from Debian
trixie, pinned low, so that on bookworm nothing else is upgraded: checked with `apt-get -s` in
a bookworm container (the air-gapped base for Python 3.11, from the template's script).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import in_ci
from image_builds import TEMPLATE_DIR, air_gapped_base

CI_DIR = TEMPLATE_DIR / ".ci"
BOOKWORM_PYTHON = "3.11"


@pytest.mark.parametrize("script", ["run", "install-docker-engine"])
def test_ci_script_passes_shellcheck(script):
    shellcheck = Path(sys.executable).with_name("shellcheck")
    result = subprocess.run([str(shellcheck) if shellcheck.exists() else "shellcheck",
                             str(CI_DIR / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_run_installs_the_engine_when_dockerd_or_buildx_is_missing():
    # Not when `docker` is missing: the client alone starts no daemon, and a machine of this
    # kind has the client only.
    lines = (CI_DIR / "run").read_text(encoding="utf-8").splitlines()
    calls = [number for number, line in enumerate(lines)
             if line.strip() == ".ci/install-docker-engine"]
    assert calls, ".ci/run never calls .ci/install-docker-engine"
    condition = next(line for line in reversed(lines[:calls[0]]) if line.startswith("if "))
    assert "command -v dockerd" in condition and "docker buildx version" in condition, condition


@pytest.fixture(scope="module")
def simulated_install(docker_required):
    """What `.ci/install-docker-engine --simulate` prints in a bookworm container."""
    try:
        image = air_gapped_base(BOOKWORM_PYTHON)
    except RuntimeError as error:
        if in_ci():
            pytest.fail(f"required in CI (CI=true): {error}", pytrace=False)
        pytest.skip(str(error))
    result = subprocess.run(
        ["docker", "run", "--rm", "--volume", f"{CI_DIR}:/ci:ro", image, "sh", "-c",
         "grep VERSION_CODENAME /etc/os-release && /ci/install-docker-engine --simulate"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def installed(output):
    """{package: release label} of each `Inst` line of `apt-get -s` output."""
    return dict(re.findall(r"^Inst (\S+) .*?\(\S+ Debian:(\S+?)/", output, re.M))


def test_the_engine_comes_from_trixie_and_nothing_is_upgraded_on_bookworm(simulated_install):
    assert "VERSION_CODENAME=bookworm" in simulated_install
    packages = installed(simulated_install)
    # Debian 13 is trixie: its docker.io (26.1) has BuildKit's named build contexts.
    assert packages["docker.io"].startswith("13"), packages
    assert packages["docker-buildx"].startswith("13"), packages
    # An upgrade shows as "Inst PACKAGE [INSTALLED VERSION] (NEW ...)": there is none, so
    # libc6, base-files and the rest of bookworm stay as they are.
    upgrades = re.findall(r"^Inst \S+ \[.*$", simulated_install, re.M)
    assert upgrades == [], upgrades
    assert re.search(r"^0 upgraded", simulated_install, re.M), simulated_install
    # Only packages that bookworm cannot provide in a version the engine accepts come along.
    from_trixie = {name for name, release in packages.items() if release.startswith("13")}
    assert from_trixie <= {"docker.io", "docker-buildx", "docker-cli", "containerd"}, packages
