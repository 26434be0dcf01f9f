"""Scale: score a simulated study of 60,000 neurons x 118 images against 10,000 layers.

Writes a study whose responses are random (neuron, image) and whose features are synthetic
Gram matrices (``gram``, ``gram_z``, ``feature_sum``: the ``features/<model>.zarr`` layout that
``neuroxr score`` reads), split over ``--models`` stores, then runs ``neuroxr score`` (ridge and
RSA, the default metrics) on a LocalCluster of ``--workers`` processes limited to
``--memory-limit`` each, and prints the wall time and the peak resident memory of every worker
(ru_maxrss, read on the workers after the run) and of the client process.

A spot check compares ``ridge_r`` of a few random (layer, neuron) pairs with an independent
brute-force reference (scikit-learn ``Ridge`` refit on n - 1 images).

    python benchmarks/bench_scale.py                       # the full scale (60,000 x 10,000)
    python benchmarks/bench_scale.py --neurons 6000 --layers 1000 --models 10   # reduced

``--threads N`` is the run's budget: each of the ``--workers`` processes runs
``max(1, N // workers)`` Dask threads (BLAS at one thread in the workers, as Dask's nanny starts
them); this process (inputs, spot check) runs BLAS, torch and numba at N.  The first line is the
load, the thread settings and the BLAS kernels; the last the load after.

The machine may be shared: times are wall times of this run only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above


def write_responses(study: Path, n_neurons: int, n_images: int, seed: int) -> None:
    from neuroxr.io.arrays import ingest_arrays

    rng = np.random.default_rng(seed)
    # neurons driven by a few latent image features plus noise, so r is not all ~0
    latent = rng.standard_normal((n_images, 16)).astype("f4")
    resp = np.empty((n_images, n_neurons), dtype="f4")
    step = 20_000
    for lo in range(0, n_neurons, step):
        hi = min(n_neurons, lo + step)
        w = rng.standard_normal((16, hi - lo)).astype("f4")
        resp[:, lo:hi] = latent @ w + 2.0 * rng.standard_normal((n_images, hi - lo)).astype("f4")
    areas = np.array(["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam"])[np.arange(n_neurons) % 6]
    import pandas as pd

    meta = pd.DataFrame({"area": areas, "cre_line": "Cux2-CreERT2", "depth_um": 175.0})
    ingest_arrays(study, responses=resp, neurons=meta)
    np.save(study / "_latent.npy", latent)


def write_features(study: Path, n_layers: int, n_models: int, n_images: int, n_features: int, seed: int) -> None:
    """Synthetic per-layer Gram matrices from small random feature matrices (exact Grams of them)."""
    from neuroxr import schema as S
    from neuroxr.io import store

    latent = np.load(study / "_latent.npy").astype("f8")
    per = -(-n_layers // n_models)
    done = 0
    for m in range(n_models):
        k = min(per, n_layers - done)
        if k <= 0:
            break
        rng = np.random.default_rng([seed, m])
        gram = np.empty((k, n_images, n_images), "f8")
        gram_z = np.empty_like(gram)
        fsum = np.empty((k, n_images), "f8")
        for i in range(k):
            mix = rng.standard_normal((latent.shape[1], n_features)) * (i + 1) / k
            X = latent @ mix + rng.standard_normal((n_images, n_features)) + rng.random(n_features)
            sd = X.std(0)
            Z = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
            gram[i], gram_z[i], fsum[i] = X @ X.T, Z @ Z.T, X.sum(1)
        model = f"synth{m:04d}"
        names = [f"layer{i:04d}" for i in range(k)]
        ds = xr.Dataset(
            {"gram": ((S.LAYER, S.IMAGE, S.IMAGE_J), gram), "gram_z": ((S.LAYER, S.IMAGE, S.IMAGE_J), gram_z),
             "feature_sum": ((S.LAYER, S.IMAGE), fsum)},
            coords={S.LAYER: [S.layer_id(model, "random", n) for n in names], "model": (S.LAYER, [model] * k),
                    "layer_name": (S.LAYER, names), "depth": (S.LAYER, np.arange(k)),
                    "relative_depth": (S.LAYER, np.arange(k) / max(1, k - 1)),
                    "weights": (S.LAYER, ["random"] * k), "family": (S.LAYER, ["baseline"] * k),
                    "n_features": (S.LAYER, np.full(k, n_features)), S.IMAGE: np.arange(n_images),
                    S.IMAGE_J: np.arange(n_images)},
            attrs=store.provenance({"synthetic": True, "seed": seed}, {}),
        )
        store.write_dataset(ds, study / S.FEATURES_DIR / f"{model}.zarr", chunks={S.LAYER: 64})
        done += k


def spot_check(study: Path, n: int = 5, seed: int = 1) -> float:
    """Max |r - reference r| over a few (layer, neuron) pairs; reference: sklearn Ridge refits."""
    from sklearn.linear_model import Ridge

    from neuroxr import open_study

    st = open_study(study)
    sc = st.scores
    rng = np.random.default_rng(seed)
    worst = 0.0
    resp = st.responses["mean"]
    for _ in range(n):
        li = int(rng.integers(sc.sizes["layer"]))
        ni = int(rng.integers(sc.sizes["neuron"]))
        lid = str(sc.layer.values[li])
        model = lid.split("|")[0]
        K = st.features(model)["gram_z"].sel(layer=lid).values
        w, V = np.linalg.eigh(K)
        X = V * np.sqrt(np.clip(w, 0, None))  # X X^T = K
        y = resp.sel(neuron=sc.neuron.values[ni]).values.astype("f8")
        pred = np.empty_like(y)
        for i in range(len(y)):
            tr = np.arange(len(y)) != i
            pred[i] = Ridge(alpha=1.0, solver="svd").fit(X[tr], y[tr]).predict(X[i:i + 1])[0]
        ref = np.corrcoef(pred, y)[0, 1]
        got = float(sc.ridge_r.isel(layer=li, neuron=ni).values)
        worst = max(worst, abs(got - ref))
    return worst


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", type=int, default=60_000)
    ap.add_argument("--images", type=int, default=118)
    ap.add_argument("--layers", type=int, default=10_000)
    ap.add_argument("--models", type=int, default=100, help="features stores the layers are split over")
    ap.add_argument("--features", type=int, default=64, help="features per synthetic layer (only shapes K)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--metric", action="append", default=None, help="default: ridge and rsa")
    ap.add_argument("--layer-chunk", type=int, default=8)
    ap.add_argument("--neuron-chunk", type=int, default=8192)
    ap.add_argument("--dir", default=None, help="where to build the study (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true")
    _machine.add_threads_argument(ap)
    args = ap.parse_args(argv)
    args.threads = _machine.apply_threads(args.threads)
    per_worker = max(1, args.threads // args.workers)
    print(_machine.describe_machine(args.threads, f"{args.workers} workers x {per_worker} threads, BLAS 1 in the "
                                                  "workers; BLAS that many in this process"), flush=True)

    from neuroxr.cluster import get_client, measure_worker_peak_rss
    from neuroxr.mapping.score import score_study

    root = Path(args.dir or tempfile.mkdtemp(prefix="nxr-scale-"))
    study = root / "study"
    if study.exists():
        shutil.rmtree(study)
    print(f"study {study}: {args.neurons} neurons x {args.images} images, {args.layers} layers in "
          f"{args.models} features stores; {args.workers} workers x {args.memory_limit}; cpus {os.cpu_count()}")
    t0 = time.perf_counter()
    write_responses(study, args.neurons, args.images, seed=0)
    write_features(study, args.layers, args.models, args.images, args.features, seed=0)
    t_build = time.perf_counter() - t0
    print(f"build inputs:   {t_build:8.1f} s (responses + synthetic Gram matrices)")

    metrics = tuple(args.metric or ("ridge", "rsa"))
    with get_client(workers=args.workers, memory_limit=args.memory_limit, threads_per_worker=per_worker,
                    dashboard_address="127.0.0.1:0") as client:
        cpu0 = client.run(_cpu_seconds)
        t0 = time.perf_counter()
        path = score_study(study, metrics=metrics, client=client, layer_chunk=args.layer_chunk,
                           neuron_chunk=args.neuron_chunk)
        t_score = time.perf_counter() - t0
        cpu = {a: v - cpu0.get(a, 0.0) for a, v in client.run(_cpu_seconds).items()}
        peaks = measure_worker_peak_rss(client)
        limits = {a: w.get("memory_limit") for a, w in client.scheduler_info()["workers"].items()}
    client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ds = xr.open_zarr(path)
    print(f"score:          {t_score:8.1f} s  -> {path} ({dict(ds.sizes)})")
    print(f"throughput:     {ds.sizes['layer'] * ds.sizes['neuron'] / t_score / 1e6:8.2f} M (layer, neuron) r values per second")
    print(f"worker CPU:     {sum(cpu.values()):8.1f} s in total ({', '.join(f'{v:.1f}' for v in cpu.values())}); "
          f"{sum(cpu.values()) / ds.sizes['layer'] * 1e3:.1f} ms per layer against {ds.sizes['neuron']} neurons")
    for a in sorted(peaks):
        lim = limits.get(a) or 0
        print(f"worker {a}: peak RSS {peaks[a] / 2**30:6.2f} GiB (limit {lim / 2**30:.2f} GiB, "
              f"{peaks[a] / lim if lim else float('nan'):.0%} of it)")
    print(f"client process: peak RSS {client_peak / 2**30:6.2f} GiB")
    err = spot_check(study)
    print(f"spot check:     max |r - sklearn refit r| over 5 (layer, neuron) pairs = {err:.2e}")
    print(json.dumps({"neurons": args.neurons, "images": args.images, "layers": args.layers, "models": args.models,
                      "workers": args.workers, "threads_per_worker": per_worker, "threads": args.threads,
                      "memory_limit": args.memory_limit, "build_s": round(t_build, 1),
                      "score_s": round(t_score, 1), "worker_cpu_s": round(sum(cpu.values()), 1),
                      "worker_peak_gib": {a: round(v / 2**30, 3) for a, v in peaks.items()},
                      "client_peak_gib": round(client_peak / 2**30, 3), "spot_check_max_abs_diff": err}))
    if not args.keep and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print(_machine.load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
