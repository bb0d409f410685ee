"""What computes the fits: a GPU through CuPy when one can, else the CPU, and why, said out loud.

No GPU is needed here. ``fake_cupy`` stands in for CuPy with the calls ``device`` makes and the
failures CuPy gives without a device (a ``CUDARuntimeError`` from the runtime); the GPU image's
tests run the real CuPy without a GPU.
"""

import stat
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from {{ cookiecutter.package }} import cli, data, device

NO_DRIVER = ("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
             "runtime version")


def fake_nvidia_smi(tmp_path, output, status=0):
    """An executable that prints ``output`` and exits with ``status``, like nvidia-smi."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


class CUDARuntimeError(RuntimeError):
    """What CuPy's runtime raises (cupy_backends.cuda.api.runtime.CUDARuntimeError)."""


def fake_cupy(name=b"NVIDIA H200", error=None, wrong=False):
    """CuPy's calls that ``device`` makes, on numpy; ``error`` makes the runtime fail like
    CuPy without a usable device, ``wrong`` makes the device compute wrong products."""
    def device_count():
        if error:
            raise CUDARuntimeError(error)
        return 1

    runtime = SimpleNamespace(getDeviceCount=device_count,
                              getDeviceProperties=lambda index: {"name": name})
    return SimpleNamespace(
        __version__="14.2.0",
        cuda=SimpleNamespace(runtime=runtime, Device=lambda: SimpleNamespace(id=0)),
        asarray=np.asarray, exp=np.exp,
        asnumpy=(lambda array: np.asarray(array) + 1) if wrong else np.asarray,
    )


@pytest.fixture
def no_nvidia_smi(monkeypatch):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)


@pytest.fixture
def without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError


@pytest.fixture
def array_api_enabled(monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


def test_without_a_driver_or_cupy_training_says_it_falls_back_to_the_cpu(
        no_nvidia_smi, without_cupy):
    compute = device.detect()
    assert compute.accelerator is None and compute.device == "cpu"
    assert compute.describe() == (
        "device: cpu (no GPU: nvidia-smi not found (no NVIDIA driver in this container); "
        "CuPy is not installed (the GPU image has it))")


def test_visible_gpus_are_named(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n")
    assert device.visible_gpus(smi) == (["NVIDIA A100-SXM4-40GB"] * 2, "")


def test_a_visible_gpu_without_cupy_is_named_in_the_fallback(tmp_path, without_cupy):
    compute = device.detect(fake_nvidia_smi(tmp_path, "Tesla T4\n"))
    assert compute.describe() == (
        "device: cpu (GPU visible: Tesla T4, but CuPy is not installed (the GPU image has it))")


def test_a_failing_nvidia_smi_means_no_gpu_and_says_why(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", status=9)
    assert device.visible_gpus(smi) == ([], "nvidia-smi found no GPU: NVIDIA-SMI has failed")


def test_an_unrunnable_nvidia_smi_means_no_gpu(tmp_path):
    gpus, reason = device.visible_gpus(str(tmp_path / "missing"))
    assert gpus == [] and reason.startswith("nvidia-smi failed")


def test_cupy_without_a_device_falls_back_with_cupys_own_reason(
        no_nvidia_smi, monkeypatch, array_api_enabled):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(error=NO_DRIVER))
    compute = device.detect()
    assert compute.accelerator is None
    assert compute.fallback_reason == (
        "no GPU: nvidia-smi not found (no NVIDIA driver in this container); CuPy 14.2.0 "
        f"cannot compute on a GPU: CUDARuntimeError: {NO_DRIVER}")


def test_cupy_that_does_not_load_falls_back_and_says_why(no_nvidia_smi, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken_import(name, *args, **kwargs):
        if name == "cupy":
            raise OSError("libcublas.so.12: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken_import)
    reason = device.detect().fallback_reason
    assert reason.endswith("CuPy does not load: OSError: libcublas.so.12: cannot open "
                           "shared object file")


def test_a_gpu_that_computes_wrong_products_is_not_used(
        no_nvidia_smi, monkeypatch, array_api_enabled):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(wrong=True))
    compute = device.detect()
    assert compute.accelerator is None
    assert "a product computed on the device is wrong" in compute.fallback_reason


def test_a_gpu_is_used_with_cupy_and_named(tmp_path, monkeypatch, array_api_enabled):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    compute = device.detect(fake_nvidia_smi(tmp_path, "NVIDIA H200\n"))
    assert compute.describe() == (
        "device: NVIDIA H200 (cupy 14.2.0, scikit-learn array API dispatch)")
    assert compute.metadata() == {
        "device": "NVIDIA H200", "library": "cupy", "library_version": "14.2.0",
        "dispatch": "scikit-learn array API dispatch", "fallback_reason": None,
        "parity": None}


def test_a_gpu_without_scipy_array_api_falls_back_and_says_how_to_enable_it(
        no_nvidia_smi, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.delenv("SCIPY_ARRAY_API", raising=False)
    compute = device.detect()
    assert compute.accelerator is None
    assert compute.fallback_reason.startswith(
        "GPU visible: NVIDIA H200, but SCIPY_ARRAY_API=1 is not set")


def test_falling_back_mid_run_records_why(monkeypatch, array_api_enabled):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    compute = device.detect()
    compute.fall_back("the fit on NVIDIA H200 failed: OutOfMemoryError")
    assert compute.metadata()["device"] == "cpu"
    assert compute.describe() == "device: cpu (the fit on NVIDIA H200 failed: OutOfMemoryError)"


def test_train_logs_its_device_before_training(capsys, tmp_path, small_dataset, quick_training,
                                               no_nvidia_smi, without_cupy):
    csv = tmp_path / "train.csv"
    csv.write_bytes(data.canonical_csv(small_dataset))
    assert cli.main(["train", "--data", str(csv), "--test-mode"]) == 0
    assert capsys.readouterr().err.startswith(
        "device: cpu (no GPU: nvidia-smi not found (no NVIDIA driver in this container); "
        "CuPy is not installed")


# ---- The training benchmark (benchmarks/training.py, `make bench-train`) -------------------

def run_training_benchmark(pytestconfig, capsys):
    """Run the benchmark on a few generated rows; return its exit status and output."""
    import importlib.util

    path = pytestconfig.rootpath / "benchmarks" / "training.py"
    spec = importlib.util.spec_from_file_location("training_benchmark", path)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    status = benchmark.main(["--rows", "3000", "--rounds", "2"])
    return status, capsys.readouterr().out


def test_the_training_benchmark_without_a_gpu_prints_the_cpu_figure_only(
        pytestconfig, capsys, no_nvidia_smi, without_cupy):
    status, output = run_training_benchmark(pytestconfig, capsys)
    assert status == 0, output
    assert "2,400 rows fitted, 600 held out (3,000 generated from the schema)" in output
    assert "cpu  fit: median" in output and "2 rounds" in output
    assert "gpu  fit: not measured (no GPU figure without a GPU): no GPU:" in output
    assert "speed-up" not in output and "parity" not in output


def test_the_training_benchmark_with_an_accelerator_prints_the_speed_up_and_parity(
        pytestconfig, capsys, monkeypatch, array_api_enabled):
    import array_api_strict

    accelerator = device.Accelerator(
        library="array-api-strict", version=array_api_strict.__version__, device="strict",
        namespace=array_api_strict, to_device=array_api_strict.asarray,
        to_numpy=np.from_dlpack)
    monkeypatch.setattr(device, "detect", lambda: device.Compute(accelerator))
    status, output = run_training_benchmark(pytestconfig, capsys)
    assert status == 0, output
    assert output.startswith("device: strict (array-api-strict")
    assert "gpu  fit: median" in output and "speed-up:" in output
    assert "over 600 rows, within the tolerance 0.001" in output
