"""Every combination of the options bakes into a complete, well-formed project.

The matrix is every combination of the choice variables that shape the project (16 today);
``python_version`` only writes its answer out, so each of its choices is baked once, against
the default project, and must change nothing but that answer.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

import baking
from expected_files import expected_files
from formats import PARSERS, parse_toml

DEFAULT_SLUG = "churn-model"
DEFAULT_PACKAGE = "churn_model"

COMBINATIONS = baking.option_combinations()

# Template syntax that survived rendering: a reference to the answers, a
# statement or a comment. Rendering already fails on an undefined name, so
# any other ``{{`` is some tool's own syntax and stays: GitHub Actions
# (``${{ github.sha }}``), docker/metadata-action (``{{version}}``), Go
# templates (``{{.State.Health.Status}}``); ``${#`` is shell.
LEFTOVER_JINJA = re.compile(r"\{\{-?\s*cookiecutter\b|(?<!\$)\{[%#]")

LICENSE_HEADINGS = {
    "MIT": "MIT License",
    "Apache-2.0": "Apache License",
    "BSD-3-Clause": "BSD 3-Clause License",
    "Proprietary": "Copyright (c)",
}


@pytest.fixture(scope="module", params=COMBINATIONS, ids=baking.combination_id)
def baked(request, tmp_path_factory, cookiecutter_config):
    """One project per option combination, baked once for all tests below."""
    answers = request.param
    output_dir = tmp_path_factory.mktemp(baking.combination_id(answers))
    project_dir = baking.bake(output_dir, answers, config_file=cookiecutter_config)
    return answers, project_dir


def project_files(project_dir):
    """Return every file of a project, relative and in POSIX form, sorted."""
    return sorted(
        path.relative_to(project_dir).as_posix()
        for path in project_dir.rglob("*")
        if path.is_file()
    )


def test_the_matrix_multiplies_every_choice_but_python_version():
    assert len(COMBINATIONS) == 2 * 2 * 4
    assert {name for answers in COMBINATIONS for name in answers} == {
        "gpu_image", "deploy_target", "license"}


def test_project_folder_is_named_after_the_slug(baked):
    _, project_dir = baked
    assert project_dir.name == DEFAULT_SLUG


def test_project_has_exactly_the_expected_files(baked):
    answers, project_dir = baked
    expected = expected_files({**answers, "package": DEFAULT_PACKAGE})
    actual = set(project_files(project_dir))
    assert sorted(actual - expected) == [], "files not in tests/expected_files.py"
    assert sorted(expected - actual) == [], "expected files missing from the project"


def test_no_file_keeps_jinja_syntax(baked):
    _, project_dir = baked
    leftovers = [
        f"{name}:{number}: {line.strip()}"
        for name in project_files(project_dir)
        for number, line in enumerate(
            (project_dir / name).read_text(encoding="utf-8").splitlines(), start=1
        )
        if LEFTOVER_JINJA.search(line)
    ]
    assert leftovers == []


def test_every_json_toml_and_yaml_file_parses(baked):
    _, project_dir = baked
    failures = []
    for name in project_files(project_dir):
        parse = PARSERS.get(Path(name).suffix)
        if parse is None:
            continue
        try:
            parse((project_dir / name).read_text(encoding="utf-8"))
        except Exception as error:  # each parser has its own error type
            failures.append(f"{name}: {error}")
    assert failures == []


def test_answers_are_recorded_in_replay_format(baked):
    answers, project_dir = baked
    recorded = json.loads((project_dir / ".cookiecutter.json").read_text())["cookiecutter"]
    assert {name: recorded[name] for name in answers} == answers
    assert recorded["project"] == DEFAULT_SLUG
    assert recorded["package"] == DEFAULT_PACKAGE
    assert recorded["_template"] == str(baking.TEMPLATE_DIR)


def test_recorded_answers_leave_out_machine_specific_keys(baked):
    _, project_dir = baked
    recorded = json.loads((project_dir / ".cookiecutter.json").read_text())["cookiecutter"]
    private = sorted(name for name in recorded if name.startswith("_"))
    assert private == ["_template"]


# Words that only a project with the part can use in its README and Makefile, per answer
# that leaves the part out (lowercase; the documents are compared in lowercase).
ABSENT_PART_WORDS = {
    # Every project can fit on a GPU where CuPy is installed (device.py, `make bench-train`);
    # only the GPU image, its lock and its Job belong to the option.
    ("gpu_image", "no"): ["image-gpu", "gpu image", "gpu.dockerfile", "requirements/gpu", "cuda",
                          "train-gpu-job"],
    ("deploy_target", "none"): [
        "kubernetes", "kubectl", "kustomize", "deploy/", "deploy.yml", "kube_config", "staging",
    ],
}


def test_readme_and_makefile_describe_only_the_parts_the_project_has(baked):
    answers, project_dir = baked
    absent = [
        word
        for (variable, value), words in ABSENT_PART_WORDS.items()
        if answers[variable] == value
        for word in words
    ]
    for name in ("README.md", "Makefile"):
        text = (project_dir / name).read_text(encoding="utf-8").lower()
        assert [word for word in absent if word in text] == [], name


def test_makefile_help_lists_image_gpu_only_with_a_gpu_image(bake):
    for gpu_image in ("yes", "no"):
        makefile = (bake(gpu_image=gpu_image) / "Makefile").read_text(encoding="utf-8")
        assert ("\nimage-gpu:" in makefile) == (gpu_image == "yes")


def test_license_file_is_the_chosen_license(baked):
    answers, project_dir = baked
    text = (project_dir / "LICENSE").read_text()
    assert text.strip().startswith(LICENSE_HEADINGS[answers["license"]])


def test_package_metadata_declares_the_chosen_license(baked):
    answers, project_dir = baked
    declared = parse_toml((project_dir / "pyproject.toml").read_text())["project"]["license"]
    expected = {"Proprietary": "LicenseRef-Proprietary"}.get(answers["license"], answers["license"])
    assert declared == expected


@pytest.mark.parametrize("license_id", ["MIT", "BSD-3-Clause", "Proprietary"])
def test_license_names_the_author_as_copyright_holder(bake, license_id):
    project_dir = bake(license=license_id, author_name="Ada Lovelace")
    copyright_line = next(
        line for line in (project_dir / "LICENSE").read_text().splitlines()
        if line.startswith("Copyright")
    )
    assert "Ada Lovelace" in copyright_line


def test_names_derive_from_the_project_name(bake):
    project_dir = bake(project_name="Fraud Detector")
    recorded = json.loads((project_dir / ".cookiecutter.json").read_text())["cookiecutter"]
    assert project_dir.name == "fraud-detector"
    assert recorded["package"] == "fraud_detector"


def test_text_with_quotes_reaches_the_project_intact(bake):
    description = "It's a \"model\" with ''' and \\ in it"
    project_dir = bake(description=description)
    recorded = json.loads((project_dir / ".cookiecutter.json").read_text())["cookiecutter"]
    assert recorded["description"] == description


def test_recorded_answers_replay_to_the_same_project(bake, tmp_path, cookiecutter_config):
    from cookiecutter.main import cookiecutter

    original = bake(gpu_image="no", license="Apache-2.0", github_owner="acme")
    replayed = Path(cookiecutter(
        str(baking.TEMPLATE_DIR),
        replay=str(original / ".cookiecutter.json"),
        output_dir=str(tmp_path / "replayed"),
        config_file=str(cookiecutter_config),
    ))
    assert project_files(replayed) == project_files(original)
    for name in project_files(original):
        assert (replayed / name).read_bytes() == (original / name).read_bytes(), name


@pytest.mark.parametrize("status", [1, 3])
def test_make_monitor_says_a_non_zero_status_is_a_verdict(bake, tmp_path, status):
    # A stand-in for the project's command (no install: `-o install` skips it).
    fake_cli = tmp_path / "fake-cli"
    fake_cli.write_text(f"#!/bin/sh\necho 'RESULT: the verdict'\nexit {status}\n")
    fake_cli.chmod(0o755)
    result = subprocess.run(
        ["make", "-o", "install", "monitor", f"CLI={fake_cli}"], cwd=bake(),
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "RESULT: the verdict" in result.stdout
    assert f"make monitor: exit status {status} is the monitor's verdict" in result.stderr
    assert "not a crash" in result.stderr


# --- python_version, one choice at a time ---------------------------------------------------

PYTHON_VERSIONS = baking.choice_variables()["python_version"]
DEFAULT_PYTHON = PYTHON_VERSIONS[0]
PROJECT_TEMPLATE = baking.TEMPLATE_DIR / "{{cookiecutter.project}}"
# A use of the answer in the template: ``cookiecutter.python_version`` or ``cookiecutter[...]``.
PYTHON_VERSION_USE = re.compile(r"cookiecutter\s*(\.\s*|\[\s*[\'\"])python_version")


@pytest.fixture(scope="module")
def default_project(tmp_path_factory, cookiecutter_config):
    """The project baked with every default answer."""
    output_dir = tmp_path_factory.mktemp("default")
    return baking.bake(output_dir, config_file=cookiecutter_config)


def changed_lines(before, after):
    """Return the (before, after) pairs of lines that differ between two texts of equal length."""
    before_lines, after_lines = before.splitlines(), after.splitlines()
    assert len(before_lines) == len(after_lines), "lines were added or removed"
    return [(old, new) for old, new in zip(before_lines, after_lines) if old != new]


def test_python_version_is_used_only_in_files_the_version_bakes_compare():
    # What keeps python_version out of the matrix: a file that starts reading it (a
    # condition, a Dockerfile tag) could differ with it in any combination; bake it in
    # COMBINATIONS then, by taking it out of baking.SINGLE_FILE_VARIABLES.
    users = sorted(
        path.relative_to(PROJECT_TEMPLATE).as_posix()
        for path in PROJECT_TEMPLATE.rglob("*")
        if path.is_file() and PYTHON_VERSION_USE.search(path.read_text(encoding="utf-8"))
    )
    assert users == [".python-version", "README.md"]


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_python_version_changes_only_the_version_it_writes(
    version, default_project, tmp_path, cookiecutter_config
):
    project_dir = baking.bake(tmp_path, {"python_version": version},
                              config_file=cookiecutter_config)
    assert (project_dir / ".python-version").read_text(encoding="utf-8") == f"{version}\n"
    recorded = json.loads((project_dir / ".cookiecutter.json").read_text())["cookiecutter"]
    default = json.loads((default_project / ".cookiecutter.json").read_text())["cookiecutter"]
    assert recorded == {**default, "python_version": version}

    assert project_files(project_dir) == project_files(default_project)
    different = [
        name for name in project_files(project_dir)
        if (project_dir / name).read_bytes() != (default_project / name).read_bytes()
    ]
    written = {".python-version", ".cookiecutter.json", "README.md"}
    assert sorted(set(different) - written) == []
    readme = changed_lines(*(
        (folder / "README.md").read_text(encoding="utf-8")
        for folder in (default_project, project_dir)
    ))
    assert [new for _, new in readme] == [old.replace(DEFAULT_PYTHON, version) for old, _ in readme]
    assert bool(readme) == (version != DEFAULT_PYTHON)
