# The training image: the same package, CLI and training code as the serving image, plus CuPy
# and the CUDA libraries it loads, so that `train` fits on an NVIDIA GPU when the container
# has one (scikit-learn's array API dispatch), and on the CPU, saying why, when it has none.
#
#   docker buildx build -f docker/gpu.Dockerfile -t IMAGE .      (or: make image-gpu)
#   docker run --gpus all -v "$PWD/models:/srv/models" --user "$(id -u)" IMAGE train
#
# No CUDA base image: the CUDA runtime, cuBLAS and NVRTC come as PyPI wheels (locked in
# requirements/gpu.txt, with the serving lock's versions of everything else), and the NVIDIA
# container runtime mounts the driver into any image given a GPU (--gpus, or a Kubernetes GPU
# request). The base is the serving image's, pinned by tag and digest on a literal FROM line
# that Dependabot updates; to build on another base without editing this file, replace it with
# a BuildKit named build context (`make image-gpu BASE_IMAGE=...` does):
#   docker buildx build --build-context REFERENCE=docker-image://IMAGE ...
# where REFERENCE is the FROM line's image reference, tag and digest included.

# ---- base: where everything lives, for every stage below ----------------------------------
FROM python:3.14-slim-trixie@sha256:51dafde81dbdb6ebde285137a295cf18a47ca95234fe388a343719cb97305b3d AS base

# SCIPY_ARRAY_API=1: scikit-learn's array API dispatch refuses to run without it, and SciPy
# reads it when first imported. NVIDIA_DRIVER_CAPABILITIES: the driver libraries the NVIDIA
# container runtime mounts (compute for CUDA, utility for nvidia-smi); which GPUs, the
# runtime's --gpus or the Kubernetes device plugin decides. CUPY_CACHE_DIR: CuPy compiles its
# kernels on first use and caches them; /tmp is writable under a read-only root file system.
ENV PATH="/opt/app/bin:/opt/venv/bin:${PATH}" \
    MODEL_REGISTRY_DIR=/srv/models \
    MODEL_LOG_DIR=/srv/logs \
    SCIPY_ARRAY_API=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUPY_CACHE_DIR=/tmp/cupy-kernels

# ---- dependencies: the pinned third-party packages, prepared once per lock change ----------
# A build stage: its installer never reaches the image.
# hadolint ignore=DL3057
FROM base AS dependencies

ARG UV_VERSION=0.13.9

# As in the serving image: the lock's packages without resolving again, then what training
# never uses leaves (the libraries' test suites, C and Cython sources, headers, type stubs).
# The shared objects are not stripped: the CUDA libraries carry device code that must stay
# as NVIDIA built it. Bytecode is compiled for everything (training imports the whole
# scientific stack, and the non-root user cannot write __pycache__); unchecked-hash because
# an image's sources never change. app.pth puts /opt/app, where the builder installs the
# project, on the venv's path.
COPY requirements/gpu.txt /opt/venv/requirements.txt
RUN python3 -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && python3 -m venv --without-pip /opt/venv \
    && UV_PYTHON_DOWNLOADS=never /tmp/uv/bin/uv pip install --system-certs --no-cache --python /opt/venv/bin/python \
        --no-deps -r /opt/venv/requirements.txt \
    && rm -rf /tmp/uv \
    && find /opt/venv -depth -type d -path '*/site-packages/*' -name tests -exec rm -rf {} + \
    && find /opt/venv -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' \
        -o -name '*.cpp' -o -name '*.h' -o -name '*.cuh' \) -delete \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv \
    && /opt/venv/bin/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_path('purelib'), 'app.pth').write_text('/opt/app\n')"

# ---- builder: the project -----------------------------------------------------------------
# A build stage never runs as a container, so it has no HEALTHCHECK.
# hadolint ignore=DL3057
FROM dependencies AS builder

ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN /opt/uv/bin/uv pip install --system-certs --no-cache --python /opt/venv/bin/python --no-deps \
        --target /opt/app . \
    && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/app \
    && mkdir -p /srv/models /srv/logs

# ---- runtime -----------------------------------------------------------------------------
FROM base

# A fixed, numeric, unprivileged user: Kubernetes' runAsNonRoot can verify it.
RUN useradd --system --no-log-init --uid 10001 --user-group --home-dir /srv --shell /usr/sbin/nologin app

# In a layer of its own (the CUDA libraries make it the big one): a code change does not touch it.
COPY --from=dependencies /opt/venv /opt/venv

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
      org.opencontainers.image.description="Model training image (CUDA, fits on an NVIDIA GPU when one is visible)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      model.version="${MODEL_VERSION}"
