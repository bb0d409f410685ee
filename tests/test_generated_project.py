"""A generated project passes its own checks, first time, in a fresh environment."""

import json

import pytest

import baking
import commands

PYTHON_VERSIONS = baking.choice_variables()["python_version"]


def test_default_project_passes_its_lint(project_env):
    commands.run(["make", "lint"], cwd=project_env)


def test_default_project_passes_its_tests(project_env):
    commands.run(["make", "test"], cwd=project_env)


def test_default_project_trains_then_predicts_an_example_record(project_env, tmp_path):
    # Models and logs go to a scratch folder: the shared project stays untrained.
    scratch = {"MODEL_REGISTRY_DIR": str(tmp_path / "models"),
               "MODEL_LOG_DIR": str(tmp_path / "logs")}
    commands.run(["make", "train"], cwd=project_env, extra_env=scratch)
    output = commands.run(["make", "--silent", "predict"], cwd=project_env, extra_env=scratch)
    prediction = json.loads(output.strip().splitlines()[-1])
    assert prediction["model_version"] == "0.1"
    assert len(prediction["predictions"]) == len(prediction["probabilities"]) == 1


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_project_installs_lints_and_tests_on_each_supported_python(version, bake):
    interpreter = commands.find_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter on this machine (PATH, ~/.pyenv)")
    project_dir = bake(python_version=version)
    commands.run(
        ["make", "install", "lint", "test", f"PYTHON={interpreter}"], cwd=project_dir
    )
