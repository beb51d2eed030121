"""How many CPUs this process may really use: the container's CPU limit, not the node's cores.

torch (and OpenMP) size their thread pools by the machine's core count; in a Kubernetes pod
with a CPU limit of 1 or 2 on a 32-core node that means dozens of threads that only get
throttled. The serving and training processes size their pools with :func:`cpu_threads`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cpu_quota(cgroup: str | Path = "/sys/fs/cgroup") -> int | None:
    """CPUs this container may use by its cgroup quota (Kubernetes' CPU limit, rounded up), or
    None when unlimited or unknown. Reads cgroup v2 ``cpu.max`` or v1 ``cpu/cpu.cfs_quota_us``."""
    import math

    root = Path(cgroup)
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": no limit
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def cpu_threads(processes: int = 1) -> int:
    """Threads per process when ``processes`` processes share this container's CPUs (>= 1)."""
    cpus = min(cpu_quota() or os.cpu_count() or 1, os.cpu_count() or 1)
    return max(1, cpus // max(1, processes))


def streaming_process() -> None:
    """Settings for a process that streams blocks through Arrow and numpy and does no linear
    algebra (the ingest, quality and sample steps' entry points, where they were measured).
    Call it first, before numpy or pyarrow is imported; a value the user set is kept; child
    processes inherit them.

    - ``OPENBLAS_NUM_THREADS=1``: when numpy is imported its OpenBLAS starts a thread per
      core that spins waiting for work before it sleeps, CPU taken from the parse and write
      threads at start-up; nothing here calls BLAS. (It does nothing once numpy is loaded.)
    - ``MIMALLOC_PURGE_DELAY=-1``, ``MIMALLOC_ALLOW_THP=0``: Arrow's allocator (mimalloc)
      hands freed pages back to the kernel and faults in fresh ones for the next block, and
      backs its arena with 2 MiB transparent huge pages that the kernel zeroes whole on first
      touch (5-8% of ingest's CPU in ``clear_page``); keeping freed pages costs no more
      memory than the peak, which the blocks in flight bound anyway, and 4 KiB pages lower
      the peak (~260 MB instead of ~285 MB).

    2M rows on 2 cores, alternating runs: ingest 3.08 instead of 3.23 CPU-s (docs/ingest.md),
    quality 5.82 instead of 6.06 CPU-s (docs/quality.md); sample (500,000 of 1.18M clean rows)
    2.01 instead of 2.50 s, 2.08 instead of 2.76 CPU-s.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
        os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")
