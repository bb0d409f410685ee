"""A stand-in Kubernetes API server that the real ``kubectl`` can deploy to and roll back on.

It keeps the objects it is sent (server-side apply, client-side apply's strategic merge
patches, replace, delete), answers discovery and OpenAPI, gets, lists and watches for the
kinds the overlays render, and simulates what the controllers would report: a Deployment
whose pods cannot become ready (an image in ``broken_images``, or a claim that stays Pending)
never finishes its rollout. It authorizes every request against the
rules of one namespace-scoped Role, as the API server does for a deploy account bound to it,
and can refuse chosen writes the way an admission webhook or a missing right would. It listens
on 127.0.0.1 and records every request as ``(verb, path)``.
"""

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml

# (group/version, plural, kind, namespaced) of every kind the overlays render, and the ones
# the deploy reads to explain a failure.
RESOURCES = [
    ("v1", "namespaces", "Namespace", False),
    ("v1", "services", "Service", True),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("v1", "events", "Event", True),
    ("apps/v1", "deployments", "Deployment", True),
    ("batch/v1", "cronjobs", "CronJob", True),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
]
GROUP_VERSIONS = sorted({gv for gv, *_ in RESOURCES if "/" in gv})
KINDS = {plural: (gv, kind, namespaced) for gv, plural, kind, namespaced in RESOURCES}
# How long a watch stays open before the server ends it (kubectl then watches again).
WATCH_SECONDS = 1.5


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
                          "verbs": ["create", "delete", "get", "list", "patch", "update",
                                    "watch"]}
                         for gv, plural, kind, namespaced in RESOURCES if gv == group_version]
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": group_version, "resources": resources}
    return openapi(path)


def openapi_path(group_version, plural, namespaced):
    """The path of one object of ``plural``, as the API's OpenAPI document names it."""
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    scope = "/namespaces/{namespace}" if namespaced else ""
    return f"{prefix}{scope}/{plural}/{{name}}"


def openapi(path):
    """The OpenAPI v3 index or a group version's document, or None.

    kubectl reads them to learn that the server validates fields itself (the fieldValidation
    query parameter of each kind's PATCH), and then sends the objects unchecked.
    """
    if path == "/openapi/v3":
        return {"paths": {f"{'api' if gv == 'v1' else 'apis'}/{gv}":
                          {"serverRelativeURL": f"/openapi/v3/{'api' if gv == 'v1' else 'apis'}"
                                                f"/{gv}?hash=stub"}
                          for gv in ["v1", *GROUP_VERSIONS]}}
    for group_version in ["v1", *GROUP_VERSIONS]:
        prefix = "api" if group_version == "v1" else "apis"
        if path != f"/openapi/v3/{prefix}/{group_version}":
            continue
        paths = {}
        for gv, plural, kind, namespaced in RESOURCES:
            if gv != group_version:
                continue
            group, _, version = gv.rpartition("/")
            operation = {
                "operationId": f"patch{kind}",
                "parameters": [{"name": "fieldValidation", "in": "query",
                                "schema": {"type": "string", "uniqueItems": True}}],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                    "kind": kind},
            }
            paths[openapi_path(gv, plural, namespaced)] = {"patch": operation}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"},
                "paths": paths, "components": {"schemas": {}}}
    return None


def status(code, reason, message, details=None):
    """A metav1.Status, the body of every error the API server returns."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code, "details": details or {}}


def group_of(group_version):
    """The API group of ``group_version`` ("" for the core group)."""
    return group_version.split("/")[0] if "/" in group_version else ""


def allowed(rules, verb, group, plural):
    """Whether RBAC ``rules`` (a Role's) grant ``verb`` on ``group``/``plural``."""
    return any(
        (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        and (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (plural in rule.get("resources", []) or "*" in rule.get("resources", []))
        for rule in rules
    )


def merge_key(field, items):
    """The key that identifies the items of list ``field`` in a strategic merge patch."""
    keys = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
            "imagePullSecrets": "name", "volumeMounts": "mountPath"}
    if field == "ports":
        return "containerPort" if any("containerPort" in item for item in items) else "port"
    return keys.get(field)


def strategic_merge(live, patch):
    """Apply a strategic merge patch (what client-side ``kubectl apply`` sends) to ``live``.

    Maps merge, ``null`` deletes, lists of named items merge by their key, other lists are
    replaced; the ``$setElementOrder`` directives only order items and are dropped here.
    """
    merged = copy.deepcopy(live)
    for field, value in patch.items():
        if field.startswith("$"):
            continue
        if value is None:
            merged.pop(field, None)
        elif isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = strategic_merge(merged[field], value)
        elif (isinstance(value, list) and isinstance(merged.get(field), list)
              and merge_key(field, value + merged[field])):
            key = merge_key(field, value + merged[field])
            items = {item.get(key): item for item in merged[field]}
            for item in value:
                if item.get("$patch") == "delete":
                    items.pop(item.get(key), None)
                else:
                    items[item.get(key)] = strategic_merge(items.get(item.get(key), {}), item)
            merged[field] = list(items.values())
        else:
            merged[field] = copy.deepcopy(value)
    return merged


def claim_names(deployment):
    """The claims a Deployment's pods mount."""
    volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
    return [v["persistentVolumeClaim"]["claimName"] for v in volumes
            if "persistentVolumeClaim" in v]


def image_of(workload):
    """The first container image of a Deployment or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]["containers"][0]["image"]


class Cluster:
    """The objects, keyed by (plural, namespace, name), and the simulated controllers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.objects = {}
        self.version = 0
        self.namespaces = set()
        self.broken_images = set()
        # {claim name: event message}: claims that no volume can be provisioned for.
        self.unprovisionable = {}
        # {(verb, plural): (code, reason, message)}: writes that are refused.
        self.refusals = {}
        # {plural: n}: the next n replaces of that kind race a controller's write (a status
        # update) between kubectl's read and its write, and so meet a conflict.
        self.racing_writes = {}
        self.conflicts = 0
        # The rules of the Role every request is authorized against; None allows all.
        self.rules = None
        self.user = "system:serviceaccount:deploy:deployer"

    def next_version(self):
        """A new resourceVersion."""
        self.version += 1
        return str(self.version)

    def store(self, plural, namespace, obj, previous=None):
        """Keep ``obj`` as the new state of an object, with the fields the server owns."""
        meta = obj.setdefault("metadata", {})
        meta.pop("managedFields", None)
        meta["namespace"] = namespace
        meta["resourceVersion"] = self.next_version()
        if previous is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
            meta["generation"] = 1
        else:
            meta["uid"] = previous["metadata"]["uid"]
            meta["creationTimestamp"] = previous["metadata"]["creationTimestamp"]
            changed = obj.get("spec") != previous.get("spec")
            meta["generation"] = previous["metadata"]["generation"] + changed
        if plural == "deployments":
            # The HorizontalPodAutoscaler owns the replica count; the manifests leave it out.
            obj["spec"].setdefault("replicas", (previous or {}).get("spec", {}).get("replicas", 2))
        obj.pop("status", None)
        self.objects[(plural, namespace, meta["name"])] = obj
        return obj

    def view(self, plural, obj):
        """``obj`` as the API returns it, with the status its controller would have set."""
        obj = copy.deepcopy(obj)
        if plural == "deployments":
            obj["status"] = self.deployment_status(obj)
        elif plural == "persistentvolumeclaims":
            pending = obj["metadata"]["name"] in self.unprovisionable
            obj["status"] = {"phase": "Pending" if pending else "Bound"}
        return obj

    def deployment_status(self, deployment):
        """A finished rollout, or one that is stuck on a new pod that never becomes ready."""
        namespace = deployment["metadata"]["namespace"]
        replicas = deployment["spec"]["replicas"]
        generation = deployment["metadata"]["generation"]
        stuck = image_of(deployment) in self.broken_images or any(
            name in self.unprovisionable and ("persistentvolumeclaims", namespace, name)
            in self.objects for name in claim_names(deployment))
        if stuck:
            return {"observedGeneration": generation, "replicas": replicas + 1,
                    "updatedReplicas": 1, "readyReplicas": replicas,
                    "availableReplicas": replicas, "unavailableReplicas": 1}
        return {"observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas}

    def events(self, namespace):
        """The events the volume provisioner records for claims it cannot provision."""
        return [{"apiVersion": "v1", "kind": "Event", "type": "Warning",
                 "reason": "ProvisioningFailed", "message": message,
                 "metadata": {"name": f"{name}.provisioning", "namespace": namespace},
                 "involvedObject": {"kind": "PersistentVolumeClaim", "name": name,
                                    "namespace": namespace}}
                for name, message in self.unprovisionable.items()
                if ("persistentvolumeclaims", namespace, name) in self.objects]

    def get(self, plural, namespace, name):
        """The object as the API returns it, or None."""
        obj = self.objects.get((plural, namespace, name))
        return None if obj is None else self.view(plural, obj)

    def images(self, namespace):
        """{kind: image} of the workloads in ``namespace``."""
        return {obj["kind"]: image_of(obj) for (plural, ns, _), obj in self.objects.items()
                if ns == namespace and plural in {"deployments", "cronjobs"}}

    def specs(self, namespace):
        """{(kind, name): spec} of every object in ``namespace``: what a rollback restores."""
        return {(obj["kind"], name): obj.get("spec")
                for (_, ns, name), obj in self.objects.items() if ns == namespace}


def matches(obj, query):
    """Whether ``obj`` passes the list's field and label selectors (equality terms only)."""
    for selector, source in (("fieldSelector", None), ("labelSelector", "labels")):
        for term in filter(None, query.get(selector, [""])[0].split(",")):
            key, _, value = term.partition("=")
            value = value.lstrip("=")
            if source:
                actual = obj["metadata"].get("labels", {}).get(key)
            else:
                actual = obj
                for part in key.split("."):
                    actual = actual.get(part, {}) if isinstance(actual, dict) else None
            if actual != value:
                return False
    return True


class Handler(BaseHTTPRequestHandler):
    """Routes API requests to the cluster."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        """Keep the test output quiet."""

    @property
    def cluster(self):
        """The cluster this server fronts."""
        return self.server.cluster

    def do_GET(self):  # noqa: N802 (the http.server naming)
        """Serve discovery, named objects, lists and watches."""
        self.handle_request("GET")

    def do_PATCH(self):  # noqa: N802
        """Server-side apply: create the object or take the applied fields."""
        self.handle_request("PATCH")

    def do_PUT(self):  # noqa: N802
        """Replace an object (kubectl replace)."""
        self.handle_request("PUT")

    def do_DELETE(self):  # noqa: N802
        """Delete an object."""
        self.handle_request("DELETE")

    def do_POST(self):  # noqa: N802
        """Create an object."""
        self.handle_request("POST")

    def handle_request(self, method):
        """Parse the path, authorize, and dispatch."""
        url = urlparse(self.path)
        query = parse_qs(url.query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        document = discovery(url.path)
        if document is not None:
            self.server.requests.append(("discover", url.path))
            return self.reply(200, document)
        parts = url.path.strip("/").split("/")
        if parts[0] not in {"api", "apis"} or len(parts) < (3 if parts[0] == "api" else 4):
            self.server.requests.append(("other", url.path))
            return self.reply(404, status(404, "NotFound", "the server could not find the "
                                          "requested resource"))
        group_version = "/".join(parts[1:2] if parts[0] == "api" else parts[1:3])
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and rest[1:2] and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        if plural not in KINDS or KINDS[plural][0] != group_version:
            return self.reply(404, status(404, "NotFound", "the server could not find the "
                                          "requested resource"))
        verb = {"GET": "watch" if query.get("watch") == ["true"] else
                ("get" if name else "list"),
                "PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}[method]
        self.server.requests.append((verb, url.path))
        group = group_of(group_version)
        resource = f"{plural}.{group}" if group else plural
        if self.cluster.rules is not None and (
                not KINDS[plural][2] or namespace is None
                or not allowed(self.cluster.rules, verb, group, plural)):
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            return self.reply(403, status(
                403, "Forbidden",
                f'{resource} "{name or ""}" is forbidden: User "{self.cluster.user}" cannot '
                f'{verb} resource "{plural}" in API group "{group}"{where}',
                {"name": name or "", "group": group, "kind": plural}))
        refusal = self.cluster.refusals.get((verb, plural))
        if refusal:
            code, reason, message = refusal
            return self.reply(code, status(code, reason, message,
                                           {"name": name or "", "group": group,
                                            "kind": plural}))
        with self.cluster.lock:
            answer = getattr(self, verb)(plural, namespace, name, query, body)
        if answer is not None:
            self.reply(*answer)

    def not_found(self, plural, name):
        """The 404 the API server returns for a missing object."""
        group = group_of(KINDS[plural][0])
        resource = f"{plural}.{group}" if group else plural
        return 404, status(404, "NotFound", f'{resource} "{name}" not found',
                           {"name": name, "group": group, "kind": plural})

    def get(self, plural, namespace, name, query, body):
        """One object."""
        obj = self.cluster.get(plural, namespace, name)
        return (200, obj) if obj else self.not_found(plural, name)

    def items(self, plural, namespace, query):
        """The objects of a list or watch, as the API returns them."""
        if plural == "events":
            found = self.cluster.events(namespace)
        else:
            found = [self.cluster.view(plural, obj)
                     for (kind, ns, _), obj in sorted(self.cluster.objects.items())
                     if kind == plural and ns == namespace]
        return [obj for obj in found if matches(obj, query)]

    def list(self, plural, namespace, name, query, body):
        """A list of objects."""
        kind = KINDS[plural][1]
        return 200, {"apiVersion": KINDS[plural][0], "kind": f"{kind}List",
                     "metadata": {"resourceVersion": str(self.cluster.version)},
                     "items": self.items(plural, namespace, query)}

    def watch(self, plural, namespace, name, query, body):
        """Stream the matching objects and the end of the initial events; close later."""
        events = [{"type": "ADDED", "object": obj}
                  for obj in self.items(plural, namespace, query)]
        events.append({"type": "BOOKMARK", "object": {
            "apiVersion": KINDS[plural][0], "kind": KINDS[plural][1],
            "metadata": {"resourceVersion": str(self.cluster.version),
                         "annotations": {"k8s.io/initial-events-end": "true"}}}})
        self.cluster.lock.release()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in events:
                self.chunk((json.dumps(event) + "\n").encode())
            time.sleep(WATCH_SECONDS)
            self.chunk(b"")
        except OSError:
            pass
        finally:
            self.cluster.lock.acquire()

    def chunk(self, data):
        """Write one chunk of a chunked response."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def patch(self, plural, namespace, name, query, body):
        """Server-side apply (create, or set what was applied), or a strategic merge patch."""
        if self.headers.get("Content-Type") == "application/strategic-merge-patch+json":
            previous = self.cluster.objects.get((plural, namespace, name))
            if previous is None:
                return self.not_found(plural, name)
            merged = strategic_merge(previous, json.loads(body))
            return 200, self.cluster.view(plural, self.cluster.store(plural, namespace, merged,
                                                                     previous))
        if self.headers.get("Content-Type") != "application/apply-patch+yaml":
            return 415, status(415, "UnsupportedMediaType", "the stand-in takes server-side "
                               "apply and strategic merge patches")
        if namespace not in self.cluster.namespaces:
            return 404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
        applied = yaml.safe_load(body)
        previous = self.cluster.objects.get((plural, namespace, name))
        merged = copy.deepcopy(applied)
        if previous and plural == "deployments" and "replicas" not in applied["spec"]:
            merged["spec"]["replicas"] = previous["spec"]["replicas"]
        stored = self.cluster.store(plural, namespace, merged, previous)
        return (200 if previous else 201), self.cluster.view(plural, stored)

    def update(self, plural, namespace, name, query, body):
        """Replace an object; a stale resourceVersion is a conflict, as on the API server."""
        previous = self.cluster.objects.get((plural, namespace, name))
        if previous is None:
            return self.not_found(plural, name)
        replacement = json.loads(body)
        if self.cluster.racing_writes.get(plural):
            self.cluster.racing_writes[plural] -= 1
            previous["metadata"]["resourceVersion"] = self.cluster.next_version()
        version = replacement["metadata"].get("resourceVersion")
        if version and version != previous["metadata"]["resourceVersion"]:
            self.cluster.conflicts += 1
            group = group_of(KINDS[plural][0])
            return 409, status(409, "Conflict", f'Operation cannot be fulfilled on {plural}'
                               f'{"." + group if group else ""} "{name}": the object has '
                               "been modified; please apply your changes to the latest "
                               "version and try again", {"name": name, "kind": plural})
        stored = self.cluster.store(plural, namespace, replacement, previous)
        return 200, self.cluster.view(plural, stored)

    def delete(self, plural, namespace, name, query, body):
        """Delete an object at once (no finalizers here)."""
        obj = self.cluster.objects.pop((plural, namespace, name), None)
        if obj is None:
            return self.not_found(plural, name)
        return 200, self.cluster.view(plural, obj)

    def create(self, plural, namespace, name, query, body):
        """Create an object (POST)."""
        obj = json.loads(body)
        name = obj["metadata"]["name"]
        if namespace not in self.cluster.namespaces:
            return 404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
        if (plural, namespace, name) in self.cluster.objects:
            return 409, status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        return 201, self.cluster.view(plural, self.cluster.store(plural, namespace, obj))

    def reply(self, code, document):
        """Send ``document`` as JSON."""
        body = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class KubeApiStub:
    """Context manager: a running stub; ``kubeconfig(path)`` writes a config that uses it.

    ``cluster`` is its state: set ``namespaces``, ``rules``, ``broken_images``,
    ``unprovisionable`` and ``refusals`` to shape what the next requests meet.
    """

    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.cluster = Cluster()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def cluster(self):
        """The stand-in cluster's state."""
        return self.server.cluster

    @property
    def requests(self):
        """``(verb, path)`` of every request so far."""
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
