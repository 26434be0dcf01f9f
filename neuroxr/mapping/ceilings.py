"""Noise ceilings of the scores, from trials: per neuron (ridge r) and per area (RSA r).

Labels-free NumPy kernels.

Why the ceiling of a Pearson r is the *square root* of the Spearman-Brown reliability
------------------------------------------------------------------------------------------
Write a neuron's trial-averaged response as ``y = s + e`` (signal plus noise independent of it).
The split-half correlation of two half means, Spearman-Brown corrected to the full number of
trials, estimates the reliability ``rho = var(s) / var(y)``: the correlation of ``y`` with an
independent repeat of itself.  A perfect model predicts ``s``, and ``corr(s, y) = sqrt(rho)``.
So ``sqrt(rho)`` is the largest Pearson r a model can expect against ``y``, and ``r / sqrt(rho)``
estimates the model's correlation with the signal.  Dividing by ``rho`` itself (as done with
Brain-Score's ceiling of Pearson r) treats a data-vs-data correlation as the ceiling of a
model-vs-data one and over-corrects: a perfect model would score ``sqrt(rho) / rho > 1``.

The same argument holds for an area's RDM: the Spearman-Brown corrected correlation of the RDMs
of two halves of the trials is the reliability of the full RDM, and the ceiling of ``rsa_r``
is its square root (approximately: the noise of an RDM entry is not exactly additive and
independent).  ``rsa_ceiling``, which RSA writes, is that reliability itself (odd/even split);
``rsa_r_ceiling`` is the ceiling ``rsa_r`` is divided by.

How it is computed
------------------
- Point estimate: ``n_splits`` random splits of each (neuron, image)'s trials, drawn by
  :func:`neuroxr.responses.draw_split_keys` (the rule of ``splithalf_r``: the first ``k // 2``
  of an image's ``k`` available trials, in key order, form half A); per split the Pearson r
  across images of the two half means (images with fewer than 2 trials left out), corrected
  with Spearman-Brown; the mean over splits is the reliability ``rho`` (for a neuron the same
  number as :func:`neuroxr.responses.calc_splithalf_reliability` with those splits), and the
  ceiling is ``sqrt(rho)`` (NaN where ``rho <= 0``: no reliable signal).
- Interval: ``n_boot`` bootstrap resamples of the images (the same splits); each resample's
  ceiling is ``sqrt(max(rho_b, 0))`` and the interval is its 2.5 and 97.5 percentiles.  For a
  neuron a resample is an image-weighted Pearson r; for an RDM the pairs of an image with its
  own duplicate are left out (as rsatoolbox does).
"""
from __future__ import annotations

import numpy as np

from .. import rsa
from ..responses import draw_split_keys
from .kernels import split_trial_means

__all__ = ["calc_neuron_ceilings", "calc_rdm_ceilings", "calc_reliability_ceiling"]


def calc_reliability_ceiling(rho):
    """``sqrt(rho)`` where ``rho > 0``, NaN elsewhere."""
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(rho > 0, np.sqrt(np.where(rho > 0, rho, 0.0)), np.nan)


def _weighted_r(W, a, b, ok):
    """Weighted Pearson r across images: weights W (B, n) x ok (N, n), values a, b (N, n) -> (B, N)."""
    okf = ok.astype(np.float64)
    a = np.where(ok, a, 0.0)
    b = np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.maximum(okf.sum(1, keepdims=True), 1)
        a = np.where(ok, a - a.sum(1, keepdims=True) / cnt, 0.0)  # centred first: no cancellation below
        b = np.where(ok, b - b.sum(1, keepdims=True) / cnt, 0.0)
        sw = W @ okf.T
        sa, sb = W @ a.T, W @ b.T
        saa, sbb, sab = W @ (a * a).T, W @ (b * b).T, W @ (a * b).T
        cab = sab - sa * sb / sw
        caa = saa - sa * sa / sw
        cbb = sbb - sb * sb / sw
        r = cab / np.sqrt(caa * cbb)
    few = (W > 0).astype(np.float64) @ okf.T < 3  # fewer than 3 distinct images: no correlation
    return np.where(few | ~np.isfinite(r), np.nan, r)


def calc_neuron_ceilings(trials, *, n_splits: int = 10, seed: int = 0, boots=None):
    """Per-neuron ceiling of a Pearson r and its bootstrap interval.

    Parameters
    ----------
    trials : array (neuron, image, trial)
        NaN-padded.
    n_splits, seed : int
        The random trial splits (:func:`neuroxr.responses.draw_split_keys`).
    boots : int array (boot, image), optional
        Image resamples (:func:`neuroxr.mapping.resample.draw_image_resamples`); None: no interval.

    Returns
    -------
    ndarray (4, neuron)
        ``ceiling = sqrt(rho)``, ``low``, ``high`` (NaN without ``boots``), and ``rho``, the
        Spearman-Brown split-half reliability (mean over splits).
    """
    t = np.asarray(trials, dtype=np.float64)
    N, n, T = t.shape
    keys = draw_split_keys(int(n_splits), n, T, int(seed))
    W = np.ones((1, n))
    if boots is not None:
        boots = np.asarray(boots)
        W = np.concatenate([W, np.stack([np.bincount(b, minlength=n) for b in boots]).astype(np.float64)])
    sb = np.zeros((W.shape[0], N))
    for s in range(int(n_splits)):
        a, b = split_trial_means(t, keys[s])
        ok = np.isfinite(a) & np.isfinite(b)
        sb += rsa.calc_spearman_brown(_weighted_r(W, a, b, ok))
    rho = sb / int(n_splits)
    out = np.full((4, N), np.nan)
    out[0] = calc_reliability_ceiling(rho[0])
    out[3] = rho[0]
    if boots is not None and len(boots):
        ceil_b = np.sqrt(np.clip(rho[1:], 0.0, None))
        out[1:3] = _percentiles(ceil_b)
    return out


def _percentiles(samples):
    """2.5 and 97.5 percentiles over axis 0, NaN draws left out -> (2, ...)."""
    ok = np.isfinite(samples).any(axis=0)
    out = np.full((2,) + samples.shape[1:], np.nan)
    if ok.any():
        out[:, ok] = np.nanpercentile(samples[:, ok], [2.5, 97.5], axis=0)
    return out


def calc_rdm_ceilings(trials, *, method: str = "pearson", n_splits: int = 10, seed: int = 0, boots=None):
    """Ceiling of an RDM comparison for one group of neurons (an area) and its bootstrap interval.

    ``trials`` (neuron, image, trial) of the group's neurons; see :func:`calc_neuron_ceilings`.
    Each split's two half-mean RDMs (``1 - Pearson`` across the neurons) are compared with
    ``method`` on their upper triangles; on a bootstrap resample, on the pairs of distinct images.

    Returns
    -------
    ndarray (4,)
        ``ceiling``, ``low``, ``high``, ``rho``.
    """
    t = np.asarray(trials, dtype=np.float64)
    _, n, T = t.shape
    keys = draw_split_keys(int(n_splits), n, T, int(seed))
    iu = np.triu_indices(n, 1)
    fn = rsa.COMPARISONS[method]
    B = 0 if boots is None else len(boots)
    sb = np.zeros(1 + B)
    for s in range(int(n_splits)):
        a, b = split_trial_means(t, keys[s])
        ra, rb = rsa.calc_rdm(a.T, "responses"), rsa.calc_rdm(b.T, "responses")
        r = [fn(ra[iu][None], rb[iu][None])[0, 0]]
        for idx in (boots if B else ()):
            keep = idx[iu[0]] != idx[iu[1]]
            i, j = idx[iu[0]][keep], idx[iu[1]][keep]
            r.append(fn(ra[i, j][None], rb[i, j][None])[0, 0])
        sb += rsa.calc_spearman_brown(np.asarray(r))
    rho = sb / int(n_splits)
    out = np.full(4, np.nan)
    out[0] = calc_reliability_ceiling(rho[0])
    out[3] = rho[0]
    if B:
        out[1:3] = _percentiles(np.sqrt(np.clip(rho[1:], 0.0, None))[:, None])[:, 0]
    return out
