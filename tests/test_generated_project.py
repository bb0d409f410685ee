"""A generated project passes its own checks, first time, in a fresh environment."""

import json

import pytest

import baking
import commands
import image_builds
from conftest import docker_problem, in_ci

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
    # On this machine's interpreter of that version; without one, in a container of Debian's
    # python3 of that version (the image tests' air-gapped base, with make).
    project_dir = bake(python_version=version)
    interpreter = commands.find_interpreter(version)
    if interpreter is not None:
        commands.run(["make", "install", "lint", "test", f"PYTHON={interpreter}"],
                     cwd=project_dir)
        return
    try:
        problem = docker_problem()
        runner = None if problem else image_builds.project_runner(version)
    except (RuntimeError, AssertionError) as error:
        problem = str(error)
    if problem:
        reason = f"no Python {version} interpreter here (PATH, ~/.pyenv) nor container: {problem}"
        if in_ci():
            pytest.fail(f"required in CI (CI=true): {reason}", pytrace=False)
        pytest.skip(reason)
    output = commands.run_in_container(
        runner, ["sh", "-c", 'python3 --version && make install lint test PYTHON=python3'],
        cwd=project_dir)
    assert output.startswith(f"Python {version}."), output[:200]
