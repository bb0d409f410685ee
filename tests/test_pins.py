"""Every dependency version has one home, and the copies that must exist agree with it.

- Python packages: the generated project's lock files (``requirements/*.txt``), and for the
  template's own tools ``requirements-dev.txt``. A tool pinned in both has one version there.
  Anything else that names a version (an install command ``name==1.2`` or a variable
  ``NAME_VERSION=1.2`` in the Dockerfiles, the Makefile, the workflows) names that version.
- GitHub Actions: one commit SHA and one version comment per action, across the generated
  project's workflows and the template's own. Dependabot's grouped pull request moves them
  together; these tests catch a hand edit that moves only some.
- Python versions: the ``python_version`` choices are the CI matrices, template and project.
- Dependabot watches every folder that holds a pin, so no copy is left behind.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
PROJECT_DIR = TEMPLATE_DIR / "{{cookiecutter.project}}"
LOCKS = sorted((PROJECT_DIR / "requirements").glob("*.txt"))
DEV_REQUIREMENTS = TEMPLATE_DIR / "requirements-dev.txt"

WORKFLOW_FILES = sorted(
    path
    for root in (TEMPLATE_DIR, PROJECT_DIR)
    for pattern in (".github/workflows/*.yml", ".github/actions/*/action.yml")
    for path in root.glob(pattern)
)
DOCKERFILES = sorted((PROJECT_DIR / "docker").glob("*.Dockerfile"))

# uses: owner/repo[/path]@ref  # comment
USES = re.compile(
    r"^\s*(?:-\s*)?uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?:\s*#\s*(?P<comment>.*))?$")
SHA = re.compile(r"^[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^v\d+\.\d+\.\d+$")
# name==version in requirement files and in commands (pip install x==1.2, uv pip install ...)
PIN = re.compile(
    r"(?<![\w.-])(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[\w.!+-]+)")

# NAME_VERSION=1.2 (Dockerfile ARG/ENV, Makefile variable, workflow env): the version of ``name``
VERSION_VARIABLE = re.compile(
    r"\b(?P<name>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_VERSION\s*(?:\?=|:=|=|:)\s*[\"']?"
    r"(?P<version>\d[\w.]*)")

# Packages whose versions may differ between the template's tools and the generated
# project's locks, with the reason. Keep it empty unless a real constraint forces it.
DIFFERENT_ON_PURPOSE = {}


def canonical(name):
    """Return the PEP 503 normalised form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path):
    """Return {name: {versions}} for the ``name==version`` lines of a requirements file.

    A universal lock may pin one package twice under different markers; both count.
    """
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = PIN.match(line)
        if match:
            pins.setdefault(canonical(match["name"]), set()).add(match["version"])
    return pins


def locked_versions():
    """Return {name: {versions}} over all of the generated project's lock files."""
    locked = {}
    for lock in LOCKS:
        for name, versions in requirement_pins(lock).items():
            locked.setdefault(name, set()).update(versions)
    return locked


def known_versions():
    """Return {name: {versions}}: the locks and the template's pinned tools together."""
    known = locked_versions()
    for name, versions in requirement_pins(DEV_REQUIREMENTS).items():
        known.setdefault(name, set()).update(versions)
    return known


def action_uses():
    """Return (file, line number, action, ref, comment) for every remote ``uses:``."""
    found = []
    for path in WORKFLOW_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = USES.match(line)
            if match and not match["action"].startswith(("./", "docker://")):
                found.append((path.relative_to(TEMPLATE_DIR), number, match["action"],
                              match["ref"], (match["comment"] or "").strip()))
    return found


def install_pins(text):
    """Return [(name, version)] for ``name==version`` inside install commands in ``text``."""
    return [
        (canonical(match["name"]), match["version"])
        for line in text.splitlines()
        if "install" in line
        for match in PIN.finditer(line)
    ]


def spelled_out_versions(text):
    """Return [(name, version)] for install pins and ``NAME_VERSION=version`` variables."""
    variables = [(canonical(match["name"]), match["version"])
                 for match in VERSION_VARIABLE.finditer(text)]
    return install_pins(text) + variables


def test_the_generated_project_has_lock_files():
    assert {lock.name for lock in LOCKS} >= {"prod.txt", "dev.txt"}


def test_template_and_project_workflows_are_both_checked():
    roots = {path.relative_to(TEMPLATE_DIR).parts[0] for path in WORKFLOW_FILES}
    assert roots == {".github", "{{cookiecutter.project}}"}


def test_every_action_is_pinned_to_a_commit_sha_with_its_version():
    unpinned = [
        f"{path}:{number}: {action}@{ref} # {comment}"
        for path, number, action, ref, comment in action_uses()
        if not SHA.match(ref) or not VERSION_COMMENT.match(comment)
    ]
    assert not unpinned, "pin to a full SHA with a '# vX.Y.Z' comment:\n" + "\n".join(unpinned)


def test_each_action_has_one_sha_and_version_across_all_workflows():
    pins = {}
    for path, number, action, ref, comment in action_uses():
        owner_repo = "/".join(action.split("/")[:2])
        pins.setdefault(owner_repo, {}).setdefault((ref, comment), []).append(f"{path}:{number}")
    drifted = {action: refs for action, refs in pins.items() if len(refs) > 1}
    assert not drifted, "one action, several pins:\n" + json.dumps(
        {action: {f"{ref} # {comment}": where for (ref, comment), where in refs.items()}
         for action, refs in drifted.items()}, indent=2)


def test_template_tools_match_the_generated_projects_locks():
    locked = locked_versions()
    mismatched = {
        name: {"requirements-dev.txt": sorted(versions), "locks": sorted(locked[name])}
        for name, versions in requirement_pins(DEV_REQUIREMENTS).items()
        if name in locked and not versions & locked[name] and name not in DIFFERENT_ON_PURPOSE
    }
    assert not mismatched, "same tool, two versions:\n" + json.dumps(mismatched, indent=2)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_installs_from_a_lock_file(dockerfile):
    text = dockerfile.read_text(encoding="utf-8")
    copies_a_lock = re.search(r"^COPY\s+(?:--\S+\s+)*requirements/\w+\.txt\s", text, re.M)
    installs_a_file = re.search(r"\binstall\b.*\s-r\s", text.replace("\\\n", " "))
    assert copies_a_lock and installs_a_file, (
        f"{dockerfile.name} must install the project's dependencies from requirements/*.txt"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_pins_nothing_that_is_not_pinned_elsewhere(dockerfile):
    known = known_versions()
    unlocked = [f"{name}=={version}"
                for name, version in install_pins(dockerfile.read_text(encoding="utf-8"))
                if name not in known]
    assert not unlocked, f"{dockerfile.name} keeps its own versions: {unlocked}"


@pytest.mark.parametrize(
    "path",
    DOCKERFILES + [PROJECT_DIR / "Makefile"] + WORKFLOW_FILES,
    ids=lambda path: str(path.relative_to(TEMPLATE_DIR)),
)
def test_versions_spelled_out_elsewhere_match_the_pins(path):
    if not path.exists():
        pytest.skip(f"{path.name} is not part of this template")
    known = known_versions()
    drifted = [
        f"{name}=={version} (pinned: {', '.join(sorted(known[name]))})"
        for name, version in spelled_out_versions(path.read_text(encoding="utf-8"))
        if name in known and version not in known[name]
    ]
    assert not drifted, f"{path.name} names versions that differ from the pins: {drifted}"


def test_template_ci_tests_every_python_version_choice():
    choices = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())["python_version"]
    ci = yaml.safe_load((TEMPLATE_DIR / ".github/workflows/ci.yml").read_text())
    matrix = ci["jobs"]["generated-project"]["strategy"]["matrix"]["python"]
    assert sorted(matrix) == sorted(choices)


def test_generated_ci_tests_every_python_version_choice():
    choices = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())["python_version"]
    ci = yaml.safe_load((PROJECT_DIR / ".github/workflows/ci.yml").read_text())
    matrices = [
        values
        for job in ci["jobs"].values()
        for key, values in job.get("strategy", {}).get("matrix", {}).items()
        if "python" in key
    ]
    assert matrices, "the generated CI has no Python version matrix"
    assert all(sorted(matrix) == sorted(choices) for matrix in matrices)


def dependabot_directories(ecosystem):
    """Return the directories the template's Dependabot watches for ``ecosystem``."""
    config = yaml.safe_load((TEMPLATE_DIR / ".github/dependabot.yml").read_text())
    return {
        directory
        for update in config["updates"]
        if update["package-ecosystem"] == ecosystem
        for directory in update.get("directories", [update.get("directory")])
    }


def dependabot_directory(path):
    """Return the Dependabot ``directory`` that covers a pinned file ("/" is the template root).

    Workflows are found from the folder above ``.github/workflows``; everything else from its
    own folder.
    """
    folder = path.parent.relative_to(TEMPLATE_DIR)
    if folder.parts[-2:] == (".github", "workflows"):
        folder = folder.parent.parent
    return "/" + folder.as_posix() if folder.parts else "/"


def test_dependabot_updates_every_workflow_and_action():
    expected = {dependabot_directory(path) for path in WORKFLOW_FILES}
    assert expected <= dependabot_directories("github-actions")


def test_dependabot_updates_every_lock_and_requirements_file():
    # The project's locks are uv-compiled (their .in beside them): the uv ecosystem recompiles
    # them; requirements-dev.txt is a plain pin list: pip.
    assert {dependabot_directory(path) for path in LOCKS} <= dependabot_directories("uv")
    assert {dependabot_directory(DEV_REQUIREMENTS)} <= dependabot_directories("pip")


def test_dependabot_updates_every_dockerfile():
    expected = {dependabot_directory(path) for path in DOCKERFILES}
    assert expected <= dependabot_directories("docker")
