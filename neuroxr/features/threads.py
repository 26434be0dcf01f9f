"""The thread budget of an extraction, set in one place.

An extraction runs two kinds of work, one after the other: forward passes (torch's intra-op
threads) and the Gram accumulation (:class:`~neuroxr.mapping.gram.GramAccumulator`'s threads,
each calling BLAS SYRK).  :func:`extraction_threads` gives both the same budget, the CPUs the
process may use (:func:`neuroxr.runtime.available_cores`, shared among the threads of a Dask
worker), and keeps BLAS at one thread meanwhile, so the busy threads never exceed it: no BLAS
pool nested inside the accumulator's threads, no torch pool sized for CPUs the process does
not have.
"""
from __future__ import annotations

import contextlib

import torch
from .._boot import blas_kernels
from ..runtime import available_cores, single_threaded_blas


def _worker_threads() -> int:
    """Threads of the Dask worker running this code (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def thread_budget(threads: int | None = None) -> int:
    """Busy threads one extraction may use: ``threads``, or the available cores over the worker's threads."""
    if threads:
        return max(1, int(threads))
    return max(1, available_cores() // _worker_threads())


@contextlib.contextmanager
def extraction_threads(threads: int | None = None):
    """Inside the block torch runs ``thread_budget(threads)`` intra-op threads and BLAS one; yields the budget.

    The budget is what the Gram accumulator's ``n_threads`` gets.  torch's previous setting is
    restored on the way out.
    """
    n = thread_budget(threads)
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        with single_threaded_blas():
            yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def describe_threads(n: int) -> str:
    """One line for a log: the budget, torch's threads and the BLAS libraries' kernels and threads (threadpoolctl)."""
    return f"{n} thread(s) (torch {torch.get_num_threads()}, Gram {n}, BLAS: {blas_kernels()})"


__all__ = ["thread_budget", "extraction_threads", "describe_threads"]
