#!/usr/bin/env bash
# Deploy one overlay with a given image and wait for it; on any failure, put back what ran.
#
#   deploy/k8s/deploy.sh OVERLAY IMAGE [TIMEOUT]
#
#   OVERLAY  a folder of deploy/k8s/overlays: staging or production
#   IMAGE    the serving image, best by digest: ghcr.io/OWNER/REPO@sha256:..., or by tag
#   TIMEOUT  how long the new pods may take to become ready (default 5m)
#
# kubectl must point at the cluster (KUBECONFIG), as an account that may manage the objects
# of the overlay's namespace (deploy/k8s/setup: the namespace and that account's Role, made
# once by an admin). Before applying, the script records every object of the overlay that
# exists. When the apply fails (even part-way), or the server does not become ready in time,
# it puts each recorded object back as it was and deletes those that did not exist, waits for
# the previous server to be ready again, and exits 1. RENDER_ONLY=1 prints the manifests that
# would be applied and touches no cluster. Needs kubectl and python3.
set -euo pipefail

usage() {
    echo "usage: $0 OVERLAY IMAGE [TIMEOUT]" >&2
    exit 2
}

fail() {
    echo "::error title=Deploy failed::$*" >&2
}

[ "$#" -ge 2 ] || usage
overlay="$1"
image="$2"
timeout="${3:-5m}"
here="$(cd "$(dirname "$0")" && pwd)"
[ -d "$here/overlays/$overlay" ] || { echo "no overlay named '$overlay' in $here/overlays" >&2; exit 2; }

# IMAGE is [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST] (the distribution reference grammar).
name="${image%@*}"
digest=""
[ "$name" = "$image" ] || digest="${image#*@}"
tag=""
case "${name##*/}" in *:*) tag="${name##*:}"; name="${name%:*}" ;; esac
# One of TAG and DIGEST is required: without, the overlay's own tag would silently stay.
if ! [[ "$name" =~ ^[a-z0-9]+([._:/-]+[a-z0-9]+)*$ ]] || [ -z "$tag$digest" ] ||
    ! [[ -z "$tag" || "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
    ! [[ -z "$digest" || "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "'$image' is not an image reference: REGISTRY/NAME, with :TAG or @sha256:DIGEST" >&2
    exit 2
fi

work="$(mktemp -d "$here/.deploy-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The overlay names the image by a tag; swap in IMAGE through a throwaway kustomization on top
# of it ("kustomize edit set image" without the kustomize binary or a change to tracked files).
current="$(kubectl kustomize "$here/overlays/$overlay" | sed -n 's/^ *image: *//p' | sort -u)"
[ "$(printf '%s\n' "$current" | wc -l)" -eq 1 ] || { echo "expected one image in the overlay, got: $current" >&2; exit 2; }
current="${current%@*}"
case "${current##*/}" in *:*) current="${current%:*}" ;; esac

{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - ../overlays/$overlay"
    echo "images:"
    echo "  - name: $current"
    echo "    newName: $name"
    # Quoted: a tag such as 1.2 (release.yml's MAJOR.MINOR) is a number to YAML otherwise.
    [ -z "$tag" ] || echo "    newTag: \"$tag\""
    [ -z "$digest" ] || echo "    digest: \"$digest\""
} > "$work/kustomization.yaml"

manifest="$work/manifest.yaml"
kubectl kustomize "$work" > "$manifest"

if [ "${RENDER_ONLY:-0}" = 1 ]; then
    cat "$manifest"
    exit 0
fi

# Every object must live in the overlay's one namespace: a namespace-scoped deploy account
# may neither create a Namespace nor touch anything outside its own.
namespace="$(sed -n 's/^  namespace: //p' "$manifest" | sort -u)"
if [ "$(printf '%s\n' "$namespace" | wc -l)" -ne 1 ] ||
    [ "$(grep -c '^  namespace: ' "$manifest")" -ne "$(grep -c '^kind: ' "$manifest")" ]; then
    echo "every object of overlay '$overlay' must be in one namespace (none cluster-scoped)" >&2
    exit 2
fi

# --- What is running now -------------------------------------------------------------------
# Each object of the overlay that exists, as the API returns it (server-owned fields dropped),
# one file each, to be put back with `kubectl replace`.
if ! kubectl get -f "$manifest" --ignore-not-found -o name > "$work/before.txt" ||
    ! kubectl get -f "$manifest" --ignore-not-found -o json > "$work/before.json"; then
    fail "could not read what runs in namespace $namespace; nothing was changed."
    exit 1
fi
mkdir "$work/before"
python3 - "$work/before.json" "$work/before" <<'EOF'
import json
import pathlib
import sys

text = pathlib.Path(sys.argv[1]).read_text(encoding="utf-8").strip()
document = json.loads(text) if text else {"kind": "List", "items": []}
items = document["items"] if document.get("kind") == "List" else [document]
for number, obj in enumerate(items):
    obj.pop("status", None)
    for field in ("resourceVersion", "uid", "creationTimestamp", "generation",
                  "managedFields", "selfLink"):
        obj["metadata"].pop(field, None)
    path = pathlib.Path(sys.argv[2]) / f"{number:02d}.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
EOF

# --- On failure: put it all back ----------------------------------------------------------

# Name each claim of the overlay that is still Pending, with what its events say (a storage
# class without ReadWriteMany, no default class...): pods that need it never start.
report_pending_claims() {
    local claims claim phase reasons
    claims="$(kubectl get -f "$manifest" --ignore-not-found -o jsonpath='{range .items[?(@.kind=="PersistentVolumeClaim")]}{.metadata.name}={.status.phase}{"\n"}{end}' || true)"
    for claim in $claims; do
        phase="${claim#*=}"
        claim="${claim%%=*}"
        [ "$phase" = Pending ] || continue
        # One line: a workflow annotation (::error) shows only its first.
        reasons="$(kubectl get events -n "$namespace" -o jsonpath='{range .items[*]}{.reason}: {.message}; {end}' \
            --field-selector "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=$claim" || true)"
        fail "the claim $claim is Pending, so pods that mount it cannot start: ${reasons:-no events yet; see kubectl -n $namespace describe pvc $claim}"
    done
}

# Replace an object with its recorded state. kubectl reads the object's version and writes
# it back with it; a controller's write in between (the Deployment's status during a rollout)
# makes that a conflict, so try again.
put_back() {
    local attempt
    for attempt in 1 2 3; do
        kubectl replace -f "$1" && return 0
        [ "$attempt" -eq 3 ] || sleep 1
    done
    return 1
}

# $1 says what failed. Exits 1.
roll_back() {
    local problems=0 file created deployment
    fail "$1 Putting back what ran before in namespace $namespace."
    report_pending_claims
    for file in "$work"/before/*.json; do
        [ -e "$file" ] || continue
        put_back "$file" || problems=1
    done
    # Objects that did not exist before this deploy: whatever it created of them goes.
    kubectl get -f "$manifest" --ignore-not-found -o name > "$work/after.txt" || problems=1
    created="$(sort "$work/before.txt" | comm -13 - <(sort "$work/after.txt"))"
    if [ -n "$created" ]; then
        # shellcheck disable=SC2086 # one argument per object
        kubectl delete -n "$namespace" --wait --timeout="$timeout" $created || problems=1
    fi
    if ! grep -q '^deployment' "$work/before.txt"; then
        echo "Nothing to roll back to: the server did not run in $namespace before; removed what this deploy created." >&2
    fi
    for deployment in $(grep '^deployment' "$work/before.txt" || true); do
        kubectl rollout status -n "$namespace" "$deployment" --timeout="$timeout" || problems=1
    done
    if [ "$problems" -ne 0 ]; then
        fail "putting back the previous state of $namespace did not fully succeed (see above): check it by hand."
    else
        echo "Put back what ran before in $namespace." >&2
    fi
    exit 1
}

# --- Apply and wait ------------------------------------------------------------------------
# Server-side apply, taking over fields that a rollback's replace took; objects that earlier
# deploys applied client-side move over without conflicts (kubernetes.io/docs/reference/
# using-api/server-side-apply/#upgrading-from-client-side-apply-to-server-side-apply).
# kubectl applies every object it can and then exits non-zero (kubernetes/kubectl#845), so a
# failed apply may have changed some objects already.
if ! kubectl apply --server-side --force-conflicts -f "$manifest"; then
    roll_back "Applying $image to $overlay failed (see kubectl's errors above; is the namespace made, by deploy/k8s/setup/$overlay?)."
fi
# The server Deployment is the one resource labelled component=server that rolls out.
if ! kubectl rollout status -f "$manifest" -l app.kubernetes.io/component=server --timeout="$timeout"; then
    roll_back "$image did not become ready in $overlay within $timeout."
fi
echo "Deployed $image to $overlay."
