# The training image: the same package and CLI on an NVIDIA CUDA runtime base.
#
#   docker build -f docker/gpu.Dockerfile -t IMAGE .          (or: make image-gpu)
#   docker run --gpus all -v "$PWD/models:/srv/models" --user "$(id -u)" IMAGE train
#
# `train` says which device it found; without a GPU it runs on the CPU and says so.
# BASE_IMAGE: any Debian or Ubuntu image. The image's Python is the one of the base's OS
# (Ubuntu 24.04: 3.12); a base that already has python3 with its venv module is used as is.
ARG BASE_IMAGE=nvidia/cuda:12.9.1-runtime-ubuntu24.04@sha256:1287141d283b8f06f45681b56a48a85791398c615888b1f96bfb9fc981392d98

# ---- runtime-base: the OS's Python, the user and the pinned dependencies ------------------
FROM ${BASE_IMAGE} AS runtime-base

ARG UV_VERSION=0.13.9

# The pin allows the patch releases of one Python minor version: Ubuntu removes superseded
# package versions from its archive, so an exact pin would break the build after an update.
RUN if ! python3 -c "import ensurepip" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3=3.12.* python3-venv=3.12.* \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --no-log-init --uid 10001 --user-group --home-dir /srv --shell /usr/sbin/nologin app

# As in the serving image: dependencies from the lock in one layer, no installer, no caches,
# no test suites or build inputs, bytecode compiled; app.pth puts the project (/opt/app) on
# the venv's path.
COPY requirements/prod.txt /opt/venv/requirements.txt
RUN python3 -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && python3 -m venv --without-pip /opt/venv \
    && UV_PYTHON_DOWNLOADS=never /tmp/uv/bin/uv pip install --no-cache --python /opt/venv/bin/python \
        --no-deps -r /opt/venv/requirements.txt \
    && rm -rf /tmp/uv \
    && find /opt/venv -depth -type d -path '*/site-packages/*' -name tests -exec rm -rf {} + \
    && find /opt/venv -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' \
        -o -name '*.cpp' -o -name '*.h' \) -delete \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv \
    && /opt/venv/bin/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_path('purelib'), 'app.pth').write_text('/opt/app\n')"

ENV PATH="/opt/app/bin:/opt/venv/bin:${PATH}" \
    MODEL_REGISTRY_DIR=/srv/models \
    MODEL_LOG_DIR=/srv/logs

# ---- builder: the project -----------------------------------------------------------------
# A build stage never runs as a container, so it has no HEALTHCHECK.
# hadolint ignore=DL3057
FROM runtime-base AS builder

ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN /opt/uv/bin/uv pip install --no-cache --python /opt/venv/bin/python --no-deps \
        --target /opt/app . \
    && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/app \
    && mkdir -p /srv/models /srv/logs

# ---- runtime -----------------------------------------------------------------------------
FROM runtime-base

# Declaring build arguments costs no cache hits: only the instructions that use them
# (ENV below, LABEL at the end) change with their values.
ARG MODEL_VERSION=0.1
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_VERSION="${MODEL_VERSION}"
USER 10001:10001
WORKDIR /srv
# A training job has no endpoint to probe: it succeeds or fails by its exit status.
HEALTHCHECK NONE
ENTRYPOINT ["model"]
CMD ["train"]

COPY --from=builder /opt/app /opt/app
COPY --from=builder --chown=10001:10001 /srv /srv

# Labels last: their values change on every commit and must not invalidate the layers above.
LABEL org.opencontainers.image.title="model-gpu" \
      org.opencontainers.image.description="Model training image (CUDA)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      model.version="${MODEL_VERSION}"
