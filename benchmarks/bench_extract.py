"""Extraction of every layer vs a bare torch forward pass of the same model, same threads, same images.

    python benchmarks/bench_extract.py [--model alexnet --model resnet50 ...] [--images 118]
                                       [--batch-size 32] [--repeat 3] [--threads N] [--no-check]

Default models: alexnet, resnet50, vgg16, vit_base_patch16_224 (random weights).  For each model
the two sides alternate (bare first in odd rounds, extraction first in even ones), each in a
fresh child process that sets the same thread budget (torch intra-op threads; for the extraction
also the Gram accumulator's threads, BLAS at one: :mod:`neuroxr.features.threads`) and runs the
same 1-image warm-up before the clock starts.  Printed: the load average before and after, the
thread settings and the BLAS libraries (threadpoolctl), the median of ``--repeat`` rounds per
side, their ratio and each side's peak memory (the child's ``ru_maxrss``), the extraction's path
(``one pass``: every image in one forward pass, each layer reduced in its hook; ``batches``: rows
kept, with the number of spill files) and the Gram products' precision.

The same answer on both sides: the bare side only runs the network, so what is checked is that the
timed extraction's store equals the float64 reference.  In the first round the extraction child
also (untimed) reduces the same activations with float64 products and prints, beside the ratio,
the largest relative difference of the Gram matrices and the largest |dr| of the scores computed
from them: leave-one-out ridge r (alphas 1, 1e3, 1e5) of the shared VISp neurons (or random
responses) and RSA r against their RDM.

Two bare sides (``--bare both``, the default): ``torch``, the model as a plain torch script runs
it (torch's allocator defaults, ``THP_MEM_ALLOC_ENABLE=0``), and ``neuroxr``, the same forward pass
with the process settings importing neuroxr makes (``neuroxr._boot``: transparent huge pages for
large tensors), so the extraction's own overhead is visible beside its speed-up over plain torch.

The floor: the Gram matrices cost ``2 n^2`` multiply-adds per kept activation (two products, raw and
z-scored), whatever the code.  A child measures this machine's float64 SYRK rate on one thread (the
accumulator runs one BLAS thread per budget thread), and ``floor`` is the bare forward pass plus
that arithmetic at that rate, over the torch bare side: no exact float64 extraction of every layer
can go below it on this CPU.

Stimuli: the shared VISp images (the demo's 118, 31x31) when present, else random; the models
resize them to their input size.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time
from pathlib import Path

MODELS = ("alexnet", "resnet50", "vgg16", "vit_base_patch16_224")


def _stimuli(n):
    import numpy as np

    here = Path(__file__).resolve().parents[1]
    for parent in [here, *here.parents]:
        f = parent / "shared" / "data" / "allen_visp" / "allen_visp.npz"
        if f.exists():
            return np.load(f)["images"][:n]
    return np.random.default_rng(0).uniform(0, 255, (n, 31, 31)).astype(np.float32)


def _prepare(model, n, threads):
    import torch

    from neuroxr.features.hooks import run_forward
    from neuroxr.features.preprocess import preprocess_images
    from neuroxr.features.zoo import load_model

    torch.set_num_threads(threads)
    lm = load_model(model, device="cpu")
    px = _stimuli(n)
    run_forward(lm, preprocess_images(lm, px[:1], 255.0))  # the same warm-up on both sides
    return lm, px


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _bare(model, n, batch_size, threads, q, settings="neuroxr"):
    if settings == "torch":  # before torch allocates: its allocator's defaults, as a plain script has them
        os.environ["THP_MEM_ALLOC_ENABLE"] = "0"
    from neuroxr.features.hooks import run_forward
    from neuroxr.features.preprocess import preprocess_images

    lm, px = _prepare(model, n, threads)
    t = time.perf_counter()
    for s in range(0, n, batch_size):
        run_forward(lm, preprocess_images(lm, px[s:s + batch_size], 255.0))
    q.put({"seconds": time.perf_counter() - t, "peak_gb": _peak_gb()})


def _responses(n):
    import numpy as np

    here = Path(__file__).resolve().parents[1]
    for parent in [here, *here.parents]:
        f = parent / "shared" / "data" / "allen_visp" / "allen_visp.npz"
        if f.exists():
            return np.load(f)["responses"][:n].astype(np.float64)
    return np.random.default_rng(1).standard_normal((n, 200))


def score_difference(a, b, responses) -> dict:
    """Largest differences between two features Datasets of the same layers: relative Gram
    difference, |dr| of leave-one-out ridge r (alphas 1, 1e3, 1e5) and |dr| of RSA r."""
    import numpy as np

    from neuroxr.mapping.ridge import calc_loo_pearson
    from neuroxr.rsa import calc_rdm, compare_rdms

    out = {"gram": 0.0, "ridge": 0.0, "rsa": 0.0}
    for k in ("gram", "gram_z"):
        x, y = a[k].values, b[k].values
        out["gram"] = max(out["gram"], float(np.abs(x - y).max() / np.abs(y).max()))
    for alpha in (1.0, 1e3, 1e5):
        ra = calc_loo_pearson(a["gram_z"].values, responses, alphas=(alpha,))
        rb = calc_loo_pearson(b["gram_z"].values, responses, alphas=(alpha,))
        out["ridge"] = max(out["ridge"], float(np.nanmax(np.abs(ra - rb))))
    neural = calc_rdm(responses, "responses")
    rs = [compare_rdms(calc_rdm(d["gram"].values, "gram", feature_sum=d["feature_sum"].values,
                                n_features=d["n_features"].values), neural) for d in (a, b)]
    out["rsa"] = float(np.nanmax(np.abs(np.asarray(rs[0]) - np.asarray(rs[1]))))
    return out


def _extract(model, n, batch_size, threads, q, check=False):
    import tempfile

    from neuroxr.features.run import pick_precision, reduce_model
    from neuroxr.features.threads import extraction_threads

    lm, px = _prepare(model, n, threads)
    lines = []
    with tempfile.TemporaryDirectory() as tmp, extraction_threads(threads) as budget:
        spills = []
        t = time.perf_counter()
        ds = reduce_model(lm, px, batch_size=batch_size, progress=False, n_threads=budget, tmpdir=tmp,
                          log=lambda m: (lines.append(m), spills.append(len(list(Path(tmp).rglob("*.f32"))))))
        dt = time.perf_counter() - t
        peak = _peak_gb()
        res = {"seconds": dt, "peak_gb": peak, "layers": int(ds.sizes["layer"]),
               "activations": int(ds["n_features"].sum()), "images": int(ds.sizes["image"]),
               "path": "one pass" if any("one forward pass" in m for m in lines) else "batches",
               "spills": max(spills, default=0), "precision": pick_precision(lm)}
        if check:  # untimed: the same activations reduced with float64 products, then the scores
            ref = reduce_model(lm, px, batch_size=batch_size, progress=False, n_threads=budget, tmpdir=tmp,
                               precision="float64")
            res["diff"] = score_difference(ds, ref, _responses(n))
    q.put(res)


def _syrk_rate(q):
    """This machine's float64 SYRK rate on one thread (multiply-adds counted as 2 flops), GFLOP/s."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from neuroxr.mapping.gram import _syrk

    x = np.random.default_rng(0).standard_normal((118, 1 << 20))
    K = np.zeros((118, 118), order="F")
    with threadpool_limits(1, user_api="blas"):
        best = min(_timed(lambda: _syrk(K, x)) for _ in range(3))
    q.put({"gflops": 118 * 118 * x.shape[1] / best / 1e9})


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _run(fn, *args, **kwargs) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q), kwargs=kwargs)
    p.start()
    out = q.get()
    p.join()
    return out


def describe_machine(threads: int) -> str:
    """Load average, cores, the thread budget and the BLAS libraries as threadpoolctl sees them."""
    import numpy  # noqa: F401 - loads its BLAS for threadpoolctl
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    from neuroxr.runtime import available_cores

    blas = "; ".join(f"{i['internal_api']} {i.get('version')} {i['num_threads']} threads "
                     f"({i.get('architecture', '?')})" for i in threadpool_info() if i["user_api"] == "blas")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                   "THP_MEM_ALLOC_ENABLE"))
    return (f"load average {load}; {available_cores()} available cores, --threads {threads} "
            f"(torch intra-op {threads}, Gram {threads}, BLAS 1 inside the extraction); BLAS: {blas}; {env}")


def bench_model(model, args, rate=None) -> dict:
    bare = getattr(args, "bare", "torch")
    bares = ["torch", "neuroxr"] if bare == "both" else [bare]
    sides = {**{f"bare_{b}": [] for b in bares}, "extract": []}
    layers, info = None, {}
    for r in range(args.repeat):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for side in order:
            if side.startswith("bare"):
                res = _run(_bare, model, args.images, args.batch_size, args.threads, settings=side[5:])
            else:
                res = _run(_extract, model, args.images, args.batch_size, args.threads,
                           check=r == 0 and getattr(args, "check", True))
                info = {k: res[k] for k in ("path", "spills", "precision", "diff", "activations", "images")
                        if k in res} | info
            sides[side].append(res)
            layers = res.get("layers", layers)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in sides.items()}
    peak = {k: max(x["peak_gb"] for x in v) for k, v in sides.items()}
    ref = med[f"bare_{bares[0]}"]
    out = {"model": model, "bare": ref, "extract": med["extract"], "ratio": med["extract"] / ref,
           "peak_bare": peak[f"bare_{bares[0]}"], "peak_extract": peak["extract"], "layers": layers,
           "runs": {k: [round(x["seconds"], 2) for x in v] for k, v in sides.items()}, **info}
    if len(bares) == 2:
        out["bare_neuroxr"] = med["bare_neuroxr"]
        out["ratio_neuroxr"] = med["extract"] / med["bare_neuroxr"]
    if rate and "activations" in info:
        gflop = 2 * info["images"] ** 2 * info["activations"] / 1e9  # two SYRKs of n^2 p / 2 multiply-adds each
        out["gram_gflop"] = gflop
        out["floor"] = (min(med[f"bare_{b}"] for b in bares) + gflop / (rate * args.threads)) / ref
    return out


def main(argv=None):
    from neuroxr.runtime import available_cores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help=f"repeatable (default: {', '.join(MODELS)})")
    ap.add_argument("--images", type=int, default=118, help="images (default 118, the demo's)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per side; medians are printed (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="thread budget (default: the available cores)")
    ap.add_argument("--bare", choices=("both", "torch", "neuroxr"), default="both",
                    help="the bare forward pass with torch's defaults, with neuroxr's process settings, or both "
                         "(default; ratios are over the torch side)")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip the untimed float64 comparison of the first round")
    args = ap.parse_args(argv)
    args.threads = args.threads or available_cores()
    print(describe_machine(args.threads), flush=True)
    rate = _run(_syrk_rate)["gflops"]
    print(f"float64 SYRK on one thread: {rate:.1f} GFLOP/s (the floor's rate: x {args.threads} threads)", flush=True)
    print(f"{'model':22s} {'layers':>6s} {'bare s':>7s} {'bare nxr':>8s} {'extract s':>9s} {'ratio':>6s} "
          f"{'r nxr':>6s} {'floor':>6s} {'Gram GF':>8s} {'peak bare GB':>12s} {'peak extr GB':>12s}  "
          "path (spill files), products; max rel dGram, |dr| ridge, |dr| RSA vs float64", flush=True)
    for model in args.model or MODELS:
        r = bench_model(model, args, rate)
        d = r.get("diff")
        diff = f"{d['gram']:.1e}, {d['ridge']:.1e}, {d['rsa']:.1e}" if d else "not checked"
        nxr = (f"{r['bare_neuroxr']:8.2f}", f"{r['ratio_neuroxr']:6.2f}") if "bare_neuroxr" in r else ("-" * 8, "-" * 6)
        floor = (f"{r['floor']:6.2f}", f"{r['gram_gflop']:8.0f}") if "floor" in r else ("-" * 6, "-" * 8)
        print(f"{r['model']:22s} {r['layers']:6d} {r['bare']:7.2f} {nxr[0]} {r['extract']:9.2f} {r['ratio']:6.2f} "
              f"{nxr[1]} {floor[0]} {floor[1]} {r['peak_bare']:12.2f} {r['peak_extract']:12.2f}  "
              f"{r['path']} ({r['spills']}), {r['precision']}; {diff}   runs {r['runs']}; "
              f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
