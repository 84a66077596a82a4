"""Device selection: 'auto' means CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> torch.device:
    """Map 'auto' | 'cpu' | 'cuda' | 'cuda:N' to a torch.device; asking for CUDA without one is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {spec}: CUDA was requested but torch.cuda.is_available() is False")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise ValueError(f"--device {spec!r}: expected one of {', '.join(DEVICE_CHOICES)} or cuda:N")


def describe_device(device: torch.device) -> str:
    """Human-readable device name for reports, e.g. 'cpu (2 threads)' or 'cuda:0 NVIDIA H100'."""
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"
