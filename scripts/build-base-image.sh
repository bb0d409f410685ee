#!/usr/bin/env bash
# Build a Python base image from Debian packages, for builders that cannot pull from Docker Hub.
#
#   scripts/build-base-image.sh [IMAGE]        default IMAGE: local/python-base:bookworm
#
# The image is a minimal Debian (debootstrap --variant=minbase) with python3, python3-venv and
# ca-certificates, imported with `docker import`: about 120 MB, like the official slim Python
# images. pip comes with every virtual environment (`python3 -m venv` installs it from the wheel
# that python3-venv carries), so the system-wide python3-pip is left out. The host's CA bundle
# is copied in, so that pip and uv inside the image trust the same certificates as the host (a TLS-
# intercepting proxy or a private package index keeps working). Pass the result to an image
# build: `docker build --build-arg BASE_IMAGE=local/python-base:bookworm ...`.
#
# Idempotent: nothing is done when IMAGE already exists (set FORCE=1 to rebuild).
# Settings (environment): SUITE (bookworm), MIRROR (http://deb.debian.org/debian),
# CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), FORCE (unset). Needs root, debootstrap, docker.
set -euo pipefail

image="${1:-local/python-base:bookworm}"
suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

fail() { echo "build-base-image: $*" >&2; exit 1; }

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

echo "build-base-image: debootstrap $suite from $mirror"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; fail "debootstrap failed (full log: $rootfs.log)"; }
rm -f "$rootfs.log"

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
    --message "python3 on Debian $suite (debootstrap minbase)" \
    - "$image" >/dev/null
docker image ls "$image"
