"""Labels-free kernels of scoring: NumPy (or a backend) functions on plain arrays.

Samples first (``K (..., image, image)``, ``Y (image, neuron)``), batched over leading axes
(layers); no xarray, no Dask.  The Dask graph (:mod:`neuroxr.mapping.graph`) maps these over
chunks.

- :func:`calc_pearson`: THE Pearson r of the package (column-wise or pairwise).
- :func:`decompose_gram`, :func:`calc_residual_operator`, :func:`calc_residual_operators`: the
  leave-one-out ridge residual operators ``R`` from a Gram matrix (see :mod:`neuroxr.mapping.ridge`).
- :func:`calc_loo_residuals` (predictions) and :func:`calc_loo_scores` (Pearson r, blocked for
  thousands of neurons) from ``R``.
- :func:`calc_zscored_grams`, :func:`calc_raw_grams`, :func:`split_trial_means`.

RDMs and their comparisons are in :mod:`neuroxr.rsa`, PLS in :mod:`neuroxr.mapping.pls` (both
plain-array modules too, using :func:`calc_pearson`).
"""
from __future__ import annotations

import numpy as np

from ..errors import NeuroxrError
from .backend import get_backend
from .gram import calc_zscored_gram

__all__ = [
    "ALPHA_RTOL",
    "CONSTANT_COLUMN_RTOL",
    "CONSTANT_LAYER_RTOL",
    "REDO_RTOL",
    "AlphaScaleError",
    "calc_loo_residuals",
    "calc_loo_scores",
    "calc_mean_free_pearson",
    "calc_paper_alpha_scale",
    "calc_pearson",
    "calc_raw_grams",
    "calc_residual_operator",
    "calc_residual_operators",
    "calc_zscored_grams",
    "check_alpha_scale",
    "decompose_gram",
    "find_constant_layers",
    "split_trial_means",
]

#: smallest penalty relative to the Gram matrix's scale (trace(K) / n): below it the residual
#: operator underflows and every leave-one-out score would be NaN
ALPHA_RTOL = 1e-15


class AlphaScaleError(NeuroxrError, ValueError):
    """A ridge penalty too small for the Gram matrix's scale."""


#: relative size under which K' counts as zero (a constant layer)
CONSTANT_LAYER_RTOL = 1e-12
#: relative spread under which a column counts as constant (NaN Pearson r)
CONSTANT_COLUMN_RTOL = 1e-12
#: below this prediction/response variance ratio, the LOO Pearson r is recomputed from centred predictions
REDO_RTOL = 1e-6
#: neurons per pass in the leave-one-out block (E and the Y block stay in a core's cache)
COL_BLOCK = 1024
MIN_BLOCK_FLOPS = 4_000_000


# --- Pearson ----------------------------------------------------------------------------------
def _standardise(v, axis):
    """Centred, unit-norm along ``axis``; NaN where the spread is tiny against the magnitude."""
    vc = v - v.mean(axis=axis, keepdims=True)
    ss = (vc * vc).sum(axis=axis, keepdims=True)
    n = v.shape[axis]
    scale = np.abs(v).max(axis=axis, keepdims=True) if n else np.zeros_like(ss)
    const = ss <= (CONSTANT_COLUMN_RTOL * scale) ** 2 * n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(const, np.nan, vc / np.sqrt(ss))


def calc_pearson(a, b, axis: int = 0, *, pairwise: bool = False):
    """Pearson r, vectorised (centre, normalise, one dot per pair); constant or NaN vectors give NaN.

    Parameters
    ----------
    a, b : array
        ``pairwise=False``: the same shape (or broadcastable), ``axis`` the sample axis, e.g.
        (image, neuron); the result has ``axis`` removed.  ``pairwise=True``: ``a (A, m)`` and
        ``b (B, m)``, every row of ``a`` against every row of ``b``, result (A, B).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if pairwise:
        return np.clip(_standardise(a, -1) @ _standardise(b, -1).T, -1.0, 1.0)
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    r = (_standardise(a, axis) * _standardise(b, axis)).sum(axis=axis)
    return np.where(np.isfinite(r), np.clip(r, -1.0, 1.0), np.nan)


def calc_mean_free_pearson(pred, Y, axis: int = 0):
    """Pearson r of leave-one-out predictions without their leave-one-out intercept.

    With an intercept, the leave-one-out prediction of sample ``i`` is
    ``mean(y_j, j != i) + f_i(x_i)``.  The first term, ``(sum(y) - y_i) / (n - 1)``, has a
    Pearson r of exactly -1 with ``y`` whatever the features: it is what drags leave-one-out
    r below 0 on noise (to -1 at a large penalty, and, at any penalty, as the features get wide:
    the model part shrinks against it like ``n^3 / p``).  ``f_i(x_i)`` is built from the other
    samples only, so on features unrelated to ``y`` its covariance with ``y`` has expectation
    exactly 0.  This is r(pred - mean of the others, y), along ``axis``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[axis]
    others = (Y.sum(axis=axis, keepdims=True) - Y) / (n - 1)
    return calc_pearson(pred - others, Y, axis=axis)


# --- leave-one-out ridge ----------------------------------------------------------------------
def decompose_gram(K, *, backend="numpy"):
    """Eigendecomposition of ``K`` (..., image, image) restricted to the complement of the all-ones vector.

    Returns
    -------
    s : (..., image - 1) eigenvalues of ``K' = V^T K V``
    W : (..., image, image - 1) ``V U``, eigenvectors mapped back to image space
    scale : (...) ``trace(K)`` (constant layers: ``sum(s) <= 1e-12 scale``)
    """
    xb = get_backend(backend)
    K = xb.asarray(K)
    n = K.shape[-1]
    if n < 3:
        raise NeuroxrError(f"leave-one-out ridge needs at least 3 images, got {n}")
    # the reflection P = I - beta v v^T applied as two rank-one updates (O(n^2), not two n x n
    # products): K' = (P K P)[1:, 1:] = V^T K V and W = P[:, 1:] U = V U
    v_np = np.full(n, 1.0 / np.sqrt(n))
    v_np[0] += 1.0  # v = u + e1 (no cancellation); P maps u to -e1
    beta = 2.0 / float(v_np @ v_np)
    v = xb.asarray(v_np)
    PK = K - beta * v[:, None] * (v @ K)[..., None, :]
    PKP = PK - beta * (PK @ v)[..., :, None] * v[None, :]
    Kp = PKP[..., 1:, 1:]
    Kp = 0.5 * (Kp + xb.swap_last(Kp))
    s, U = xb.eigh(Kp)
    W = -beta * v[:, None] * (v[1:] @ U)[..., None, :]
    W[..., 1:, :] += U
    return s, W, xb.einsum("...ii->...", K)


def calc_residual_operator(s, W, alpha, *, backend="numpy"):
    """``R = W diag(alpha / (s + alpha)) W^T`` (..., image, image): the ridge residual operator."""
    xb = get_backend(backend)
    f = alpha / (s + alpha)
    return (W * f[..., None, :]) @ xb.swap_last(W)


def find_constant_layers(s, scale, xb):
    """True where ``K'`` vanishes against ``trace(K)`` (constant features predict nothing)."""
    total = xb.einsum("...i->...", xb.abs(s))
    return total <= CONSTANT_LAYER_RTOL * xb.where(scale > 0, scale, 1.0)


def check_alpha_scale(K, alphas, finite=None) -> None:
    """Refuse a penalty below :data:`ALPHA_RTOL` x ``trace(K) / n`` of a finite layer of ``K`` (L, n, n)."""
    scale = np.einsum("lii->l", K) / K.shape[-1]
    if finite is not None:
        scale = scale[finite]
    top = float(scale.max()) if scale.size else 0.0
    low = min(alphas)
    if top > 0 and low < ALPHA_RTOL * top:
        raise AlphaScaleError(
            f"ridge penalty alpha={low:g} is below {ALPHA_RTOL:g} x the Gram matrix's scale (trace/n = {top:.4g}): "
            f"every leave-one-out fit would underflow to NaN; use alpha >= {ALPHA_RTOL * top:.3g}")


def calc_residual_operators(K, alphas, backend="numpy", alpha_scale=None):
    """K (L, n, n) -> residual operators R (L, A, n, n), numpy; NaN for non-finite or constant layers.

    ``alpha_scale`` (L,), optional: layer ``l`` uses the penalties ``alphas * alpha_scale[l]``
    (e.g. :func:`calc_paper_alpha_scale`).
    """
    K = np.asarray(K, dtype=np.float64)
    finite = np.isfinite(K).all(axis=(-2, -1))
    L = K.shape[0]
    scale = np.ones(L) if alpha_scale is None else np.broadcast_to(np.asarray(alpha_scale, dtype=np.float64), (L,))
    ok = finite & np.isfinite(scale) & (scale > 0)
    for k in np.flatnonzero(ok):
        check_alpha_scale(K[k:k + 1], [a * scale[k] for a in alphas])
    K0 = np.where(finite[:, None, None], K, 0.0)
    xb = get_backend(backend)
    s, W, tr = decompose_gram(K0, backend=xb)
    bad = np.asarray(xb.to_numpy(find_constant_layers(s, tr, xb))) | ~ok
    sc = xb.asarray(np.where(ok, scale, 1.0))[:, None]
    R = np.stack([np.asarray(xb.to_numpy(calc_residual_operator(s, W, a * sc, backend=xb))) for a in alphas], axis=1)
    R[bad] = np.nan
    return R


def calc_paper_alpha_scale(K, n_components=None):
    """Per layer, the factor that makes a penalty mean on ``K`` what it means after the paper's projection.

    ``K`` (L, n, n) is the Gram matrix of z-scored features: ``trace(K) = n p`` (``p`` the
    non-constant features).  The paper projects layers wider than ``c`` components
    (Johnson-Lindenstrauss, eps 0.1: 4,089 for 118 images) and z-scores the components, so its
    Gram matrix has trace ``n c`` and, component by component, ``K_srp ~ (c / p) K``.  Ridge with
    penalty ``alpha`` on ``K_srp`` is ridge with ``alpha p / c`` on ``K`` (scaling ``K`` and
    ``alpha`` together changes nothing): the penalty keeps its size against the mean eigenvalue
    of the Gram matrix at every width.  Layers with ``p <= c`` the paper keeps as they are
    (:mod:`neuroxr.features.reduce`), so their factor is 1.  The factor is therefore
    ``max(1, trace(K) / (n c))``, (L,) (NaN where the trace is 0 or not finite).
    """
    from .srp import find_n_components

    K = np.asarray(K, dtype=np.float64)
    n = K.shape[-1]
    c = find_n_components(n) if n_components is None else int(n_components)
    tr = np.einsum("...ii->...", K)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(tr) & (tr > 0), np.maximum(1.0, tr / (n * c)), np.nan)


def _loo_maps(R):
    """``M = diag(R)^-1 R`` (..., n, n): leave-one-out residuals are ``M Y``."""
    return R / np.diagonal(R, axis1=-2, axis2=-1)[..., :, None]


def calc_loo_residuals(R, Y):
    """Leave-one-out residuals for the best alpha of each neuron.

    R (L, A, n, n), Y (n, N) -> (E (L, n, N), alpha index (L, N)): ``E = (R Y) / diag(R)``
    for the alpha of least leave-one-out squared error (ties keep the first, as scikit-learn).
    """
    Y = np.asarray(Y, dtype=np.float64)
    E = _loo_maps(R) @ Y  # (L, A, n, N)
    err = np.einsum("lain,lain->lan", E, E)
    idx = np.argmin(np.where(np.isnan(err), np.inf, err), axis=1)
    return np.take_along_axis(E, idx[:, None, None, :], axis=1)[:, 0], idx


def _column_blocks(n, N, col_block):
    # blocks of whole multiples of 64 columns, each product well above BLAS's small-matrix
    # size (small-matrix kernels round differently): the last block takes the remainder
    cb = int(col_block or max(COL_BLOCK, -(-MIN_BLOCK_FLOPS // (n * n * 64)) * 64))
    edges = list(range(0, N - cb, cb)) + [N] if N >= 2 * cb else [0, N]
    return list(zip(edges[:-1], edges[1:]))


def _loo_moments(Ms, sums, Y, col_block):
    """Per layer and neuron, for the alpha of least LOO error: ``E.E``, ``E.Y``, ``1^T E``, alpha index."""
    Lk, A = Ms.shape[:2]
    n, N = Y.shape
    ee, ey, m = np.empty((Lk, N)), np.empty((Lk, N)), np.empty((Lk, N))
    idx = np.zeros((Lk, N), dtype=np.int64)
    for j, j1 in _column_blocks(n, N, col_block):
        sl = slice(j, j1)
        Yb = np.ascontiguousarray(Y[:, sl])
        for k in range(Lk):
            for a in range(A):
                E = Ms[k, a] @ Yb
                ee_a = np.einsum("in,in->n", E, E)
                ey_a = np.einsum("in,in->n", E, Yb)
                m_a = sums[k, a] @ Yb
                if a == 0:
                    ee[k, sl], ey[k, sl], m[k, sl] = ee_a, ey_a, m_a
                    continue
                better = ee_a < ee[k, sl]  # least LOO squared error; ties keep the first alpha (as scikit-learn)
                ee[k, sl] = np.where(better, ee_a, ee[k, sl])
                ey[k, sl] = np.where(better, ey_a, ey[k, sl])
                m[k, sl] = np.where(better, m_a, m[k, sl])
                idx[k, sl] = np.where(better, a, idx[k, sl])
    return ee, ey, m, idx


def _loo_moments_device(Ms, sums, Y, xb):
    """:func:`_loo_moments` on a torch backend: every layer, alpha and neuron in a few batched products."""
    torch = xb.torch
    Yt = xb.asarray(Y)
    E = xb.asarray(Ms) @ Yt  # (layer, alpha, n, neuron)
    ee = torch.einsum("lain,lain->lan", E, E)
    ey = torch.einsum("lain,in->lan", E, Yt)
    del E
    m = xb.asarray(sums) @ Yt  # (layer, alpha, neuron)
    idx = torch.argmin(ee, dim=1, keepdim=True)  # the first of equal errors, as scikit-learn
    pick = [xb.to_numpy(torch.take_along_dim(v, idx, dim=1)[:, 0]) for v in (ee, ey, m)]
    return (*pick, xb.to_numpy(idx[:, 0]).astype(np.int64))


def calc_loo_scores(R, Y, n_out: int = 1, col_block=None, redo_rtol: float | None = None, backend="numpy",
                    mean_free: bool = False):
    """R (L, A, n, n), Y (n, N) -> (n_out, L, N): Pearson r of LOO predictions [, best alpha index].

    ``mean_free=True``: the score of the model part of each prediction, the leave-one-out
    prediction minus the leave-one-out intercept ``mean(y_j, j != i)`` (see
    :func:`calc_mean_free_pearson`); the alpha is still chosen by leave-one-out squared error.

    With ``M = diag(R)^-1 R`` the leave-one-out residuals are ``E = M Y`` and the predictions
    ``Y - E``.  Their Pearson r with ``Y`` needs only three numbers per neuron besides ``yy``:
    ``E.E``, ``E.Y`` and ``sum(E) = (1^T M) Y``; so one product and two passes over ``E`` per
    layer.  Where the prediction's variance is tiny against the response's (``pp < redo_rtol yy``,
    heavy shrinkage) the algebraic form would cancel digits, so those neurons are recomputed
    directly from the centred predictions.  Neurons are taken ``col_block`` at a time (outer
    loop) so that ``E`` and the block of ``Y`` stay in cache; each column is independent.
    With a torch ``backend`` (``"torch:cuda"``) the products run there, all neurons at once.
    """
    redo_rtol = REDO_RTOL if redo_rtol is None else redo_rtol
    Y = np.asarray(Y, dtype=np.float64)
    L = R.shape[0]
    n, N = Y.shape
    out = np.full((n_out, L, N), np.nan)
    ybar = Y.mean(axis=0)
    Yc = Y - ybar
    yy = np.einsum("in,in->n", Yc, Yc)
    ymax = np.abs(Y).max(axis=0) if Y.size else np.zeros(N)
    const_y = yy <= (CONSTANT_COLUMN_RTOL * ymax) ** 2 * n
    ok = np.flatnonzero(np.isfinite(R).all(axis=(1, 2, 3)))  # others: constant or non-finite layer, NaN
    if ok.size == 0 or N == 0:
        return out
    Ms = _loo_maps(R[ok])  # (layer, alpha, n, n)
    xb = get_backend(backend)
    if xb.name == "numpy":
        ee, ey, m, idx = _loo_moments(Ms, Ms.sum(axis=-2), Y, col_block)
    else:
        ee, ey, m, idx = _loo_moments_device(Ms, Ms.sum(axis=-2), Y, xb)
    # predictions P = g Y - E (+ constants): g = 1, or n / (n - 1) without the LOO intercept
    g = n / (n - 1.0) if mean_free else 1.0
    eyc = ey - ybar * m  # E . Yc
    py = g * yy - eyc
    pp = g * g * yy - 2.0 * g * eyc + ee - m * m / n
    redo_mask = (pp < redo_rtol * yy) & ~const_y
    for k in np.flatnonzero(redo_mask.any(axis=1)):
        redo = np.flatnonzero(redo_mask[k])
        for a in np.unique(idx[k, redo]):
            cols = redo[idx[k, redo] == a]
            E = Ms[k, a] @ Y[:, cols]
            P = g * Yc[:, cols] - (E - E.mean(axis=0))
            pp[k, cols] = np.einsum("in,in->n", P, P)
            py[k, cols] = np.einsum("in,in->n", P, Yc[:, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = py / np.sqrt(pp * yy)
    const_p = pp <= (CONSTANT_COLUMN_RTOL ** 2) * yy
    out[0, ok] = np.where(const_y | const_p | ~np.isfinite(r), np.nan, np.clip(r, -1.0, 1.0))
    if n_out > 1:
        out[1, ok] = idx
    return out


# --- Gram matrices of projected features ------------------------------------------------------
def calc_zscored_grams(X):
    """X (L, n, c) -> Z Z^T (L, n, n), Z z-scored per component over images (ddof=0, StandardScaler's rule)."""
    X = np.asarray(X)
    n = X.shape[1]
    return np.stack([calc_zscored_gram(x, n_threads=1, backend="numpy") for x in X]) if X.shape[0] else np.zeros((0, n, n))


def calc_raw_grams(X):
    """X (L, n, c) -> X X^T (L, n, n)."""
    X = np.asarray(X, dtype=np.float64)
    return X @ np.swapaxes(X, -1, -2)


# --- split halves of trials -------------------------------------------------------------------
def split_trial_means(trials, keys=None):
    """The two half means of NaN-padded trials (neuron, image, trial) -> (neuron, image) each.

    ``keys=None``: odd/even split of each (neuron, image)'s available trials in recorded order.
    ``keys`` (image, trial), from :func:`neuroxr.responses.draw_split_keys`: the available
    trials ranked by their keys, the first ``k // 2`` of ``k`` in half A, the rest in half B
    (the rule of the split-half reliability).  NaN where a half has no trial.
    """
    t = np.asarray(trials, dtype=np.float64)
    valid = np.isfinite(t)
    if keys is None:
        order = np.cumsum(valid, axis=-1) - 1
        in_a, in_b = valid & (order % 2 == 0), valid & (order % 2 == 1)
    else:
        masked = np.where(valid, np.asarray(keys)[None], np.inf)
        rank = np.argsort(np.argsort(masked, axis=-1, kind="stable"), axis=-1, kind="stable")
        in_a = valid & (rank < (valid.sum(-1, keepdims=True) // 2))
        in_b = valid & ~in_a
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(in_a, t, 0).sum(-1) / in_a.sum(-1)
        b = np.where(in_b, t, 0).sum(-1) / in_b.sum(-1)
    return a, b
