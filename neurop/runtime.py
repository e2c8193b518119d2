"""Process-level runtime settings for training on CPUs.

On Linux with glibc, blocks above the malloc mmap threshold (128 KiB to 32 MiB, adjusted at run time) are
mapped fresh on every allocation and unmapped on release, and the top of the heap is trimmed back to the
kernel. A training step allocates and frees the same activation-sized tensors every step, so every step
pays page faults (and the kernel's zeroing) for memory it has just released: on one core, an FNO step at 64²
with batch 20 took ~24,000 minor faults and ~18 % of its CPU time for it. Keeping released memory in the
heap (no mmap for large blocks, no trimming) removes both after a few steps. The cost is memory: the
resident set stays at its high-water mark, and glibc's 64-byte-aligned allocations (torch's) leave the heap
growing for a few steps before freed blocks fit again: +4 % peak RSS for that FNO at 64², +10 % at 128²
(``scripts/bench_train.py`` prints both settings side by side). Preloading jemalloc or tcmalloc is the usual
way to get this effect; this needs no extra library.

``python train.py`` applies it on CPU runs (``cpu_allocator: retain`` in ``configs/train.yaml``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

CPU_ALLOCATORS: tuple[str, ...] = ("default", "retain")

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied: str = "default"


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (not musl)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure_cpu_allocator(mode: str = "retain") -> bool:
    """Set how this process's C allocator treats large blocks; returns whether the setting is in effect.

    Parameters
    ----------
    mode : {"retain", "default"}
        ``retain``: large blocks come from the heap and released memory stays there (glibc only; elsewhere
        nothing changes and ``False`` is returned). ``default``: leave the allocator as it is (a process
        already set to ``retain`` keeps that setting; ``False``).

    Raises
    ------
    ValueError
        For any other ``mode``.
    """
    global _applied
    if mode not in CPU_ALLOCATORS:
        raise ValueError(f"cpu_allocator must be one of {CPU_ALLOCATORS}, got {mode!r}")
    if mode == "default":
        return _applied == "retain"
    if _applied == "retain":
        return True
    libc = _glibc()
    if libc is None:
        log.info("cpu_allocator=retain needs glibc; the C allocator is left as it is")
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    if ok:
        _applied = "retain"
    return ok


def cpu_allocator() -> str:
    """The setting :func:`configure_cpu_allocator` has put in effect in this process."""
    return _applied


__all__ = ["CPU_ALLOCATORS", "configure_cpu_allocator", "cpu_allocator"]
