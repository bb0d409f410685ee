"""A generated project takes later template changes with cruft, keeping its own edits.

The path a team follows: bake from one commit of the template, work on the project,
then pull a newer template with ``cruft update`` and confirm with ``cruft check``.
Everything runs against a local git copy of this template, so no network is needed.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import baking

TEMPLATE_LINE = "Template update: this line arrived with cruft update."
TEMPLATE_FILE = "UPDATING.md"
PROJECT_SECTION = "\n## Our team's notes\n\nThe project's own edit, which template updates keep.\n"
PROJECT_FILE = "NOTES.md"

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.com",
}


def run(args, cwd):
    """Run a command with a fixed git identity; return its output, fail the test on error."""
    env = {**os.environ, **GIT_IDENTITY}
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert result.returncode == 0, f"`{' '.join(map(str, args))}` failed:\n{result.stdout}"
    return result.stdout


def git(repo, *args):
    """Run git in ``repo`` (no signing, no user config needed)."""
    return run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], repo)


def cruft(*args, cwd):
    """Run the cruft CLI of the suite's own environment."""
    return run([sys.executable, "-m", "cruft", *args], cwd)


def commit_all(repo, message):
    """Stage everything in ``repo`` and commit it; return the new commit's hash."""
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)
    return git(repo, "rev-parse", "HEAD").strip()


def copy_template(destination):
    """Copy the template's git-tracked files (as in the working tree) into a new git repo."""
    listed = git(baking.TEMPLATE_DIR, "ls-files", "-z").split("\0")
    for relative in filter(None, listed):
        source = baking.TEMPLATE_DIR / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(destination, "init", "--quiet")
    return commit_all(destination, "Template as tested")


def change_template(template_repo):
    """Commit a template change: a new README line near the top and a new file."""
    project_root = template_repo / "{{cookiecutter.project}}"
    readme = project_root / "README.md"
    title, rest = readme.read_text(encoding="utf-8").split("\n", 1)
    readme.write_text(f"{title}\n\n{TEMPLATE_LINE}\n{rest}", encoding="utf-8")
    (project_root / TEMPLATE_FILE).write_text(
        "# Updating {{ cookiecutter.project_name }}\n", encoding="utf-8"
    )
    return commit_all(template_repo, "Change the template")


@pytest.fixture(scope="module")
def updated_project(tmp_path_factory, cookiecutter_config):
    """A project baked with cruft, edited, then updated to a newer template commit.

    Returns (project folder, template repo, commit the project was updated to).
    """
    root = tmp_path_factory.mktemp("template-updates")
    template_repo = root / "template"
    template_repo.mkdir()
    copy_template(template_repo)
    cruft("create", "--no-input", "--config-file", cookiecutter_config,
          "--output-dir", root / "projects", template_repo, cwd=root)
    (project,) = (root / "projects").iterdir()
    git(project, "init", "--quiet")
    commit_all(project, "Generated from the template")

    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write(PROJECT_SECTION)
    (project / PROJECT_FILE).write_text("Our own file.\n", encoding="utf-8")
    commit_all(project, "The team's own edits")

    new_commit = change_template(template_repo)
    cruft("update", "--skip-apply-ask", "--project-dir", project, cwd=project)
    return project, template_repo, new_commit


def test_cruft_create_records_template_and_commit(tmp_path, cookiecutter_config):
    """.cruft.json names the template and the commit the project was baked from."""
    template_repo = tmp_path / "template"
    template_repo.mkdir()
    baked_commit = copy_template(template_repo)
    cruft("create", "--no-input", "--config-file", cookiecutter_config,
          "--output-dir", tmp_path / "out", template_repo, cwd=tmp_path)
    (project,) = (tmp_path / "out").iterdir()
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == baked_commit
    assert Path(state["template"]) == template_repo


def test_plain_cookiecutter_project_links_with_its_recorded_answers(tmp_path, cookiecutter_config):
    """The README's `cruft link` command turns a cookiecutter bake into a cruft project."""
    template_repo = tmp_path / "template"
    template_repo.mkdir()
    baked_commit = copy_template(template_repo)
    run([sys.executable, "-m", "cookiecutter", "--no-input", "--config-file", cookiecutter_config,
         "--output-dir", tmp_path / "out", template_repo], tmp_path)
    (project,) = (tmp_path / "out").iterdir()
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    git(project, "init", "--quiet")
    commit_all(project, "Generated with cookiecutter")

    cruft("link", template_repo, "--checkout", baked_commit, "--no-input", "--extra-context",
          json.dumps(answers["cookiecutter"]), "--project-dir", project, cwd=project)

    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == baked_commit
    # The recorded answers regenerate this very project: no difference to the template.
    cruft("diff", "--exit-code", "--project-dir", project, cwd=project)


def test_update_brings_in_the_template_change(updated_project):
    project, _, _ = updated_project
    assert TEMPLATE_LINE in (project / "README.md").read_text(encoding="utf-8")


def test_update_renders_new_template_files(updated_project):
    project, _, _ = updated_project
    answers = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["context"]
    expected = f"# Updating {answers['cookiecutter']['project_name']}\n"
    assert (project / TEMPLATE_FILE).read_text(encoding="utf-8") == expected


def test_update_keeps_the_projects_own_edits(updated_project):
    project, _, _ = updated_project
    assert PROJECT_SECTION in (project / "README.md").read_text(encoding="utf-8")
    assert (project / PROJECT_FILE).read_text(encoding="utf-8") == "Our own file.\n"


def test_update_records_the_new_template_commit(updated_project):
    project, _, new_commit = updated_project
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == new_commit


def test_cruft_check_reports_up_to_date_after_update(updated_project):
    project, _, _ = updated_project
    output = cruft("check", "--project-dir", project, cwd=project)
    assert "up to date" in output
