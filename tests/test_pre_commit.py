"""The generated project's pre-commit hook runs `make lint` and stops a commit it refuses.

The hook runs in a copy of the installed default project, made a git repository, with the
installed project's environment (``VENV``, which the project's Makefile reads); pre-commit
comes from the suite's requirements-dev.txt.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import commands

PRE_COMMIT = Path(sys.executable).parent / "pre-commit"


@pytest.fixture
def hook_env(project_env, tmp_path):
    """The environment of git and the hook: the installed project's VENV, no user config."""
    return {
        **commands.project_env(),
        "VENV": str(project_env / ".venv"),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }


@pytest.fixture
def clone(project_env, tmp_path, hook_env):
    """A fresh git repository of the installed project with pre-commit's hook installed."""
    folder = tmp_path / "project"
    # copytree keeps modification times, so the Makefile's install stamp stays current.
    shutil.copytree(project_env, folder, ignore=shutil.ignore_patterns(".venv"))
    for command in (["git", "init", "--quiet"], [PRE_COMMIT, "install"]):
        subprocess.run(command, cwd=folder, env=hook_env, check=True, capture_output=True)
    return folder


def git(clone, env, *args):
    """Run git in ``clone``; return the CompletedProcess with text output."""
    return subprocess.run(["git", *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600)


def test_pre_commit_runs_make_lint_and_lets_a_clean_commit_through(clone, hook_env):
    git(clone, hook_env, "add", "--all")
    result = git(clone, hook_env, "commit", "--message", "Generated project")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "make lint" in result.stdout + result.stderr
    assert git(clone, hook_env, "rev-parse", "--verify", "HEAD").returncode == 0


def test_pre_commit_stops_a_commit_that_make_lint_refuses(clone, hook_env):
    package = next((clone / "src").iterdir())
    (package / "unused.py").write_text("import os\n", encoding="utf-8")
    git(clone, hook_env, "add", "--all")
    result = git(clone, hook_env, "commit", "--message", "An unused import")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "F401 'os' imported but unused" in output
    assert git(clone, hook_env, "rev-parse", "--verify", "HEAD").returncode != 0, "committed"
