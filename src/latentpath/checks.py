"""Checks of the scalar arguments of public functions, with messages naming them."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; a ValueError naming ``name`` else."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float | None = None,
                 maximum: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float within the bounds (``strict``: above ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be {rel} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_pair(name: str, value: Any, minimum: float) -> tuple[float, float]:
    """``value`` as a pair (start, end) of floats of at least ``minimum``."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (start, end), got {value!r}") from None
    return (check_float(f"{name}[0]", a, minimum=minimum),
            check_float(f"{name}[1]", b, minimum=minimum))


#: the share of the machine's memory one array may take before a command refuses it
MEMORY_SHARE = 0.5


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(what: str, n_bytes: float) -> None:
    """Refuse, before allocating, an array larger than :data:`MEMORY_SHARE` of the
    machine's memory, naming ``what`` asked for it (a ValueError, not a MemoryError
    minutes later).

    Examples
    --------
    >>> check_memory("a small array", 1e6)
    >>> check_memory("a movie of 10 frames of 10^6 x 10^6 px", 4e13)
    Traceback (most recent call last):
    ...
    ValueError: a movie of 10 frames of 10^6 x 10^6 px needs 37253 GiB...
    """
    total = physical_memory_bytes()
    if total is not None and n_bytes > MEMORY_SHARE * total:
        raise ValueError(f"{what} needs {n_bytes / 2**30:.0f} GiB, more than half of this "
                         f"machine's {total / 2**30:.0f} GiB: is a size or pixel size wrong?")
