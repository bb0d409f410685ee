"""A generated project passes its own checks, first time, in a fresh environment."""

import difflib
import json
import os
from pathlib import Path

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


OPENAPI_CONTRACT = Path(__file__).parent / "contracts" / "openapi-default.json"
"""The default project's ``GET /openapi.json``, byte for byte: the API's published contract."""

SERVED_OPENAPI = """
import pathlib
import sys
from fastapi.testclient import TestClient
from churn_model.config import Settings
from churn_model.serving.service import create_app
with TestClient(create_app(Settings())) as client:
    pathlib.Path(sys.argv[1]).write_bytes(client.get("/openapi.json").content)
"""


def test_default_project_serves_the_recorded_openapi_document(project_env, tmp_path):
    # Clients are generated from this document, so it changes only on purpose: a change in
    # the service's code (a refactor, a faster path) must leave it byte-identical. When a
    # change is intended, record it with UPDATE_CONTRACTS=1 and say what changed in the
    # CHANGELOG. No model is trained: the document does not depend on one.
    scratch = {"MODEL_REGISTRY_DIR": str(tmp_path / "models"),
               "MODEL_LOG_DIR": str(tmp_path / "logs"), "MODEL_ADMIN_TOKEN": ""}
    document = tmp_path / "openapi.json"
    commands.run([".venv/bin/python", "-c", SERVED_OPENAPI, document], cwd=project_env,
                 extra_env=scratch)
    served = document.read_text(encoding="utf-8")
    if os.environ.get("UPDATE_CONTRACTS") == "1":
        OPENAPI_CONTRACT.write_text(served, encoding="utf-8")
    recorded = OPENAPI_CONTRACT.read_text(encoding="utf-8")
    if served != recorded:
        diff = difflib.unified_diff(
            json.dumps(json.loads(recorded), indent=1).splitlines(),
            json.dumps(json.loads(served), indent=1).splitlines(),
            "recorded", "served", lineterm="")
        pytest.fail("the OpenAPI document changed (UPDATE_CONTRACTS=1 records it):\n"
                    + "\n".join(diff), pytrace=False)


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
