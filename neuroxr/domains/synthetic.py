"""Synthetic image domains, so the domain study runs without the real image sets.

- :func:`make_spectral_images`: random-phase images whose power spectrum is ``1 / f^p``
  (p = 2 looks like natural-image texture, p = 1 like fine noise, p = 3 like smooth clouds);
- :func:`make_line_drawings`: black strokes (lines, arcs, polygons) on white, the style of
  the sketch / quickdraw domains;
- :func:`write_image_folder` and :func:`make_synthetic_domains` write them as folders of
  PNG files, one folder per domain, which is what ``neuroxr naturalness`` and
  ``neuroxr train-ssl`` read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import draw

from ..errors import NeuroxrError, StoreExistsError

__all__ = [
    "DEFAULT_DOMAINS",
    "make_spectral_images",
    "make_line_drawings",
    "write_image_folder",
    "make_synthetic_domains",
]

#: name -> spec of the default synthetic domains
DEFAULT_DOMAINS = {
    "spectral-p1": {"kind": "spectral", "p": 1.0},
    "spectral-p2": {"kind": "spectral", "p": 2.0},
    "spectral-p3": {"kind": "spectral", "p": 3.0},
    "lines": {"kind": "lines"},
}


def make_spectral_images(n_images: int, size: int = 64, p: float = 2.0, seed: int = 0,
                         dtype=np.uint8) -> np.ndarray:
    """Images (image, y, x) with power spectrum ``1/f^p`` and uniformly random phases.

    The amplitude spectrum ``f^(-p/2)`` is imposed on the FFT of white Gaussian noise (so the
    image is real and periodic); the DC term is zeroed and the image is scaled to 0..255.
    With ``dtype=np.uint8`` the values are rounded (quantisation adds a flat noise floor far
    below the spectrum for p <= 3 at 64 px and above); pass ``dtype=float`` for exact fields.
    """
    if n_images < 1 or size < 8:
        raise NeuroxrError(f"make_spectral_images: n_images={n_images}, size={size}: need >= 1 image of >= 8 px")
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size) * size
    f = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    amp = np.zeros_like(f)
    amp[f > 0] = f[f > 0] ** (-p / 2.0)
    out = np.empty((n_images, size, size), dtype=np.float64)
    for i in range(n_images):
        spec = np.fft.fft2(rng.normal(size=(size, size))) * amp
        img = np.real(np.fft.ifft2(spec))
        lo, hi = img.min(), img.max()
        out[i] = (img - lo) / (hi - lo if hi > lo else 1.0) * 255.0
    if np.dtype(dtype) == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(dtype)


def make_line_drawings(n_images: int, size: int = 64, n_strokes: tuple[int, int] = (3, 9),
                       seed: int = 0) -> np.ndarray:
    """Line-drawing style images (image, y, x), uint8: dark anti-aliased strokes on white.

    Each image has a random number of strokes in ``n_strokes``: straight lines, circle
    outlines, polygons and Bezier curves drawn with :mod:`skimage.draw`.
    """
    if n_images < 1 or size < 8:
        raise NeuroxrError(f"make_line_drawings: n_images={n_images}, size={size}: need >= 1 image of >= 8 px")
    rng = np.random.default_rng(seed)
    out = np.empty((n_images, size, size), dtype=np.uint8)
    shape = (size, size)
    for i in range(n_images):
        ink = np.zeros(shape, dtype=np.float64)
        for _ in range(int(rng.integers(n_strokes[0], n_strokes[1] + 1))):
            kind = rng.integers(4)
            if kind == 0:
                r0, c0, r1, c1 = rng.integers(0, size, 4)
                rr, cc, val = draw.line_aa(int(r0), int(c0), int(r1), int(c1))
            elif kind == 1:
                r, c = rng.integers(size // 8, size - size // 8, 2)
                rad = int(rng.integers(max(2, size // 16), max(3, size // 3)))
                rr, cc, val = draw.circle_perimeter_aa(int(r), int(c), rad, shape=shape)
            elif kind == 2:
                r0, c0, r1, c1, r2, c2 = rng.integers(0, size, 6)
                rr, cc = draw.bezier_curve(int(r0), int(c0), int(r1), int(c1), int(r2), int(c2), 1.0, shape=shape)
                val = np.ones(len(rr))
            else:
                m = int(rng.integers(3, 6))
                pts = rng.integers(0, size, (m, 2))
                rr, cc = draw.polygon_perimeter(pts[:, 0], pts[:, 1], shape=shape, clip=True)
                val = np.ones(len(rr))
            keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            ink[rr[keep], cc[keep]] = np.maximum(ink[rr[keep], cc[keep]], val[keep])
        out[i] = np.clip(np.rint(255.0 * (1.0 - ink)), 0, 255).astype(np.uint8)
    return out


def write_image_folder(images, directory, prefix: str = "img", overwrite: bool = False) -> Path:
    """Write images (image, y, x) uint8 as ``directory/<prefix>_00000.png`` ... ; returns the folder."""
    d = Path(directory)
    if d.exists() and any(d.iterdir()) and not overwrite:
        raise StoreExistsError(f"{d} already exists and is not empty; pass --overwrite (overwrite=True) to replace its images")
    d.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    if images.ndim != 3:
        raise NeuroxrError(f"write_image_folder: images must be (image, y, x), got shape {images.shape}")
    width = max(5, len(str(len(images) - 1)))
    for i, im in enumerate(images):
        Image.fromarray(np.asarray(im, dtype=np.uint8), mode="L").save(d / f"{prefix}_{i:0{width}d}.png")
    return d


def make_synthetic_domains(out_dir, domains: dict | None = None, n_images: int = 64, size: int = 64,
                           seed: int = 0, overwrite: bool = False) -> dict[str, Path]:
    """Write the synthetic domains as image folders ``out_dir/<name>/``.

    Parameters
    ----------
    out_dir : path
    domains : dict name -> spec, optional
        Spec ``{"kind": "spectral", "p": float}`` or ``{"kind": "lines"}``; default
        :data:`DEFAULT_DOMAINS`.  A spec may override ``n_images`` and ``size``.
    n_images, size : int
        Images per domain and their side in pixels.
    seed : int
        Base seed; each domain gets its own stream.

    Returns
    -------
    dict name -> folder path
    """
    domains = DEFAULT_DOMAINS if domains is None else domains
    out = {}
    for i, (name, spec) in enumerate(domains.items()):
        spec = dict(spec)
        kind = spec.pop("kind", "spectral")
        n = int(spec.pop("n_images", n_images))
        s = int(spec.pop("size", size))
        dseed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        if kind == "spectral":
            imgs = make_spectral_images(n, size=s, p=float(spec.get("p", 2.0)), seed=dseed)
        elif kind == "lines":
            imgs = make_line_drawings(n, size=s, seed=dseed)
        else:
            raise NeuroxrError(f"make_synthetic_domains: domain {name!r} has kind={kind!r}; use 'spectral' or 'lines'")
        out[name] = write_image_folder(imgs, Path(out_dir) / name, overwrite=overwrite)
    return out
