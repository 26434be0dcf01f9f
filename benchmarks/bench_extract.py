"""Streaming extraction vs a bare torch forward pass: time and peak memory, side by side.

    python benchmarks/bench_extract.py [--model vgg16] [--images 118] [--batch-size 32]

Each measurement runs in a fresh child process; peak memory is the child's ru_maxrss.
Stimuli: the shared VISp images (118, 31x31) when present, else random; models resize to 224 px.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time


def _stimuli(n):
    from pathlib import Path

    import numpy as np

    here = Path(__file__).resolve().parents[1]
    for parent in [here, *here.parents]:
        f = parent / "shared" / "data" / "allen_visp" / "allen_visp.npz"
        if f.exists():
            return np.load(f)["images"][:n]
    return np.random.default_rng(0).uniform(0, 255, (n, 31, 31)).astype(np.float32)


def _forward(model, n, batch_size, q):
    from neuroxr.features.extract import preprocess_images, run_forward
    from neuroxr.features.zoo import load_model

    lm = load_model(model, device="cpu")
    px = _stimuli(n)
    run_forward(lm, preprocess_images(lm, px[:1], 255.0))  # warm-up
    t = time.perf_counter()
    for s in range(0, n, batch_size):
        run_forward(lm, preprocess_images(lm, px[s:s + batch_size], 255.0))
    dt = time.perf_counter() - t
    q.put((dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, None))


def _extract(model, n, batch_size, q):
    from neuroxr.features.extract import preprocess_images, reduce_model, run_forward
    from neuroxr.features.zoo import load_model

    lm = load_model(model, device="cpu")
    px = _stimuli(n)
    run_forward(lm, preprocess_images(lm, px[:1], 255.0))  # same warm-up as the bare pass
    t = time.perf_counter()
    ds = reduce_model(lm, px, batch_size=batch_size, progress=False)
    dt = time.perf_counter() - t
    q.put((dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, int(ds.sizes["layer"])))


def _run(fn, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--images", type=int, default=118)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    tf, mf, _ = _run(_forward, args.model, args.images, args.batch_size)
    print(f"bare forward   {args.model} {args.images} images: {tf:8.1f} s   peak {mf:6.2f} GB", flush=True)
    te, me, layers = _run(_extract, args.model, args.images, args.batch_size)
    print(f"extraction     {args.model} {args.images} images: {te:8.1f} s   peak {me:6.2f} GB   ({layers} layers)")
    print(f"ratio extraction / forward: time {te / tf:.2f}x   peak memory {me / mf:.2f}x")


if __name__ == "__main__":
    main()
