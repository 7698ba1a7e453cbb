"""The process's heap policy: memory that numpy frees stays in the process for the next epoch.

A pass of a scenario allocates and frees a few hundred MB of column arrays, epoch after epoch,
each a few MB. Under glibc's defaults the heap above a trim threshold is handed back to the
kernel when freed, and arrays above the (adaptive) mmap threshold are unmapped; the next
epoch's arrays are then page-faulted in afresh, every 4 KiB page zeroed by the kernel first
(about 12,000 faults a warm pass of `quick`). `keep_freed_memory()` raises both thresholds:
arrays below 32 MiB (glibc's ceiling for M_MMAP_THRESHOLD on 64-bit) come from the heap, and
the heap is trimmed only when more than 1 GiB at its top is free. Larger arrays are still
mapped and unmapped, so a run's peak memory is what it was; what changes is that the process
keeps up to 1 GiB it no longer uses, where the defaults would give it back.

Measured (README, generator section): ~12,000 page faults a warm pass of `quick` become ~0,
and warm passes run 5-10% faster; on a first pass, which must grow the heap anyway, the gain
is within this box's noise. `xpay` and the generator benchmark call it at start. It needs
glibc: elsewhere, or when `XPAY_DEFAULT_HEAP=1` is set, it changes nothing and returns False;
`kept()` tells whether the policy is in force in this process.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
ENV_DEFAULT_HEAP = "XPAY_DEFAULT_HEAP"


_state = {"kept": False}


def keep_freed_memory() -> bool:
    """Set the policy above; True when glibc took it (now or at an earlier call)."""
    if _state["kept"]:
        return True
    if os.environ.get(ENV_DEFAULT_HEAP, "") not in ("", "0"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mmap first: setting either threshold by hand also stops glibc adapting the other, and a
    # trim threshold alone would leave every array above 128 KiB to mmap
    _state["kept"] = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                          and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _state["kept"]


def kept() -> bool:
    """Whether `keep_freed_memory` is in force in this process."""
    return _state["kept"]
