"""The hooks: bad answers are refused with a clear line and nothing is generated;
the post-generation hook prunes, installs the license and records the answers."""

import json
import re
import subprocess
import sys

import click
import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

import baking
from conftest import load_module
from formats import parse_toml


def load_hook(name):
    """Import an unrendered hook file as a module (its main() is not run)."""
    return load_module(baking.TEMPLATE_DIR / "hooks" / f"{name}.py", name)


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")

DEFAULT_ANSWERS = {
    "project_name": "Churn Model",
    "project": "churn-model",
    "package": "churn_model",
    "description": "Predicts churn.",
    "author_name": "Data Science Team",
    "author_email": "data-science@example.com",
    "github_owner": "my-org",
    "python_version": "3.14",
    "gpu_image": "yes",
    "deploy_target": "kubernetes",
    "license": "MIT",
}


# --- pre_gen_project: one check per rule -------------------------------------

@pytest.mark.parametrize("slug", ["churn-model", "a", "model2", "fraud-detector-v2"])
def test_valid_slugs_pass(slug):
    assert pre_gen.check_slug(slug) == []


@pytest.mark.parametrize("slug", [
    "Churn-Model", "2fast", "churn_model", "churn--model", "churn-", "-churn",
    "churn model", "", "churn.model",
])
def test_malformed_slugs_are_refused(slug):
    assert pre_gen.check_slug(slug) == [
        "must be lowercase letters, digits and single hyphens, "
        "start with a letter and not end with a hyphen"
    ]


@pytest.mark.parametrize("package", ["churn_model", "a", "model2", "fraud_detector_v2"])
def test_valid_packages_pass(package):
    assert pre_gen.check_package(package) == []


@pytest.mark.parametrize("package", [
    "Churn_Model", "churn-model", "2fast", "_private", "churn__model", "churn_", "",
    "churn model",
])
def test_malformed_packages_are_refused(package):
    problems = pre_gen.check_package(package)
    assert len(problems) == 1
    assert problems[0].startswith("must be a lowercase Python identifier")


@pytest.mark.parametrize("name", ["class", "import", "lambda", "def"])
def test_python_keywords_are_refused(name):
    assert pre_gen.check_package(name) == ["is a Python keyword"]
    assert pre_gen.check_slug(name) == ["is a Python keyword"]


@pytest.mark.parametrize("name", ["json", "os", "typing", "logging", "test", "tests"])
def test_standard_library_names_are_refused(name):
    assert pre_gen.check_package(name) == [
        "would shadow the standard library module of that name"
    ]


@pytest.mark.parametrize("name", ["sklearn", "numpy", "pandas", "fastapi", "skops", "model"])
def test_dependency_names_are_refused(name):
    assert pre_gen.check_package(name) == ["would shadow a dependency of the generated project"]


def test_a_slug_is_checked_as_the_import_name_it_becomes():
    assert pre_gen.check_slug("scikit-learn") == [
        "would shadow a dependency of the generated project"
    ]


@pytest.mark.parametrize("email", [
    "a@b.co", "data-science@example.com", "first.last+tag@mail.example.org",
])
def test_valid_emails_pass(email):
    assert pre_gen.check_email(email) == []


@pytest.mark.parametrize("email", [
    "not-an-email", "a@b", "a b@c.com", "@example.com", "a@.com", "a..b@c.com",
    "a@b@c.com", "a@-b.com", "",
])
def test_malformed_emails_are_refused(email):
    assert pre_gen.check_email(email) == ["must be an e-mail address like name@example.com"]


@pytest.mark.parametrize("owner", ["my-org", "a", "A1", "Octo-Cat-42", "x" * 39])
def test_valid_github_owners_pass(owner):
    assert pre_gen.check_github_owner(owner) == []


@pytest.mark.parametrize("owner", [
    "-acme", "acme-", "my--org", "my_org", "my org", "", "x" * 40, "acme/repo",
])
def test_malformed_github_owners_are_refused(owner):
    problems = pre_gen.check_github_owner(owner)
    assert len(problems) == 1
    assert "GitHub's rule" in problems[0]


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13", "3.14"])
def test_supported_python_versions_pass(version):
    assert pre_gen.check_python_version(version) == []


@pytest.mark.parametrize("version", ["3.10", "2.7", "3.6"])
def test_old_python_versions_are_refused_with_the_reason(version):
    (problem,) = pre_gen.check_python_version(version)
    assert "scikit-learn needs Python 3.11 or newer" in problem


def test_python_versions_newer_than_supported_are_refused():
    (problem,) = pre_gen.check_python_version("3.15")
    assert problem.startswith("is newer than the template supports")


@pytest.mark.parametrize("version", ["3", "python3.12", "3.12.1", "3.x", ""])
def test_malformed_python_versions_are_refused(version):
    (problem,) = pre_gen.check_python_version(version)
    assert problem.startswith("must be a Python version written like")


@pytest.mark.parametrize("variable, value", [
    ("gpu_image", "maybe"), ("gpu_image", "True"), ("deploy_target", "helm"),
    ("license", "GPL-3.0"), ("license", "mit"),
])
def test_values_outside_the_choices_are_refused(variable, value):
    (problem,) = pre_gen.check_choice(variable, value)
    assert problem.startswith("must be one of ")


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_blank_required_text_is_refused(text):
    assert pre_gen.check_required_text(text) == ["must not be empty"]


def test_hook_choices_match_cookiecutter_json():
    expected = {name: sorted(values) for name, values in baking.choice_variables().items()}
    actual = {name: sorted(values) for name, values in pre_gen.CHOICES.items()}
    assert actual == expected


def test_every_dependency_of_the_generated_project_is_a_refused_name(bake):
    project = parse_toml((bake() / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        requirement for extra in project["optional-dependencies"].values() for requirement in extra
    ]
    names = {re.split(r"[\[<>=!~;\s]", requirement)[0].lower().replace("-", "_")
             for requirement in requirements}
    # The dev extra names the project itself, for its plots extra.
    own_name = project["name"].replace("-", "_")
    assert sorted(names - pre_gen.DEPENDENCY_NAMES - {own_name}) == []


def test_default_answers_are_valid():
    assert pre_gen.validate(DEFAULT_ANSWERS) == []


def test_every_problem_is_one_line_naming_variable_value_and_rule():
    answers = {**DEFAULT_ANSWERS, "github_owner": "-acme", "license": "GPL"}
    assert pre_gen.validate(answers) == [
        "github_owner='-acme' must be 1 to 39 letters, digits or single hyphens, "
        "not starting or ending with a hyphen (GitHub's rule).",
        "license='GPL' must be one of MIT, Apache-2.0, BSD-3-Clause, Proprietary.",
    ]


# --- pre_gen_project, end to end: refused, and nothing left behind ----------

BAD_TEXT_ANSWERS = [
    pytest.param({"project": "import"}, "project", "import", "is a Python keyword",
                 id="keyword"),
    pytest.param({"package": "json"}, "package", "json", "standard library",
                 id="stdlib"),
    pytest.param({"package": "tests"}, "package", "tests", "standard library",
                 id="tests"),
    pytest.param({"project": "sklearn"}, "project", "sklearn", "dependency",
                 id="dependency"),
    pytest.param({"project": "9lives"}, "project", "9lives", "start with a letter",
                 id="slug"),
    pytest.param({"package": "Churn"}, "package", "Churn", "lowercase Python identifier",
                 id="package"),
    pytest.param({"author_email": "team-at-example"}, "author_email", "team-at-example",
                 "e-mail address", id="email"),
    pytest.param({"github_owner": "-acme"}, "github_owner", "-acme", "GitHub's rule",
                 id="github-owner"),
    pytest.param({"description": " "}, "description", " ", "must not be empty",
                 id="empty-description"),
    pytest.param({"project_name": ""}, "project_name", "", "must not be empty",
                 id="empty-project-name"),
]


def assert_refusal_line(output, variable, value, rule):
    """Assert one output line names the variable, the value and the rule."""
    lines = [line for line in output.splitlines() if f"{variable}={value!r}" in line]
    assert lines, f"no line names {variable}={value!r} in:\n{output}"
    assert rule in lines[0]


@pytest.mark.parametrize("answers, variable, value, rule", BAD_TEXT_ANSWERS)
def test_bad_answer_stops_generation_and_leaves_no_folder(
    answers, variable, value, rule, tmp_path, cookiecutter_config
):
    # Checked as cookiecutter renders the answers, before the pre-generation hook runs.
    with pytest.raises(click.ClickException) as refused:
        baking.bake(tmp_path, answers, config_file=cookiecutter_config)
    assert_refusal_line(refused.value.message, variable, value, rule)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("project_name, slug", [
    ("Churn Model", "churn-model"),
    ("Json", "json-project"),
    ("Sklearn", "sklearn-project"),
    ("Import", "import-project"),
    ("Model", "model-project"),
    ("3D Printer Failures", "project-3d-printer-failures"),
    ("!!!", "unnamed"),
])
def test_names_derived_from_the_project_name_are_valid(project_name, slug, bake):
    recorded = json.loads((bake(project_name=project_name) / ".cookiecutter.json").read_text())
    assert (recorded["cookiecutter"]["project"], recorded["cookiecutter"]["package"]) == (
        slug, slug.replace("-", "_"))


def run_interactively(answers, tmp_path, cookiecutter_config):
    """Run the cookiecutter command, typing ``answers`` (one line each) at its prompts."""
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--config-file", str(cookiecutter_config),
         "--output-dir", str(tmp_path), str(baking.TEMPLATE_DIR)],
        input="".join(f"{answer}\n" for answer in answers),
        capture_output=True, text=True, timeout=120,
    )


def test_interactive_bad_answer_is_refused_before_the_next_question(
    tmp_path, cookiecutter_config
):
    result = run_interactively(["Churn Model", "9lives"], tmp_path, cookiecutter_config)
    assert result.returncode == 1
    assert "[2/11]" in result.stdout
    assert "[3/11]" not in result.stdout
    assert result.stderr.splitlines() == [
        "Error: project='9lives' must be lowercase letters, digits and single hyphens, "
        "start with a letter and not end with a hyphen."
    ]
    assert list(tmp_path.iterdir()) == []


def test_interactive_default_answers_generate_the_project(tmp_path, cookiecutter_config):
    result = run_interactively([""] * 11, tmp_path, cookiecutter_config)
    assert result.returncode == 0, result.stderr
    assert "[11/11]" in result.stdout
    assert (tmp_path / "churn-model" / "pyproject.toml").is_file()


def write_replay_file(path, **overrides):
    """Write a replay file: the default answers with ``overrides``."""
    answers = {**DEFAULT_ANSWERS, **overrides}
    path.write_text(json.dumps({"cookiecutter": answers}), encoding="utf-8")
    return path


@pytest.mark.parametrize("variable, value, rule", [
    ("python_version", "3.10", "scikit-learn needs Python 3.11 or newer"),
    ("python_version", "2.7", "scikit-learn needs Python 3.11 or newer"),
    ("gpu_image", "maybe", "must be one of yes, no"),
    ("deploy_target", "helm", "must be one of kubernetes, none"),
    ("license", "GPL-3.0", "must be one of MIT"),
])
def test_replayed_answer_outside_the_choices_is_refused_and_leaves_no_folder(
    variable, value, rule, tmp_path, cookiecutter_config, capfd
):
    # Replay files (and template updates) skip cookiecutter's own choice check.
    replay = write_replay_file(tmp_path / "answers.json", **{variable: value})
    output_dir = tmp_path / "out"
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(baking.TEMPLATE_DIR), replay=str(replay), output_dir=str(output_dir),
            config_file=str(cookiecutter_config),
        )
    assert_refusal_line(capfd.readouterr().err, variable, value, rule)
    assert not output_dir.exists() or list(output_dir.iterdir()) == []


def test_command_line_refusal_exits_non_zero_with_the_message(tmp_path, cookiecutter_config):
    result = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input",
         "--config-file", str(cookiecutter_config), "--output-dir", str(tmp_path),
         str(baking.TEMPLATE_DIR), "github_owner=acme_corp"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert_refusal_line(result.stderr, "github_owner", "acme_corp", "GitHub's rule")
    assert "Traceback" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


# --- post_gen_project --------------------------------------------------------

def test_prune_table_uses_real_variables_and_choices():
    choices = baking.choice_variables()
    for variable, value in post_gen.PRUNE:
        assert value in choices[variable], (variable, value)


def test_prune_table_names_files_that_exist_in_the_template():
    project_template = baking.TEMPLATE_DIR / "{{cookiecutter.project}}"
    missing = [
        path for paths in post_gen.PRUNE.values() for path in paths
        if not (project_template / path).exists()
    ]
    assert missing == []


def test_every_license_choice_has_a_license_text():
    licenses = baking.TEMPLATE_DIR / "{{cookiecutter.project}}" / post_gen.LICENSES_DIR
    for license_id in baking.choice_variables()["license"]:
        assert (licenses / f"{license_id}.txt").is_file(), license_id


def test_paths_of_the_chosen_values_are_kept():
    assert post_gen.paths_to_prune({"gpu_image": "yes", "deploy_target": "kubernetes"}) == []


def test_paths_of_unchosen_values_are_pruned():
    prune = {("gpu_image", "no"): ["docker/gpu.Dockerfile"], ("deploy_target", "none"): ["deploy"]}
    answers = {"gpu_image": "no", "deploy_target": "none"}
    assert post_gen.paths_to_prune(answers, prune) == ["docker/gpu.Dockerfile", "deploy"]


def test_remove_paths_deletes_files_and_folders_and_tolerates_missing_ones(tmp_path):
    (tmp_path / "deploy" / "k8s").mkdir(parents=True)
    (tmp_path / "deploy" / "k8s" / "job.yaml").write_text("kind: Job\n")
    (tmp_path / "gpu.Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "keep.txt").write_text("kept\n")
    post_gen.remove_paths(tmp_path, ["deploy", "deploy/k8s/job.yaml", "gpu.Dockerfile"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.txt"]


def test_install_license_keeps_only_the_chosen_text_as_license(tmp_path):
    licenses = tmp_path / post_gen.LICENSES_DIR
    licenses.mkdir()
    (licenses / "MIT.txt").write_text("MIT License\n")
    (licenses / "Proprietary.txt").write_text("All rights reserved.\n")
    post_gen.install_license(tmp_path, "MIT")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LICENSE"]
    assert (tmp_path / "LICENSE").read_text() == "MIT License\n"


def test_recorded_answers_keep_public_variables_and_the_template_only():
    answers = {
        **DEFAULT_ANSWERS, "_template": "gh:acme/cookiecutter-mlops", "_output_dir": "/tmp/x",
        "_repo_dir": "/home/me/.cookiecutters/x", "_checkout": None,
        "_copy_without_render": ["docker/*.Dockerfile"], "__prompts__": {"project": "Slug"},
    }
    assert post_gen.recorded_answers(answers) == {
        **DEFAULT_ANSWERS, "_template": "gh:acme/cookiecutter-mlops",
    }


def test_next_steps_show_the_commands_and_the_repository_address():
    text = post_gen.next_steps(DEFAULT_ANSWERS)
    assert "cd churn-model" in text
    assert "make install test" in text
    assert "git@github.com:my-org/churn-model.git" in text


def test_next_steps_name_the_deploy_secret_only_when_deploying():
    assert "KUBE_CONFIG" in post_gen.next_steps(DEFAULT_ANSWERS)
    assert "KUBE_CONFIG" not in post_gen.next_steps({**DEFAULT_ANSWERS, "deploy_target": "none"})


def test_next_steps_point_to_replacing_the_example_first():
    text = post_gen.next_steps(DEFAULT_ANSWERS)
    assert text.index("make train") < text.index("Using your own data") < text.index("git init")


def test_next_steps_name_the_answers_file_of_the_tool_that_generated():
    assert "answers are in .cookiecutter.json" in post_gen.next_steps(DEFAULT_ANSWERS)
    by_cruft = post_gen.next_steps({**DEFAULT_ANSWERS, "_commit": "0123abc"})
    assert "answers are in .cruft.json" in by_cruft
    assert ".cookiecutter.json" not in by_cruft


def test_cruft_create_names_cruft_json_in_its_closing_message(tmp_path, cookiecutter_config):
    from test_template_updates import copy_template, cruft

    template_repo = tmp_path / "template"
    template_repo.mkdir()
    copy_template(template_repo)
    output = cruft("create", "--no-input", "--config-file", cookiecutter_config,
                   "--output-dir", tmp_path / "out", template_repo, cwd=tmp_path)
    assert "answers are in .cruft.json" in output
    assert (tmp_path / "out" / "churn-model" / ".cruft.json").is_file()
