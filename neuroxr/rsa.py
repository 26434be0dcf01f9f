"""Representational dissimilarity matrices (RDMs), their comparison and noise ceilings.

Plain-array functions, samples first (``(image, feature)``, ``(image, neuron)``), batched over
leading axes; verb-first names and dispatch by dict, in the style of rsatoolbox.

- :func:`calc_rdm`: ``1 - Pearson r`` between images, from features, from a Gram matrix and
  per-image feature sums (so a layer of millions of features never has to be read again),
  or from responses.
- :func:`compare_rdms`: Pearson (default), Spearman or Kendall's tau-a on the upper triangle.
- :func:`calc_rdm_noise_ceiling`: split-half reliability of each area's RDM from trials,
  Spearman-Brown corrected.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, rankdata

from .errors import NeuroxrError
from .mapping.kernels import calc_pearson, split_trial_means
from .responses import draw_split_keys

__all__ = [
    "RDM_KINDS",
    "COMPARISONS",
    "calc_rdm",
    "corr_to_rdm",
    "compare_rdms",
    "upper_triangle",
    "calc_spearman_brown",
    "split_trials",
    "calc_rdm_noise_ceiling",
]


# --- RDMs -------------------------------------------------------------------------------------
def corr_to_rdm(C):
    """Correlation matrices from covariances C (..., n, n) -> RDMs ``1 - r`` (zero diagonal, NaN rows for zero variance)."""
    d = np.sqrt(np.diagonal(C, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        R = C / (d[..., :, None] * d[..., None, :])
    bad = ~(d > 0)
    R = np.where(bad[..., :, None] | bad[..., None, :], np.nan, np.clip(R, -1.0, 1.0))
    rdm = 1.0 - R
    n = rdm.shape[-1]
    idx = np.arange(n)
    rdm[..., idx, idx] = 0.0
    return rdm


def _rdm_from_features(X, **_):
    """X (..., image, feature): rows are images."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=-1, keepdims=True)
    C = Xc @ np.swapaxes(Xc, -1, -2)
    return corr_to_rdm(C)


def _rdm_from_gram(K, *, feature_sum=None, n_features=None, **_):
    """K (..., image, image) = X X^T of raw features, feature_sum (..., image) = X.sum(-1)."""
    if feature_sum is None or n_features is None:
        raise NeuroxrError("calc_rdm(kind='gram') needs feature_sum (..., image) and n_features")
    K = np.asarray(K, dtype=np.float64)
    s = np.asarray(feature_sum, dtype=np.float64)
    p = np.asarray(n_features, dtype=np.float64)
    C = K - s[..., :, None] * s[..., None, :] / p[..., None, None]
    return corr_to_rdm(C)


def _rdm_from_responses(Y, **_):
    """Y (image, neuron): rows are images (the response pattern across neurons)."""
    return _rdm_from_features(Y)


#: kind -> function(data, **kw) -> RDM (..., image, image)
RDM_KINDS = {
    "features": _rdm_from_features,
    "gram": _rdm_from_gram,
    "responses": _rdm_from_responses,
}


def calc_rdm(data, kind: str = "features", *, feature_sum=None, n_features=None):
    """``1 - Pearson r`` between every pair of images.

    Parameters
    ----------
    data : array
        ``kind="features"``: (..., image, feature); ``kind="responses"``: (image, neuron);
        ``kind="gram"``: (..., image, image), the raw Gram matrix ``X X^T``.
    kind : {"features", "gram", "responses"}
    feature_sum : array (..., image), with ``kind="gram"``
        ``X.sum(-1)`` of the same raw features.
    n_features : int or array (...), with ``kind="gram"``

    Returns
    -------
    rdm : ndarray (..., image, image)
        Zero diagonal; rows of an image with no variance across features are NaN.
    """
    if kind not in RDM_KINDS:
        raise NeuroxrError(f"unknown RDM kind {kind!r}; choose one of {sorted(RDM_KINDS)}")
    return RDM_KINDS[kind](data, feature_sum=feature_sum, n_features=n_features)


def upper_triangle(rdm):
    """The strict upper triangle (..., n (n - 1) / 2) of RDMs (..., n, n)."""
    rdm = np.asarray(rdm)
    n = rdm.shape[-1]
    i, j = np.triu_indices(n, k=1)
    return rdm[..., i, j]


# --- comparisons ------------------------------------------------------------------------------
def _pairwise_pearson(a, b):
    """a (A, m), b (B, m) -> (A, B); NaN where a vector is constant or has NaN."""
    return calc_pearson(a, b, pairwise=True)


def _rank(v):
    out = rankdata(v, axis=-1, method="average").astype(np.float64)
    return np.where(np.isnan(v).any(axis=-1, keepdims=True), np.nan, out)


def _pairwise_spearman(a, b):
    return _pairwise_pearson(_rank(a), _rank(b))


def _tie_pairs(v):
    _, counts = np.unique(v, return_counts=True)
    return float((counts * (counts - 1) / 2.0).sum())


def _pairwise_kendall_tau_a(a, b):
    """Kendall's tau-a: (concordant - discordant) / (m (m - 1) / 2); ties count as neither.

    From scipy's O(m log m) tau-b: ``tau_a = tau_b sqrt((n0 - n1)(n0 - n2)) / n0`` with ``n0``
    the number of pairs and ``n1``, ``n2`` the pairs tied in each vector.
    """
    A, m = a.shape
    B = b.shape[0]
    out = np.full((A, B), np.nan)
    n0 = m * (m - 1) / 2.0
    ties_b = [None if np.isnan(y).any() else _tie_pairs(y) for y in b]
    for i in range(A):
        x = a[i]
        if np.isnan(x).any():
            continue
        n1 = _tie_pairs(x)
        for j in range(B):
            if ties_b[j] is None:
                continue
            tb = kendalltau(x, b[j], variant="b").statistic
            if np.isfinite(tb):
                out[i, j] = tb * np.sqrt((n0 - n1) * (n0 - ties_b[j])) / n0
    return out


#: method -> function(a (A, m), b (B, m)) -> (A, B)
COMPARISONS = {
    "pearson": _pairwise_pearson,
    "spearman": _pairwise_spearman,
    "kendall": _pairwise_kendall_tau_a,
    "tau-a": _pairwise_kendall_tau_a,
}


def compare_rdms(rdm_a, rdm_b, method: str = "pearson", *, pairwise: bool = True):
    """Compare RDMs on their strict upper triangles.

    Parameters
    ----------
    rdm_a : array (..., image, image)  or (image, image)
    rdm_b : array (..., image, image)  or (image, image)
    method : {"pearson", "spearman", "kendall"}
        ``"kendall"`` is tau-a (ties count as neither concordant nor discordant).
    pairwise : bool
        ``True``: every RDM of ``rdm_a`` against every RDM of ``rdm_b``, result
        ``(a_leading..., b_leading...)``.  ``False``: ``rdm_a`` and ``rdm_b`` are broadcast
        against each other and compared element by element.

    Returns
    -------
    ndarray (or float for two single RDMs); NaN where an RDM is constant or has NaN.
    """
    if method not in COMPARISONS:
        raise NeuroxrError(f"unknown RDM comparison {method!r}; choose one of {sorted(COMPARISONS)}")
    a = upper_triangle(np.asarray(rdm_a, dtype=np.float64))
    b = upper_triangle(np.asarray(rdm_b, dtype=np.float64))
    fn = COMPARISONS[method]
    if pairwise:
        la, lb = a.shape[:-1], b.shape[:-1]
        out = fn(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])).reshape(la + lb)
    else:
        a, b = np.broadcast_arrays(a, b)
        lead = a.shape[:-1]
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        out = np.array([fn(x[None], y[None])[0, 0] for x, y in zip(a2, b2)]).reshape(lead)
    return float(out) if np.ndim(out) == 0 else out


# --- noise ceiling ----------------------------------------------------------------------------
def calc_spearman_brown(r, factor: float = 2.0):
    """Spearman-Brown prophecy ``k r / (1 + (k - 1) r)`` (``k = 2``: split-half to full)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


def split_trials(trials, *, seed: int | None = None):
    """Two half means of NaN-padded trials.

    Parameters
    ----------
    trials : array (neuron, image, trial)
        NaN where an image had fewer trials.
    seed : int, optional
        ``None``: odd/even split of each (neuron, image)'s valid trials in recorded order.
        An int: a random split of the valid trials, drawn by
        :func:`neuroxr.responses.draw_split_keys` (the split-half reliability's rule).

    Returns
    -------
    half_a, half_b : ndarray (neuron, image)
        NaN where a half has no trial.
    """
    t = np.asarray(trials, dtype=np.float64)
    keys = None if seed is None else draw_split_keys(1, t.shape[1], t.shape[2], seed)[0]
    return split_trial_means(t, keys)


def calc_rdm_noise_ceiling(trials, groups, *, method: str = "pearson", n_splits: int = 1, seed: int = 0):
    """Split-half noise ceiling of each group's (area's) RDM, Spearman-Brown corrected.

    For each split, the trials of every neuron and image are divided in two halves; each
    area's RDM is computed from each half and the two RDMs are compared (``method``); the
    ceiling is the Spearman-Brown correction ``2 r / (1 + r)`` of the mean r over splits.

    Parameters
    ----------
    trials : array (neuron, image, trial)
        NaN-padded.
    groups : array (neuron,)
        Area (or any group label) of each neuron.
    method : str
        Comparison of :func:`compare_rdms`.
    n_splits : int
        1: the odd/even split; more: the odd/even split plus ``n_splits - 1`` random splits.

    Returns
    -------
    labels : ndarray (group,)
        Sorted unique group labels.
    ceiling : ndarray (group,)
        Spearman-Brown corrected split-half RDM correlation.
    r_half : ndarray (group,)
        The uncorrected split-half correlation.
    """
    groups = np.asarray(groups)
    labels = np.unique(groups)
    rs = np.zeros((n_splits, labels.size))
    for k in range(n_splits):
        a, b = split_trials(trials, seed=None if k == 0 else seed + k)
        for g, lab in enumerate(labels):
            m = groups == lab
            ra = calc_rdm(a[m].T, "responses")
            rb = calc_rdm(b[m].T, "responses")
            rs[k, g] = compare_rdms(ra, rb, method)
    r = rs.mean(axis=0)
    return labels, calc_spearman_brown(r), r
