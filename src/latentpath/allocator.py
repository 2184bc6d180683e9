"""How this process's C library hands out memory: large blocks kept for reuse.

A training step of the skip-rVAE allocates and frees activations of tens of megabytes
(100 windows x 1,024 pixels x 256 units in bfloat16 is 52 MB) a few dozen times. glibc
serves every block above 32 MB with a fresh ``mmap`` and returns it to the system when
freed, so each step touches its activations' pages for the first time again: on the
2-core development CPU that page-faulting took a quarter of an eager training step.
Keeping freed blocks in the heap for the next step removes it (docs/benchmarks.md).

The setting belongs to a process, so the library never makes it on import: the
``latentpath`` command calls :func:`keep_large_blocks`, and so does the second
training process a STEM run starts (a process of the run's own, whoever started the
run); a notebook may call it too.
"""

from __future__ import annotations

import ctypes
import operator
import os

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size (1 GiB) come from the heap and freed memory up to it stays there
KEEP_BYTES = 1 << 30
#: mallopt takes a C int
_MAX_BYTES = 2**31 - 1


def has_glibc() -> bool:
    """Whether this process runs on the GNU C library, whose ``mallopt`` this module sets.

    Examples
    --------
    >>> has_glibc() in (True, False)
    True
    """
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def keep_large_blocks(keep_bytes: int = KEEP_BYTES) -> bool:
    """Let glibc reuse freed blocks of up to ``keep_bytes`` instead of unmapping them.

    Parameters
    ----------
    keep_bytes : int
        Blocks up to this size, in bytes (at most 2^31 - 1), are served from the heap,
        and up to this much freed memory at the heap's top stays with the process (its
        resident memory then stays near its peak instead of falling between steps).

    Returns
    -------
    bool
        Whether the setting was made: False where the C library is not glibc (macOS,
        Windows, musl), which is left as it is.

    Examples
    --------
    >>> keep_large_blocks() == has_glibc()
    True
    """
    # a bool is an int to Python, but True would mean one-byte blocks: every
    # allocation its own mapping, the opposite of what is asked
    if isinstance(keep_bytes, bool):
        raise ValueError(f"keep_bytes must be a whole number of bytes, got {keep_bytes!r}")
    try:
        size = operator.index(keep_bytes)
    except TypeError:
        raise ValueError(f"keep_bytes must be a whole number of bytes, got "
                         f"{keep_bytes!r}") from None
    if not 0 < size <= _MAX_BYTES:
        raise ValueError(f"keep_bytes must be from 1 to {_MAX_BYTES} bytes, got {size}")
    if not has_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, size))
