# The serving image: the package, its pinned dependencies and a trained model.
#
#   docker build -f docker/cpu.Dockerfile -t IMAGE .      (or: make image-cpu)
#   docker run -p 8000:8000 IMAGE                         serves the model
#   docker run IMAGE train | predict | monitor            the same CLI
#
# The base is pinned by tag and digest on a literal FROM line, the form Dependabot reads and
# updates (it does not expand an ARG in FROM). To build on another base without editing this
# file (a mirror, or the image the template's scripts/build-base-image.sh builds where Docker
# Hub is out of reach), replace it with a BuildKit named build context, which `make image-cpu
# BASE_IMAGE=...` passes:
#   docker buildx build --build-context REFERENCE=docker-image://IMAGE ...
# where REFERENCE is the FROM line's image reference, tag and digest included.
# Any Debian-like image with python3 (and its venv module) on PATH, whose apt can reach a Debian
# mirror (a build stage installs binutils), will do. The image's Python is the base's Python.

# ---- base: where everything lives, for every stage below ----------------------------------
FROM python:3.14-slim-trixie@sha256:51dafde81dbdb6ebde285137a295cf18a47ca95234fe388a343719cb97305b3d AS base

ENV PATH="/opt/app/bin:/opt/venv/bin:${PATH}" \
    MODEL_REGISTRY_DIR=/srv/models \
    MODEL_LOG_DIR=/srv/logs

# ---- dependencies: the pinned third-party packages, prepared once per lock change ----------
# A build stage: its tools (uv, binutils) never reach the image.
# hadolint ignore=DL3057
FROM base AS dependencies

# A failing command anywhere in a pipe fails its RUN.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ARG UV_VERSION=0.13.9

# binutils' strip, for this stage only. Its version is the base's Debian release's: pinning it
# would tie the Dockerfile to one base image, and nothing it builds is shipped but the
# stripped files.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

# The dependencies, from the lock. Then what the service never uses leaves: the libraries' own
# test suites and build inputs (Cython and C sources, headers, type stubs), and the symbol
# tables of the compiled extensions (the dynamic symbols that loading needs stay). Libraries
# that auditwheel patched (the vendored *.libs/, and extensions given an RPATH to them) are
# left as they are: strip corrupts files that patchelf rewrote.
# Bytecode is compiled for what the service imports, because the non-root user cannot write
# __pycache__ (without it, every start would compile in memory again); unchecked-hash because
# an image's sources never change. BATCH_ONLY, the scientific stack that only training and
# monitoring import (and predict, for CSV input), is left to compile in memory when one of
# those commands runs: about 1.5 s more per run, and 42 MB less image. The service starts from
# the model's numpy scoring spec without importing any of it (the template's image tests
# check that every module the service imports at start has bytecode); a model without a spec
# loads through skops, and its service takes those 1.5 s more to start. To compile
# everything: --build-arg BATCH_ONLY=. The runtime gets /opt/service-venv (hard links: no
# copy) before BATCH_ONLY is compiled; the builder, which trains a model, gets /opt/venv with
# everything compiled.
# app.pth puts /opt/app, where the builder installs the project, on the venv's path.
ARG BATCH_ONLY="sklearn scipy pandas skops joblib narwhals prettytable wcwidth dateutil threadpoolctl cloudpickle"
COPY requirements/prod.txt /opt/venv/requirements.txt
RUN python3 -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && python3 -m venv --without-pip /opt/venv \
    && UV_PYTHON_DOWNLOADS=never /tmp/uv/bin/uv pip install --system-certs --no-cache \
        --python /opt/venv/bin/python --no-deps -r /opt/venv/requirements.txt \
    && rm -rf /tmp/uv \
    && find /opt/venv -depth -type d -path '*/site-packages/*' -name tests -exec rm -rf {} + \
    && find /opt/venv -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' \
        -o -name '*.cpp' -o -name '*.h' \) -delete \
    && find /opt/venv -type f -name '*.so*' ! -path '*.libs/*' -exec sh -c 'for lib; do \
        readelf -d "$lib" | grep -qE "\((RPATH|RUNPATH)\)" || strip --strip-unneeded "$lib" \
        || exit 1; done' strip {} + \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && echo /opt/app > "$site/app.pth" \
    && batch_only="$(echo "$BATCH_ONLY" | tr ' ' '|')" \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x "^$site/($batch_only)(/|\.py\$)" /opt/venv \
    && cp -al /opt/venv /opt/service-venv \
    && for name in $BATCH_ONLY; do for path in "$site/$name" "$site/$name.py"; do \
        if [ -e "$path" ]; then \
            /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$path" \
            || exit 1; \
        fi; done; done

# ---- builder: the project, then a model ---------------------------------------------------
# A build stage never runs as a container, so it has no HEALTHCHECK.
# hadolint ignore=DL3057
FROM dependencies AS builder

ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# The project itself, without dependencies, into /opt/app (the final stage copies only that).
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN /opt/uv/bin/uv pip install --system-certs --no-cache --python /opt/venv/bin/python --no-deps \
        --target /opt/app . \
    && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/app

# A model to serve: the registry in docker/model/ when it holds MODEL_VERSION (a model that a
# pipeline trained and tested), otherwise one trained here on the embedded data set.
ARG MODEL_VERSION=0.1
COPY docker/model/ /srv/models/
RUN rm -f /srv/models/README.md \
    && if [ ! -e "/srv/models/model-${MODEL_VERSION}" ]; then \
        MODEL_VERSION="${MODEL_VERSION}" model train --quiet; \
    fi \
    && rm -rf /srv/logs && mkdir -p /srv/logs

# ---- runtime -----------------------------------------------------------------------------
FROM base

# A fixed, numeric, unprivileged user: Kubernetes' runAsNonRoot can verify it.
RUN useradd --system --no-log-init --uid 10001 --user-group --home-dir /srv --shell /usr/sbin/nologin app

# In a layer of its own: a code change does not touch it.
COPY --from=dependencies /opt/service-venv /opt/venv

# Declaring build arguments costs no cache hits: only the instructions that use them
# (ENV below, LABEL at the end) change with their values.
ARG MODEL_VERSION=0.1
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=

# Settings before the COPY steps: a code change then rebuilds only the layers that hold code.
# One worker per container by default: scale with replicas, or set MODEL_WORKERS at run time.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_HOST=0.0.0.0 \
    MODEL_PORT=8000 \
    MODEL_WORKERS=1 \
    MODEL_VERSION="${MODEL_VERSION}"
USER 10001:10001
WORKDIR /srv
EXPOSE 8000
# Standard library only (slim images have no curl); -I -S keeps the probe's start-up cheap.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-I", "-S", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MODEL_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["model"]
CMD ["serve"]

COPY --from=builder /opt/app /opt/app
COPY --from=builder --chown=10001:10001 /srv /srv

# Labels last: their values change on every commit and must not invalidate the layers above.
LABEL org.opencontainers.image.title="model" \
      org.opencontainers.image.description="Model serving image (CPU)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      model.version="${MODEL_VERSION}"
