"""A generated project passes its own checks, first time, in a fresh environment."""

import pytest

import baking
import commands

PYTHON_VERSIONS = baking.choice_variables()["python_version"]


def test_default_project_passes_its_lint(project_env):
    commands.run(["make", "lint"], cwd=project_env)


def test_default_project_passes_its_tests(project_env):
    commands.run(["make", "test"], cwd=project_env)


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_project_installs_lints_and_tests_on_each_supported_python(version, bake):
    interpreter = commands.find_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter on this machine (PATH, ~/.pyenv)")
    project_dir = bake(python_version=version)
    commands.run(
        ["make", "install", "lint", "test", f"PYTHON={interpreter}"], cwd=project_dir
    )
