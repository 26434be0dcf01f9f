"""Many images: the leave-one-out ridge's two routes, the cost model's choice and what each costs.

One layer of ``--p`` features over ``--n`` images (default 5,000) and ``--neurons`` (default
8,000).  Each child is a fresh process running one route on the same data (generated from the
seed in every child), the routes alternating, ``--repeat`` times (medians printed):

- gram: the z-scored Gram matrix ``K`` (n x n; the features store's ``gram_z``), then the
  Householder-restricted eigendecomposition, the residual operator and the blocked
  leave-one-out kernel (what ``ridge`` runs);
- features: :func:`neuroxr.mapping.feature_ridge.calc_loo_scores_features` (p x p, no n x n).

``--threads N`` (default: the available cores) is each child's budget: BLAS/OpenMP at N threads
(``threadpool_limits(N)`` and ``OMP/OPENBLAS/MKL_NUM_THREADS=N``), the Gram matrix on N threads.

Printed: the load average, thread settings and threadpoolctl's BLAS; the cost model's predicted
flops and bytes of each route and its choice; per route the wall time (Gram build and scoring
apart), the peak traced memory of the scoring (tracemalloc: numpy reports its buffers) and the
peak RSS; the ratio gram / features and max |dr| between the routes' r (the same answer).

Usage::

    python benchmarks/bench_many_images.py                       # n=5000, p=1000, 8000 neurons
    python benchmarks/bench_many_images.py --p 4096 --repeat 3   # the paper's projection width
    python benchmarks/bench_many_images.py --threads 1           # single-threaded routes
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above

SEED = 0


def make_data(n, p, n_neurons, seed=SEED):
    """X (image, feature) float32 ReLU-like; Y (image, neuron) float32 driven by 50 features plus noise."""
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((n, p), dtype=np.float32) + 0.3, 0)
    k = min(50, p)
    Y = X[:, :k] @ (rng.standard_normal((k, n_neurons), dtype=np.float32) / np.sqrt(k))
    Y += 2.0 * rng.standard_normal((n, n_neurons), dtype=np.float32)
    return X, Y


def child(route, n, p, n_neurons, alpha, out, threads):
    from threadpoolctl import threadpool_limits

    from neuroxr.mapping import feature_ridge, kernels
    from neuroxr.mapping.gram import calc_zscored_gram

    X, Y = make_data(n, p, n_neurons)
    Y = Y.astype(np.float64)
    res = {}
    with threadpool_limits(threads):
        # warm-up on a tiny problem (imports, BLAS start-up) outside the timing
        Xw, Yw = make_data(40, 8, 4)
        kernels.calc_loo_scores(kernels.calc_residual_operators(calc_zscored_gram(Xw)[None], (alpha,)), Yw * 1.0)
        feature_ridge.calc_loo_scores_features(Xw[None], Yw * 1.0, (alpha,))
        tracemalloc.start()
        t0 = time.perf_counter()
        if route == "gram":
            K = calc_zscored_gram(X, n_threads=threads, backend="numpy")
            res["build_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            r = kernels.calc_loo_scores(kernels.calc_residual_operators(K[None], (alpha,)), Y)[0, 0]
            res["score_s"] = time.perf_counter() - t1
        else:
            res["build_s"] = 0.0
            r = feature_ridge.calc_loo_scores_features(X[None], Y, (alpha,))[0, 0]
            res["score_s"] = time.perf_counter() - t0
        res["total_s"] = time.perf_counter() - t0
        res["peak_traced_mib"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    res["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out, r)
    print(json.dumps(res))


def header(threads):
    from threadpoolctl import threadpool_info

    print(_machine.describe_machine(threads, f"children: threadpool_limits({threads}), "
                                             f"OMP/OPENBLAS/MKL_NUM_THREADS={threads}, Gram {threads}"), flush=True)
    for lib in threadpool_info():
        print(f"  blas: {lib.get('internal_api')} {lib.get('version')} kernel={lib.get('architecture')} "
              f"threads={lib.get('num_threads')} ({Path(lib.get('filepath', '')).name})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5_000)
    ap.add_argument("--p", type=int, default=1_000)
    ap.add_argument("--neurons", type=int, default=8_000)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["gram", "features"])
    ap.add_argument("--out")
    _machine.add_threads_argument(ap)
    a = ap.parse_args(argv)
    a.threads = _machine.apply_threads(a.threads)
    if a.child:
        return child(a.child, a.n, a.p, a.neurons, a.alpha, a.out, a.threads)
    from neuroxr.mapping import feature_ridge

    header(a.threads)
    costs = feature_ridge.calc_route_costs(a.n, a.p, a.neurons, 1, gram_given=False)
    choice = feature_ridge.choose_ridge_route(a.n, a.p, a.neurons, 1)
    for k, v in costs.items():
        print(f"cost model {k:8s}: {v['flops'] / 1e9:9.1f} GFLOP {v['bytes'] / 2 ** 20:9.1f} MiB")
    print(f"cost model chooses: {choice}   (n={a.n}, p={a.p}, neurons={a.neurons}, alpha={a.alpha})")
    t = str(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)
    runs = {"gram": [], "features": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeat):
            for route in (("gram", "features") if rep % 2 == 0 else ("features", "gram")):
                out = Path(tmp) / f"{route}{rep}.npy"
                cmd = [sys.executable, __file__, "--child", route, "--n", str(a.n), "--p", str(a.p),
                       "--neurons", str(a.neurons), "--alpha", str(a.alpha), "--out", str(out), "--threads", t]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                res = json.loads(done.stdout.strip().splitlines()[-1])
                res["r"] = np.load(out)
                runs[route].append(res)
                print(f"  rep {rep} {route:8s}: total {res['total_s']:7.2f} s (build {res['build_s']:6.2f} s, "
                      f"score {res['score_s']:7.2f} s), peak traced {res['peak_traced_mib']:8.1f} MiB, "
                      f"max RSS {res['max_rss_mib']:8.1f} MiB   load {os.getloadavg()[0]:.2f}", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("total_s", "score_s", "peak_traced_mib",
                                                              "max_rss_mib")} for k, v in runs.items()}
    dr = max(float(np.nanmax(np.abs(g["r"] - f["r"]))) for g in runs["gram"] for f in runs["features"])
    g, f = med["gram"], med["features"]
    print(f"medians of {a.repeat}: gram {g['total_s']:.2f} s / {g['peak_traced_mib']:.0f} MiB traced / "
          f"{g['max_rss_mib']:.0f} MiB RSS; features {f['total_s']:.2f} s / {f['peak_traced_mib']:.0f} MiB traced / "
          f"{f['max_rss_mib']:.0f} MiB RSS")
    print(f"ratio gram/features: time {g['total_s'] / f['total_s']:.2f}x (scoring only "
          f"{g['score_s'] / f['score_s']:.2f}x), peak traced memory {g['peak_traced_mib'] / f['peak_traced_mib']:.2f}x; "
          f"same answer: max |dr| = {dr:.2e}; the cost model chose {choice}")
    print(_machine.load_line())


if __name__ == "__main__":
    main()
