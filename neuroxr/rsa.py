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
    "COMPARISONS",
    "RDM_KINDS",
    "STREAM_BLOCK_BYTES",
    "calc_rdm",
    "calc_rdm_noise_ceiling",
    "calc_spearman_brown",
    "compare_rdms",
    "compare_rdms_streamed",
    "corr_to_rdm",
    "split_trials",
    "upper_triangle",
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


# --- many images: RDM comparisons without any n x n matrix ----------------------------------------
#: bytes of one block of RDM rows (per layer or area) the streamed comparison holds
STREAM_BLOCK_BYTES = 32 * 2 ** 20


def _unit_rows(X):
    """Rows centred across columns and scaled to unit norm (NaN rows where a row is constant)."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=-1, keepdims=True)
    nrm = np.sqrt(np.einsum("...ij,...ij->...i", Xc, Xc))
    with np.errstate(invalid="ignore", divide="ignore"):
        return Xc / np.where(nrm > 0, nrm, np.nan)[..., None]


def compare_rdms_streamed(model, responses, kind: str = "gram", *, feature_sum=None, n_features=None,
                          method: str = "pearson", block_rows: int | None = None):
    """Pearson r between model and neural RDMs on their strict upper triangles, streamed by row blocks.

    The same number as ``compare_rdms(calc_rdm(...), calc_rdm(Y, "responses"), "pearson")`` for
    every (layer, area), without forming an RDM: the comparison needs only five sums over the
    pairs ``i < j`` (``sum a``, ``sum b``, ``sum a^2``, ``sum b^2``, ``sum a b``, with ``a``,
    ``b`` the correlations, since ``1 - r`` changes no Pearson r), accumulated over blocks of
    rows (memory: a block of rows per layer and area, :data:`STREAM_BLOCK_BYTES`).  The sums are
    taken about the first block's means (shifted), so no digits cancel.

    Parameters
    ----------
    model : array
        ``kind="gram"``: raw Gram matrices ``X X^T`` (layer, image, image) with ``feature_sum``
        (layer, image) and ``n_features`` (layer,) (the features store's ``gram``,
        ``feature_sum``); ``kind="features"``: the features, (layer, image, feature) or a sequence of
        (image, feature) of any widths.
    responses : sequence of arrays (image, neuron)
        One response matrix per area.
    method : {"pearson"}
        Rank comparisons need every pair's rank at once: refused here.

    Returns
    -------
    ndarray (layer, area); NaN where an image has no variance (as :func:`compare_rdms`).
    """
    if method != "pearson":
        raise NeuroxrError(f"streamed RDM comparison supports method 'pearson' only, got {method!r}: a rank "
                           "comparison needs all n (n - 1) / 2 pairs at once; use rsa_method='pearson' for many images")
    if kind == "features":  # layers may differ in width: a sequence of (image, feature)
        model = [np.asarray(x, dtype=np.float64) for x in model]
        L, n = len(model), model[0].shape[0]
    else:
        model = np.asarray(model, dtype=np.float64)
        L, n = model.shape[0], model.shape[1]
    if kind == "gram":
        if feature_sum is None or n_features is None:
            raise NeuroxrError("compare_rdms_streamed(kind='gram') needs feature_sum (layer, image) and n_features")
        s = np.asarray(feature_sum, dtype=np.float64)
        p = np.broadcast_to(np.asarray(n_features, dtype=np.float64), (L,))
        diag = np.einsum("lii->li", model) - s * s / p[:, None]
        with np.errstate(invalid="ignore"):
            d = np.sqrt(np.where(diag > 0, diag, np.nan))

        def model_rows(k, i0, i1):
            C = model[k, i0:i1] - s[k, i0:i1, None] * s[k, None, :] / p[k]
            return C / (d[k, i0:i1, None] * d[k, None, :])
    elif kind == "features":
        U = [_unit_rows(x) for x in model]

        def model_rows(k, i0, i1):
            return U[k][i0:i1] @ U[k].T
    else:
        raise NeuroxrError(f"compare_rdms_streamed: kind must be 'gram' or 'features', got {kind!r}")
    V = [_unit_rows(np.asarray(y, dtype=np.float64)) for y in responses]
    A = len(V)
    b = int(block_rows or max(1, STREAM_BLOCK_BYTES // (8 * n)))
    m = n * (n - 1) / 2.0
    sa, saa = np.zeros(L), np.zeros(L)
    sb, sbb = np.zeros(A), np.zeros(A)
    sab = np.zeros((L, A))
    ca = cb = None
    cols = np.arange(n)
    for i0 in range(0, n - 1, b):
        i1 = min(n - 1, i0 + b)
        mask = cols[None, :] > np.arange(i0, i1)[:, None]  # the pairs i < j of these rows
        ra = [np.where(mask, model_rows(k, i0, i1), 0.0) for k in range(L)]
        rb = [np.where(mask, v[i0:i1] @ v.T, 0.0) for v in V]
        cnt = mask.sum()
        if ca is None:  # shifts: the first block's means
            ca = np.array([x.sum() / cnt for x in ra])
            cb = np.array([x.sum() / cnt for x in rb])
        ra = [np.where(mask, x - ca[k], 0.0) for k, x in enumerate(ra)]
        rb = [np.where(mask, x - cb[a], 0.0) for a, x in enumerate(rb)]
        for k, x in enumerate(ra):
            sa[k] += x.sum()
            saa[k] += np.einsum("ij,ij->", x, x)
            for a, y in enumerate(rb):
                sab[k, a] += np.einsum("ij,ij->", x, y)
        for a, y in enumerate(rb):
            sb[a] += y.sum()
            sbb[a] += np.einsum("ij,ij->", y, y)
    cov = sab - sa[:, None] * sb[None, :] / m
    va, vb = saa - sa * sa / m, sbb - sb * sb / m
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(va[:, None] * vb[None, :])
    const = (va[:, None] <= 1e-24 * m) | (vb[None, :] <= 1e-24 * m)
    return np.where(np.isfinite(r) & ~const, np.clip(r, -1.0, 1.0), np.nan)
