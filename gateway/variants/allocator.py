"""glibc's allocator while a VCF is parsed: keep freed memory for the next record instead of returning it at once.

Dask's nanny starts every worker with `MALLOC_TRIM_THRESHOLD_=65536` (`distributed.nanny.pre-spawn-environ`) and
leaves it in its own environment, so processes spawned later inherit it too (the gateway's own LocalCluster,
`distributed_ingest.local_cluster`, puts the caller's environment back; a caller's own cluster may not).
Setting that variable fixes glibc's thresholds, which otherwise adapt to the program: then every numpy temporary
and every line of a wide VCF (100 KB at 25,000 samples) above 128 KB is mmapped and unmapped, and freed heap above
64 KB goes back to the system, to be faulted in again at the next record. Measured on one 1,528-record partition at 25,000 samples:
≈ 270,000 page faults and +0.45 s of system CPU (+25 %) with the variable, ≈ 1,000 and 0.03 s without
(docs/SCALING.md). While a parse runs, `kept_freed_memory` sets the thresholds glibc would adapt up to; after it,
the worker's own setting comes back and what was kept is returned (Dask's memory accounting stays right).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
PARSE_MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for its adaptive threshold on 64-bit systems
PARSE_TRIM_THRESHOLD = 64 << 20  # twice that, as glibc adapts it
DEFAULT_THRESHOLD = 128 << 10  # glibc's initial value of both


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def fixed_thresholds() -> dict[str, int]:
    """The thresholds this process's environment fixed (glibc reads them at start-up); {} when it adapts."""
    fixed = {}
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        value = os.environ.get(name, "")
        if value.isdigit():
            fixed[name] = int(value)
    return fixed


@contextlib.contextmanager
def kept_freed_memory() -> Iterator[None]:
    """Parse with the adaptive thresholds' ceilings when the environment fixed low ones; nothing otherwise."""
    fixed = fixed_thresholds()
    libc = _libc() if fixed else None
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, PARSE_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, PARSE_TRIM_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, fixed.get("MALLOC_MMAP_THRESHOLD_", DEFAULT_THRESHOLD))
        libc.mallopt(M_TRIM_THRESHOLD, fixed.get("MALLOC_TRIM_THRESHOLD_", DEFAULT_THRESHOLD))
        libc.malloc_trim(0)
