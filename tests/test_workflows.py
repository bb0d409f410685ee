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

import pytest
import yaml

import baking

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


def test_pull_request_runs_of_ci_cancel_each_other_but_main_runs_finish(workflows):
    concurrency = workflows["ci.yml"]["concurrency"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


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
    assert steps[free]["if"] == "inputs.kind == 'gpu'"
    assert free < names.index("Set up Docker Buildx")


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
    attest = step_named(publish, "Attest")
    assert attest["uses"].startswith("actions/attest-build-provenance@")
    assert attest["with"]["push-to-registry"] is True


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


def test_production_deploys_the_release_behind_its_environment(workflows):
    production = jobs(workflows["release.yml"])["production"]
    assert production["environment"]["name"] == "production"
    assert set(production["needs"]) == {"cpu-image", "github-release"}
    assert 'deploy/k8s/deploy.sh production "$IMAGE"' in step_named(production, "Deploy")["run"]


# --- Dependabot and options -----------------------------------------------------------------

def test_dependabot_updates_pip_actions_and_docker_weekly_grouped_with_a_cooldown(project):
    updates = load(project / ".github/dependabot.yml")["updates"]
    assert {update["package-ecosystem"] for update in updates} == {
        "pip", "github-actions", "docker"}
    for update in updates:
        assert update["schedule"]["interval"] == "weekly"
        assert update["cooldown"]["default-days"] >= 7
        assert update["groups"]
    docker = next(update for update in updates if update["package-ecosystem"] == "docker")
    assert docker["directory"] == "/docker"


def test_without_kubernetes_the_deploy_workflow_and_manifests_are_pruned(bake):
    project = bake(deploy_target="none")
    assert not (project / "deploy").exists()
    assert not (project / ".github/workflows/deploy.yml").exists()
    assert (project / ".github/workflows/release.yml").exists()


def test_without_the_gpu_image_the_training_job_is_pruned(bake):
    project = bake(gpu_image="no")
    assert not (project / "deploy/k8s/training").exists()
    assert (project / "deploy/k8s/overlays/staging").is_dir()
