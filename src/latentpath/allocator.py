"""How this process's C library hands out memory: large blocks kept for reuse.

A training step of the skip-rVAE allocates and frees activations of tens of megabytes
(100 windows x 1,024 pixels x 256 units in bfloat16 is 52 MB) a few dozen times. glibc
serves every block above 32 MB with a fresh ``mmap`` and returns it to the system when
freed, so each step touches its activations' pages for the first time again: on the
2-core development CPU that page-faulting took a quarter of an eager training step.
Keeping freed blocks in the heap for the next step removes it (docs/benchmarks.md).

The setting belongs to a process, so the library never makes it on import: the
``latentpath`` command and the processes it starts call :func:`keep_large_blocks`;
a notebook may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap and freed memory up to it stays there
KEEP_BYTES = 1 << 30


def keep_large_blocks(keep_bytes: int = KEEP_BYTES) -> bool:
    """Let glibc reuse freed blocks of up to ``keep_bytes`` instead of unmapping them.

    Parameters
    ----------
    keep_bytes : int
        Blocks up to this size are served from the heap, and up to this much freed
        memory at the heap's top stays with the process (its resident memory then
        stays near its peak instead of falling between steps).

    Returns
    -------
    bool
        Whether the setting was made: False where the C library is not glibc (macOS,
        Windows, musl), which is left as it is.

    Examples
    --------
    >>> keep_large_blocks() in (True, False)
    True
    """
    if not isinstance(keep_bytes, int) or keep_bytes <= 0:
        raise ValueError(f"keep_bytes must be a positive whole number, got {keep_bytes!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, keep_bytes)
                and mallopt(_M_TRIM_THRESHOLD, keep_bytes))
