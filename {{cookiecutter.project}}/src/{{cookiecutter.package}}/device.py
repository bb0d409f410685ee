"""What computes a training run's fits, said out loud.

Training fits on an NVIDIA GPU through scikit-learn's array API dispatch with CuPy arrays
(https://scikit-learn.org/1.9/modules/array_api.html): ``detect`` finds out whether it can,
and says why not when it cannot. The GPU image has CuPy and the CUDA libraries it loads (PyPI
wheels) and sets ``SCIPY_ARRAY_API=1``, which scikit-learn's dispatch needs before SciPy is
imported; the NVIDIA container runtime mounts the driver (and ``nvidia-smi``) when the
container gets a GPU. Anything short of that (the serving image, a laptop, a node without a
GPU) trains on the CPU, exactly as without this module, and the reason goes into the training
log and the model's metadata.

Nothing here imports scikit-learn, SciPy or CuPy at module level: the CLI imports this module
for every command, the service's included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

NVIDIA_SMI_TIMEOUT = 10
"""Seconds to wait for ``nvidia-smi``; a wedged driver must not hang training."""

DISPATCH = "scikit-learn array API dispatch"
"""How the accelerator computes: scikit-learn's own estimators, given the library's arrays."""


class ParityError(RuntimeError):
    """A fit on the accelerator disagrees with the same fit on the CPU; nothing was stored."""


@dataclass(frozen=True)
class Accelerator:
    """An array library on a device, whose arrays scikit-learn's array API dispatch fits with.

    ``to_device`` puts a numpy array on the device; ``to_numpy`` brings a device array back.
    """

    library: str
    version: str
    device: str
    namespace: Any = field(repr=False, compare=False)
    to_device: Callable = field(repr=False, compare=False)
    to_numpy: Callable = field(repr=False, compare=False)


@dataclass
class Compute:
    """What a training run fits with: an accelerator, or the CPU and the reason why.

    ``fall_back`` switches a run to the CPU when the accelerator fails mid-way; ``parity``
    holds the comparison of the accelerated fit with a CPU fit, once training made it.
    """

    accelerator: Accelerator | None
    fallback_reason: str = ""
    parity: dict | None = None

    @property
    def device(self) -> str:
        """The GPU's name, or ``cpu``."""
        return self.accelerator.device if self.accelerator else "cpu"

    def fall_back(self, reason: str) -> None:
        """Fit on the CPU from now on, because of ``reason``."""
        self.accelerator, self.fallback_reason = None, reason

    def describe(self) -> str:
        """One line for the training log: the device, the library, or why the CPU."""
        if self.accelerator is None:
            return f"device: cpu ({self.fallback_reason})"
        return (f"device: {self.device} ({self.accelerator.library} "
                f"{self.accelerator.version}, {DISPATCH})")

    def metadata(self) -> dict:
        """The JSON-ready record of what computed the fits, for the model's metadata."""
        accelerator = self.accelerator
        return {
            "device": self.device,
            "library": accelerator.library if accelerator else None,
            "library_version": accelerator.version if accelerator else None,
            "dispatch": DISPATCH if accelerator else None,
            "fallback_reason": self.fallback_reason or None,
            "parity": self.parity,
        }


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def cupy_accelerator(cupy) -> Accelerator:
    """The CuPy accelerator on the current CUDA device (device 0 unless told otherwise).

    Raises whatever CuPy raises when it cannot compute there (no device, no driver, a CUDA
    library that does not load): a small product on the device is checked against numpy.
    """
    import numpy

    runtime = cupy.cuda.runtime
    if runtime.getDeviceCount() < 1:
        raise RuntimeError("no CUDA device")
    name = runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    # cuBLAS (the product) and NVRTC (the element-wise kernels) are what a fit needs.
    sample = numpy.arange(6.0).reshape(2, 3)
    on_device = cupy.asarray(sample)
    product = cupy.asnumpy(cupy.exp(on_device) @ on_device.T)
    if not numpy.allclose(product, numpy.exp(sample) @ sample.T):
        raise RuntimeError("a product computed on the device is wrong")
    return Accelerator(library="cupy", version=cupy.__version__, device=name,
                       namespace=cupy, to_device=cupy.asarray, to_numpy=cupy.asnumpy)


def detect(nvidia_smi: str | None = None, environ=None) -> Compute:
    """Find the accelerator training can fit with, or the reason it fits on the CPU."""
    environ = os.environ if environ is None else environ
    gpus, no_gpu = visible_gpus(nvidia_smi)
    seen = f"GPU visible: {', '.join(gpus)}, but" if gpus else f"no GPU: {no_gpu};"
    try:
        import cupy
    except ImportError:
        return Compute(None, f"{seen} CuPy is not installed (the GPU image has it)")
    except Exception as error:  # a CUDA library that CuPy loads at import is broken
        return Compute(None, f"{seen} CuPy does not load: {_first_line(error)}")
    try:
        accelerator = cupy_accelerator(cupy)
    except Exception as error:  # CuPy's CUDARuntimeError and the like, whatever the cause
        return Compute(None, f"{seen} CuPy {cupy.__version__} cannot compute on a GPU: "
                             f"{_first_line(error)}")
    if environ.get("SCIPY_ARRAY_API") != "1":
        return Compute(None, f"GPU visible: {accelerator.device}, but SCIPY_ARRAY_API=1 is "
                             "not set (scikit-learn's array API dispatch needs it before "
                             "SciPy is imported; the GPU image sets it)")
    return Compute(accelerator)
