"""Split-half reliability out of core: 60,000 neurons x 118 images x 50 trials under 4 GB.

Run (the numbers in the issue-2 note came from this command)::

    /work/venv/bin/python benchmarks/bench_reliability.py --n-neurons 60000 --workdir /tmp/bench_rel [--threads N]

Steps, each measured in a fresh child process (peak memory = the child's ``ru_maxrss``):

1. ``make``: write simulated trials (neuron, image, trial) float32 to a Zarr store, chunk by
   chunk (neuron chunks of 2048; some images NaN-padded as in the Allen sessions).
2. ``dask``: ``calc_splithalf_reliability`` on the lazily opened store (100 splits), computed
   with dask's threaded scheduler: time and peak RSS against the size of the trials.
3. ``numpy``: the same function on an in-memory subset (``--subset`` neurons) for the per-neuron
   rate, and a plain per-neuron loop (``np.corrcoef`` per split, ``--loop`` neurons) for the
   speed-up of the vectorised route; both agree with the dask result on those neurons.

``--threads N`` is every step's budget: dask's threaded scheduler runs N threads (synchronous at
1) with BLAS at one thread inside it; outside dask (the numpy step) BLAS runs N threads.  The
first line is the load, the thread settings and the BLAS kernels; the last the load after.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above

N_IMAGES, N_TRIALS, CHUNK = 118, 50, 2048


def make(path: Path, n_neurons: int, threads: int, seed: int = 0):
    import dask.array as da
    import xarray as xr
    from threadpoolctl import threadpool_limits

    from neuroxr.io.store import write_dataset

    def block(block_info=None):
        loc = block_info[None]["array-location"][0]
        n = loc[1] - loc[0]
        rng = np.random.default_rng([seed, loc[0]])
        signal = rng.normal(size=(n, N_IMAGES, 1))
        noise = rng.uniform(0.2, 8.0, size=(n, 1, 1))
        x = (signal + noise * rng.normal(size=(n, N_IMAGES, N_TRIALS))).astype(np.float32)
        x[:, 5, 47:] = np.nan  # images shown fewer times
        x[:, 60, 49:] = np.nan
        return x

    chunks = (tuple(min(CHUNK, n_neurons - s) for s in range(0, n_neurons, CHUNK)), (N_IMAGES,), (N_TRIALS,))
    trials = da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    ds = xr.Dataset({"trials": (("neuron", "image", "trial"), trials)},
                    coords={"neuron": np.arange(n_neurons), "image": np.arange(N_IMAGES)})
    with _machine.dask_local(threads), threadpool_limits(1, user_api="blas"):
        write_dataset(ds, path, overwrite=True, chunks={"neuron": CHUNK})


def run_dask(path: Path, out: Path, threads: int):
    from threadpoolctl import threadpool_limits

    from neuroxr.io.store import open_dataset
    from neuroxr.responses import calc_splithalf_reliability

    ds = open_dataset(path)
    t = time.perf_counter()
    with _machine.dask_local(threads), threadpool_limits(1, user_api="blas"):
        r = calc_splithalf_reliability(ds["trials"], n_splits=100, seed=0).values
    dt = time.perf_counter() - t
    np.save(out, r)
    return {"seconds": dt, "n": int(r.size), "nan": int(np.isnan(r).sum())}


def run_numpy(path: Path, out: Path, subset: int, loop: int):
    import xarray as xr

    from neuroxr.io.store import open_dataset
    from neuroxr.responses import calc_splithalf_reliability, draw_split_keys

    x = open_dataset(path)["trials"][:subset].values
    t = time.perf_counter()
    r = calc_splithalf_reliability(xr.DataArray(x, dims=("neuron", "image", "trial")), 100, 0).values
    dt_vec = time.perf_counter() - t
    keys = draw_split_keys(100, N_IMAGES, N_TRIALS, 0)
    t = time.perf_counter()
    ref = np.empty(loop)
    for n in range(loop):  # the straightforward way: per neuron, per split, per image
        vals = []
        for s in range(100):
            a, b = [], []
            for i in range(N_IMAGES):
                tr = x[n, i][np.argsort(keys[s, i])]
                tr = tr[np.isfinite(tr)]
                h = len(tr) // 2
                a.append(tr[:h].mean())
                b.append(tr[h:].mean())
            rr = np.corrcoef(a, b)[0, 1]
            vals.append(2 * rr / (1 + rr))
        ref[n] = np.mean(vals)
    dt_loop = time.perf_counter() - t
    full = np.load(out)
    return {"subset": subset, "seconds_vectorised": dt_vec, "loop": loop, "seconds_loop": dt_loop,
            "max_diff_loop": float(np.abs(ref - r[:loop]).max()),
            "max_diff_dask": float(np.nanmax(np.abs(full[:subset] - r)))}


def _child(step, args):
    cmd = [sys.executable, __file__, "--step", step, "--n-neurons", str(args.n_neurons), "--workdir",
           str(args.workdir), "--subset", str(args.subset), "--loop", str(args.loop), "--threads", str(args.threads)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"step {step} failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_rss_gb"] = res.pop("_maxrss_kb") / 1024 ** 2
    res["wall_seconds"] = wall
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-neurons", type=int, default=60000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/neuroxr-bench-reliability"))
    ap.add_argument("--subset", type=int, default=2048)
    ap.add_argument("--loop", type=int, default=20)
    ap.add_argument("--step", choices=["make", "dask", "numpy"], help=argparse.SUPPRESS)
    _machine.add_threads_argument(ap)
    args = ap.parse_args()
    args.threads = _machine.apply_threads(args.threads)
    store = args.workdir / "trials.zarr"
    out = args.workdir / "reliability.npy"
    if args.step:
        if args.step == "make":
            res = make(store, args.n_neurons, args.threads) or {}
        elif args.step == "dask":
            res = run_dask(store, out, args.threads)
        else:
            res = run_numpy(store, out, args.subset, args.loop)
        res["_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(res))
        return
    print(_machine.describe_machine(args.threads, "dask threads with BLAS 1 inside; BLAS that many outside dask"),
          flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw_gb = args.n_neurons * N_IMAGES * N_TRIALS * 4 / 1024 ** 3
    print(f"trials: {args.n_neurons} neurons x {N_IMAGES} images x {N_TRIALS} trials float32 = {raw_gb:.2f} GB")
    mk = _child("make", args)
    disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1024 ** 3
    print(f"make   : {mk['wall_seconds']:7.1f} s  peak RSS {mk['peak_rss_gb']:.2f} GB  (store on disk {disk:.2f} GB)")
    dk = _child("dask", args)
    print(f"dask   : {dk['seconds']:7.1f} s  peak RSS {dk['peak_rss_gb']:.2f} GB  = {dk['peak_rss_gb'] / raw_gb:.2f} x "
          f"the trials; {1e6 * dk['seconds'] / args.n_neurons:.0f} us/neuron; NaN results {dk['nan']}")
    npy = _child("numpy", args)
    per_vec = npy["seconds_vectorised"] / npy["subset"]
    per_loop = npy["seconds_loop"] / npy["loop"]
    print(f"numpy  : {npy['seconds_vectorised']:7.1f} s for {npy['subset']} neurons in memory "
          f"({1e6 * per_vec:.0f} us/neuron); peak RSS {npy['peak_rss_gb']:.2f} GB")
    print(f"loop   : {npy['seconds_loop']:7.1f} s for {npy['loop']} neurons ({1e6 * per_loop:.0f} us/neuron); "
          f"vectorised is {per_loop / per_vec:.0f} x faster; max |diff| {npy['max_diff_loop']:.1e}")
    print(f"dask vs in-memory on the subset: max |diff| {npy['max_diff_dask']:.1e}; "
          f"dask throughput / in-memory = {per_vec / (dk['seconds'] / args.n_neurons):.2f}")
    print(f"under 4 GB: {'yes' if dk['peak_rss_gb'] < 4 else 'NO'}")
    print(_machine.load_line())


if __name__ == "__main__":
    main()
