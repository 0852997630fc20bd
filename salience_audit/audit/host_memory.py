"""Hand freed host memory back to the operating system between runs of a batch.

On the CPU, PyTorch's tensors live in the C library's heap. glibc's ``malloc`` raises its
mmap threshold after large blocks are freed, so later activations of a few MiB come from the
heap and, once freed, stay mapped to the process: the peak resident memory of a DenseNet-121
audit of 16 images x 10 runs then varied between 1.4 and 1.8 GiB from one identical run to
the next (``benchmarks/bench_gpu.py --memory``), while the memory the audit actually held at
once was under 1.4 GiB. ``malloc_trim(0)`` after each run's passes returns the free pages of
every arena, so the peak follows what the audit holds. No library does this for a process
(it is one glibc call), hence this module; where there is no glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library, or none found)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def return_freed_memory() -> bool:
    """Return the heap's free pages to the operating system; True when glibc did (it had some to return)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
