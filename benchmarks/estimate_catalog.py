"""Whole-catalogue extraction time, estimated from a few measured models.

    python benchmarks/estimate_catalog.py [--measure alexnet --measure resnet18 ...] [--images 118]
                                          [--family cnn] [--limit N] [--threads N] [--repeat 1]
                                          [--out estimate.csv]

The model: extracting a model on ``n`` images costs its forward pass, proportional to its
forward FLOPs, plus the reductions, proportional to ``n^2`` x its activations (the features of
every hooked layer per image: two SYRKs per distinct layer, float32 products summed in float64):

    t = c_f * n * FLOPs + c_g * n^2 * activations

``c_f`` is fitted (least squares through 0) to the measured bare forward passes and ``c_g`` to the
measured extraction minus forward (both from ``bench_extract.py``'s alternating fresh
processes), then every catalogue row is sized on one image (FLOPs with
``torch.utils.flop_counter``, activations from the layer probe) and predicted.  Prints the
constants, each model's size and estimate, and the total; load, threads and BLAS kernels first,
the load after last.  ``--threads N``: this process's BLAS, torch and numba, and the measured
children's budget (torch intra-op and Gram threads, BLAS one inside the extraction).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above
from bench_extract import bench_model  # the sibling benchmark's timings

from neuroxr.features.hooks import run_forward
from neuroxr.features.onepass import probe_layers
from neuroxr.features.preprocess import preprocess_images
from neuroxr.features.zoo import list_models, load_model


def size_model(name: str) -> dict:
    """Forward FLOPs and hooked activations (features) per image of ``name`` (random weights, one image)."""
    lm = load_model(name, device="cpu")
    px = np.full((1, 32, 32), 128, dtype=np.uint8)
    x = preprocess_images(lm, px, 255.0)
    with FlopCounterMode(display=False) as counter:
        run_forward(lm, x)
    sizes = probe_layers(lm, px, 255.0)
    return {"model": name, "gflops": counter.get_total_flops() / 1e9, "activations": sum(sizes.values()),
            "layers": len(sizes)}


def fit(measured: pd.DataFrame, n: int) -> tuple[float, float]:
    """``(c_f, c_g)`` from measured rows (columns bare, extract, gflops, activations)."""
    f = measured["gflops"].to_numpy(dtype=float) * n
    g = measured["activations"].to_numpy(dtype=float) * n * n  # float: (act x n^2)^2 overflows int64
    c_f = float(f @ measured["bare"].to_numpy() / (f @ f))
    over = np.maximum(measured["extract"].to_numpy() - measured["bare"].to_numpy(), 0.0)
    c_g = float(g @ over / (g @ g))
    return c_f, c_g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="append", default=None, help="models timed (default alexnet, resnet18)")
    ap.add_argument("--images", type=int, default=118, help="images (default 118)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1, help="rounds per side of each measurement (default 1)")
    _machine.add_threads_argument(ap)
    ap.add_argument("--family", default=None, help="estimate one family of the catalogue only")
    ap.add_argument("--limit", type=int, default=None, help="estimate the first N catalogue rows only")
    ap.add_argument("--out", default=None, help="also write the table as CSV")
    ap.add_argument("--times", action="append", default=None, metavar="MODEL:BARE:EXTRACT",
                    help="measured medians (seconds, from a bench_extract.py run of the same images and "
                         "threads) used instead of measuring again; repeatable")
    args = ap.parse_args(argv)
    args.threads = _machine.apply_threads(args.threads)
    args.check = False  # timings only (bench_extract.py prints the float64 comparison)
    print(_machine.describe_machine(args.threads, f"measured children: torch intra-op {args.threads}, Gram "
                                                  f"{args.threads}, BLAS 1 inside the extraction"), flush=True)
    rows = []
    given = {t.split(":")[0]: t.split(":")[1:] for t in args.times or []}
    for m in given or args.measure or ["alexnet", "resnet18"]:
        if m in given:
            r = {"model": m, "bare": float(given[m][0]), "extract": float(given[m][1])}
            how = "from bench_extract.py"
        else:
            r, how = bench_model(m, args), "measured"
        rows.append({**r, **size_model(m)})
        print(f"{how} {m}: bare {r['bare']:.2f} s, extract {r['extract']:.2f} s", flush=True)
    measured = pd.DataFrame(rows)
    c_f, c_g = fit(measured, args.images)
    n = args.images
    print(f"fit: t = {c_f:.3e} s/GFLOP x n x GFLOPs + {c_g:.3e} s x n^2 x activations", flush=True)
    names = list(list_models(family=args.family)["model"])[: args.limit]
    est = []
    for name in names:
        try:
            s = size_model(name)
        except Exception as exc:  # noqa: BLE001 - a row that does not build is listed, not fatal
            print(f"{name}: not sized ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})", flush=True)
            continue
        s["forward_s"] = c_f * n * s["gflops"]
        s["reduce_s"] = c_g * n * n * s["activations"]
        s["estimate_s"] = s["forward_s"] + s["reduce_s"]
        est.append(s)
        print(f"{name:32s} {s['gflops']:8.2f} GFLOPs {s['activations'] / 1e6:8.2f} M act  ~{s['estimate_s']:8.1f} s",
              flush=True)
    table = pd.DataFrame(est)
    total = float(table["estimate_s"].sum()) if len(table) else 0.0
    print(f"whole catalogue ({len(table)} models, {n} images, {args.threads} threads): ~{total / 3600:.2f} h "
          f"(forward {table['forward_s'].sum() / 3600 if len(table) else 0:.2f} h)")
    if args.out:
        table.to_csv(args.out, index=False)
    print(_machine.load_line())


if __name__ == "__main__":
    main()
