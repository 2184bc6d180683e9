"""Choosing where torch computes: ``"auto"`` is CUDA when present, else the CPU."""

from __future__ import annotations

from pathlib import Path

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; other names are checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here")
    return resolved


def has_fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (faster than float32).

    CUDA from compute capability 8.0 (Ampere); CPUs with AVX512-BF16 or AMX. Elsewhere
    bfloat16 is emulated and slower than float32.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_bfloat16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` means computing in bfloat16 on ``device``: "bfloat16", or
    "auto" where the device has native bfloat16 (:func:`has_fast_bfloat16`); "float32"
    does not. Any other name is a ValueError."""
    if precision not in ("float32", "bfloat16", "auto"):
        raise ValueError(f"precision must be 'float32', 'bfloat16' or 'auto', "
                         f"got {precision!r}")
    return precision == "bfloat16" or (precision == "auto" and has_fast_bfloat16(device))
