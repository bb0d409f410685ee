"""A stand-in Kubernetes API server, just enough for ``kubectl rollout status``.

It answers discovery for the kinds the overlays render, returns any named object (only the
Deployments carry labels and a status, a finished rollout), and lists and watches
Deployments. It listens on 127.0.0.1 and records the paths it was asked for.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# (group/version, plural, kind, namespaced) of every kind the overlays render.
RESOURCES = [
    ("v1", "namespaces", "Namespace", False),
    ("v1", "services", "Service", True),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("apps/v1", "deployments", "Deployment", True),
    ("batch/v1", "cronjobs", "CronJob", True),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
]
GROUP_VERSIONS = sorted({gv for gv, *_ in RESOURCES if "/" in gv})


def discovery(path):
    """Return the discovery document for ``path``, or None."""
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups = [{"name": gv.split("/")[0],
                   "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                   "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                  for gv in GROUP_VERSIONS]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for group_version in ["v1", *GROUP_VERSIONS]:
        if path == ("/api/v1" if group_version == "v1" else f"/apis/{group_version}"):
            resources = [{"name": plural, "singularName": kind.lower(), "kind": kind,
                          "namespaced": namespaced,
                          "verbs": ["get", "list", "watch", "create", "patch", "update"]}
                         for gv, plural, kind, namespaced in RESOURCES if gv == group_version]
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": group_version, "resources": resources}
    return None


def rolled_out_deployment(namespace, name):
    """A Deployment whose rollout has finished, labelled as the server."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "generation": 1,
                     "resourceVersion": "1",
                     "labels": {"app.kubernetes.io/component": "server"}},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "readyReplicas": 1, "availableReplicas": 1},
    }


class Handler(BaseHTTPRequestHandler):
    """Answers GET requests; everything else is refused."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        """Keep the test output quiet."""

    def do_GET(self):  # noqa: N802 (the http.server naming)
        """Serve discovery, named objects, and Deployment lists and watches."""
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.requests.append(url.path)
        document = discovery(url.path)
        parts = url.path.strip("/").split("/")
        if document is None and parts[-1] == "deployments":
            namespace = parts[parts.index("namespaces") + 1]
            name = query["fieldSelector"][0].split("=", 1)[1]
            if query.get("watch") == ["true"]:
                return self.watch(rolled_out_deployment(namespace, name))
            document = {"apiVersion": "apps/v1", "kind": "DeploymentList",
                        "metadata": {"resourceVersion": "1"},
                        "items": [rolled_out_deployment(namespace, name)]}
        elif document is None and "deployments" in parts:
            document = rolled_out_deployment(parts[parts.index("namespaces") + 1], parts[-1])
        elif document is None:
            document = self.named_object(parts)
        self.reply(200 if document else 404, document or {"kind": "Status", "code": 404})

    def named_object(self, parts):
        """Return an unlabelled object of the kind named in the path, or None."""
        for group_version, plural, kind, _ in RESOURCES:
            if plural in parts[:-1]:
                return {"apiVersion": group_version, "kind": kind,
                        "metadata": {"name": parts[-1], "resourceVersion": "1"}}
        return None

    def watch(self, deployment):
        """Stream the Deployment, and the end of the initial events, then close."""
        events = [{"type": "ADDED", "object": deployment},
                  {"type": "BOOKMARK", "object": {
                      "apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"resourceVersion": "1",
                                   "annotations": {"k8s.io/initial-events-end": "true"}}}}]
        body = "".join(json.dumps(event) + "\n" for event in events).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply(self, status, document):
        """Send ``document`` as JSON."""
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class KubeApiStub:
    """Context manager: a running stub; ``kubeconfig(path)`` writes a config that uses it."""

    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.requests = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self):
        """The paths requested so far."""
        return self.server.requests

    def kubeconfig(self, path):
        """Write a kubeconfig for this stub to ``path``; return the path."""
        host, port = self.server.server_address
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: stub\n"
            f"clusters: [{{name: stub, cluster: {{server: 'http://{host}:{port}'}}}}]\n"
            "users: [{name: stub, user: {token: stub}}]\n"
            "contexts: [{name: stub, context: {cluster: stub, user: stub}}]\n",
            encoding="utf-8",
        )
        return path
