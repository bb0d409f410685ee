"""What the generated project's GitHub workflows do, read from their YAML.

The workflows that only run after a merge or on a tag never run in pull-request CI, so their
shape is the specification: which events start them, which make targets they call, which
permissions each job holds, where secrets may appear. The house rules zizmor does not enforce
(no permissions at the top, declared per job, timeouts, a concurrency group) hold for the
template's own workflows too. What zizmor's pedantic audit refuses (test_static_gates.py runs it
on the template and every baked project: https://docs.zizmor.sh/audits/) is not repeated here:
a checkout that keeps its credentials (artipacked), an action not pinned to a commit
(unpinned-uses), pull_request_target or workflow_run (dangerous-triggers), an expression
inside a script (template-injection). Pin comments and their agreement are test_pins.py's
subject; how deploy.sh rolls back is run, not read, in test_kubernetes.py.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import baking
from gha_expressions import concurrency_of, evaluate

PUBLISH = {
    "contents": "read",
    "packages": "write",
    "id-token": "write",
    "attestations": "write",
}
READ = {"contents": "read"}

# Every job of the generated project and exactly what it may do with the GITHUB_TOKEN.
JOB_PERMISSIONS = {
    ("ci.yml", "lint"): READ,
    ("ci.yml", "test"): READ,
    ("ci.yml", "cpu-image"): READ,
    ("ci.yml", "gpu-image"): READ,
    ("image-build.yml", "plan"): READ,
    ("image-build.yml", "build"): READ,
    ("image-publish.yml", "plan"): READ,
    ("image-publish.yml", "publish"): PUBLISH,
    ("deploy.yml", "cpu-image"): PUBLISH,
    ("deploy.yml", "gpu-image"): PUBLISH,
    ("deploy.yml", "staging"): READ,
    ("release.yml", "cpu-image"): PUBLISH,
    ("release.yml", "gpu-image"): PUBLISH,
    ("release.yml", "github-release"): {"contents": "write", "packages": "read"},
    ("release.yml", "production"): READ,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, cookiecutter_config):
    """The default project (GPU image, Kubernetes)."""
    return baking.bake(tmp_path_factory.mktemp("workflows"), config_file=cookiecutter_config)


@pytest.fixture(scope="module")
def workflows(project):
    """{file name: parsed workflow} of the default project."""
    return {path.name: load(path) for path in sorted((project / ".github/workflows").glob("*.yml"))}


def load(path):
    """Parse a YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def triggers(workflow):
    """Return the ``on:`` mapping (PyYAML reads the bare key ``on`` as True)."""
    on = workflow.get("on", workflow.get(True))
    return {on: None} if isinstance(on, str) else on


def jobs(workflow):
    """Return the workflow's jobs as a dict."""
    return workflow["jobs"]


def steps_of(document):
    """Return the steps of every job of a workflow, or of a composite action."""
    if "runs" in document:
        return document["runs"].get("steps", [])
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def step_named(job, fragment):
    """Return the one step of ``job`` whose name contains ``fragment``."""
    found = [step for step in job["steps"] if fragment in step.get("name", "")]
    assert len(found) == 1, f"expected one step named like {fragment!r}, found {len(found)}"
    return found[0]


def calls(job, workflow_file):
    """True when a job calls the reusable workflow ``workflow_file`` of this repository."""
    return job.get("uses", "").endswith(f".github/workflows/{workflow_file}")


def file_id(path):
    """A test id: the path below the template directory."""
    return str(path.relative_to(baking.TEMPLATE_DIR))


def workflow_definitions():
    """Parametrize over every workflow file, of the template and of the generated project."""
    roots = [baking.TEMPLATE_DIR, baking.TEMPLATE_DIR / "{{cookiecutter.project}}"]
    paths = sorted(path for root in roots for path in root.glob(".github/workflows/*.yml"))
    return pytest.mark.parametrize("path", paths, ids=file_id)


# --- House rules zizmor does not enforce, for every workflow ---------------------------------

@workflow_definitions()
def test_workflow_grants_no_permissions_by_default(path):
    assert load(path)["permissions"] == {}


@workflow_definitions()
def test_every_job_declares_its_permissions(path):
    undeclared = [name for name, job in jobs(load(path)).items() if "permissions" not in job]
    assert not undeclared


@workflow_definitions()
def test_every_job_that_runs_steps_has_a_timeout(path):
    # A job that calls a reusable workflow may not set one; the called jobs do.
    missing = [name for name, job in jobs(load(path)).items()
               if "uses" not in job and "timeout-minutes" not in job]
    assert not missing


@workflow_definitions()
def test_triggered_workflow_has_a_concurrency_group(path):
    workflow = load(path)
    if set(triggers(workflow)) != {"workflow_call"}:
        assert workflow["concurrency"]["group"]


def test_workflows_and_actions_are_copied_without_rendering(project):
    # No Jinja in them: every project gets the same files, which Dependabot can update.
    source = baking.TEMPLATE_DIR / "{{cookiecutter.project}}" / ".github"
    for path in source.rglob("*.yml"):
        baked = project / ".github" / path.relative_to(source)
        assert baked.read_bytes() == path.read_bytes(), baked


# --- Permissions and secrets of the generated project ---------------------------------------

def test_each_job_holds_exactly_the_permissions_it_needs(workflows):
    granted = {(name, job_name): job.get("permissions")
               for name, workflow in workflows.items()
               for job_name, job in jobs(workflow).items()}
    assert granted == JOB_PERMISSIONS


def test_only_jobs_that_push_images_may_write_packages(workflows):
    writers = {(name, job_name) for name, workflow in workflows.items()
               for job_name, job in jobs(workflow).items()
               if job["permissions"].get("packages") == "write"}
    pushers = {(name, job_name) for name, workflow in workflows.items()
               for job_name, job in jobs(workflow).items()
               if calls(job, "image-publish.yml") or steps_push_images(job)}
    assert writers == pushers


def steps_push_images(job):
    """True when a job's own steps push an image (docker/build-push-action with push)."""
    return any(step.get("uses", "").startswith("docker/build-push-action@")
               and step.get("with", {}).get("push") is True
               for step in job.get("steps", []))


def test_only_the_release_job_may_write_contents(workflows):
    writers = [(name, job_name) for name, workflow in workflows.items()
               for job_name, job in jobs(workflow).items()
               if job["permissions"].get("contents") == "write"]
    assert writers == [("release.yml", "github-release")]


def test_secrets_are_read_only_in_jobs_bound_to_an_environment(workflows):
    readers = [(name, job_name) for name, workflow in workflows.items()
               for job_name, job in jobs(workflow).items()
               if "secrets." in yaml.safe_dump(job)]
    assert readers and all("environment" in jobs(workflows[name])[job_name]
                           for name, job_name in readers)


# --- ci.yml ---------------------------------------------------------------------------------

def test_ci_runs_on_pull_requests_and_pushes_to_main(workflows):
    on = triggers(workflows["ci.yml"])
    assert set(on) == {"pull_request", "push"}
    assert on["push"]["branches"] == ["main"]


def test_ci_lints_with_make_lint(workflows):
    lint = jobs(workflows["ci.yml"])["lint"]
    assert [step["run"] for step in lint["steps"] if "run" in step] == ["make lint"]


def test_ci_tests_every_supported_python_with_make_test(workflows):
    test = jobs(workflows["ci.yml"])["test"]
    supported = baking.choice_variables()["python_version"]
    assert sorted(test["strategy"]["matrix"]["python-version"]) == sorted(supported)
    assert step_named(test, "make test")["run"] == "make test"


def test_ci_writes_the_coverage_report_into_the_job_summary(workflows):
    report = step_named(jobs(workflows["ci.yml"])["test"], "Coverage report")
    assert "coverage report --format=markdown" in report["run"]
    assert "$GITHUB_STEP_SUMMARY" in report["run"]


def test_ci_sets_up_the_project_with_make_install(project, workflows):
    setup = load(project / ".github/actions/setup/action.yml")
    assert [step["run"] for step in steps_of(setup) if "run" in step][-1] == "make install"
    for job in ("lint", "test"):
        assert step_named(jobs(workflows["ci.yml"])[job], "Set up the project")["uses"] == (
            "$/.github/actions/setup")


def test_ci_builds_both_images_without_pushing(workflows):
    ci = jobs(workflows["ci.yml"])
    built = {job["with"]["kind"] for job in ci.values() if calls(job, "image-build.yml")}
    assert built == {"cpu", "gpu"}
    assert not any(calls(job, "image-publish.yml") for job in ci.values())


def test_ci_smoke_tests_the_cpu_image_with_make_smoke(workflows):
    assert jobs(workflows["ci.yml"])["cpu-image"]["with"]["smoke"] is True
    smoke = step_named(jobs(workflows["image-build.yml"])["build"], "make smoke")
    assert smoke["if"] == "inputs.smoke"
    assert smoke["run"].startswith("make smoke")


def main_runs_can_cancel_each_other(workflow):
    """True when one push to main can cancel another's run, running or pending.

    In a shared group a newer pending run cancels the older pending one, whatever
    cancel-in-progress says, unless the group queues (queue: max); cancel-in-progress also
    cancels the running one ("Control the concurrency of workflows and jobs", GitHub Docs).
    """
    first = concurrency_of(workflow, "push", "refs/heads/main", "a" * 40)
    second = concurrency_of(workflow, "push", "refs/heads/main", "b" * 40)
    if first[0] != second[0]:
        return False
    return second[1] or workflow["concurrency"].get("queue") != "max"


def test_pull_request_runs_of_ci_cancel_each_other_but_main_runs_finish(workflows):
    ci = workflows["ci.yml"]
    first = concurrency_of(ci, "pull_request", "refs/pull/7/merge", "a" * 40)
    second = concurrency_of(ci, "pull_request", "refs/pull/7/merge", "b" * 40)
    assert first[0] == second[0] and second[1] is True
    other = concurrency_of(ci, "pull_request", "refs/pull/8/merge", "c" * 40)
    assert other[0] != first[0]
    assert not main_runs_can_cancel_each_other(ci)


# --- The image workflows --------------------------------------------------------------------

def test_image_build_caches_layers_in_one_scope_per_image(workflows):
    build = step_named(jobs(workflows["image-build.yml"])["build"], "Build")["with"]
    assert build["push"] is False
    assert "scope=image-${{ inputs.kind }}" in build["cache-from"]
    assert "scope=image-${{ inputs.kind }}" in build["cache-to"]


def test_image_workflows_skip_a_kind_without_its_dockerfile(workflows):
    for name, builder in (("image-build.yml", "build"), ("image-publish.yml", "publish")):
        workflow = jobs(workflows[name])
        assert "docker/$KIND.Dockerfile" in step_named(workflow["plan"], "Look for")["run"]
        assert workflow[builder]["if"] == "needs.plan.outputs.present == 'true'"


def test_gpu_builds_free_disk_space_before_buildx(project):
    steps = steps_of(load(project / ".github/actions/image-setup/action.yml"))
    names = [step["name"] for step in steps]
    free = names.index("Free disk space for the CUDA layers")
    assert free < names.index("Set up Docker Buildx")


@pytest.mark.parametrize("kind, environment, runs", [
    ("gpu", "github-hosted", True),
    ("gpu", "self-hosted", False),
    ("cpu", "github-hosted", False),
])
def test_disk_is_freed_only_for_gpu_builds_on_github_hosted_runners(project, kind, environment,
                                                                    runs):
    # On a self-hosted runner `docker image prune --all` deletes the images of everyone who
    # shares its daemon. runner.environment: "Contexts reference", GitHub Docs.
    steps = steps_of(load(project / ".github/actions/image-setup/action.yml"))
    free = next(step for step in steps if step["name"] == "Free disk space for the CUDA layers")
    assert "docker image prune" in free["run"]
    contexts = {"inputs": {"kind": kind}, "runner": {"environment": environment}}
    assert bool(evaluate(free["if"], contexts)) is runs


def test_images_are_named_after_the_repository_in_lowercase(project):
    steps = steps_of(load(project / ".github/actions/image-setup/action.yml"))
    naming = next(step for step in steps if step.get("id") == "name")
    assert 'image="ghcr.io/${GITHUB_REPOSITORY,,}"' in naming["run"]


def test_published_images_carry_provenance_an_sbom_and_an_attestation(workflows):
    publish = jobs(workflows["image-publish.yml"])["publish"]
    build = step_named(publish, "Build and push")["with"]
    assert build["push"] is True and build["sbom"] is True
    assert build["provenance"] == "mode=max"
    assert build["no-cache"] is True
    attest = step_named(publish, "Attest the build provenance")
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    assert attest["with"]["push-to-registry"] is True


def attestation_decision(workflows, tmp_path, visibility, opt_in):
    """Run image-publish.yml's "Decide whether to attest" script; return (output, stdout)."""
    step = step_named(jobs(workflows["image-publish.yml"])["publish"], "Decide whether to attest")
    output = tmp_path / "github_output"
    output.write_text("")
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "VISIBILITY": visibility, "OPT_IN": opt_in}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True,
                            text=True, check=True)
    return dict(line.split("=", 1) for line in output.read_text().splitlines()), result.stdout


@pytest.mark.parametrize("visibility, opt_in, attests", [
    ("public", "", True),
    ("private", "", False),
    ("internal", "", False),
    ("private", "true", True),
    ("internal", "true", True),
])
def test_images_are_attested_where_the_plan_allows_it(workflows, tmp_path, visibility, opt_in,
                                                      attests):
    # Attestations work in public repositories on every plan, in private and internal ones only
    # on Enterprise Cloud ("Using artifact attestations to establish provenance for builds",
    # GitHub Docs); there the attest step would fail the publish job.
    publish = jobs(workflows["image-publish.yml"])["publish"]
    decide = step_named(publish, "Decide whether to attest")
    assert decide["env"] == {"VISIBILITY": "${{ github.event.repository.visibility }}",
                             "OPT_IN": "${{ vars.ATTEST_PRIVATE_REPOSITORY }}"}
    outputs, stdout = attestation_decision(workflows, tmp_path, visibility, opt_in)
    assert outputs == {"enabled": "true" if attests else "false"}
    assert ("::notice" in stdout) is not attests
    attest = step_named(publish, "Attest the build provenance")
    assert bool(evaluate(attest["if"], {"steps": {"attest": {"outputs": outputs}}})) is attests


def test_push_provenance_and_sbom_do_not_depend_on_the_attestation(workflows):
    steps = jobs(workflows["image-publish.yml"])["publish"]["steps"]
    names = [step["name"] for step in steps]
    build = names.index("Build and push, with provenance and SBOM")
    assert "if" not in steps[build]
    assert build < names.index("Decide whether to attest") < names.index(
        "Attest the build provenance")


# --- deploy.yml -----------------------------------------------------------------------------

def test_deploy_runs_only_on_pushes_to_main(workflows):
    assert triggers(workflows["deploy.yml"]) == {"push": {"branches": ["main"]}}


def test_deploy_publishes_both_images_tagged_with_sha_and_branch(workflows):
    deploy = jobs(workflows["deploy.yml"])
    published = {job["with"]["kind"]: job["with"]["tags"].split()
                 for job in deploy.values() if calls(job, "image-publish.yml")}
    assert published == {kind: ["type=sha", "type=ref,event=branch"] for kind in ("cpu", "gpu")}


def test_staging_deploys_the_published_digest_with_the_deploy_script(workflows):
    staging = jobs(workflows["deploy.yml"])["staging"]
    assert staging["environment"]["name"] == "staging"
    assert staging["needs"] == "cpu-image"
    step = step_named(staging, "Deploy")
    assert step["env"]["IMAGE"] == (
        "${{ needs.cpu-image.outputs.image }}@${{ needs.cpu-image.outputs.digest }}")
    assert 'deploy/k8s/deploy.sh staging "$IMAGE"' in step["run"]


@pytest.mark.parametrize("workflow, job, environment", [
    ("deploy.yml", "staging", "staging"),
    ("release.yml", "production", "production"),
])
def test_deploy_without_cluster_credentials_skips_with_a_notice(workflows, workflow, job,
                                                                environment):
    deploy = jobs(workflows[workflow])[job]
    check = step_named(deploy, "Look for a cluster")
    assert check["env"]["CLUSTER_CONFIG"] == "${{ secrets.KUBE_CONFIG }}"
    assert '[ -z "$CLUSTER_CONFIG" ]' in check["run"]
    notice = next(line for line in check["run"].splitlines() if "KUBE_CONFIG (" in line)
    assert "::notice" in notice and f"'{environment}' environment" in notice
    assert step_named(deploy, "Deploy")["if"] == "steps.cluster.outputs.ready == 'true'"


@pytest.mark.parametrize("workflow, job", [("deploy.yml", "staging"),
                                           ("release.yml", "production")])
def test_deploy_jobs_skip_in_a_project_without_manifests(workflows, workflow, job):
    check = step_named(jobs(workflows[workflow])[job], "Look for a cluster")
    assert "[ ! -d deploy/k8s ]" in check["run"]


@pytest.mark.parametrize("workflow, job", [("deploy.yml", "staging"),
                                           ("release.yml", "production")])
def test_deployments_are_never_cancelled_half_way(workflows, workflow, job):
    assert workflows[workflow]["concurrency"]["cancel-in-progress"] is False
    assert jobs(workflows[workflow])[job]["concurrency"]["cancel-in-progress"] is False


def test_every_push_to_main_is_published_and_deployed_in_order(workflows):
    # A shared group without `queue: max` keeps one pending run and cancels it for a newer one:
    # of three quick merges the middle one would never be published ("Control the concurrency
    # of workflows and jobs", GitHub Docs; queue: GitHub changelog 2026-05-07).
    deploy = workflows["deploy.yml"]
    assert not main_runs_can_cancel_each_other(deploy)
    first = concurrency_of(deploy, "push", "refs/heads/main", "a" * 40)
    second = concurrency_of(deploy, "push", "refs/heads/main", "b" * 40)
    assert first[0] == second[0], "one group, so the runs deploy one after another"


@pytest.mark.parametrize("workflow, job", [("deploy.yml", "staging"),
                                           ("release.yml", "production")])
def test_pending_deployments_queue_instead_of_replacing_each_other(workflows, workflow, job):
    assert jobs(workflows[workflow])[job]["concurrency"]["queue"] == "max"


# --- release.yml ----------------------------------------------------------------------------

def test_release_runs_only_on_v_tags(workflows):
    assert triggers(workflows["release.yml"]) == {"push": {"tags": ["v*"]}}


def test_release_tags_images_with_the_semantic_version(workflows):
    release = jobs(workflows["release.yml"])
    for kind in ("cpu-image", "gpu-image"):
        tags = release[kind]["with"]["tags"].split()
        assert "type=semver,pattern={{version}}" in tags
        assert "type=semver,pattern={{major}}.{{minor}}" in tags


def test_release_publishes_notes_and_the_served_models_metadata(workflows):
    job = jobs(workflows["release.yml"])["github-release"]
    assert "model-*/metadata.json" in step_named(job, "metadata out of the released image")["run"]
    create = step_named(job, "Create the release")["run"]
    assert "gh release create" in create and "--generate-notes" in create
    assert "model-metadata.json" in create and "model-card.md" in create


def release_outcomes(workflows, cpu, gpu, cancelled=False):
    """Decide whether github-release and production run, for given results of the image calls.

    ``cpu`` and ``gpu`` are (result, digest) of the calling jobs; production sees the release
    job succeed whenever it ran.
    """
    release = jobs(workflows["release.yml"])
    needs = {"cpu-image": {"result": cpu[0], "outputs": {"digest": cpu[1]}},
             "gpu-image": {"result": gpu[0], "outputs": {"digest": gpu[1]}}}
    functions = {"cancelled": cancelled, "always": True, "success": False, "failure": False}
    releases = bool(evaluate(release["github-release"]["if"], {"needs": needs}, functions))
    needs["github-release"] = {"result": "success" if releases else "skipped"}
    deploys = bool(evaluate(release["production"]["if"], {"needs": needs}, functions))
    return releases, deploys


PUBLISHED = ("success", "sha256:" + "1" * 64)


@pytest.mark.parametrize("gpu", [
    PUBLISHED,
    ("success", ""),  # the call ran, found no docker/gpu.Dockerfile, published nothing
    ("skipped", ""),  # the call's only job skipped (undocumented result: github/docs#30296)
], ids=["gpu-published", "gpu-absent-success", "gpu-absent-skipped"])
def test_release_and_production_run_when_the_gpu_image_is_published_or_absent(workflows, gpu):
    # `success()`, the default condition, would skip both when the GPU call reports skipped.
    assert release_outcomes(workflows, PUBLISHED, gpu) == (True, True)


@pytest.mark.parametrize("cpu, gpu, cancelled", [
    (("failure", ""), PUBLISHED, False),
    (("success", ""), PUBLISHED, False),
    (PUBLISHED, ("failure", ""), False),
    (PUBLISHED, ("cancelled", ""), False),
    (PUBLISHED, PUBLISHED, True),
], ids=["cpu-failed", "cpu-not-published", "gpu-failed", "gpu-cancelled", "run-cancelled"])
def test_no_release_or_deployment_without_the_published_images(workflows, cpu, gpu, cancelled):
    assert release_outcomes(workflows, cpu, gpu, cancelled) == (False, False)


def test_production_deploys_the_release_behind_its_environment(workflows):
    production = jobs(workflows["release.yml"])["production"]
    assert production["environment"]["name"] == "production"
    assert set(production["needs"]) == {"cpu-image", "github-release"}
    assert 'deploy/k8s/deploy.sh production "$IMAGE"' in step_named(production, "Deploy")["run"]


# --- Dependabot and options -----------------------------------------------------------------

def test_dependabot_updates_locks_actions_and_docker_weekly_grouped_with_a_cooldown(project):
    updates = load(project / ".github/dependabot.yml")["updates"]
    assert {update["package-ecosystem"] for update in updates} == {
        "uv", "github-actions", "docker"}
    for update in updates:
        assert update["schedule"]["interval"] == "weekly"
        assert update["cooldown"]["default-days"] >= 7
        assert update["groups"]
    docker = next(update for update in updates if update["package-ecosystem"] == "docker")
    assert docker["directory"] == "/docker"


UV_HEADER = "# This file was autogenerated by uv via the following command:"
LOCKS = ("prod", "dev")


def lock_commands(project):
    """Return the `uv pip compile` commands that `make lock` runs, as uv writes them in a header.

    uv leaves --quiet out of the header and names itself `uv`.
    """
    result = subprocess.run(["make", "-n", "lock"], cwd=project, capture_output=True, text=True,
                            check=True)
    commands = [line.split() for line in result.stdout.splitlines() if " pip compile " in line]
    return [" ".join(["uv", *[word for word in command[1:] if word != "--quiet"]])
            for command in commands]


def test_dependabot_updates_the_python_locks_with_uv(project):
    # Dependabot's uv ecosystem reads requirements/*.in and *.txt as well as uv.lock.
    updates = load(project / ".github/dependabot.yml")["updates"]
    locks = next(update for update in updates if update["package-ecosystem"] == "uv")
    assert locks["directory"] == "/requirements"
    assert not any(update["package-ecosystem"] == "pip" for update in updates)


@pytest.mark.parametrize("name", LOCKS)
def test_each_lock_is_compiled_from_the_input_beside_it(project, name):
    # Dependabot re-resolves a compiled lock only when its input, same name with .in, is beside
    # it (dependabot-core: RequirementsFileMatcher); it then re-runs `uv pip compile` with the
    # options the header names, --universal and --python-version among them (CompileFileUpdater).
    # A lock without both is a list of pins, bumped one at a time.
    lock = project / "requirements" / f"{name}.txt"
    assert (project / "requirements" / f"{name}.in").is_file()
    header = lock.read_text(encoding="utf-8").splitlines()[:2]
    assert header[0] == UV_HEADER
    command = header[1].removeprefix("#    ")
    assert command in lock_commands(project), "the header names the command `make lock` runs"
    assert f"requirements/{name}.in" in command.split()
    assert {"--universal", "--python-version"} <= set(command.split())


def test_lock_inputs_say_what_pyproject_says(project, tmp_path):
    check = [sys.executable, "requirements/inputs.py", "--check"]
    assert subprocess.run(check, cwd=project, capture_output=True).returncode == 0
    copy = tmp_path / "project"
    (copy / "requirements").mkdir(parents=True)
    for name in ("pyproject.toml", "requirements/inputs.py", "requirements/dev.in"):
        (copy / name).write_bytes((project / name).read_bytes())
    prod = (project / "requirements/prod.in").read_text(encoding="utf-8")
    (copy / "requirements/prod.in").write_text(prod.replace("pydantic>=2.7,<3", "pydantic>=2.7,<4"))
    result = subprocess.run(check, cwd=copy, capture_output=True, text=True)
    assert result.returncode == 1 and "requirements/prod.in" in result.stderr


def recompile(project, name, lock_text, tmp_path):
    """Run the lock's own header command with ``lock_text`` as the existing output (uv keeps its
    pins where they resolve); return the pins it writes."""
    output = tmp_path / f"{name}.txt"
    output.write_text(lock_text, encoding="utf-8")
    command = lock_text.splitlines()[1].removeprefix("#    ").split()
    command = [str(Path(sys.executable).parent / "uv"), *command[1:-1], str(output)]
    subprocess.run([*command, "--quiet"], cwd=project, check=True, timeout=300,
                   env={**os.environ, "UV_SYSTEM_CERTS": "1"})
    return [line for line in output.read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("name", LOCKS)
def test_each_lock_is_exactly_what_its_input_compiles_to(project, name, tmp_path):
    # What Dependabot's recompilation would keep: a lock whose pins resolve together. Needs the
    # package index (the lock's own pins are preferences, so the result is stable).
    shipped = (project / "requirements" / f"{name}.txt").read_text(encoding="utf-8")
    pins = [line for line in shipped.splitlines() if not line.startswith("#")]
    assert recompile(project, name, shipped, tmp_path) == pins


def test_a_single_bumped_pin_of_a_coupled_pair_does_not_survive_recompiling(project, tmp_path):
    # The failure a plain pin bump causes: pydantic moved without its pydantic-core.
    shipped = (project / "requirements" / "prod.txt").read_text(encoding="utf-8")
    core = re.search(r"^pydantic-core==(\S+)$", shipped, re.M)
    tampered = shipped.replace(core[0], "pydantic-core==2.14.1")
    assert tampered != shipped
    assert "pydantic-core==2.14.1" not in recompile(project, "prod", tampered, tmp_path)


def test_without_kubernetes_the_deploy_workflow_and_manifests_are_pruned(bake):
    project = bake(deploy_target="none")
    assert not (project / "deploy").exists()
    assert not (project / ".github/workflows/deploy.yml").exists()
    assert (project / ".github/workflows/release.yml").exists()


def test_without_the_gpu_image_the_training_job_is_pruned(bake):
    project = bake(gpu_image="no")
    assert not (project / "deploy/k8s/training").exists()
    assert (project / "deploy/k8s/overlays/staging").is_dir()
