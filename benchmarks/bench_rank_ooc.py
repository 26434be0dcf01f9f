"""Ranking a zoo's scores.zarr out of core: 10,000 layers x 60,000 neurons on a small LocalCluster.

    python benchmarks/bench_rank_ooc.py [--layers 10000] [--neurons 60000] [--layers-per-model 50]
                                        [--workers 2] [--memory-limit 3GB] [--n-boot 0]
                                        [--dir /work/tmp] [--keep] [--threads N]

Writes a synthetic ``scores.zarr`` (``ridge_r`` (layer, neuron) float32, chunks 256 x 8192 as
``neuroxr score`` stores them; ``rsa_r`` (layer, area) in ``areas``), generated block by block
from a seed so the writer never holds the array either, then ranks it with
:func:`neuroxr.stats.rank_models` on a LocalCluster of ``--workers`` workers of
``max(1, threads // workers)`` threads each (``--threads``: the budget; BLAS at one thread in the
workers, as Dask's nanny starts them; BLAS, torch and numba at ``--threads`` in this process) with
``--memory-limit`` each: the area means are dask reductions run on the workers, the bootstrap
over neurons (``--n-boot``) reads blocks of layers.  Printed: load, threads, BLAS, the store's
size, the write and rank times, the client's peak RSS, each worker's peak memory (as the workers
report it), and the check: for ``--check`` variants picked at random, the largest |difference|
between the ranking's scores and a NumPy float64 computation from those variants' rows read
straight from Zarr.  The store is deleted afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above

AREAS = ("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")


def _block(seed, b0, b1, n_neurons):
    """Rows ``b0:b1`` of the synthetic ridge r (deterministic per block)."""
    rng = np.random.default_rng([seed, b0])
    x = rng.normal(0.1, 0.1, (b1 - b0, n_neurons)).astype(np.float32)
    x[:, ::997] = np.nan  # a few neurons without a score
    return x


def write_store(path: Path, n_layers: int, n_neurons: int, per_model: int, seed: int = 0) -> float:
    import dask.array as da
    import xarray as xr

    from neuroxr import schema as S
    from neuroxr.io.store import replace_store
    from neuroxr.mapping.tree import SCORES_CHUNKS, build_scores_tree, write_scores

    t = time.perf_counter()
    rows = SCORES_CHUNKS[S.LAYER]
    blocks = [da.from_delayed(_delayed_block(seed, b, min(n_layers, b + rows), n_neurons),
                              shape=(min(n_layers, b + rows) - b, n_neurons), dtype=np.float32)
              for b in range(0, n_layers, rows)]
    ridge = da.concatenate(blocks, axis=0).rechunk({0: rows, 1: SCORES_CHUNKS[S.NEURON]})
    n_models = -(-n_layers // per_model)
    model = np.array([f"m{i // per_model:04d}" for i in range(n_layers)])
    depth = np.array([i % per_model for i in range(n_layers)])
    size = np.array([min(per_model, n_layers - (i // per_model) * per_model) for i in range(n_layers)])
    layer_coords = xr.Coordinates({
        S.LAYER: np.array([f"{m}|trained|l{d}" for m, d in zip(model, depth)]),
        "model": (S.LAYER, model), "weights": (S.LAYER, np.array(["trained"] * n_layers)),
        "family": (S.LAYER, np.array(["cnn"] * n_layers)), "layer_name": (S.LAYER, np.array([f"l{d}" for d in depth])),
        "depth": (S.LAYER, depth), "relative_depth": (S.LAYER, depth / np.maximum(1, size - 1)),
    })
    neuron = {S.NEURON: np.arange(n_neurons), "area": (S.NEURON, np.array([AREAS[i % 6] for i in range(n_neurons)]))}
    rsa = np.random.default_rng(seed + 1).normal(0.1, 0.05, (n_layers, len(AREAS)))
    tree = build_scores_tree(
        {"ridge_r": xr.DataArray(ridge, dims=(S.LAYER, S.NEURON), coords=neuron)},
        {"rsa_r": xr.DataArray(rsa, dims=(S.LAYER, S.AREA), coords={S.AREA: np.array(AREAS)})},
        layer_coords=layer_coords)
    _, tmp = write_scores(tree, path)
    replace_store(tmp, path)
    print(f"wrote {path}: {n_layers} layers ({n_models} models) x {n_neurons} neurons, "
          f"{_du(path) / 1e9:.2f} GB on disk, {time.perf_counter() - t:.1f} s", flush=True)
    return time.perf_counter() - t


def _delayed_block(seed, b0, b1, n):
    import dask

    return dask.delayed(_block)(seed, b0, b1, n)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _worker_peak():
    import psutil

    p = psutil.Process()
    return getattr(p.memory_full_info(), "uss", p.memory_info().rss), \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check(path: Path, ranking, n_check: int, seed: int = 0) -> float:
    """Largest |score - float64 NumPy from the variants' rows read from Zarr| over ``n_check`` variants."""
    import zarr

    arr = zarr.open_array(str(path / "ridge_r"), mode="r")
    area = np.array([AREAS[i % 6] for i in range(arr.shape[1])])
    reg = ranking[ranking.metric == "ridge"]
    variants = sorted(reg.variant.unique())
    pick = np.random.default_rng(seed).choice(len(variants), size=min(n_check, len(variants)), replace=False)
    worst = 0.0
    for v in np.asarray(variants)[pick]:
        m = int(v.split(":")[0][1:])
        per = reg[reg.variant == v]
        rows = np.asarray(arr[m * PER_MODEL:(m + 1) * PER_MODEL], dtype=np.float64)
        means = {a: np.nanmean(rows[:, area == a], axis=1) for a in AREAS}
        for a in AREAS:
            worst = max(worst, abs(float(per[per.area == a].score.iloc[0]) - means[a].max()))
        worst = max(worst, abs(float(per[per.area == "all"].score.iloc[0]) - np.mean([means[a] for a in AREAS],
                                                                                      axis=0).max()))
    return worst


PER_MODEL = 50


def main(argv=None):
    global PER_MODEL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=10_000)
    ap.add_argument("--neurons", type=int, default=60_000)
    ap.add_argument("--layers-per-model", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples (default 0: the scores only)")
    ap.add_argument("--check", type=int, default=20, help="variants checked against NumPy (default 20)")
    ap.add_argument("--dir", default=None, help="where the store goes (default: a temp dir under /work/tmp or /tmp)")
    ap.add_argument("--keep", action="store_true")
    _machine.add_threads_argument(ap)
    args = ap.parse_args(argv)
    args.threads = _machine.apply_threads(args.threads)
    per_worker = max(1, args.threads // args.workers)
    PER_MODEL = args.layers_per_model
    from distributed import Client, LocalCluster

    from neuroxr import stats
    from neuroxr.mapping.tree import open_scores

    print(_machine.describe_machine(args.threads, f"{args.workers} workers x {per_worker} threads, BLAS 1 in the "
                                                  "workers"), flush=True)
    base = Path(args.dir or ("/work/tmp" if Path("/work").exists() else "/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    work = base / f"bench-rank-ooc-{os.getpid()}"
    path = work / "scores.zarr"
    print(f"disk free at {base}: {shutil.disk_usage(base).free / 1e9:.1f} GB; "
          f"array {args.layers * args.neurons * 4 / 1e9:.1f} GB as float32", flush=True)
    try:
        with LocalCluster(n_workers=args.workers, threads_per_worker=per_worker, memory_limit=args.memory_limit,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            t_write = write_store(path, args.layers, args.neurons, args.layers_per_model)
            client.run(lambda: None)
            t = time.perf_counter()
            scores = open_scores(path)
            ranking = stats.rank_models(scores, n_boot=args.n_boot, seed=0)
            t_rank = time.perf_counter() - t
            peaks = client.run(_worker_peak)
            worst = check(path, ranking, args.check)
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"rank: {len(ranking)} rows in {t_rank:.1f} s (write {t_write:.1f} s), n_boot {args.n_boot}; "
              f"client peak RSS {client_peak:.2f} GB; workers' peak RSS "
              + ", ".join(f"{v[1] / 1e9:.2f} GB" for v in peaks.values())
              + f" (limit {args.memory_limit} each); whole array {args.layers * args.neurons * 8 / 1e9:.1f} GB "
              f"as float64; max |score - NumPy float64| over {args.check} variants {worst:.1e}", flush=True)
        print("top 3 overall:\n" + stats.select_ranking(ranking).head(3)[["model", "score", "best_layer"]]
              .to_string(index=False), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(_machine.load_line())


if __name__ == "__main__":
    main()
