"""Process-wide runtime state, in one place: CPU budget, BLAS thread limits, thread pools, warnings.

Everything here is shared by the whole process (threads, BLAS, the warnings filters), so every
module that needs it goes through these functions instead of keeping its own copy.

- :func:`available_cores`: the CPUs this process may use (affinity and cgroup CPU quota).
- :func:`single_threaded_blas`: one BLAS thread inside the enclosed block, re-entrant and safe
  from many threads (the first to enter sets the limit, the last to leave restores it).
- :func:`thread_pool`: one named, process-wide thread pool per purpose.
- :data:`WARNINGS_LOCK` and :func:`quiet_warnings`: ``warnings.catch_warnings`` swaps the
  process-wide filters, so two threads doing it at once can restore each other's state; every
  use holds this lock.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from threadpoolctl import threadpool_limits

__all__ = ["available_cores", "single_threaded_blas", "thread_pool", "running_thread_ids", "WARNINGS_LOCK",
           "quiet_warnings"]

#: held around every ``warnings.catch_warnings`` block of the package
WARNINGS_LOCK = threading.RLock()

_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0
_BLAS_LIMITER = None
_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by the cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


@contextlib.contextmanager
def single_threaded_blas():
    """Run the enclosed small matrix work with single-threaded BLAS, safely from many threads.

    n x n problems (n ~ 100) are far faster on one BLAS thread: a multi-threaded BLAS spends
    its time synchronising, badly so on a busy machine (an eigendecomposition of 117 x 117 took
    1 s instead of 2 ms here).  Parallelism comes from the caller's pool running blocks side by side.
    """
    global _BLAS_DEPTH, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_DEPTH == 0:
            _BLAS_LIMITER = threadpool_limits(1, user_api="blas")
        _BLAS_DEPTH += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0 and _BLAS_LIMITER is not None:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def thread_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process-wide pool called ``name`` with at least ``workers`` threads."""
    with _POOLS_LOCK:
        pool = _POOLS.get(name)
        if pool is None or pool._max_workers < workers:
            pool = _POOLS[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"nxr-{name}")
        return pool


def running_thread_ids(exclude=()) -> list[int]:
    """Native ids of this process's threads in state R (running or runnable), from ``/proc/self/task``
    (Linux), leaving out ``exclude``: what the thread budget is checked against."""
    skip = {int(t) for t in exclude}
    busy = []
    for tid in os.listdir("/proc/self/task"):
        if int(tid) in skip:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]  # after the name, which may hold ")"
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
        if state == "R":
            busy.append(int(tid))
    return busy


@contextlib.contextmanager
def quiet_warnings(category: type[Warning] = Warning):
    """Silence ``category`` warnings in the enclosed block, holding :data:`WARNINGS_LOCK`."""
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield
