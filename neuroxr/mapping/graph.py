"""The Dask graphs of scoring: dask arrays in, dask arrays out, no labels.

Every task calls a kernel of :mod:`neuroxr.mapping.kernels` under
:func:`neuroxr.runtime.single_threaded_blas` (Dask runs the tasks side by side; a
multi-threaded BLAS inside each only adds synchronisation).

- ridge: per layer chunk one task computes the residual operators ``R`` (layer, alpha, image,
  image) of the ridge solver, per (layer chunk, neuron chunk) one task the leave-one-out
  Pearson r (:func:`ridge_scores`).
- RSA: a task per layer chunk computes the model RDMs from the raw Gram matrices and feature
  sums; each area RDM is a reduction over neuron chunks; a task per layer chunk compares them.
- PLS: one task per layer; the RDM noise ceiling: one task per area.
"""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from .. import rsa
from ..errors import NeuroxrError
from ..runtime import single_threaded_blas
from . import kernels
from .pls import calc_pls_layer_scores
from .ridge import get_solver

__all__ = ["layer_chunked", "ridge_scores", "ridge_r", "ridge_r_alpha", "srp_grams", "model_rdms", "neural_rdms", "rsa_scores",
           "pls_scores", "rdm_ceilings", "alphas_of"]


def _blocked(fn):
    """``fn`` run with single-threaded BLAS (a task body)."""
    def run(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)
    run.__name__ = run.__qualname__ = f"nxr_{fn.__name__}"
    return run


_operators = _blocked(lambda K, alphas, backend, solver: get_solver(solver).operators(K, alphas, backend))
_loo_scores = _blocked(lambda R, Y, n_out, backend: kernels.calc_loo_scores(R, Y, n_out, backend=backend))
_zscored_grams = _blocked(kernels.calc_zscored_grams)
_raw_grams = _blocked(kernels.calc_raw_grams)
_pls = _blocked(calc_pls_layer_scores)


@_blocked
def _model_rdms(K, fsum, p):
    # fsum arrives as (L, n, 1) and p as (L, 1, 1) (broadcast against K's chunks)
    return rsa.calc_rdm(np.asarray(K, dtype=np.float64), "gram", feature_sum=np.asarray(fsum, dtype=np.float64)[..., 0],
                        n_features=np.asarray(p, dtype=np.float64)[:, 0, 0])


@_blocked
def _rsa(model_rdms, neural_rdms, method):
    return np.atleast_2d(rsa.compare_rdms(model_rdms, neural_rdms, method, pairwise=True))


def layer_chunked(arr, layer_chunk: int):
    """A dask array chunked by ``layer_chunk`` along axis 0, whole along the others."""
    chunks = (int(layer_chunk),) + (-1,) * (arr.ndim - 1)
    if isinstance(arr, da.Array):
        return arr.rechunk(chunks)
    return da.from_array(np.asarray(arr), chunks=chunks)


def ridge_scores(K, Y, alphas, backend="numpy", solver="eigen"):
    """K dask (layer, n, n) chunked over layers, Y dask (n, neuron) -> (r, best alpha index) dask (layer, neuron)."""
    if get_solver(solver).operators is None:
        raise NeuroxrError(f"ridge solver {solver!r} has no residual operators; scoring needs one (e.g. 'eigen')")
    A = len(alphas)
    R = K.map_blocks(_operators, alphas, backend, solver, dtype=np.float64, new_axis=1,
                     chunks=(K.chunks[0], (A,), K.chunks[1], K.chunks[2]), token="nxr-ridge-operators")
    n_out = 2 if A > 1 else 1
    res = da.blockwise(_loo_scores, "kln", R, "laij", Y, "jn", n_out=n_out, backend=backend, new_axes={"k": n_out},
                       dtype=np.float64, concatenate=True, token="nxr-ridge-scores")
    return res[0], (res[1] if n_out > 1 else None)


def ridge_r(K, Y, alphas, backend="numpy", solver="eigen"):
    """:func:`ridge_scores` without the alpha choice: r dask (layer, neuron)."""
    return ridge_scores(K, Y, alphas, backend, solver)[0]


def ridge_r_alpha(K, Y, alphas, backend="numpy", solver="eigen"):
    """:func:`ridge_scores` with each neuron's chosen alpha: (r, alpha) dask (layer, neuron)."""
    r, idx = ridge_scores(K, Y, alphas, backend, solver)
    return r, alphas_of(idx, alphas)


def alphas_of(idx, alphas):
    """Alpha index (float, NaN for NaN scores) -> alpha, blockwise."""
    def lookup(i, table):
        out = np.full(i.shape, np.nan)
        ok = np.isfinite(i)
        out[ok] = table[i[ok].astype(int)]
        return out

    return da.map_blocks(lookup, idx, np.asarray(alphas), dtype=np.float64)


def srp_grams(srp, zscore: bool):
    """srp dask (layer, n, component) -> Gram matrices (layer, n, n) of the (z-scored) components."""
    n = srp.shape[1]
    return srp.map_blocks(_zscored_grams if zscore else _raw_grams, dtype=np.float64,
                          chunks=(srp.chunks[0], (n,), (n,)), token="nxr-srp-gram")


def model_rdms(K, fsum, n_features):
    """Raw Grams (layer, n, n), feature sums (layer, n), feature counts (layer,) -> RDMs (layer, n, n)."""
    p = da.from_array(np.asarray(n_features, dtype=np.float64), chunks=(K.chunks[0],))
    return da.map_blocks(_model_rdms, K, fsum[:, :, None], p[:, None, None], dtype=np.float64, token="nxr-model-rdms")


def neural_rdms(Y, labels, groups, source="responses"):
    """Y dask (n, neuron), labels (neuron,) -> dask (group, n, n) RDMs of each group's neurons.

    The image-by-image covariance of each group's pattern is a reduction over neuron chunks.
    """
    rdms = []
    for g in groups:
        idx = np.flatnonzero(labels == g)
        if idx.size < 2:
            raise NeuroxrError(
                f"{source}: area {g!r} has {idx.size} neuron(s) after selection, at least 2 are needed for its RDM; "
                f"loosen the selection (`neuroxr select`) or leave the area out (areas=[...], --area)")
        Ya = Y[:, idx].astype(np.float64)
        Yc = Ya - Ya.mean(axis=1, keepdims=True)
        C = (Yc @ Yc.T).rechunk(-1)
        rdms.append(C.map_blocks(rsa.corr_to_rdm, dtype=np.float64))
    return da.stack(rdms, axis=0)


def rsa_scores(model, neural, method: str):
    """Model RDMs (layer, n, n), neural RDMs (group, n, n) -> (layer, group)."""
    return da.blockwise(_rsa, "la", model, "lij", neural.rechunk(-1), "aij", method=method,
                        dtype=np.float64, concatenate=True, token="nxr-rsa")


def pls_scores(srp, Y, splits, n_components: int):
    """srp dask (layer, n, component), Y (n, neuron) -> (layer, neuron): one task per layer."""
    Yfull = Y.rechunk({1: -1})
    fn = dask.delayed(_pls, pure=True)
    cols = [da.from_delayed(fn(srp[k], Yfull, splits, n_components), shape=(Yfull.shape[1],), dtype=np.float64)
            for k in range(srp.shape[0])]
    return da.stack(cols, axis=0).rechunk({1: Y.chunks[1]}) if cols else da.zeros((0, Y.shape[1]))


def _ceiling(trials, method):
    t = np.asarray(trials, dtype=np.float64)
    _, ceiling, _ = rsa.calc_rdm_noise_ceiling(t, np.zeros(t.shape[0], dtype=int), method=method)
    return ceiling


def rdm_ceilings(trials, labels, groups, method: str):
    """Split-half (odd/even trials) RDM noise ceiling of each group, Spearman-Brown corrected (group,)."""
    fn = dask.delayed(_blocked(_ceiling), pure=True)
    parts = []
    for g in groups:
        idx = np.flatnonzero(labels == g)
        t = trials[idx] if isinstance(trials, da.Array) else np.asarray(trials)[idx]
        parts.append(da.from_delayed(fn(t, method), shape=(1,), dtype=np.float64))
    return da.concatenate(parts) if parts else da.zeros((0,))


# --- issue 17: one Gram, every comparison (CKA, effective dimensionality, encoding RSA, ceilings,
# permutation and bootstrap on the n x n matrices) ---------------------------------------------
def area_grams(Y, labels, groups, source="responses"):
    """Y dask (n, neuron), labels (neuron,) -> dask (group, n, n): ``Y_g Y_g^T`` over each group's neurons.

    A reduction over neuron chunks (like :func:`neural_rdms`); centring is left to the kernels.
    """
    out = []
    for g in groups:
        idx = np.flatnonzero(labels == g)
        if idx.size < 1:
            raise NeuroxrError(f"{source}: area {g!r} has no neuron after selection; leave it out (--area)")
        Ya = Y[:, idx].astype(np.float64)
        out.append((Ya @ Ya.T).rechunk(-1))
    return da.stack(out, axis=0)


def _cka_block(K, L, debiased):
    from .cka import calc_cka, calc_debiased_cka

    return np.atleast_2d((calc_debiased_cka if debiased else calc_cka)(K, L))


_cka = _blocked(_cka_block)


def cka_scores(K, L, debiased: bool = False):
    """Raw Grams (layer, n, n), response Grams (group, n, n) -> linear CKA (layer, group)."""
    return da.blockwise(_cka, "la", K, "lij", L.rechunk(-1), "aij", debiased=debiased, dtype=np.float64,
                        concatenate=True, token="nxr-cka-debiased" if debiased else "nxr-cka")


def _effdim_block(K):
    from .cka import calc_participation_ratio

    return calc_participation_ratio(K)


def effective_dims(K):
    """Raw Grams (layer, n, n) -> participation ratio of the centred Gram's eigenvalues (layer,)."""
    return K.map_blocks(_blocked(_effdim_block), drop_axis=[1, 2], dtype=np.float64, token="nxr-effdim")


@_blocked
def _versa_moments(R, Y, codes, n_groups):
    """One (layer chunk, neuron chunk): per group, ``P P^T`` and ``P 1`` of its neurons' LOO predictions.

    R (l, alpha, n, n), Y (n, N), codes (N,) -> (l, 1, group, n, n + 1) (the last column: ``P 1``).
    """
    Y = np.asarray(Y, dtype=np.float64)
    E, _ = kernels.calc_loo_residuals(np.asarray(R), Y)  # the best alpha per neuron, as the ridge metric
    P = Y[None] - E
    out = np.zeros((R.shape[0], 1, n_groups, Y.shape[0], Y.shape[0] + 1))
    for g in range(n_groups):
        Pg = P[:, :, codes == g]
        if Pg.shape[-1]:
            out[:, 0, g, :, :-1] = Pg @ np.swapaxes(Pg, -1, -2)
            out[:, 0, g, :, -1] = Pg.sum(-1)
    return out


@_blocked
def _versa_finish(M, neural, counts, method):
    """Moments (l, group, n, n + 1), neural RDMs (group, n, n) -> (l, group) RDM comparisons."""
    S1 = M[..., -1]
    C = M[..., :-1] - S1[..., :, None] * S1[..., None, :] / np.asarray(counts, dtype=np.float64)[None, :, None, None]
    model = rsa.corr_to_rdm(C)
    return np.atleast_2d(rsa.compare_rdms(model, np.asarray(neural)[None], method, pairwise=False))


def versa_scores(K, Y, labels, groups, neural, alphas, method: str, backend="numpy", solver="eigen"):
    """Encoding RSA: K (layer, n, n) z-scored Grams, Y (n, neuron), labels (neuron,), neural RDMs (group, n, n).

    Each group's neurons are predicted by leave-one-out ridge (the residual operators of
    :func:`ridge_scores`: the same graph keys, so ``ridge`` and ``versa`` share them); the RDM
    (``1 - Pearson`` across the group's neurons) of the predictions is compared with the group's
    neural RDM.  The predicted RDM is a reduction over neuron chunks (``P P^T`` and ``P 1`` per
    group), finished per layer chunk.  -> (layer, group).
    """
    if get_solver(solver).operators is None:
        raise NeuroxrError(f"ridge solver {solver!r} has no residual operators; versa needs one (e.g. 'eigen')")
    A = len(alphas)
    R = K.map_blocks(_operators, alphas, backend, solver, dtype=np.float64, new_axis=1,
                     chunks=(K.chunks[0], (A,), K.chunks[1], K.chunks[2]), token="nxr-ridge-operators")
    labels = np.asarray(labels)
    codes = np.full(labels.shape, -1, dtype=np.int64)
    for g, name in enumerate(groups):
        codes[labels == name] = g
    counts = np.array([(codes == g).sum() for g in range(len(groups))])
    codes = da.from_array(codes, chunks=(Y.chunks[1],))
    G, n = len(groups), K.shape[-1]
    M = da.blockwise(_versa_moments, "lngik", R, "laij", Y, "jn", codes, "n", n_groups=G,
                     new_axes={"g": G, "k": n + 1}, adjust_chunks={"n": 1}, dtype=np.float64, concatenate=True,
                     token="nxr-versa-moments")
    M = M.sum(axis=1)
    return da.blockwise(_versa_finish, "lg", M, "lgik", neural.rechunk(-1), "gij", counts=counts, method=method,
                        dtype=np.float64, concatenate=True, token="nxr-versa")


def _neuron_ceilings_block(t, n_splits, seed, boots):
    from .ceilings import calc_neuron_ceilings

    return calc_neuron_ceilings(t, n_splits=n_splits, seed=seed, boots=boots)


def neuron_ceilings(trials, neuron_chunks, n_splits: int, seed: int, boots):
    """trials (neuron, image, trial) -> (4, neuron): ceiling of a Pearson r, low, high, reliability.

    One task per neuron chunk (``neuron_chunks``: the chunks of the responses' neuron axis).
    """
    t = trials if isinstance(trials, da.Array) else da.from_array(np.asarray(trials), chunks=(neuron_chunks, -1, -1))
    t = t.rechunk((neuron_chunks, -1, -1))
    return t.map_blocks(_blocked(_neuron_ceilings_block), int(n_splits), int(seed), boots, drop_axis=[1, 2],
                        new_axis=0, chunks=((4,), t.chunks[0]), dtype=np.float64, token="nxr-neuron-ceilings")


def _rdm_ceiling_block(t, method, n_splits, seed, boots):
    from .ceilings import calc_rdm_ceilings

    return calc_rdm_ceilings(t, method=method, n_splits=n_splits, seed=seed, boots=boots)


def area_ceilings(trials, labels, groups, method: str, n_splits: int, seed: int, boots):
    """Ceiling of each group's RDM comparison: (4, group) ceiling, low, high, reliability; a task per group."""
    fn = dask.delayed(_blocked(_rdm_ceiling_block), pure=True)
    parts = []
    for g in groups:
        idx = np.flatnonzero(labels == g)
        t = trials[idx] if isinstance(trials, da.Array) else np.asarray(trials)[idx]
        parts.append(da.from_delayed(fn(t, method, int(n_splits), int(seed), boots), shape=(4,), dtype=np.float64))
    return da.stack(parts, axis=1) if parts else da.zeros((4, 0))


@_blocked
def _perm_boot(model, targets, kind, perms, boots, method):
    """One layer chunk: (l, group, 4 + perm) = observed, p, ci low, ci high, then the permutation null."""
    from . import resample as rs

    obs, null = rs.calc_permutation_null(kind, model, targets, perms, method)
    low, high = rs.calc_percentiles(rs.calc_bootstrap(kind, model, targets, boots, method))
    return np.concatenate([obs[..., None], rs.calc_p_values(obs, null)[..., None], low[..., None], high[..., None],
                           null], axis=-1)


def _max_p(obs, top):
    from .resample import calc_p_values

    return calc_p_values(obs, np.broadcast_to(top[None], obs.shape + top.shape[-1:]))


def permutation_scores(kind: str, model, targets, perms, boots, method: str = "pearson"):
    """Permutation p-values and bootstrap intervals of every layer against every group.

    ``kind="rsa"``: model RDMs (layer, n, n) against neural RDMs (group, n, n); ``kind="cka"``:
    raw Grams against response Grams.  One task per layer chunk computes the observed score, its
    null and bootstrap draws; the max-statistic over all layers is a reduction over the chunks.

    Returns
    -------
    p, p_fwer, ci_low, ci_high : dask (layer, group)
    """
    P = len(perms)
    stats = da.blockwise(_perm_boot, "lgk", model, "lij", targets.rechunk(-1), "gij", kind=kind, perms=perms,
                         boots=boots, method=method, new_axes={"k": 4 + P}, dtype=np.float64, concatenate=True,
                         token=f"nxr-{kind}-perm")
    null = stats[:, :, 4:]
    top = da.nanmax(da.where(da.isnan(null), -np.inf, null), axis=0)  # (group, perm): max over every layer
    p_fwer = da.blockwise(_max_p, "lg", stats[:, :, 0], "lg", top, "gk", dtype=np.float64, concatenate=True,
                          token=f"nxr-{kind}-perm-fwer")
    return stats[:, :, 1], p_fwer, stats[:, :, 2], stats[:, :, 3]


def _ridge_perm_block(K, Y, perms, alphas, backend, solver):
    from .resample import calc_ridge_permutation

    R = get_solver(solver).operators(np.asarray(K), alphas, backend)
    return calc_ridge_permutation(R, Y, perms, backend=backend)


def ridge_permutation(K, Y, perms, alphas, backend="numpy", solver="eigen"):
    """Permutation p-values of LOO ridge r: K (layer, n, n), Y (n, neuron) -> (p, p_fwer) dask (layer, neuron).

    One task per neuron chunk holds every layer of the model (the max-statistic is over all of
    them); the operators are computed once per task from the Gram matrices (no new
    eigendecomposition per permutation, see :func:`neuroxr.mapping.resample.calc_ridge_permutation`).
    Cost per task: ``n_perm x layers x n^2 x neurons`` flops.
    """
    if get_solver(solver).operators is None:
        raise NeuroxrError(f"ridge solver {solver!r} has no residual operators; ridge-perm needs one (e.g. 'eigen')")
    out = da.blockwise(_blocked(_ridge_perm_block), "kln", K.rechunk({0: -1}), "lij", Y, "jn", perms=perms,
                       alphas=tuple(alphas), backend=backend, solver=solver, new_axes={"k": 2}, dtype=np.float64,
                       concatenate=True, token="nxr-ridge-perm")
    return out[0], out[1]
