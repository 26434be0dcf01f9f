"""Dask graphs of the leave-one-out ridge with its penalty unit, score and route.

:mod:`neuroxr.mapping.graph` runs the Gram route with penalties as given and the plain Pearson
r.  These graphs add what :mod:`neuroxr.mapping.metrics` needs beyond that:

- ``paper`` penalties (:class:`~neuroxr.mapping.ridge.PaperAlphas`): layer by layer
  ``alpha * trace(K) / (n c)``, the applied penalty returned per neuron;
- the ``mean_free`` score (:func:`~neuroxr.mapping.kernels.calc_mean_free_pearson`);
- the feature-space route (:mod:`neuroxr.mapping.feature_ridge`) for many images: one task per
  layer chunk and neuron chunk, no n x n matrix.

Every task runs with single-threaded BLAS (Dask owns the parallelism).
"""
from __future__ import annotations

import dask.array as da
import numpy as np

from ..errors import NeuroxrError
from ..runtime import single_threaded_blas
from . import kernels
from .feature_ridge import calc_loo_scores_features
from .ridge import get_solver

__all__ = ["ridge_scores_features", "ridge_scores_gram"]


def _operators(K, alphas, backend, solver, paper):
    with single_threaded_blas():
        scale = kernels.calc_paper_alpha_scale(K) if paper else None
        return get_solver(solver).operators(K, alphas, backend, **({"alpha_scale": scale} if paper else {}))


def _scores(R, Y, n_out, backend, mean_free):
    with single_threaded_blas():
        return kernels.calc_loo_scores(R, Y, n_out, backend=backend, mean_free=mean_free)


def _scale(K):
    return kernels.calc_paper_alpha_scale(K)[:, None]


def ridge_scores_gram(K, Y, alphas, backend="numpy", solver="eigen", paper=False, mean_free=False,
                      want_alpha=False):
    """K dask (layer, n, n) chunked over layers, Y dask (n, neuron) -> r [, applied alpha] dask (layer, neuron)."""
    if get_solver(solver).operators is None:
        raise NeuroxrError(f"ridge solver {solver!r} has no residual operators; scoring needs one (e.g. 'eigen')")
    alphas = tuple(float(a) for a in alphas)
    A = len(alphas)
    R = K.map_blocks(_operators, alphas, backend, solver, paper, dtype=np.float64, new_axis=1,
                     chunks=(K.chunks[0], (A,), K.chunks[1], K.chunks[2]), token="nxr-ridge-operators-u")
    n_out = 2 if A > 1 else 1
    res = da.blockwise(_scores, "kln", R, "laij", Y, "jn", n_out=n_out, backend=backend, mean_free=mean_free,
                       new_axes={"k": n_out}, dtype=np.float64, concatenate=True, token="nxr-ridge-scores-u")
    r = res[0]
    if not want_alpha:
        return r, None
    table = np.asarray(alphas)
    if A > 1:
        def lookup(i):
            out = np.full(i.shape, np.nan)
            ok = np.isfinite(i)
            out[ok] = table[i[ok].astype(int)]
            return out
        alpha = da.map_blocks(lookup, res[1], dtype=np.float64)
    else:
        alpha = da.where(da.isfinite(r), table[0], np.nan)
    if paper:
        sc = K.map_blocks(_scale, dtype=np.float64, drop_axis=2, chunks=(K.chunks[0], (1,)))
        alpha = alpha * sc
    return r, alpha


def _feature_scores(X, Y, alphas, n_out, zscore, paper, mean_free):
    with single_threaded_blas():
        return calc_loo_scores_features(X, Y, alphas, n_out=n_out, zscore=zscore, paper=paper, mean_free=mean_free)


def ridge_scores_features(X, Y, alphas, zscore=True, paper=False, mean_free=False, want_alpha=False):
    """X dask (layer, n, c) chunked over layers, Y dask (n, neuron) -> r [, applied alpha] (layer, neuron).

    The feature-space route: one task per (layer chunk, neuron chunk) decomposes its layers'
    ``c x c`` matrices (repeated per neuron chunk: choose neuron chunks large) and scores.
    """
    alphas = tuple(float(a) for a in alphas)
    n_out = 2 if want_alpha else 1
    X = X.rechunk({1: -1, 2: -1})
    res = da.blockwise(_feature_scores, "kln", X, "lic", Y, "in", alphas=alphas, n_out=n_out, zscore=zscore,
                       paper=paper, mean_free=mean_free, new_axes={"k": n_out}, dtype=np.float64,
                       concatenate=True, token="nxr-ridge-features")
    return res[0], (res[1] if want_alpha else None)
