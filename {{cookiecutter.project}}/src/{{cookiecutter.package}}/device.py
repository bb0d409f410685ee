"""Which device training computes on, said out loud.

The GPU image runs ``train`` on machines with and without a GPU. scikit-learn computes on the
CPU either way, so the honest answer is always "cpu"; what varies is whether a GPU was visible
(and would serve GPU libraries added to the project) or why not. ``nvidia-smi`` is the test:
the NVIDIA container runtime mounts it into the container together with the driver.
"""

from __future__ import annotations

import shutil
import subprocess

NVIDIA_SMI_TIMEOUT = 10
"""Seconds to wait for ``nvidia-smi``; a wedged driver must not hang training."""


def visible_gpus(nvidia_smi: str | None = None) -> tuple[list[str], str]:
    """Return the names of the visible NVIDIA GPUs, and why the list is empty when it is."""
    nvidia_smi = nvidia_smi or shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return [], "nvidia-smi not found (no NVIDIA driver in this container)"
    try:
        result = subprocess.run(
            [nvidia_smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"nvidia-smi failed: {error}"
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not names:
        problem = (result.stderr or result.stdout).strip().splitlines()
        return [], f"nvidia-smi found no GPU{': ' + problem[0] if problem else ''}"
    return names, ""


def describe(nvidia_smi: str | None = None) -> str:
    """One line for the training log: the device used, and what GPU was (or was not) seen."""
    gpus, reason = visible_gpus(nvidia_smi)
    if gpus:
        return (f"device: cpu (GPU visible: {', '.join(gpus)}; "
                "scikit-learn computes on the CPU)")
    return f"device: cpu (no GPU: {reason})"
