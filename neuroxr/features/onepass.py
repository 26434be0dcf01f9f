"""Extraction in one forward pass over every image: each layer reduced inside its own hook.

When all the study's images form one batch (``batch_size >= n``) and that forward pass fits
the memory budget (a 1-image probe gives every layer's size), nothing is kept between layers: the hook of each distinct layer hands its
output (image, features) straight to :class:`~neuroxr.features.reduce.LayerReducer`, chunk by
chunk, before the network runs on.  No activation buffers, no spill files, and no copy of the
output (it is reduced before a later in-place operation could change it).  On a GPU (the model on a
CUDA device) each layer stays on the device: it is fingerprinted there and its Gram matrices are
accumulated there with torch (``backend="torch:cuda"``), so no activation crosses to the host;
``backend="torch:cpu"`` runs the same code on the CPU (how it is tested without a GPU).  The numbers are those
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
#: bytes of float64 a torch accumulator takes per step on a device (large steps keep a GPU busy)
DEVICE_CHUNK = 256 << 20


def probe_layers(loaded, pixels, scale: float) -> dict:
    """``{layer name: features per image}`` of every hooked layer, from a forward pass of one image."""
    sizes: dict = {}

    def record(name, mtype, t):
        sizes[name] = int(np.prod(t.shape[1:]))

    with LayerHooks(loaded.model, record) as hooks:
        hooks.new_batch(1)
        run_forward(loaded, preprocess_images(loaded, read_batch(pixels, slice(0, 1)), scale))
    return sizes


def one_pass_fits(n: int, sizes: dict, ram_budget: float, device: str = "cpu") -> bool:
    """Whether a forward pass of all ``n`` images fits ``ram_budget`` (see :data:`ONE_PASS_COPIES`); on a
    CUDA device, half its free memory (the layers and their reduction stay there)."""
    if str(device).startswith("cuda"):
        import torch

        ram_budget = 0.5 * torch.cuda.mem_get_info(torch.device(device))[0]
    return bool(sizes) and n * max(sizes.values()) * 4 * ONE_PASS_COPIES <= ram_budget


class OnePassReducer:
    """Forward-hook callback: reduces each distinct layer of the one pass as it is produced."""

    def __init__(self, n: int, cache, precision: str, chunk_bytes: int, n_threads: int, steps: StepLog,
                 sizes: dict, backend: str = "numpy"):
        self.n, self.cache, self.precision, self.chunk_bytes, self.n_threads = n, cache, precision, chunk_bytes, n_threads
        self.backend = backend
        self.steps, self.total, self.done_p, self.calls = steps, max(1, sum(sizes.values())), 0, 0
        self.seen: set = set()
        self._fingerprints = Fingerprints()
        self.out = {"names": [], "types": [], "results": [], "finite": [], "n_features": []}

    def __call__(self, name, mtype, t):
        # numpy: a float32 host copy when the layer is elsewhere; torch: the layer where it is
        f = as_rows(t) if self.backend == "numpy" else as_rows(t, device=None)
        p = f.shape[1]
        key = self._fingerprints.key(f)
        self.calls += 1
        self.done_p += p
        if key not in self.seen:  # else a duplicate of an earlier layer (Dropout, Identity, ...): the first is kept
            self.seen.add(key)
            self._reduce(name, mtype, f.numpy() if self.backend == "numpy" else f)
        self.steps.step(self.calls, f"last {name}", share=min(1.0, self.done_p / self.total))

    def _reduce(self, name, mtype, x):
        p = x.shape[1]
        red = LayerReducer(self.n, p, self.cache, self.precision, n_threads=self.n_threads, backend=self.backend)
        if self.cache is None and self.backend == "numpy":  # the whole layer at once: the threads share its
            red.add(x, 0)  # chunks evenly (no barrier per 8 MB step, which left a thread idle)
        else:  # the projection, and the torch accumulator, cast their slice to float64: keep it bounded
            size = red.chunk_size(self.chunk_bytes if self.backend == "numpy" else max(self.chunk_bytes, DEVICE_CHUNK))
            for start in range(0, p, size):
                red.add(x[:, start:start + size], start)  # a strided view: the kernel reads it in place
        res = red.finish()
        for k, v in (("names", name), ("types", mtype), ("results", res), ("n_features", p),
                     ("finite", bool(all(np.isfinite(a).all() for a in res.values())))):
            self.out[k].append(v)


def reduce_in_one_pass(loaded, pixels, scale: float, sizes: dict, cache, precision: str, chunk_bytes: int,
                       n_threads: int, log, prefix: str, backend: str = "numpy") -> dict:
    """Run all images through ``loaded`` at once, each distinct layer reduced in its hook.

    ``backend``: ``"numpy"`` (each layer copied to the host as float32, the compiled kernel and BLAS)
    or ``"torch:<device>"`` (each layer reduced on its device with torch).  Returns lists of names,
    types, results, finite and n_features, in depth order.
    """
    n = int(pixels.shape[0])
    steps = StepLog(log, prefix, "layers of the one pass reduced", len(sizes))
    reducer = OnePassReducer(n, cache, precision, chunk_bytes, n_threads, steps, sizes, backend)
    with LayerHooks(loaded.model, reducer) as hooks:
        hooks.new_batch(n)
        run_forward(loaded, preprocess_images(loaded, read_batch(pixels, slice(0, n)), scale, loaded.device))
    return reducer.out


__all__ = ["DEVICE_CHUNK", "ONE_PASS_COPIES", "OnePassReducer", "one_pass_fits", "probe_layers", "reduce_in_one_pass"]
