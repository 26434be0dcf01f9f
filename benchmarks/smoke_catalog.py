"""Extract every catalogued model with random weights on a few stimuli; report how many rows pass.

    python benchmarks/smoke_catalog.py [--images 4] [--family cnn] [--out smoke.csv] [--threads N]

Uses the shared VISp stimuli when present (else random images).  Each row: load_model(random),
reduce_model over the images, check one entry per layer with finite Gram matrices.  ``--threads N``:
torch's intra-op threads and the Gram threads (BLAS at one thread inside the extraction, N outside).
The first line is the load, the thread settings and the BLAS kernels; the last the load after.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch  # noqa: F401 - loaded first, so apply_threads sets its intra-op threads

from neuroxr.features.extract import reduce_model
from neuroxr.features.threads import extraction_threads
from neuroxr.features.zoo import list_models, load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # the sibling module, found through the path above


def _stimuli(n):
    for parent in [Path(__file__).resolve().parents[1], *Path(__file__).resolve().parents[1].parents]:
        f = parent / "shared" / "data" / "allen_visp" / "allen_visp.npz"
        if f.exists():
            return np.load(f)["images"][:n]
    return np.random.default_rng(0).uniform(0, 255, (n, 31, 31)).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="stimuli per model (default 4)")
    ap.add_argument("--family", default=None, help="only the models of this family")
    ap.add_argument("--source", default=None, help="only the models of this source (torchvision, timm, ...)")
    ap.add_argument("--out", default=None, help="write the per-row results as CSV")
    _machine.add_threads_argument(ap)
    args = ap.parse_args(argv)
    threads = _machine.apply_threads(args.threads)
    print(_machine.describe_machine(threads, f"torch intra-op {threads}, Gram {threads}, BLAS 1 inside the "
                                             "extraction"), flush=True)
    px = _stimuli(args.images)
    cat = list_models(family=args.family, source=args.source)
    rows = []
    for i, name in enumerate(cat["model"]):
        t0 = time.perf_counter()
        try:
            lm = load_model(name, weights="random", seed=0, device="cpu")
            with extraction_threads(threads) as budget:
                ds = reduce_model(lm, px, batch_size=args.images, progress=False, n_threads=budget)
            nonfinite = int((~ds["finite"].values).sum())
            ok = ds.sizes["layer"] > 0 and nonfinite == 0
            err = "" if ok else f"{nonfinite} non-finite layers"
            nl = int(ds.sizes["layer"])
        except Exception as exc:  # noqa: BLE001 - the point is to count failures
            ok, nl, err = False, 0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            traceback.print_exc(file=sys.stderr)
        dt = time.perf_counter() - t0
        rows.append({"model": name, "family": cat["family"][i], "ok": ok, "layers": nl, "seconds": round(dt, 1),
                     "error": err})
        print(f"[{i + 1}/{len(cat)}] {name:32s} {'ok  ' if ok else 'FAIL'} layers={nl:4d} {dt:6.1f}s {err}", flush=True)
        lm = ds = None  # free the model before the next row
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    n_ok = int(df["ok"].sum())
    print(f"\n{n_ok} of {len(df)} catalogue rows extract with random weights ({args.images} images)")
    if n_ok < len(df):
        print("failed:", ", ".join(df.loc[~df["ok"], "model"]))
    print(_machine.load_line())
    return 0 if n_ok == len(df) else 1


if __name__ == "__main__":
    sys.exit(main())
