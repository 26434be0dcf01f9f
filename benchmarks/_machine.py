"""What every benchmark records about the machine, and its ``--threads`` budget, in one place.

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _machine

    _machine.add_threads_argument(ap)
    args = ap.parse_args(argv)
    threads = _machine.apply_threads(args.threads)
    print(_machine.describe_machine(threads), flush=True)
    ...
    print(_machine.load_line())

Standard library at import; numpy, scipy, threadpoolctl and neuroxr only when a function is called.
"""
from __future__ import annotations

import importlib.util
import os
import sys

#: the environment settings that change what BLAS and torch run (printed ``NAME=value`` or ``NAME=unset``)
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "THP_MEM_ALLOC_ENABLE")

THREADS_HELP = ("thread budget of the benchmark's own work: BLAS, torch intra-op, numba, the package's "
                "Gram threads, and Dask worker threads where the benchmark starts workers "
                "(default: the available cores, %(default)s here)")

_LIMITER = None  # the process-wide threadpoolctl limit of apply_threads, kept alive


def available_cores() -> int:
    from neuroxr.runtime import available_cores as cores

    return cores()


def add_threads_argument(ap, default: int | None = None, help_text: str | None = None):
    """Add ``--threads N`` to the parser ``ap`` (default: :func:`neuroxr.runtime.available_cores`)."""
    return ap.add_argument("--threads", type=int, default=available_cores() if default is None else default,
                           metavar="N", help=help_text or THREADS_HELP)


def _threads(n) -> int:
    """``n`` as a budget: at least 1; 0 or ``None`` mean the available cores."""
    return max(1, int(n)) if n else available_cores()


def apply_threads(n) -> int:
    """Set the thread budget ``n`` process-wide: BLAS/OpenMP (threadpoolctl), torch (if imported), numba.

    The threadpoolctl limit is kept for the life of the process.  Returns the budget (0 or
    ``None``: the available cores).
    """
    global _LIMITER
    n = _threads(n)
    import numpy  # noqa: F401 - load the BLAS libraries the limit applies to
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    _LIMITER = threadpool_limits(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    if importlib.util.find_spec("numba") is not None:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def describe_machine(threads, note: str = "") -> str:
    """One line: load average, available cores, ``--threads`` (with ``note``), BLAS libraries, environment."""
    import numpy  # noqa: F401 - load the BLAS libraries before asking threadpoolctl
    import scipy.linalg  # noqa: F401

    from neuroxr._boot import blas_kernels

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ENV_VARS)
    budget = f"--threads {threads}" + (f" ({note})" if note else "")
    return (f"load average {load}; {available_cores()} available cores; {budget}; "
            f"BLAS: {blas_kernels()} (library version kernel xthreads); {env}")


def load_line() -> str:
    """``load average after: a b c`` (the 1, 5 and 15 minute load averages)."""
    return "load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def dask_local(threads: int):
    """dask's local scheduler at ``threads`` threads (the synchronous one at 1), as a ``with`` block.

    The threaded scheduler is given as a callable, so that neuroxr's store writes (which run the
    plain threaded scheduler in a pool sized by the available cores) run in it too.
    """
    import functools

    import dask
    import dask.threaded

    if threads <= 1:
        return dask.config.set(scheduler="synchronous")
    return dask.config.set(scheduler=functools.partial(dask.threaded.get, num_workers=threads))


__all__ = ["ENV_VARS", "add_threads_argument", "apply_threads", "dask_local", "describe_machine", "load_line"]
