"""Ingest a simulated Allen cache of 60,000 neurons x 118 images x 50 trials: peak memory and time.

    /work/venv/bin/python benchmarks/bench_allen_ingest.py [--neurons 60000] [--experiments 30]
        [--workdir /tmp/neuroxr_bench_allen] [--no-reference] [--threads N]

The simulated cache has the real layout (tests/allen_fixture.py, ``make_large_allen_cache``) but
fewer, larger experiments (30 x 2,000 cells instead of ~200 x 300) to keep it to a few GB of disk;
each experiment holds the natural-scenes part of a session (5,950 presentations x 7 frames,
about 42,000 frames), events only (float32, deflate level 1).  It is generated once and reused.

Side by side, each in a fresh child process (peak RSS from ``ru_maxrss`` of that child):

* ``neuroxr``: :func:`neuroxr.io.allen.ingest_allen`: one Dask task per experiment, events read
  64 cells at a time from the .npz, trials written in 1,024-neuron chunks.
* ``in-memory``: the straightforward approach: each experiment's events loaded whole (as
  ``np.load(...)["ev"]``), all trials gathered in one numpy array, then written.

``--threads N`` is each child's budget: the Dask tasks run on N threads (synchronously at 1),
BLAS at one thread inside them and at N outside (torch, numba likewise at N).

The script asserts nothing about time; it prints the numbers and ratios, and checks the two
stores are identical.  The first line is the load, the thread settings and the BLAS kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
import _machine  # the sibling module, found through the path above

# each child: argv = store, cache, the benchmarks directory, --threads
CHILD_SETUP = """
import sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[3])
import _machine
from threadpoolctl import threadpool_limits
threads = _machine.apply_threads(int(sys.argv[4]))
"""

CHILD_NEUROXR = CHILD_SETUP + """
from neuroxr.io.allen import ingest_allen
t = time.perf_counter()
with _machine.dask_local(threads), threadpool_limits(1, user_api="blas"):
    ds = ingest_allen(sys.argv[1], sys.argv[2], overwrite=True)
print(time.perf_counter() - t, ds.sizes["neuron"], ds.sizes["image"], ds.sizes["trial"])
"""

CHILD_INMEMORY = CHILD_SETUP + """
import numpy as np, xarray as xr
from neuroxr.io import allen as A
from neuroxr.io.store import write_dataset
t = time.perf_counter()
c = A.open_allen_cache(sys.argv[2])
sel = A.select_experiments(c)
parts, ids = [], []
for eid in sel.index:
    i, tr = A.calc_trial_responses(c.nwb_path(eid), c.events_path(eid), block=10**9)   # whole array in memory
    parts.append(tr); ids.append(i)
n_t = max(p.shape[2] for p in parts)
trials = np.concatenate(parts, axis=0); del parts
mean = np.nanmean(trials, axis=2).astype("f4")
ds = xr.Dataset({"mean": (("neuron", "image"), mean), "trials": (("neuron", "image", "trial"), trials)},
                coords={"neuron": np.concatenate(ids), "image": np.arange(trials.shape[1]),
                        "trial": np.arange(n_t)})
with _machine.dask_local(threads), threadpool_limits(1, user_api="blas"):
    write_dataset(ds, sys.argv[1] + "/responses.zarr", overwrite=True, chunks={"neuron": 1024})
print(time.perf_counter() - t, *trials.shape)
"""


def measure(code, *args):
    """Run ``code`` in a fresh interpreter wrapped by a tiny launcher, so ru_maxrss is its own."""
    launcher = ("import resource, subprocess, sys, json\n"
                "p = subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]], capture_output=True, text=True)\n"
                "print(json.dumps({'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-3000:], "
                "'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", launcher, code, *map(str, args)], capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    res = json.loads(proc.stdout)
    if res["rc"]:
        raise SystemExit(res["err"])
    inner, *shape = res["out"].split()
    return {"wall_s": wall, "ingest_s": float(inner), "peak_gb": res["peak_kb"] / 2**20,
            "shape": tuple(int(s) for s in shape)}


def du(path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**30


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", type=int, default=60_000)
    ap.add_argument("--experiments", type=int, default=30)
    ap.add_argument("--workdir", default="/tmp/neuroxr_bench_allen")
    ap.add_argument("--no-reference", action="store_true", help="skip the in-memory reference run")
    _machine.add_threads_argument(ap)
    args = ap.parse_args(argv)
    args.threads = _machine.apply_threads(args.threads)
    print(_machine.describe_machine(args.threads, "each child: Dask tasks on that many threads with BLAS 1, "
                                                  "BLAS that many outside them"), flush=True)

    from allen_fixture import make_large_allen_cache

    work = Path(args.workdir)
    cache = work / f"cache_{args.neurons}_{args.experiments}"
    if not (cache / ".complete").exists():
        t = time.perf_counter()
        make_large_allen_cache(cache, args.neurons, args.experiments)
        (cache / ".complete").write_text("ok")
        print(f"generated simulated cache in {time.perf_counter() - t:.0f} s")
    print(f"cache: {cache} ({du(cache):.2f} GB on disk), {args.neurons} neurons in {args.experiments} experiments")
    print(f"machine: {os.cpu_count()} cores (shared with other jobs), python {sys.version.split()[0]}")

    rows = {}
    rows["neuroxr"] = measure(CHILD_NEUROXR, work / "study_neuroxr", cache, HERE, args.threads)
    if not args.no_reference:
        rows["in-memory"] = measure(CHILD_INMEMORY, work / "study_inmemory", cache, HERE, args.threads)
    print(f"\n{'method':<12}{'neurons x images x trials':>28}{'ingest s':>10}{'wall s':>9}{'peak RSS GB':>13}")
    for k, r in rows.items():
        print(f"{k:<12}{' x '.join(map(str, r['shape'])):>28}{r['ingest_s']:>10.1f}{r['wall_s']:>9.1f}"
              f"{r['peak_gb']:>13.2f}")
    a = rows["neuroxr"]
    print(f"\nneuroxr peak RSS {a['peak_gb']:.2f} GB ({'under' if a['peak_gb'] < 4 else 'OVER'} the 4 GB budget); "
          f"store {du(work / 'study_neuroxr'):.2f} GB")
    if "in-memory" in rows:
        b = rows["in-memory"]
        print(f"ratios in-memory / neuroxr: peak RSS {b['peak_gb'] / a['peak_gb']:.2f}x, "
              f"ingest time {b['ingest_s'] / a['ingest_s']:.2f}x")
        import numpy as np

        from neuroxr.io.store import open_dataset

        x = open_dataset(work / "study_neuroxr" / "responses.zarr")
        y = open_dataset(work / "study_inmemory" / "responses.zarr")
        same = all(np.array_equal(x.trials[i:i + 4096].values, y.trials[i:i + 4096].values, equal_nan=True)
                   for i in range(0, x.sizes["neuron"], 4096))
        print(f"stores identical (trials, NaN-aware): {same}")
    print(_machine.load_line())


if __name__ == "__main__":
    main()
