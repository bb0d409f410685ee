#!/usr/bin/env bash
# Build a Python base image from Debian packages, for builders that cannot pull from Docker Hub.
#
#   scripts/build-base-image.sh [IMAGE]     default IMAGE: local/python-base:PYTHON_VERSION
#   scripts/build-base-image.sh --name      print that default name, build nothing
#
# The image is a minimal Debian (debootstrap --variant=minbase) with python3, python3-venv and
# ca-certificates, imported with `docker import`: about 120 MB, like the official slim Python
# images. pip comes with every virtual environment (`python3 -m venv` installs it from the wheel
# that python3-venv carries), so the system-wide python3-pip is left out. The host's CA bundle
# is copied in, so that pip and uv inside the image trust the same certificates as the host (a TLS-
# intercepting proxy or a private package index keeps working). Give it to an image build in
# place of the Dockerfile's pinned base: `make image-cpu BASE_IMAGE=local/python-base:3.14`.
#
# Its Python is the serving image's: PYTHON_VERSION defaults to the minor version in the tag of
# the pinned base (`FROM python:3.14-slim-...` in the template's docker/cpu.Dockerfile), and the
# Debian suite to the one whose python3 has that version. The build fails when the suite's
# python3 is another version.
#
# Idempotent: nothing is done when IMAGE already exists (set FORCE=1 to rebuild).
# Settings (environment): PYTHON_VERSION (see above; 3.11 gives the supported floor),
# SUITE (the Debian suite for PYTHON_VERSION), MIRROR (http://deb.debian.org/debian),
# CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), FORCE (unset). Needs root, debootstrap, docker.
set -euo pipefail

template_dir="$(cd "$(dirname "$0")/.." && pwd)"
serving_dockerfile="$template_dir/{{cookiecutter.project}}/docker/cpu.Dockerfile"
# Debian's python3, per suite (https://packages.debian.org/search?keywords=python3&exact=1).
# A suite is named, not "testing" or "stable", so that the image does not change under a name.
declare -A debian_suite_for=([3.11]=bookworm [3.13]=trixie [3.14]=forky)

fail() { echo "build-base-image: $*" >&2; exit 1; }

# The Python minor version of the serving image's pinned base: python:X.Y-... on a FROM line.
pinned_python_version() {
    sed -n 's/^FROM[[:space:]]\{1,\}\(docker\.io\/\)\{0,1\}\(library\/\)\{0,1\}python:\([0-9]\{1,\}\.[0-9]\{1,\}\)[^[:space:]]*.*/\3/p' \
        "$serving_dockerfile" | head -n 1
}

python_version="${PYTHON_VERSION:-$(pinned_python_version)}"
[[ -n "$python_version" ]] \
    || fail "no FROM python:X.Y line in $serving_dockerfile: set PYTHON_VERSION"
default_image="local/python-base:$python_version"
if [[ "${1:-}" == "--name" ]]; then
    echo "$default_image"
    exit 0
fi
image="${1:-$default_image}"
suite="${SUITE:-${debian_suite_for[$python_version]:-}}"
[[ -n "$suite" ]] || fail "no Debian suite known for Python $python_version: set SUITE"
mirror="${MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

command -v docker >/dev/null || fail "docker is not installed"
docker info >/dev/null 2>&1 || fail "the Docker daemon is not reachable (is dockerd running?)"

if [[ -z "${FORCE:-}" ]] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-base-image: $image already exists (FORCE=1 rebuilds it)"
    exit 0
fi

command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install -y debootstrap)"
[[ $EUID -eq 0 ]] || fail "debootstrap needs root"
[[ -r "$ca_bundle" ]] || fail "CA bundle $ca_bundle not readable (set CA_BUNDLE)"

rootfs="$(mktemp -d /tmp/python-base.XXXXXX)"
# debootstrap leaves root-owned device nodes and mounts behind on failure: always clean up.
trap 'umount -R "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true; rm -rf "$rootfs"' EXIT

# A debootstrap older than the suite has no script for it; every suite since bookworm
# bootstraps the way sid does.
script=()
[[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=(/usr/share/debootstrap/scripts/sid)
echo "build-base-image: debootstrap $suite from $mirror (Python $python_version)"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" "${script[@]}" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; fail "debootstrap failed (full log: $rootfs.log)"; }
rm -f "$rootfs.log"

found="$(readlink "$rootfs/usr/bin/python3")"
[[ "$found" == "python$python_version" ]] \
    || fail "Debian $suite has $found, not python$python_version (set SUITE or PYTHON_VERSION)"

# A suite still in development (testing, unstable) signs its Release for a week only; apt
# refuses a Release past its Valid-Until. A mirror that serves an older copy of the archive (a
# snapshot) makes every apt-get update in the image fail, so for that mirror alone the image's
# apt skips the date check (the signature is still checked), as snapshot.debian.org advises
# ("check-valid-until=no"), and says so here.
release="$(find "$rootfs/var/lib/apt/lists" -maxdepth 1 \( -name '*_InRelease' -o -name '*_Release' \) -print -quit)"
valid_until="$(sed -n 's/^Valid-Until: //p' "${release:-/dev/null}")"
if [[ -n "$valid_until" ]] && (($(date -d "$valid_until" +%s) < $(date +%s))); then
    echo "build-base-image: $mirror serves a $suite Release that expired on $valid_until;" \
        "the image's apt skips that check for it (a snapshot mirror)" >&2
    sed -i "s|^deb \($mirror\)|deb [check-valid-until=no] \1|" "$rootfs/etc/apt/sources.list"
fi

# The host bundle replaces Debian's generated one; a copy under /usr/local/share keeps it when
# something inside the image runs update-ca-certificates.
install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -D -m 0644 "$ca_bundle" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"

# The official slim images' trimming: no package lists, caches, docs or man pages. Also no
# message translations (33 MB): containers log in English (LANG=C.UTF-8 below).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/*

echo "build-base-image: importing as $image"
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --message "python$python_version on Debian $suite (debootstrap minbase)" \
    - "$image" >/dev/null
docker image ls "$image"
