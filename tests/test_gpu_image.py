"""The generated project's GPU training image, checked on a machine without a GPU.

The image is built as ``make image-gpu BASE_IMAGE=...`` builds it: BuildKit, with the
template's air-gapped Python base put in place of the pinned base by a named build context
(``image_builds.build_image``). Then, in it:

- ``train`` runs to the end on the CPU and says why: CuPy (the real one, in the image) finds
  no CUDA device; the stored model's metadata records the CPU and that reason;
- the model it stores is the plain artifact the serving image loads: with CuPy made
  unimportable, the project's own loaders (the service's scoring spec, and the skops pipeline)
  load it and predict, and its pipeline holds no type from a GPU library;
- CuPy and the CUDA libraries it loads are there and load (no GPU needed to load them);
- the image runs as the non-root user and weighs at most ``MAX_IMAGE_BYTES`` uncompressed.

Nothing here proves a fit on a GPU: the project's unit tests run the same array API dispatch
on a CPU namespace, and ``make bench-train`` measures a GPU where there is one.
"""

import json
import uuid

import pytest

import baking
from image_builds import BuildFailed, build_image

APP_UID = "10001"
# The budget for the training image, uncompressed (Docker's image size).
MAX_IMAGE_BYTES = 4 * 1000**3

# Inside the image, as the image's user, after `model train`: CuPy made unimportable (as in
# the serving image, which does not have it), the stored model loaded the way `serve` and
# `predict` load it, one record predicted, and the stored metadata printed.
LOAD_WITHOUT_CUPY = """
import json, sys
sys.modules["cupy"] = None
from {package} import data, loading, scoring
from {package}.config import Settings
settings = Settings()
served = loading.load_model(settings)
pipeline = loading.load_pipeline(settings).pipeline
record = data.SCHEMA.example
prediction = scoring.predict(served, record, settings=settings)
modules = sorted({{type(step).__module__.split(".")[0] for _, step in pipeline.steps}}
                 | {{type(value).__module__.split(".")[0]
                    for value in vars(pipeline.steps[-1][1]).values()}})
print(json.dumps({{"scorer": served.scorer is not None, "modules": modules,
                  "probability": prediction.to_dict()["probabilities"][0],
                  "metadata": served.metadata}}))
"""

# CuPy's own shared objects and the CUDA libraries it finds through cuda-pathfinder, loaded.
LOAD_CUDA_LIBRARIES = """
import cupy
from cuda.pathfinder import load_nvidia_dynamic_lib
for name in ("cudart", "cublas", "nvrtc"):
    print(name, load_nvidia_dynamic_lib(name).abs_path)
print("cupy", cupy.__version__)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, cookiecutter_config):
    """The default project (it has the GPU image), baked once."""
    return baking.bake(tmp_path_factory.mktemp("gpu"), {}, config_file=cookiecutter_config)


@pytest.fixture(scope="module")
def gpu_image(docker_required, project, base_image):
    """The project's GPU training image, removed afterwards."""
    tag = f"template-test/gpu-{uuid.uuid4().hex[:8]}:gpu"
    try:
        image_id = build_image(project, "docker/gpu.Dockerfile", tag, base_image)
    except BuildFailed as error:
        pytest.fail(str(error), pytrace=False)
    yield docker_required.images.get(image_id)
    try:
        docker_required.images.remove(tag)
    except Exception:  # still used by a parallel identical build, or gone already
        pass


@pytest.fixture(scope="module")
def trained(docker_required, gpu_image, project):
    """`model train` run in the image, then the model loaded without CuPy:
    (train's exit status, train's output, the loader's exit status, its JSON or output)."""
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    script = LOAD_WITHOUT_CUPY.format(package=package)
    container = docker_required.containers.run(
        gpu_image.id, entrypoint=["sh", "-c"],
        command=['model train; echo "train exit $?" >&2; exec python -c "$0"', script],
        detach=True)
    try:
        status = container.wait(timeout=900)["StatusCode"]
        train_output = container.logs(stdout=False, stderr=True).decode(errors="replace")
        loader_output = container.logs(stdout=True, stderr=False).decode(errors="replace")
    finally:
        container.remove(force=True)
    return train_output, status, loader_output


def test_the_gpu_image_trains_on_the_cpu_without_a_gpu_and_says_why(trained):
    train_output, _, _ = trained
    assert "train exit 0" in train_output, train_output[-3000:]
    first = train_output.splitlines()[0]
    # The real CuPy's verdict, not a guess from a missing nvidia-smi alone.
    assert first.startswith("device: cpu (no GPU: nvidia-smi not found"), first
    assert "CuPy 14." in first and "cannot compute on a GPU" in first, first


def test_the_model_it_stores_loads_and_predicts_without_cupy(trained):
    _, status, loader_output = trained
    assert status == 0, loader_output[-3000:]
    result = json.loads(loader_output.strip().splitlines()[-1])
    # A logistic regression is served from its numpy scoring spec, as the service does.
    selected = result["metadata"]["metrics"]["selected_model"]
    assert result["scorer"] == (selected == "logistic_regression"), selected
    assert set(result["modules"]) <= {"sklearn", "numpy", "builtins"}, result["modules"]
    assert 0 <= result["probability"] <= 1


def test_the_model_metadata_records_the_cpu_and_why(trained):
    _, _, loader_output = trained
    compute = json.loads(loader_output.strip().splitlines()[-1])["metadata"]["compute"]
    assert (compute["device"], compute["library"], compute["parity"]) == ("cpu", None, None)
    assert "cannot compute on a GPU" in compute["fallback_reason"]


def test_cupy_and_the_cuda_libraries_load_in_the_gpu_image(docker_required, gpu_image):
    output = docker_required.containers.run(
        gpu_image.id, ["-c", LOAD_CUDA_LIBRARIES], entrypoint="python", remove=True).decode()
    assert "cupy 14." in output, output
    for name in ("cudart", "cublas", "nvrtc"):
        assert f"{name} /opt/venv/" in output, output


def test_the_gpu_image_runs_as_a_non_root_user_and_trains_by_default(gpu_image):
    config = gpu_image.attrs["Config"]
    assert config["User"].split(":")[0] == APP_UID
    assert (config["Entrypoint"], config["Cmd"]) == (["model"], ["train"])
    assert "SCIPY_ARRAY_API=1" in config["Env"]


def test_the_gpu_image_is_at_most_4_gb(gpu_image):
    size = gpu_image.attrs["Size"]
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e9:.2f} GB > {MAX_IMAGE_BYTES / 1e9:.0f} GB"
