"""Forward hooks on every layer of a model, batched forward passes and brute-force activations.

Every module of a model except the pure containers (``Sequential``, ``ModuleList``,
``ModuleDict``) gets a forward hook, as in the study: a module called several times in one
forward pass (torchvision ResNet's shared ``relu``) gives one layer per call
(``layer1.0.relu``, ``layer1.0.relu:2``); the root module's output is the layer ``output``.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from functools import partial

import numpy as np
import torch
from torch import nn

from ..errors import NeuroxrError
from .preprocess import find_pixel_scale, preprocess_images

#: containers whose output is always one of their children's (never hooked, as in the study)
CONTAINER_TYPES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class InputSizeError(NeuroxrError, ValueError):
    """A model that cannot take images of the size it was given."""


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


class LayerHooks:
    """Forward hooks on every non-container module calling ``callback(name, type, tensor)``."""

    batch_size = None

    def __init__(self, model, callback):
        self.callback = callback
        self.calls = Counter()
        self.handles = []
        for qual, module in model.named_modules():
            if isinstance(module, CONTAINER_TYPES):
                continue
            if hasattr(module, "inplace") and isinstance(module.inplace, bool):
                module.inplace = False  # the hooked output must not be overwritten by the next op
            self.handles.append(module.register_forward_hook(partial(self._hook, qual or "output")))

    def new_batch(self, batch_size: int | None = None):
        self.calls.clear()
        self.batch_size = batch_size

    def _hook(self, qual, module, inputs, output):
        t = _first_tensor(output)
        if t is None or not t.is_floating_point() or t.ndim == 0:
            return
        if self.batch_size is not None and t.shape[0] != self.batch_size:
            # not one row per image (e.g. Swin's window partitions, LeViT's folded attention):
            # an internal reshaping, not a layer of image representations
            return
        k = self.calls[qual]
        self.calls[qual] += 1
        self.callback(qual if k == 0 else f"{qual}:{k + 1}", type(module).__name__, t.detach())

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def iter_batches(n: int, batch_size: int):
    """Slices of ``batch_size`` consecutive images covering ``0..n``."""
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


@contextlib.contextmanager
def full_float32():
    """No TF32 in the block: cuDNN convolutions on a GPU use it by default (10-bit mantissas, ~1e-3
    relative), which would make a GPU extraction a different answer from the CPU's.  No effect on a CPU."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def run_forward(loaded, x):
    """One forward pass in inference mode, full float32; a too-small image gives a clear error."""
    try:
        with torch.inference_mode(), full_float32():
            loaded.model(x)
    except RuntimeError as exc:
        msg = str(exc)
        if any(s in msg for s in ("size", "Kernel", "kernel", "shape", "Expected", "dimension")):
            raise InputSizeError(
                f"model {loaded.name!r} cannot take images of {tuple(x.shape[1:])} "
                f"(input_size {loaded.input_size}): {msg.splitlines()[0]}; set another input size "
                "in the catalog (input_size column) or resize the stimuli"
            ) from exc
        raise


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` are equal (NaN equal to NaN): shapes, then the first row, then everything.

    Layers of one shape (a convolution and its ReLU) almost always differ in their first row
    already, so the full comparison (two passes over both arrays) runs only for real duplicates.
    """
    if a.shape != b.shape:
        return False
    if a.shape[0] and not np.array_equal(a[0], b[0], equal_nan=True):
        return False
    return bool(np.array_equal(a, b, equal_nan=True))


def iter_layer_activations(loaded, pixels: np.ndarray, batch_size: int = 32, device=None):
    """Yield every distinct layer's full activations, in depth order (brute force; memory-hungry).

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`neuroxr.features.zoo.load_model`.
    pixels : ndarray (image, y, x)
        The stored stimuli.
    batch_size : int
        Images per forward pass.

    Yields
    ------
    layer_name : str
    module_type : str
    activations : ndarray float32 (image, n_features)
        The flattened module output; layers identical to an earlier one are skipped.
    """
    if device is not None:
        loaded.model.to(device)
        loaded.device = str(device)
    pixels = np.asarray(pixels)
    scale = find_pixel_scale(pixels)
    store: dict[str, list] = {}
    types: dict[str, str] = {}

    def keep(name, mtype, t):
        arr = t.reshape(t.shape[0], -1).to("cpu", torch.float32).numpy().copy()
        store.setdefault(name, []).append(arr)
        types.setdefault(name, mtype)

    with LayerHooks(loaded.model, keep) as hooks:
        for sl in iter_batches(len(pixels), batch_size):
            hooks.new_batch(sl.stop - sl.start)
            run_forward(loaded, preprocess_images(loaded, pixels[sl], scale, device))
    kept: list[tuple[str, np.ndarray]] = []
    for name, parts in store.items():
        acts = np.concatenate(parts, axis=0)
        if any(_same(a, acts) for _, a in kept):
            continue
        kept.append((name, acts))
    for name, acts in kept:
        yield name, types[name], acts


__all__ = ["InputSizeError", "LayerHooks", "full_float32", "iter_batches", "iter_layer_activations", "run_forward"]
