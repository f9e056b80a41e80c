"""Where and in which precision a run computes: the device (``cpu`` or ``cuda``) and the dtype of
the estimator draws (``float64`` or ``float32``).

The exact gradient, exact path moments and every metric are computed in float64 whatever the
draws' dtype: float32 is an option for the draws only, never for the reference. Training stays on
the CPU (minibatches of a few points are faster there than on a GPU), so the measured network is
the same on every device; the problem is moved to the device for the exact gradient and the
draws. A CUDA run draws its random numbers from a CUDA generator, so its draws differ from a CPU
run's with the same seed (same distribution, other stream).
"""

from __future__ import annotations

import torch

from .errors import EstbenchError

DEVICES = ("cpu", "cuda")
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can be used, else why not (in words)."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA device"


def resolve_device(name: str, *, where: str = "--device") -> torch.device:
    """``cpu`` or ``cuda`` -> a concrete torch.device (``cuda`` -> the current CUDA device).

    ``where`` names the source of the setting in the error (an option, or ``FILE: key``).
    """
    if name not in DEVICES:
        raise EstbenchError(
            f"{where}: expected one of {', '.join(repr(d) for d in DEVICES)}, got {name!r}"
        )
    if name == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise EstbenchError(
            f"{where}: device 'cuda' was asked for, but CUDA is not available: {reason}. "
            f"Run on the CPU (--device cpu), or install a CUDA build of torch on a machine "
            f"with an NVIDIA GPU."
        )
    return torch.device("cuda", torch.cuda.current_device())


def resolve_dtype(name: str, *, where: str = "--dtype") -> torch.dtype:
    if name not in DTYPES:
        raise EstbenchError(
            f"{where}: expected one of {', '.join(repr(d) for d in DTYPES)}, got {name!r}"
        )
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The hardware behind a device, for results.json: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device`` (CUDA sampling needs a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (before reading a clock around GPU work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
