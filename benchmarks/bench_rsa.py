"""RSA of one layer, same answer both sides: rsatoolbox against neuroxr, alternating fresh processes.

rsatoolbox: ``calc_rdm(Dataset(X), method="correlation")`` and ``compare(model, neural, method="corr")``,
given X already cast to float64 (untimed; in float32 its rounding alone moves r by about 2e-6).
neuroxr: the raw Gram matrix and feature sums streamed over chunks (``GramAccumulator``),
``rsa.calc_rdm(K, "gram")`` and ``rsa.compare_rdms``.  Both get the same X (image, feature) and
the same neural RDM (from responses Y); ``max|dr|`` is printed beside the ratio.

Usage::

    python benchmarks/bench_rsa.py --p 1e6 --repeat 3 [--threads T]

``--threads T`` (default, or 0: the available cores) is each child's budget: BLAS, torch and numba
at T threads (threadpoolctl), and neuroxr's Gram accumulator on T threads (BLAS one inside it).
Standalone, the first line is the load, the thread settings and the BLAS kernels; the last the
load after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above

N_IMAGES, SEED = 118, 0


def make_data(p, n_neurons=500, n=N_IMAGES, seed=SEED):
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((n, p), dtype=np.float32) + 0.3, 0)
    Y = X[:, :200] @ rng.standard_normal((200, n_neurons), dtype=np.float32) + rng.standard_normal((n, n_neurons))
    return X, Y.astype(np.float64)


def child_rsatoolbox(p, threads):
    import rsatoolbox

    _machine.apply_threads(threads)
    X, Y = make_data(p)
    X = X.astype(np.float64)  # untimed: in float32 rsatoolbox's own rounding alone moves r by ~2e-6
    neural = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(Y), method="correlation")
    rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X[:, :1000]), method="correlation")  # warm-up
    t = time.perf_counter()
    model = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="correlation")
    r = float(rsatoolbox.rdm.compare(model, neural, method="corr")[0, 0])
    return {"time": time.perf_counter() - t, "r": r}


def child_neuroxr(p, threads):
    from neuroxr import rsa
    from neuroxr.mapping.gram import GramAccumulator

    threads = _machine.apply_threads(threads)
    X, Y = make_data(p)
    neural = rsa.calc_rdm(Y, "responses")
    GramAccumulator(N_IMAGES, zscored=False, backend="numpy").add(X[:, :1000])  # warm-up (kernel, pool)
    t = time.perf_counter()
    acc = GramAccumulator(N_IMAGES, zscored=False, n_threads=threads, backend="numpy")
    for s in range(0, p, 65536):
        acc.add(X[:, s:s + 65536])
    out = acc.result()
    model = rsa.calc_rdm(out["gram"], "gram", feature_sum=out["feature_sum"], n_features=p)
    r = float(np.asarray(rsa.compare_rdms(model, neural, "pearson", pairwise=False)).ravel()[0])
    return {"time": time.perf_counter() - t, "r": r}


CHILDREN = {"rsatoolbox": child_rsatoolbox, "neuroxr": child_neuroxr}


def run_child(kind, *args):
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(args)], capture_output=True,
                          text=True, timeout=1800, check=False)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_rsa(p, repeat, threads=0):
    """Alternating fresh processes; medians of ``repeat``: {"peer", "nxr", "ratio", "max_dr"}."""
    runs = {"rsatoolbox": [], "neuroxr": []}
    for _ in range(max(1, repeat)):
        for kind, rows in runs.items():
            rows.append(run_child(kind, p, threads))
    bad = [r for rs in runs.values() for r in rs if "error" in r]
    if bad:
        return {"error": bad[0]["error"]}
    peer = float(np.median([r["time"] for r in runs["rsatoolbox"]]))
    nxr = float(np.median([r["time"] for r in runs["neuroxr"]]))
    dr = max(abs(a["r"] - b["r"]) for a, b in zip(runs["rsatoolbox"], runs["neuroxr"]))
    return {"peer": peer, "nxr": nxr, "ratio": peer / nxr, "max_dr": dr}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", default="1e6")
    ap.add_argument("--repeat", type=int, default=3)
    _machine.add_threads_argument(ap, help_text=_machine.THREADS_HELP.replace("(default:", "(0 or default:"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("child_args", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](*json.loads(args.child_args))))
        return 0
    p = int(float(args.p))
    threads = _machine.apply_threads(args.threads)
    print(_machine.describe_machine(threads, f"each child: BLAS {threads}, neuroxr's Gram {threads} with BLAS 1"),
          flush=True)
    print(f"# bench_rsa: p={p}, load average {os.getloadavg()[0]:.1f}, threads {threads}")
    row = compare_rsa(p, args.repeat, threads)
    print(json.dumps(row))
    print(_machine.load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
