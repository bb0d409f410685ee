"""The quick start's own rules (scripts/quickstart.py, run by `make demo`).

The full run (bake, install, train, test, serve, image) is the README's first command and
runs in the template's CI; these tests pin down the behaviour around it.
"""

import re
import sys

import pytest

import baking
from conftest import load_module

SCRIPT = baking.TEMPLATE_DIR / "scripts" / "quickstart.py"


@pytest.fixture(scope="module")
def quickstart():
    """The quick start script, imported as a module."""
    return load_module(SCRIPT, "quickstart")


def test_previous_demo_is_replaced(quickstart, tmp_path):
    (tmp_path / "churn-model").mkdir()
    (tmp_path / quickstart.MARKER).write_text("churn-model\n")
    quickstart.clear_previous_demo(tmp_path, "churn-model")
    assert not (tmp_path / "churn-model").exists()
    assert not (tmp_path / quickstart.MARKER).exists()


def test_folder_not_made_by_the_demo_is_left_alone(quickstart, tmp_path):
    own_work = tmp_path / "churn-model"
    own_work.mkdir()
    (own_work / "precious.txt").write_text("keep me")
    with pytest.raises(quickstart.StepFailed, match="not made by the quick start"):
        quickstart.clear_previous_demo(tmp_path, "churn-model")
    assert (own_work / "precious.txt").read_text() == "keep me"


def test_failed_step_names_itself_and_keeps_its_log(quickstart, tmp_path, capsys):
    steps = quickstart.Steps(tmp_path)
    failing = [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"]
    with pytest.raises(quickstart.StepFailed) as failure:
        steps.run("make test", failing, cwd=tmp_path, env=None, slug="test")
    message, log = failure.value.args
    assert "make test" in message and "exit 3" in message
    assert "the reason" in log.read_text()
    assert "FAILED" in capsys.readouterr().out


def test_default_answers_name_the_default_project(quickstart):
    answers = quickstart.default_answers()
    assert (answers["project"], answers["package"]) == ("churn-model", "churn_model")


def test_next_steps_name_the_deploy_environments_and_secrets(quickstart, bake):
    project = bake(deploy_target="kubernetes")
    environments, secrets = quickstart.deploy_settings(project)
    assert {"staging", "production"} <= set(environments)
    assert secrets and "GITHUB_TOKEN" not in secrets


def test_model_summary_is_left_out_when_there_is_no_model(quickstart, tmp_path):
    assert quickstart.model_summary(tmp_path) == ""


def test_the_base_pulled_before_the_air_gapped_one_is_the_pinned_from_image(quickstart, bake):
    # The literal FROM line's image, tag and digest: the one `docker pull` tries first.
    dockerfile = bake() / "docker" / "cpu.Dockerfile"
    reference = quickstart.dockerfile_base_image(dockerfile.parents[1])
    assert re.search(rf"^FROM {re.escape(reference)} AS base$",
                     dockerfile.read_text(encoding="utf-8"), re.M)
    assert re.fullmatch(r"python:\d+\.\d+-\S+@sha256:[0-9a-f]{64}", reference), reference


def test_the_service_runs_without_make_so_its_stop_reads_clean(quickstart, bake):
    # make reports a recipe stopped by SIGTERM as "make: *** [...] Terminated".
    project = bake()
    command = quickstart.serve_command(project, "churn-model")
    assert command == [str(project / ".venv" / "bin" / "churn-model"), "serve"]
