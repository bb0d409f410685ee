#!/usr/bin/env bash
# Deploy one overlay with a given image, wait for the rollout, and roll back if it fails.
#
#   deploy/k8s/deploy.sh OVERLAY IMAGE [TIMEOUT]
#
#   OVERLAY  a folder of deploy/k8s/overlays: staging or production
#   IMAGE    the serving image, best by digest: ghcr.io/OWNER/REPO@sha256:...
#   TIMEOUT  how long the new pods may take to become ready (default 5m)
#
# kubectl must point at the cluster (KUBECONFIG). A rollout that does not finish in time is
# undone, so the previous version keeps serving, and the script exits 1. RENDER_ONLY=1 prints
# the manifests that would be applied and touches no cluster.
set -euo pipefail

usage() {
    echo "usage: $0 OVERLAY IMAGE [TIMEOUT]" >&2
    exit 2
}

[ "$#" -ge 2 ] || usage
overlay="$1"
image="$2"
timeout="${3:-5m}"
here="$(cd "$(dirname "$0")" && pwd)"
[ -d "$here/overlays/$overlay" ] || { echo "no overlay named '$overlay' in $here/overlays" >&2; exit 2; }

# The overlay names the image by a tag; swap in IMAGE through a throwaway kustomization on top
# of it ("kustomize edit set image" without the kustomize binary or a change to tracked files).
work="$(mktemp -d "$here/.deploy-XXXXXX")"
trap 'rm -rf "$work"' EXIT

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
    case "$image" in
        *@*) echo "    newName: ${image%@*}"; echo "    digest: ${image#*@}" ;;
        *:*) echo "    newName: ${image%:*}"; echo "    newTag: ${image##*:}" ;;
        *) echo "    newName: $image" ;;
    esac
} > "$work/kustomization.yaml"

manifest="$work/manifest.yaml"
kubectl kustomize "$work" > "$manifest"

if [ "${RENDER_ONLY:-0}" = 1 ]; then
    cat "$manifest"
    exit 0
fi

# The server Deployment is the one resource labelled component=server that rolls out.
server=(-f "$manifest" -l app.kubernetes.io/component=server)

kubectl apply -f "$manifest"
if kubectl rollout status "${server[@]}" --timeout="$timeout" 2>&1; then
    echo "Deployed $image to $overlay."
    exit 0
fi

echo "::error title=Rollout failed::$image did not become ready in $overlay within $timeout; rolling back." >&2
kubectl rollout undo "${server[@]}" || true
kubectl rollout status "${server[@]}" --timeout="$timeout" || true
exit 1
