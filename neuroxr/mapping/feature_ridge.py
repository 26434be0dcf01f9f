"""Leave-one-out ridge in feature space, and the cost model that picks it or the Gram route.

With many images (Sensorium sessions: thousands) the n x n route of
:mod:`neuroxr.mapping.ridge` costs ``O(n^3)`` time and ``O(n^2)`` memory per alpha.  When a
layer has fewer features than images (the paper's projection: about 4,096 components, or any
narrow layer) the same leave-one-out fit follows from the c x c matrix ``Zc^T Zc``, without
ever forming an n x n matrix.

The computation (exact, intercept unpenalised)
-----------------------------------------------
``Zc`` (n, c): the (z-scored) features centred over images, so ``Zc^T 1 = 0`` exactly and the
intercept drops out (``mean(y)`` is its estimate).  ``Zc^T Zc = V diag(lam) V^T`` (one c x c
eigendecomposition); the thin left singular vectors ``U = Zc V diag(lam)^-1/2`` (n, r) span the
centred feature space, ``U perp 1``.  With ``d = lam / (lam + alpha)`` the hat matrix is
``H = 11^T/n + U diag(d) U^T`` and the residual operator ``R = I - H`` is

    R = (C - U U^T) + U diag(alpha / (lam + alpha)) U^T,        C = I - 11^T/n,

with ``alpha / (lam + alpha)`` and ``lam / (lam + alpha)`` each computed directly (never as
``1 -`` the other):

    R_ii   = q0_i + sum_k U_ik^2 alpha / (lam_k + alpha),   q0_i = 1 - 1/n - |U_i|^2 (>= 0)
    R y    = yc - U (lam / (lam + alpha) * (U^T y))     (rank < n - 1)
    R y    = U (alpha / (lam + alpha) * (U^T y))         (rank n - 1: yc = U U^T y)

and the leave-one-out residual is ``(R y)_i / R_ii``, as on the Gram route.  Directions with
``lam <= EIG_RTOL * max(lam)`` are dropped (their ``d <= EIG_RTOL max(lam) / alpha``); when the
kept rank reaches ``n - 1`` the complement ``C - U U^T`` is 0, and ``q0`` and the least-squares
residual are set to 0 (computed, they are rounding noise that ``1 / R_ii ~ lam / alpha`` amplifies).

Cost model
----------
:func:`calc_route_costs` counts the floating-point operations and the bytes held by each
route for one layer (n images, c features, N neurons, A alphas):

- Gram route: ``2 n^2 c`` to form ``K`` (0 where the store holds it), ``EIGH_FLOPS n^3`` for
  the eigendecomposition (the Householder restriction and ``W = V U`` are rank-one updates,
  ``O(n^2)``), ``2 A n^3`` for the residual operators and ``2 A n^2 N`` for the leave-one-out
  products; bytes ``8 (5 + 2 A) n^2`` (``K``, ``P K``, ``K'``, its eigenvectors, ``W``; ``R``
  and ``diag(R)^-1 R`` per alpha) plus the neuron block.
- Feature route: ``n c`` to z-score, ``2 n c^2`` for ``Zc^T Zc``, ``EIGH_FLOPS c^3``, ``2 n c r``
  for ``U``, ``(2 + 2 A) n r N`` for ``U^T Y`` and each alpha's ``U (d U^T Y)``; bytes
  ``8 (n c + 2 c^2 + n r)`` plus the neuron block (``r = min(c, n - 1)``).

:func:`choose_ridge_route` takes the route of fewer operations unless its bytes exceed the
memory budget (then the other, if it fits); the choice and both costs are logged.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import NeuroxrError
from .kernels import (
    ALPHA_RTOL,
    CONSTANT_COLUMN_RTOL,
    CONSTANT_LAYER_RTOL,
    AlphaScaleError,
)

__all__ = [
    "EIGH_FLOPS",
    "EIG_RTOL",
    "MEMORY_BUDGET",
    "calc_loo_predictions_features",
    "calc_loo_scores_features",
    "calc_route_costs",
    "choose_ridge_route",
    "decompose_features",
    "zscore_features",
]

log = logging.getLogger("neuroxr.score")

#: eigenvalues of ``Zc^T Zc`` below this fraction of the largest are dropped (rank)
EIG_RTOL = 1e-12
#: flops of a symmetric eigendecomposition with eigenvectors, per n^3 (LAPACK syevd, about)
EIGH_FLOPS = 9.0
#: default bytes one scoring task may hold
MEMORY_BUDGET = 4 * 2 ** 30
#: bytes of the leave-one-out residual block (images x neurons) a task holds at once
BLOCK_BYTES = 64 * 2 ** 20


def _block_cols(n: int) -> int:
    return max(64, int(BLOCK_BYTES // (8 * max(n, 1))))


def calc_route_costs(n: int, c: int, n_neurons: int, n_alphas: int = 1, gram_given: bool = False) -> dict:
    """Flops and bytes of one layer's leave-one-out ridge on each route (see the module docstring).

    Returns ``{"gram": {"flops", "bytes"}, "features": {"flops", "bytes"}}``.
    """
    n, c, N, A = int(n), int(c), int(n_neurons), int(n_alphas)
    r = min(c, n - 1)
    nb = min(N, _block_cols(n))
    gram = {"flops": (0 if gram_given else 2.0 * n * n * c) + (EIGH_FLOPS + 2.0 * A) * n ** 3
            + 2.0 * A * n * n * N,
            "bytes": 8.0 * ((5 + 2 * A) * n * n + 2 * n * nb)}
    feats = {"flops": 1.0 * n * c + 2.0 * n * c * c + EIGH_FLOPS * c ** 3 + 2.0 * n * c * r
             + (2.0 + 2.0 * A) * n * r * N,
             "bytes": 8.0 * (n * c + 2 * c * c + n * r + (3 + A) * n * nb + r * nb)}
    return {"gram": gram, "features": feats}


def choose_ridge_route(n: int, c: int, n_neurons: int, n_alphas: int = 1, gram_given: bool = False,
                       memory_budget: float = MEMORY_BUDGET, what: str = "ridge") -> str:
    """``"gram"`` or ``"features"``: fewer flops, unless that route's bytes exceed ``memory_budget``.

    Logs the choice with both routes' costs (logger ``neuroxr.score``).
    """
    costs = calc_route_costs(n, c, n_neurons, n_alphas, gram_given)
    order = sorted(costs, key=lambda k: costs[k]["flops"])
    fits = [k for k in order if costs[k]["bytes"] <= memory_budget]
    route = fits[0] if fits else order[0]
    log_route(what, route, n, c, n_neurons, n_alphas, costs,
              "" if fits else f"neither fits the {memory_budget / 2 ** 30:.3g} GiB budget")
    return route


def log_route(what, route, n, c, n_neurons, n_alphas, costs, note: str = "") -> None:
    """One line (logger ``neuroxr.score``): the route taken and both routes' costs."""
    g, f = costs["gram"], costs["features"]
    log.info(f"{what}: {route} route for n={n} images, {c} features, {n_neurons} neurons, {n_alphas} alpha(s) "
             f"(gram {g['flops'] / 1e9:.3g} GFLOP {g['bytes'] / 2 ** 20:.4g} MiB; "
             f"features {f['flops'] / 1e9:.3g} GFLOP {f['bytes'] / 2 ** 20:.4g} MiB)" + (f"; {note}" if note else ""))


def zscore_features(X, zscore: bool = True):
    """X (n, c) -> centred (and, with ``zscore``, unit-variance: ddof=0, constant columns 0) float64."""
    X = np.asarray(X, dtype=np.float64)
    Zc = X - X.mean(axis=0)
    if zscore:
        sd = np.sqrt((Zc * Zc).mean(axis=0))
        scale = np.abs(X).max(axis=0) if X.size else np.zeros(X.shape[1])
        const = sd <= CONSTANT_COLUMN_RTOL * scale
        Zc = np.where(const, 0.0, Zc / np.where(const, 1.0, sd))
    return Zc


def decompose_features(X, zscore: bool = True):
    """One layer's ``(lam (r,), U (n, r), q0 (n,), trace)``; ``None`` for a constant layer.

    ``trace`` is ``trace(Zc Zc^T)`` (``n p`` on z-scored features, as the Gram route's).
    """
    Zc = zscore_features(X, zscore)
    n = Zc.shape[0]
    if n < 3:
        raise NeuroxrError(f"leave-one-out ridge needs at least 3 images, got {n}")
    G = Zc.T @ Zc
    G = 0.5 * (G + G.T)
    tr = float(np.trace(G))
    scale = float(np.abs(Zc).max()) ** 2 * n if Zc.size else 0.0
    if not np.isfinite(tr) or tr <= CONSTANT_LAYER_RTOL * max(scale, np.finfo(float).tiny):
        return None
    lam, V = np.linalg.eigh(G)
    keep = lam > EIG_RTOL * lam[-1]
    lam, V = lam[keep], V[:, keep]
    U = (Zc @ V) / np.sqrt(lam)
    q0 = np.zeros(n) if lam.size >= n - 1 else np.clip(1.0 - 1.0 / n - np.einsum("ik,ik->i", U, U), 0.0, None)
    return lam, U, q0, tr


def _check_alpha_scale(scale: float, alphas) -> None:
    """As :func:`neuroxr.mapping.kernels.check_alpha_scale`, from ``trace / n`` alone."""
    low = min(alphas)
    if scale > 0 and low < ALPHA_RTOL * scale:
        raise AlphaScaleError(
            f"ridge penalty alpha={low:g} is below {ALPHA_RTOL:g} x the Gram matrix's scale (trace/n = {scale:.4g}): "
            f"every leave-one-out fit would underflow to NaN; use alpha >= {ALPHA_RTOL * scale:.3g}")


def _loo_residual_blocks(dec, Y, alphas):
    """Yield (cols, Yc, E (A, n, nb)) over neuron blocks: leave-one-out residuals for every alpha."""
    lam, U, q0, _ = dec
    n, N = Y.shape
    F = np.stack([a / (lam + a) for a in alphas])  # (A, r): alpha / (lam + alpha)
    D = np.stack([lam / (lam + a) for a in alphas])  # (A, r): lam / (lam + alpha), never 1 - F
    Rd = q0[None, :] + F @ (U * U).T  # (A, n): diag(R) per alpha
    nb = _block_cols(n)
    full = lam.size >= n - 1
    for j in range(0, N, nb):
        cols = slice(j, min(N, j + nb))
        Yb = Y[:, cols]
        Yc = Yb - Yb.mean(axis=0)
        B = U.T @ Yb  # (r, nb); U perp 1
        if full:  # rank n - 1: the least-squares residual is exactly 0, R y = U (alpha / (lam + alpha) U^T y)
            E = np.stack([(U @ (F[a][:, None] * B)) / Rd[a][:, None] for a in range(len(alphas))])
        else:  # R y = yc - U (lam / (lam + alpha) U^T y): one product per alpha
            E = np.stack([(Yc - U @ (D[a][:, None] * B)) / Rd[a][:, None] for a in range(len(alphas))])
        yield cols, Yc, E


def calc_loo_predictions_features(X, Y, alphas=(1.0,), zscore: bool = True):
    """Leave-one-out predictions (n, N) and alpha index (N,) of ridge on the features X (n, c), feature route."""
    Y = np.asarray(Y, dtype=np.float64)
    dec = decompose_features(X, zscore)
    if dec is None:
        return np.full(Y.shape, np.nan), np.zeros(Y.shape[1], dtype=int)
    _check_alpha_scale(dec[3] / Y.shape[0], alphas)
    pred, idx = np.empty_like(Y), np.zeros(Y.shape[1], dtype=int)
    for cols, _, E in _loo_residual_blocks(dec, Y, alphas):
        best = np.argmin(np.einsum("ain,ain->an", E, E), axis=0)
        idx[cols] = best
        pred[:, cols] = Y[:, cols] - np.take_along_axis(E, best[None, None, :], 0)[0]
    return pred, idx


def calc_loo_scores_features(X, Y, alphas, n_out: int = 1, zscore: bool = True, paper: bool = False,
                             mean_free: bool = False, n_components=None):
    """X (L, n, c), Y (n, N) -> (n_out, L, N): leave-one-out Pearson r [, the penalty applied].

    The feature-space twin of :func:`neuroxr.mapping.kernels.calc_loo_scores` (same alpha
    choice, least leave-one-out squared error with ties to the first; same ``mean_free``
    score); ``paper``: penalties in the paper's units (``alpha trace / (n c)``,
    :func:`neuroxr.mapping.kernels.calc_paper_alpha_scale`).  The prediction is centred
    directly, so no algebraic shortcut cancels digits.
    """
    from .srp import find_n_components

    X = np.asarray(X)
    Y = np.asarray(Y, dtype=np.float64)
    L, (n, N) = X.shape[0], Y.shape
    out = np.full((n_out, L, N), np.nan)
    g = n / (n - 1.0) if mean_free else 1.0
    c_paper = (find_n_components(n) if n_components is None else int(n_components)) if paper else 0
    for k in range(L):
        if not np.isfinite(X[k]).all():
            continue
        dec = decompose_features(X[k], zscore)
        if dec is None:
            continue
        sc = max(1.0, dec[3] / (n * c_paper)) if paper else 1.0
        al = [a * sc for a in alphas]
        _check_alpha_scale(dec[3] / n, al)
        for cols, Yc, E in _loo_residual_blocks(dec, Y, al):
            best = np.argmin(np.einsum("ain,ain->an", E, E), axis=0)
            Eb = np.take_along_axis(E, best[None, None, :], 0)[0]
            P = g * Yc - (Eb - Eb.mean(axis=0))
            pp, py = np.einsum("in,in->n", P, P), np.einsum("in,in->n", P, Yc)
            yy = np.einsum("in,in->n", Yc, Yc)  # per block: no image x neuron temporaries
            const_y = yy <= (CONSTANT_COLUMN_RTOL * np.abs(Y[:, cols]).max(axis=0)) ** 2 * n
            with np.errstate(invalid="ignore", divide="ignore"):
                r = py / np.sqrt(pp * yy)
            bad = const_y | (pp <= CONSTANT_COLUMN_RTOL ** 2 * yy) | ~np.isfinite(r)
            out[0, k, cols] = np.where(bad, np.nan, np.clip(r, -1.0, 1.0))
            if n_out > 1:
                out[1, k, cols] = np.asarray(al)[best]
    return out

