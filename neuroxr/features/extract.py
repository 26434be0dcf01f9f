"""Layer-by-layer feature extraction with streaming per-layer reductions.

Every module of a model except the pure containers (``Sequential``, ``ModuleList``,
``ModuleDict``) gets a forward hook, as in the study: a module called several times in one
forward pass (torchvision ResNet's shared ``relu``) gives one layer per call
(``layer1.0.relu``, ``layer1.0.relu:2``); the root module's output is the layer ``output``.
Layers whose outputs are identical to an earlier layer's (Dropout and Identity in eval mode,
a block whose output is its last ReLU's) are dropped, keeping the first.  Depth is the order
of execution among the kept layers.
"""
from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np

#: containers whose output is always one of their children's (never hooked, as in the study)
def _container_types():
    from torch import nn

    return (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# --------------------------------------------------------------------------- preprocessing
def find_pixel_scale(pixels) -> float:
    """255 for 0..255 stimuli (uint8, or any value above 1.5), else 1."""
    arr = pixels.data if hasattr(pixels, "dims") else pixels
    if getattr(arr, "dtype", None) == np.uint8:
        return 255.0
    mx = arr.max()
    mx = float(mx.compute() if hasattr(mx, "compute") else mx)
    return 255.0 if mx > 1.5 else 1.0


def preprocess_images(loaded, pixels: np.ndarray, scale: float = 255.0, device=None):
    """Turn stored stimuli (image, y, x) into a model's input (image, channel, H, W) tensor.

    Scales to [0, 1] (unless the model takes raw values), resizes to ``loaded.input_size``
    with its interpolation (anti-aliased), repeats grayscale to ``loaded.channels`` and
    normalises with ``loaded.mean`` / ``loaded.std``.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize

    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    if x.ndim != 3:
        raise ValueError(f"stimuli must be (image, y, x), got shape {tuple(x.shape)}")
    if loaded.rescale and scale != 1.0:
        x = x / scale
    x = x[:, None]
    size = int(loaded.input_size or 0)
    if size and tuple(x.shape[-2:]) != (size, size):
        x = resize(x, [size, size], interpolation=InterpolationMode(loaded.interpolation), antialias=True)
    if loaded.channels != 1:
        x = x.expand(-1, loaded.channels, -1, -1)
    mean = torch.tensor(loaded.mean, dtype=torch.float32)
    std = torch.tensor(loaded.std, dtype=torch.float32)
    if mean.numel() == 1:
        mean, std = mean.expand(loaded.channels), std.expand(loaded.channels)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return x.contiguous().to(device or loaded.device)


# --------------------------------------------------------------------------- hooks
def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


class _LayerHooks:
    """Forward hooks on every non-container module calling ``callback(name, type, tensor)``."""

    def __init__(self, model, callback):
        containers = _container_types()
        self.callback = callback
        self.calls = Counter()
        self.handles = []
        for qual, module in model.named_modules():
            if isinstance(module, containers):
                continue
            if hasattr(module, "inplace") and isinstance(module.inplace, bool):
                module.inplace = False  # the hooked output must not be overwritten by the next op
            self.handles.append(module.register_forward_hook(partial(self._hook, qual or "output")))

    def new_batch(self):
        self.calls.clear()

    def _hook(self, qual, module, inputs, output):
        t = _first_tensor(output)
        if t is None or not t.is_floating_point() or t.ndim == 0:
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


def _batches(n: int, batch_size: int):
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def run_forward(loaded, x):
    """One forward pass in inference mode; a too-small image gives a clear error."""
    import torch

    try:
        with torch.inference_mode():
            loaded.model(x)
    except RuntimeError as exc:
        msg = str(exc)
        if any(s in msg for s in ("size", "Kernel", "kernel", "shape", "Expected", "dimension")):
            raise ValueError(
                f"model {loaded.name!r} cannot take images of {tuple(x.shape[1:])} "
                f"(input_size {loaded.input_size}): {msg.splitlines()[0]}; set another input size "
                "in the catalog (input_size column) or resize the stimuli"
            ) from exc
        raise


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
    import torch

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

    with _LayerHooks(loaded.model, keep) as hooks:
        for sl in _batches(len(pixels), batch_size):
            hooks.new_batch()
            run_forward(loaded, preprocess_images(loaded, pixels[sl], scale, device))
    kept: list[tuple[str, np.ndarray]] = []
    for name, parts in store.items():
        acts = np.concatenate(parts, axis=0)
        if any(a.shape == acts.shape and np.array_equal(a, acts, equal_nan=True) for _, a in kept):
            continue
        kept.append((name, acts))
    for name, acts in kept:
        yield name, types[name], acts
