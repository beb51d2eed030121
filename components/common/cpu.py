"""How many CPUs this process may really use: the container's CPU limit, not the node's cores.

torch (and OpenMP) size their thread pools by the machine's core count; in a Kubernetes pod
with a CPU limit of 1 or 2 on a 32-core node that means dozens of threads that only get
throttled. The serving and training processes size their pools with :func:`cpu_threads`.
"""

from __future__ import annotations

import os
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
