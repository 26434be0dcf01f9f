"""Extraction in one forward pass over every image: each layer reduced inside its own hook.

When all the study's images form one batch (``batch_size >= n``) and that forward pass fits
the memory budget (a 1-image probe gives every layer's size), nothing is kept between layers: the hook of each distinct layer hands its
output (image, features) straight to :class:`~neuroxr.features.reduce.LayerReducer`, chunk by
chunk, before the network runs on.  No activation buffers, no spill files, and no copy of the
output (it is reduced before a later in-place operation could change it).  The numbers are those
of the batched path with that one batch: the same float32 activations, reduced in the same
feature chunks.  (Another batch size may change the activations at float32 round-off: torch's
kernels choose their algorithm by shape.)
"""
from __future__ import annotations

import numpy as np

from .hooks import LayerHooks, run_forward
from .preprocess import preprocess_images
from .progress import StepLog
from .reduce import Fingerprints, LayerReducer, as_rows, read_batch

#: one pass is taken when images x the largest layer x 4 bytes x this many copies fit the budget:
#: a module's input and output are alive while its hook reduces the output (no copy of it is
#: made), plus the module's workspace; the reducer's chunks are a few MB.  Measured with
#: ``benchmarks/bench_extract.py``: vgg16 on 118 images (largest layer 3.2 M features, 1.5 GB)
#: peaks at 5.8 GB RSS, model and interpreter included (bare forward, batches of 32: 2.6 GB)
ONE_PASS_COPIES = 4


def probe_layers(loaded, pixels, scale: float) -> dict:
    """``{layer name: features per image}`` of every hooked layer, from a forward pass of one image."""
    sizes: dict = {}

    def record(name, mtype, t):
        sizes[name] = int(np.prod(t.shape[1:]))

    with LayerHooks(loaded.model, record) as hooks:
        hooks.new_batch(1)
        run_forward(loaded, preprocess_images(loaded, read_batch(pixels, slice(0, 1)), scale))
    return sizes


def one_pass_fits(n: int, sizes: dict, ram_budget: float) -> bool:
    """Whether a forward pass of all ``n`` images fits ``ram_budget`` (see :data:`ONE_PASS_COPIES`)."""
    return bool(sizes) and n * max(sizes.values()) * 4 * ONE_PASS_COPIES <= ram_budget


class OnePassReducer:
    """Forward-hook callback: reduces each distinct layer of the one pass as it is produced."""

    def __init__(self, n: int, cache, precision: str, chunk_bytes: int, n_threads: int, steps: StepLog,
                 sizes: dict):
        self.n, self.cache, self.precision, self.chunk_bytes, self.n_threads = n, cache, precision, chunk_bytes, n_threads
        self.steps, self.total, self.done_p, self.calls = steps, max(1, sum(sizes.values())), 0, 0
        self.seen: set = set()
        self._fingerprints = Fingerprints()
        self.out = {"names": [], "types": [], "results": [], "finite": [], "n_features": []}

    def __call__(self, name, mtype, t):
        f = as_rows(t)
        p = f.shape[1]
        key = self._fingerprints.key(f)
        self.calls += 1
        self.done_p += p
        if key not in self.seen:  # else a duplicate of an earlier layer (Dropout, Identity, ...): the first is kept
            self.seen.add(key)
            self._reduce(name, mtype, f.numpy())
        self.steps.step(self.calls, f"last {name}", share=min(1.0, self.done_p / self.total))

    def _reduce(self, name, mtype, x):
        p = x.shape[1]
        red = LayerReducer(self.n, p, self.cache, self.precision, n_threads=self.n_threads)
        if self.cache is None:  # the whole layer at once: the threads share its chunks evenly (no barrier per
            red.add(x, 0)  # 8 MB step, which left a thread idle: resnet50's Gram 90 -> 102 GFLOP/s)
        else:  # the projection casts its slice to float64: keep it to chunk_bytes
            size = red.chunk_size(self.chunk_bytes)
            for start in range(0, p, size):
                red.add(x[:, start:start + size], start)  # a strided view: the kernel reads it in place
        res = red.finish()
        for k, v in (("names", name), ("types", mtype), ("results", res), ("n_features", p),
                     ("finite", bool(all(np.isfinite(a).all() for a in res.values())))):
            self.out[k].append(v)


def reduce_in_one_pass(loaded, pixels, scale: float, sizes: dict, cache, precision: str, chunk_bytes: int,
                       n_threads: int, log, prefix: str) -> dict:
    """Run all images through ``loaded`` at once, each distinct layer reduced in its hook.

    Returns lists of names, types, results, finite and n_features, in depth order.
    """
    n = int(pixels.shape[0])
    steps = StepLog(log, prefix, "layers of the one pass reduced", len(sizes))
    reducer = OnePassReducer(n, cache, precision, chunk_bytes, n_threads, steps, sizes)
    with LayerHooks(loaded.model, reducer) as hooks:
        hooks.new_batch(n)
        run_forward(loaded, preprocess_images(loaded, read_batch(pixels, slice(0, n)), scale))
    return reducer.out


__all__ = ["probe_layers", "one_pass_fits", "reduce_in_one_pass", "OnePassReducer", "ONE_PASS_COPIES"]
