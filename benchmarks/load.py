"""A steady background load for the "loaded machine" runs of the benchmarks: other work on the cores.

    python benchmarks/load.py --procs 2 --seconds 1800 &
    python benchmarks/bench_extract.py ...     # measured beside it; each benchmark prints the load
    kill %1

Each process multiplies two 512 x 512 float64 matrices in a loop on one BLAS thread (what another
user's NumPy job does), so on a 2-core machine ``--procs 2`` adds about 2 to the load average.  The
processes stop by themselves after ``--seconds``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time


def _busy(seconds: float, parent: int) -> None:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(os.getpid()).standard_normal((512, 512))
    end = time.monotonic() + seconds
    with threadpool_limits(1):
        while time.monotonic() < end and os.getppid() == parent:  # stops when load.py is killed
            a = a @ a
            a /= np.abs(a).max()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2, help="busy processes (default 2)")
    ap.add_argument("--seconds", type=float, default=1800, help="how long they run (default 1800)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` ends the busy processes too
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_busy, args=(args.seconds, os.getpid()), daemon=True) for _ in range(args.procs)]
    for p in procs:
        p.start()
    print(f"load.py: {args.procs} busy processes for {args.seconds:.0f} s (pids {[p.pid for p in procs]})", flush=True)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
