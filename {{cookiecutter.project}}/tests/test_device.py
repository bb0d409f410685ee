"""The training device line: what was found, and the CPU fallback said out loud."""

import stat

from {{ cookiecutter.package }} import cli, data, device


def fake_nvidia_smi(tmp_path, output, status=0):
    """An executable that prints ``output`` and exits with ``status``, like nvidia-smi."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_without_nvidia_smi_training_says_it_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    assert device.describe() == (
        "device: cpu (no GPU: nvidia-smi not found (no NVIDIA driver in this container))")


def test_visible_gpus_are_named(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n")
    assert device.visible_gpus(smi) == (["NVIDIA A100-SXM4-40GB"] * 2, "")


def test_a_visible_gpu_is_reported_with_the_device_actually_used(tmp_path):
    line = device.describe(fake_nvidia_smi(tmp_path, "Tesla T4\n"))
    assert line.startswith("device: cpu (GPU visible: Tesla T4;")


def test_a_failing_nvidia_smi_means_no_gpu_and_says_why(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", status=9)
    assert device.visible_gpus(smi) == ([], "nvidia-smi found no GPU: NVIDIA-SMI has failed")


def test_an_unrunnable_nvidia_smi_means_no_gpu(tmp_path):
    gpus, reason = device.visible_gpus(str(tmp_path / "missing"))
    assert gpus == [] and reason.startswith("nvidia-smi failed")


def test_train_logs_its_device_before_training(capsys, tmp_path, small_dataset, quick_training,
                                               monkeypatch):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    csv = tmp_path / "train.csv"
    csv.write_bytes(data.canonical_csv(small_dataset))
    assert cli.main(["train", "--data", str(csv), "--test-mode"]) == 0
    assert capsys.readouterr().err.startswith("device: cpu (no GPU: nvidia-smi not found")
