"""Naturalness of an image domain from the slope of its Fourier power spectrum.

Natural images have a power spectrum close to ``A / f^2``.  For each image (centre crop,
grayscale) the radially averaged power spectrum is fitted to ``A / f^p``; a domain's
naturalness is ``-log|p_mean - 2|`` (Prasad et al. 2022; talmolab/domain_rep
``rep_analysis/power_spectrum.py`` for the crop, the bins and the model).

The fit is a least-squares line in log-log space (``log P = log A - p log f``).  domain_rep
fits ``(a/f)^p`` in linear space with ``curve_fit``, which weights the few lowest
frequencies almost exclusively and does not recover the slope of synthetic ``1/f^p``
images to 0.1; pass ``fit="linear"`` for that behaviour.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.optimize import curve_fit
from scipy.stats import binned_statistic

from ..errors import MissingDataError, NeuroxrError

__all__ = [
    "IMAGE_SUFFIXES",
    "list_domain_images",
    "read_grayscale",
    "calc_power_spectrum",
    "fit_power_law",
    "calc_spectral_slopes",
    "calc_naturalness",
    "summarize_naturalness",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".npy")
NATURALNESS_COLUMNS = ("domain", "n_images", "p_mean", "p_sd", "naturalness")


def list_domain_images(directory) -> list[Path]:
    """All image files under ``directory`` (recursive, sorted); error if there are none."""
    d = Path(directory)
    if not d.is_dir():
        raise MissingDataError(f"{d}: domain directory does not exist; pass a folder of images")
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise MissingDataError(f"{d}: no image files ({', '.join(IMAGE_SUFFIXES)}) found in this domain directory")
    return files


def read_grayscale(path) -> np.ndarray:
    """One image file as a float64 (y, x) array in the file's own units (``.npy`` or PIL)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        arr = np.load(path)
        arr = np.squeeze(arr)
        if arr.ndim == 3:  # (y, x, c) or (c, y, x)
            arr = arr.mean(axis=-1) if arr.shape[-1] in (3, 4) else arr.mean(axis=0)
        if arr.ndim != 2:
            raise NeuroxrError(f"{path}: array of shape {arr.shape} is not an image (y, x)")
        return arr.astype(np.float64)
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


def _center_crop(img: np.ndarray, crop: int | None) -> np.ndarray:
    h, w = img.shape
    s = min(h, w) if crop is None else min(int(crop), h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return img[y0:y0 + s, x0:x0 + s]


def calc_power_spectrum(image, crop: int | None = 256) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged Fourier power spectrum of one grayscale image.

    Parameters
    ----------
    image : array (y, x)
        Grayscale image (RGB (y, x, 3) is averaged over channels).
    crop : int, optional
        Side of the square centre crop (smaller images: the largest centred square).

    Returns
    -------
    f : ndarray (bin,)
        Spatial frequency in cycles per image (mean |k| of the bin's pixels), about
        1 .. side // 2.
    power : ndarray (bin,)
        Mean |FFT|^2 in the annulus ``f - 0.5 <= |k| < f + 0.5``.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    if img.ndim != 2:
        raise NeuroxrError(f"calc_power_spectrum: image must be (y, x), got shape {img.shape}")
    img = _center_crop(img, crop)
    n = img.shape[0]
    if n < 8:
        raise NeuroxrError(f"calc_power_spectrum: image side {n} px is too small (need >= 8)")
    power = np.abs(np.fft.fft2(img)) ** 2
    k = np.fft.fftfreq(n) * n
    knrm = np.hypot(*np.meshgrid(k, k, indexing="ij")).ravel()
    edges = np.arange(0.5, n // 2 + 1, 1.0)
    mean, _, _ = binned_statistic(knrm, power.ravel(), statistic="mean", bins=edges)
    # the bin's frequency is the mean |k| of its pixels (not the bin centre: at low f the
    # annulus holds few, off-centre pixels, and the centre biases the slope by ~0.07)
    f, _, _ = binned_statistic(knrm, knrm, statistic="mean", bins=edges)
    return f, mean


def fit_power_law(f, power, fit: str = "loglog") -> tuple[float, float]:
    """Fit ``power = A / f^p``; returns ``(p, A)``.

    ``fit="loglog"``: least squares of ``log power`` on ``log f`` (default);
    ``fit="linear"``: :func:`scipy.optimize.curve_fit` of ``(a / f)^p`` in linear space as in
    domain_rep (``A = a^p``).  Bins with zero or non-finite power are ignored.
    """
    f = np.asarray(f, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    ok = np.isfinite(power) & (power > 0) & (f > 0)
    if ok.sum() < 3:
        return np.nan, np.nan
    lf, lp = np.log(f[ok]), np.log(power[ok])
    slope, intercept = np.polyfit(lf, lp, 1)
    p, A = -slope, float(np.exp(intercept))
    if fit == "loglog":
        return float(p), A
    if fit == "linear":
        def model(x, p_, a_):
            return (a_ / x) ** p_

        a0 = A ** (1.0 / p) if p > 0 else 1.0
        try:
            (p2, a2), _ = curve_fit(model, f[ok], power[ok], p0=[p, a0], maxfev=20000)
        except RuntimeError:
            return np.nan, np.nan
        return float(p2), float(a2 ** p2)
    raise NeuroxrError(f"fit_power_law: fit={fit!r} is not one of 'loglog', 'linear'")


def calc_spectral_slopes(images, crop: int | None = 256, fit: str = "loglog") -> np.ndarray:
    """Spectral slope p of every image.

    Parameters
    ----------
    images : iterable of arrays (y, x), or array (image, y, x), or image file paths

    Returns
    -------
    p : ndarray (image,)
    """
    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            im = read_grayscale(im)
        f, pw = calc_power_spectrum(im, crop=crop)
        out.append(fit_power_law(f, pw, fit=fit)[0])
    return np.asarray(out, dtype=np.float64)


def calc_naturalness(p) -> np.ndarray:
    """``-log|p - 2|`` (natural log); +inf at exactly p = 2."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.log(np.abs(p - 2.0))


def summarize_naturalness(domains, n_samples: int | None = 1000, crop: int | None = 256,
                          fit: str = "loglog", seed: int = 0, return_slopes: bool = False):
    """Per-domain mean and sd of the spectral slope and the naturalness.

    Parameters
    ----------
    domains : dict name -> directory, or list of directories (name = folder name)
    n_samples : int, optional
        Random sample of images per domain (all when fewer or None); domain_rep used 27,750.
    crop, fit :
        As in :func:`calc_power_spectrum` and :func:`fit_power_law`.
    seed : int
        Seed of the image sample.

    Returns
    -------
    table : DataFrame
        Columns ``domain, n_images, p_mean, p_sd, naturalness`` (``naturalness =
        -log|p_mean - 2|``), one row per domain in the order given.
    slopes : dict name -> ndarray (image,), only with ``return_slopes``.
    """
    if not isinstance(domains, dict):
        domains = {Path(d).name: d for d in domains}
    if not domains:
        raise NeuroxrError("summarize_naturalness: no domain directories given")
    rows, slopes = [], {}
    for i, (name, d) in enumerate(domains.items()):
        files = list_domain_images(d)
        if n_samples is not None and len(files) > n_samples:
            pick = np.random.default_rng([seed, i]).choice(len(files), size=int(n_samples), replace=False)
            files = [files[j] for j in sorted(pick)]
        p = calc_spectral_slopes(files, crop=crop, fit=fit)
        slopes[name] = p
        good = p[np.isfinite(p)]
        p_mean = float(good.mean()) if good.size else np.nan
        p_sd = float(good.std(ddof=1)) if good.size > 1 else np.nan
        rows.append({"domain": name, "n_images": int(good.size), "p_mean": p_mean, "p_sd": p_sd,
                     "naturalness": float(calc_naturalness(p_mean))})
    table = pd.DataFrame(rows, columns=list(NATURALNESS_COLUMNS))
    return (table, slopes) if return_slopes else table
