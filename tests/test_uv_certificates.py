"""Every uv call trusts the platform's certificate store, as pip does.

By default uv trusts only its bundled root certificates, so behind a TLS-intercepting proxy
(the proxy's CA is in the system store) it stops at the first download with ``invalid peer
certificate: UnknownIssuer`` where pip works. uv's ``--system-certs`` flag, or its environment
variable ``UV_SYSTEM_CERTS`` (``uv pip install --help`` of the pinned uv), makes it read the
system store. The Makefiles export the variable, so every uv that make starts (people, CI,
the canary) has it; the Dockerfiles pass the flag on each uv command line.
"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

import baking

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
PROJECT_DIR = TEMPLATE_DIR / "{{cookiecutter.project}}"
MAKEFILES = [TEMPLATE_DIR / "Makefile", PROJECT_DIR / "Makefile"]
DOCKERFILES = sorted((PROJECT_DIR / "docker").glob("*.Dockerfile"))
DEFINITIONS = sorted(
    path
    for root in (TEMPLATE_DIR, PROJECT_DIR)
    for pattern in (".github/workflows/*.yml", ".github/actions/*/action.yml")
    for path in root.glob(pattern)
)

# A uv subcommand that talks to an index: `uv pip install`, `.../bin/uv venv`, `$(UV) pip ...`.
UV_COMMAND = re.compile(
    r"(?:^|[\s/=])(?:uv|\$\(UV\))\s+(?:pip|venv|sync|lock|export|add|tool|run)\b")
SETS_THE_VARIABLE = re.compile(r"\bUV_SYSTEM_CERTS=(1|true)\b")
TRUE_VALUES = {"1", "true", "yes", "on"}


def commands(script):
    """Split a shell script (continuation lines joined) into its simple commands."""
    joined = script.replace("\\\n", " ")
    return [part.strip() for part in re.split(r"&&|\|\||;|\n", joined) if part.strip()]


def uv_commands_without_system_certs(script):
    """Return the uv commands of a script that neither pass --system-certs nor set the variable."""
    return [
        command for command in commands(script)
        if UV_COMMAND.search(command) and not command.lstrip().startswith("#")
        and "--system-certs" not in command and not SETS_THE_VARIABLE.search(command)
    ]


def exported_value(makefile, variable, tmp_path):
    """Return the value a make recipe sees in its environment for ``variable``."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "-f", str(makefile),
         "--eval", f"show-env: ; @printf '%s' \"$${variable}\"", "show-env"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return result.stdout


@pytest.mark.parametrize("makefile", MAKEFILES, ids=lambda p: str(p.relative_to(TEMPLATE_DIR)))
def test_every_uv_that_make_starts_reads_the_system_store(makefile, tmp_path):
    if makefile.parent == PROJECT_DIR:
        # The project's Makefile has Jinja for its options: make reads it as baked.
        makefile = baking.bake(tmp_path / "bake") / "Makefile"
    assert exported_value(makefile, "UV_SYSTEM_CERTS", tmp_path).lower() in TRUE_VALUES
    overrides = [line for line in makefile.read_text(encoding="utf-8").splitlines()
                 if re.search(r"UV_SYSTEM_CERTS=(0|false|no|off)\b", line)]
    assert not overrides


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_uv_call_in_the_dockerfiles_reads_the_system_store(dockerfile):
    text = dockerfile.read_text(encoding="utf-8")
    runs = [block for block in re.split(r"\n(?=[A-Z]+\s)", text) if block.startswith("RUN")]
    assert any(UV_COMMAND.search(block) for block in runs), f"{dockerfile.name} runs no uv"
    missing = [command for block in runs for command in uv_commands_without_system_certs(block)]
    assert not missing, f"{dockerfile.name}: uv without --system-certs: {missing}"


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: str(p.relative_to(TEMPLATE_DIR)))
def test_workflows_call_uv_through_make_or_with_the_system_store(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = (document["runs"].get("steps", []) if "runs" in document else
             [step for job in document["jobs"].values() for step in job.get("steps", [])])
    missing = [command for step in steps if "run" in step
               for command in uv_commands_without_system_certs(step["run"])]
    assert not missing


@pytest.mark.parametrize("script, found", [
    ("/tmp/uv/bin/uv pip install -r x.txt", True),
    ("/tmp/uv/bin/uv pip install --system-certs -r x.txt", False),
    ("python3 -m venv /tmp/uv \\\n    && /tmp/uv/bin/uv pip install \\\n  -r x", True),
    ("UV_SYSTEM_CERTS=1 uv venv .venv", False),
    ("$(UV) pip compile pyproject.toml", True),
    ("pip install uv==0.13.9", False),
])
def test_the_scan_finds_uv_commands_that_miss_the_setting(script, found):
    assert bool(uv_commands_without_system_certs(script)) is found
