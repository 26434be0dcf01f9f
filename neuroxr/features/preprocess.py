"""Stored stimuli (image, y, x) -> a model's input tensor (image, channel, H, W).

The geometry follows the libraries' own evaluation transforms: torchvision's
``Weights.transforms()`` and timm's ``create_transform`` resize the shorter side to
``resize_size`` (aspect ratio kept, anti-aliased) and centre-crop ``input_size``; the
Taskonomy transform resizes the shorter side to 256 and does not crop.  Catalogue rows
without a ``resize_size`` (the baselines, the SimCLR AlexNet) are resized straight to an
``input_size`` square.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import center_crop, resize

from ..errors import NeuroxrError


class StimulusShapeError(NeuroxrError, ValueError):
    """Stimuli that are not a stack of grayscale images (image, y, x)."""


def find_pixel_scale(pixels) -> float:
    """255 for 0..255 stimuli (uint8, or any value above 1.5), else 1."""
    arr = pixels.data if hasattr(pixels, "dims") else pixels
    if getattr(arr, "dtype", None) == np.uint8:
        return 255.0
    mx = arr.max()
    # dask: computed in this thread, not in a pool of its own beside the model's threads
    mx = float(mx.compute(scheduler="synchronous") if hasattr(mx, "compute") else mx)
    return 255.0 if mx > 1.5 else 1.0


def _resize_and_crop(x, short: int, crop: int, mode: InterpolationMode):
    """Shorter side to ``short``, centre crop ``crop`` (0: none), clipped to the pixel range as PIL does."""
    lo = torch.clamp(x.amin(dim=(-2, -1), keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(dim=(-2, -1), keepdim=True), min=1.0)
    x = resize(x, [short], interpolation=mode, antialias=True)
    if crop:
        x = center_crop(x, [crop, crop])
    # PIL (which the libraries' transforms run on) clips bicubic overshoot to the 0..255 range
    return torch.minimum(torch.maximum(x, lo), hi)


def preprocess_images(loaded, pixels: np.ndarray, scale: float = 255.0, device=None):
    """Turn stored stimuli (image, y, x) into a model's input (image, channel, H, W) tensor.

    Scales to [0, 1] (unless the model takes raw values); with ``loaded.resize_size`` resizes
    the shorter side to it and centre-crops ``loaded.input_size`` (0: no crop), else resizes to
    an ``input_size`` square (0: the stimuli's own size); anti-aliased, with the model's
    interpolation.  Repeats grayscale to ``loaded.channels`` and normalises with
    ``loaded.mean`` / ``loaded.std``.
    """
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    if x.ndim != 3:
        raise StimulusShapeError(f"stimuli must be (image, y, x), got shape {tuple(x.shape)}")
    if loaded.rescale and scale != 1.0:
        x = x / scale
    x = x[:, None]
    size = int(loaded.input_size or 0)
    short = int(getattr(loaded, "resize_size", 0) or 0)
    mode = InterpolationMode(loaded.interpolation)
    if short:
        x = _resize_and_crop(x, short, size, mode)
    elif size and tuple(x.shape[-2:]) != (size, size):
        x = resize(x, [size, size], interpolation=mode, antialias=True)
    if loaded.channels != 1:
        x = x.expand(-1, loaded.channels, -1, -1)
    mean = torch.tensor(loaded.mean, dtype=torch.float32)
    std = torch.tensor(loaded.std, dtype=torch.float32)
    if mean.numel() == 1:
        mean, std = mean.expand(loaded.channels), std.expand(loaded.channels)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return x.contiguous().to(device or loaded.device)


__all__ = ["find_pixel_scale", "preprocess_images", "StimulusShapeError"]
