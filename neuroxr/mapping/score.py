"""Score every (model, layer) against every neuron and area, as lazy Dask graphs.

Two levels:

- :func:`score_layers` (in memory or lazy): a features Dataset (the ``features/<model>.zarr``
  layout: ``gram``, ``gram_z``, ``feature_sum`` (layer, image[, image_j]), optional ``srp``
  (layer, image, component)) and responses (neuron, image) in, a Dataset of lazy scores out
  (``ridge_r``, ``srp_ridge_r``, ``pls_r`` (layer, neuron); ``areas/rsa_r`` (layer, area)).  Nothing
  is computed until the result is written or ``.compute()``-d.
- :func:`score_study`: every model of a study, written to ``STUDY/scores.zarr``.

The graph
---------
ridge (and srp-ridge): the Gram matrices are chunked over layers; per layer chunk one task
computes the residual operators ``R`` (layer, alpha, image, image) of
:mod:`neuroxr.mapping.ridge` (one eigendecomposition per layer), and per (layer chunk, neuron
chunk) one task computes the leave-one-out predictions ``Y - (R Y) / diag(R)`` and their Pearson r
with the responses.  RSA: a task per layer chunk computes the model RDMs from the raw Gram
matrices and feature sums; each area RDM is a reduction over neuron chunks; a task per layer
chunk compares them.  PLS: one task per layer (scikit-learn's ``PLSRegression``).

Storage: parts, then one atomic assembly
----------------------------------------
Each model's scores are written as their own store ``STUDY/scores.parts/<model>.zarr``
(temporary directory, then one ``os.replace``), so a part either exists whole or not at all;
then ``STUDY/scores.zarr`` is assembled from all parts (concatenated along ``layer``) and
replaced atomically.  A crash at any moment leaves the previous ``scores.zarr`` intact and
every finished part in place: rerunning scores only the missing models (resume).  Adding a
model's features and rerunning appends its layers.  A part records the settings and the
fingerprint of the features it was computed from: a part with the same settings and features
is skipped; re-extracted features are rescored; other settings are refused
(:func:`neuroxr.io.store.check_settings` names the setting) unless ``overwrite``.

The scores tree
---------------
Results are :class:`xarray.DataTree` objects (:mod:`neuroxr.mapping.tree`): neuron-level
scores at the root, area-level scores (``rsa_r``, ``rsa_ceiling``, ``rsa_site_r``) in the group
``areas`` with an ``area`` index of area names.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError, SettingsMismatchError
from ..io import store as _store
from ..runtime import WARNINGS_LOCK, single_threaded_blas
from . import ridge as _ridge
from .metrics import METRICS, check_metrics
from .tree import build_scores_tree, concat_scores, open_scores, replace_scores, write_scores

__all__ = [
    "METRICS",
    "score_layers",
    "score_study",
    "count_nan_scores",
    "compute_scores",
    "assemble_scores",
]

GRAM, GRAM_Z, FEATURE_SUM = "gram", "gram_z", "feature_sum"
PARTS_DIR = "scores.parts"
DEFAULT_NEURON_CHUNK = 8192
DEFAULT_LAYER_CHUNK = 8
#: held around ``warnings.catch_warnings`` when models are set up and written from several threads
_WARNINGS_LOCK = WARNINGS_LOCK
#: temporary part stores of this process left by an interrupted run
_OWN_TMPS: set = set()
#: below this prediction/response variance ratio, Pearson r is recomputed from centred predictions
_REDO_RTOL = 1e-6
#: neurons per pass in the leave-one-out block (E and the Y block stay in a core's cache)
_COL_BLOCK = 1024
_MIN_BLOCK_FLOPS = 4_000_000
DEFAULT_PLS = {"kind": "kfold", "n_splits": 5, "n_components": 25, "seed": 0, "test_size": 0.5}


# --------------------------------------------------------------------------------------------
# block functions (plain numpy; run on workers)
# --------------------------------------------------------------------------------------------
def _block_operators_impl(K, alphas, backend="numpy"):
    """K (L, n, n) -> residual operators R (L, A, n, n); NaN for non-finite or constant layers."""
    K = np.asarray(K, dtype=np.float64)
    finite = np.isfinite(K).all(axis=(-2, -1))
    K0 = np.where(finite[:, None, None], K, 0.0)
    xb = _ridge.get_backend(backend)
    s, W, scale = _ridge.decompose_gram(K0, backend=xb)
    bad = np.asarray(xb.to_numpy(_ridge._constant_layers(s, scale, xb))) | ~finite
    R = np.stack([np.asarray(xb.to_numpy(_ridge.calc_residual_operator(s, W, a, backend=xb))) for a in alphas],
                 axis=1)
    R[bad] = np.nan
    return R


def _block_operators(K, alphas, backend="numpy"):
    with single_threaded_blas():
        return _block_operators_impl(K, alphas, backend)



def _block_loo_scores_impl(R, Y, n_out, col_block=None):
    """R (L, A, n, n), Y (n, N) -> (n_out, L, N): Pearson r of LOO predictions [, best alpha index].

    With ``M = diag(R)^-1 R`` the leave-one-out residuals are ``E = M Y`` and the predictions
    ``Y - E``.  Their Pearson r with ``Y`` needs only three numbers per neuron besides ``yy``:
    ``E.E``, ``E.Y`` and ``sum(E) = (1^T M) Y``; so one product and two passes over ``E`` per
    layer.  Where the prediction's variance is tiny against the response's (``pp < 1e-6 yy``,
    heavy shrinkage) the algebraic form would cancel digits, so those neurons are recomputed
    directly from the centred predictions.

    The neurons are taken ``col_block`` at a time (outer loop) and the layers inside, so that
    ``E`` and the block of ``Y`` stay in cache for the two passes (every number is computed
    exactly as without blocking: each neuron's column is independent).
    """
    Y = np.asarray(Y, dtype=np.float64)
    L, A = R.shape[:2]
    n, N = Y.shape
    out = np.full((n_out, L, N), np.nan)
    ybar = Y.mean(axis=0)
    Yc = Y - ybar
    yy = np.einsum("in,in->n", Yc, Yc)
    ymax = np.abs(Y).max(axis=0) if Y.size else np.zeros(N)
    const_y = yy <= (_ridge.CONSTANT_COLUMN_RTOL * ymax) ** 2 * n
    ok = np.flatnonzero(np.isfinite(R).all(axis=(1, 2, 3)))  # others: constant or non-finite layer, NaN
    if ok.size == 0 or N == 0:
        return out
    Rk = R[ok]
    Ms = Rk / np.diagonal(Rk, axis1=-2, axis2=-1)[..., :, None]  # (layer, alpha, n, n)
    sums = Ms.sum(axis=-2)  # 1^T M (layer, alpha, n)
    Lk = ok.size
    ee, ey, m = np.empty((Lk, N)), np.empty((Lk, N)), np.empty((Lk, N))
    idx = np.zeros((Lk, N), dtype=np.int64)
    # blocks of whole multiples of 64 columns, each product well above BLAS's small-matrix
    # size (small-matrix kernels round differently): the last block takes the remainder
    cb = int(col_block or max(_COL_BLOCK, -(-_MIN_BLOCK_FLOPS // (n * n * 64)) * 64))
    edges = list(range(0, N - cb, cb)) + [N] if N >= 2 * cb else [0, N]
    for j, j1 in zip(edges[:-1], edges[1:]):
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
                else:
                    better = ee_a < ee[k, sl]  # least LOO squared error; ties keep the first alpha (as scikit-learn)
                    ee[k, sl] = np.where(better, ee_a, ee[k, sl])
                    ey[k, sl] = np.where(better, ey_a, ey[k, sl])
                    m[k, sl] = np.where(better, m_a, m[k, sl])
                    idx[k, sl] = np.where(better, a, idx[k, sl])
    eyc = ey - ybar * m  # E . Yc
    py = yy - eyc
    pp = yy - 2.0 * eyc + ee - m * m / n
    redo_mask = (pp < _REDO_RTOL * yy) & ~const_y
    for k in np.flatnonzero(redo_mask.any(axis=1)):
        redo = np.flatnonzero(redo_mask[k])
        for a in np.unique(idx[k, redo]):
            cols = redo[idx[k, redo] == a]
            E = Ms[k, a] @ Y[:, cols]
            P = Yc[:, cols] - (E - E.mean(axis=0))
            pp[k, cols] = np.einsum("in,in->n", P, P)
            py[k, cols] = np.einsum("in,in->n", P, Yc[:, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = py / np.sqrt(pp * yy)
    const_p = pp <= (_ridge.CONSTANT_COLUMN_RTOL ** 2) * yy
    out[0, ok] = np.where(const_y | const_p | ~np.isfinite(r), np.nan, np.clip(r, -1.0, 1.0))
    if n_out > 1:
        out[1, ok] = idx
    return out


def _block_loo_scores(R, Y, n_out):
    with single_threaded_blas():
        return _block_loo_scores_impl(R, Y, n_out)



def _block_zscored_gram(X):
    """srp (L, n, c) -> Z Z^T (L, n, n), Z z-scored per component over images (ddof=0).

    The same kernel and constant-feature rule (StandardScaler's) as every other Gram matrix.
    """
    from .gram import calc_zscored_gram

    X = np.asarray(X)
    n = X.shape[1]
    return np.stack([calc_zscored_gram(x, n_threads=1) for x in X]) if X.shape[0] else np.zeros((0, n, n))


def _block_raw_gram(X):
    X = np.asarray(X, dtype=np.float64)
    return X @ np.swapaxes(X, -1, -2)


def _block_model_rdms(K, fsum, p):
    from ..rsa import calc_rdm

    # fsum arrives as (L, n, 1) and p as (L, 1, 1) (broadcast against K's chunks)
    return calc_rdm(np.asarray(K, dtype=np.float64), "gram", feature_sum=np.asarray(fsum, dtype=np.float64)[..., 0],
                    n_features=np.asarray(p, dtype=np.float64)[:, 0, 0])


def _block_rsa(model_rdms, neural_rdms, method):
    from ..rsa import compare_rdms

    return np.atleast_2d(compare_rdms(model_rdms, neural_rdms, method, pairwise=True))


def _corr_rdm_from_cov(C):
    from ..rsa import _corr_to_rdm

    return _corr_to_rdm(np.asarray(C, dtype=np.float64))


def _pls_layer(X, Y, splits, n_components):
    from .pls import cross_validated_pls

    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all() or np.ptp(X, axis=0).max(initial=0) == 0:
        return np.full(Y.shape[1], np.nan)
    r = cross_validated_pls(X, np.asarray(Y, dtype=np.float64), splits, n_components=n_components)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(r, axis=0)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _responses_array(responses):
    if isinstance(responses, xr.Dataset):
        if S.MEAN not in responses:
            raise NeuroxrError(f"responses Dataset has no variable {S.MEAN!r} (found {list(responses.data_vars)})")
        responses = responses[S.MEAN]
    if set(responses.dims) != {S.NEURON, S.IMAGE}:
        raise NeuroxrError(f"responses must have dims (neuron, image), got {responses.dims}")
    return responses.transpose(S.NEURON, S.IMAGE)


def _align_images(feature_images, responses, features_source, responses_source):
    fi = np.asarray(feature_images)
    ri = np.asarray(responses[S.IMAGE].values)
    missing_in_resp = np.setdiff1d(fi, ri)
    missing_in_feat = np.setdiff1d(ri, fi)
    if missing_in_resp.size or missing_in_feat.size:
        parts = []
        if missing_in_feat.size:
            parts.append(f"{missing_in_feat.size} image ids of the responses ({responses_source}) are missing from "
                         f"the features ({features_source}): {missing_in_feat[:20].tolist()}")
        if missing_in_resp.size:
            parts.append(f"{missing_in_resp.size} image ids of the features ({features_source}) are missing from "
                         f"the responses ({responses_source}): {missing_in_resp[:20].tolist()}")
        raise S.SchemaError("; ".join(parts) + "; extract the features from the study's own stimuli.zarr "
                            "(`neuroxr extract`) so both use the same images")
    if np.array_equal(fi, ri):
        return responses
    return responses.sel({S.IMAGE: fi})


def _nan_layers(features, source, policy):
    if "finite" not in features.coords:
        return []
    fin = np.asarray(features["finite"].values, dtype=bool)
    bad = [str(v) for v in np.asarray(features[S.LAYER].values)[~fin]]
    if bad and policy == "raise":
        raise NeuroxrError(
            f"{source}: {len(bad)} layer(s) have NaN or infinite features (coordinate 'finite' is False): "
            f"{bad[:10]}; re-extract them, or pass nan_layers='skip' (--skip-nan-layers) to score them as NaN")
    return bad


def _layer_chunked(arr, layer_chunk):
    chunks = {0: layer_chunk}
    for ax in range(1, arr.ndim):
        chunks[ax] = -1
    if isinstance(arr, da.Array):
        return arr.rechunk(chunks)
    return da.from_array(np.asarray(arr), chunks=tuple(layer_chunk if i == 0 else -1 for i in range(arr.ndim)))


def _ridge_graph(K, Y, alphas, backend):
    """K dask (layer, n, n) chunked over layers, Y dask (n, neuron) -> dask (k, layer, neuron)."""
    A = len(alphas)
    R = K.map_blocks(_block_operators, alphas, backend, dtype=np.float64, new_axis=1,
                     chunks=(K.chunks[0], (A,), K.chunks[1], K.chunks[2]), token="nxr-ridge-operators")
    n_out = 2 if A > 1 else 1
    return da.blockwise(_block_loo_scores, "kln", R, "laij", Y, "jn", n_out=n_out, new_axes={"k": n_out},
                        dtype=np.float64, concatenate=True, token="nxr-ridge-scores")


def _neural_rdms_from_responses(Y, labels, areas, source):
    """Y dask (n, neuron), labels (neuron,) -> dask (area, n, n) RDMs of each area's neurons.

    The image-by-image covariance of each area's pattern is a reduction over neuron chunks.
    """
    rdms = []
    for a in areas:
        idx = np.flatnonzero(labels == a)
        if idx.size < 2:
            raise NeuroxrError(
                f"{source}: area {a!r} has {idx.size} neuron(s) after selection, at least 2 are needed for its RDM; "
                f"loosen the selection (`neuroxr select`) or leave the area out (areas=[...], --area)")
        Ya = Y[:, idx].astype(np.float64)
        Yc = Ya - Ya.mean(axis=1, keepdims=True)
        C = (Yc @ Yc.T).rechunk(-1)
        rdms.append(C.map_blocks(_corr_rdm_from_cov, dtype=np.float64))
    return da.stack(rdms, axis=0)


# --------------------------------------------------------------------------------------------
# score_layers
# --------------------------------------------------------------------------------------------
def score_layers(features: xr.Dataset, responses=None, metrics=("ridge", "rsa"), *, alpha=1.0, alphas=None,
                 zscore: bool = True, rdms=None, areas=None, rsa_method: str = "pearson",
                 neuron_chunk: int = DEFAULT_NEURON_CHUNK, layer_chunk: int = DEFAULT_LAYER_CHUNK,
                 nan_layers: str = "raise", pls_options: dict | None = None, backend: str = "numpy",
                 source=None, responses_source=None) -> xr.DataTree:
    """Lazy scores of every layer of one features Dataset.

    Parameters
    ----------
    features : Dataset
        The ``features/<model>.zarr`` layout: ``gram_z`` (or ``gram`` with ``zscore=False``)
        (layer, image, image_j); ``gram``, ``feature_sum`` (layer, image) and the layer coord
        ``n_features`` for ``rsa``; ``srp`` (layer, image, component) for ``srp-ridge`` and ``pls``.
    responses : DataArray (neuron, image) or Dataset with ``mean``, optional
        The (selected) neurons; neuron coords (``area``, ...) are copied to the result.
    metrics : sequence of {"ridge", "rsa", "srp-ridge", "pls"}
    alpha : float
        Ridge penalty (> 0).
    alphas : sequence of float, optional
        A grid instead: each neuron gets the alpha of least leave-one-out error, stored as
        ``ridge_alpha`` (layer, neuron).
    zscore : bool
        Ridge on features z-scored over images (``gram_z``; srp components z-scored) or raw.
    rdms : DataArray (site, image, image_j), optional
        Ingested neural RDMs, scored by RSA like areas (``rsa_r`` without responses,
        ``rsa_site_r`` (layer, site) with them).
    areas : sequence of str, optional
        Areas for RSA (default: those of the neurons); an area with fewer than 2 neurons is an error.
    rsa_method : {"pearson", "spearman", "kendall"}
    neuron_chunk, layer_chunk : int
        Chunk sizes of the graph.
    nan_layers : {"raise", "skip"}
        Layers flagged non-finite by the ``finite`` layer coord: raise, or score as NaN.
    pls_options : dict, optional
        ``kind`` ("kfold"/"random"), ``n_splits``, ``n_components``, ``seed``, ``test_size``.
    backend : {"numpy", "torch", "torch:cuda"}

    Returns
    -------
    DataTree
        Dask-backed: ``ridge_r``/``srp_ridge_r``/``pls_r`` (layer, neuron) at the root,
        ``rsa_r`` (layer, area) in ``areas`` (``area`` indexed by name); layer coords
        (with ``variant``) and neuron coords copied.
    """
    metrics = check_metrics(metrics)
    alphas = _ridge.check_alphas(alpha if alphas is None else alphas)
    if nan_layers not in ("raise", "skip"):
        raise NeuroxrError(f"nan_layers must be 'raise' or 'skip', got {nan_layers!r}")
    source = source or "features"
    responses_source = responses_source or "responses"
    if S.LAYER not in features.dims:
        raise S.SchemaError(f"{source}: no 'layer' dim (dims {dict(features.sizes)})")
    _nan_layers(features, source, nan_layers)
    needs_resp = [m for m in metrics if m != "rsa"]
    if responses is None and (needs_resp or rdms is None):
        raise MissingDataError(f"metrics {needs_resp or ['rsa']} need responses (neuron, image); "
                               "ingest them (`neuroxr ingest`)" + ("" if needs_resp else " or neural RDMs"))
    out = {}  # neuron-level: name -> (dims, dask)
    out_areas = {}  # area-level
    coords = {}  # neuron coords
    area_coords = {}
    layer_coords = {}
    if responses is not None:
        resp = _responses_array(responses)
        resp = _align_images(features[S.IMAGE].values, resp, source, responses_source)
        Ydata = resp.transpose(S.IMAGE, S.NEURON).data
        nchunk = min(int(neuron_chunk), max(1, resp.sizes[S.NEURON]))
        if isinstance(Ydata, da.Array):
            Y = Ydata.rechunk({0: -1, 1: nchunk})
        else:
            # name=False: a random key instead of hashing every response (30 ms at 60,000 neurons)
            Y = da.from_array(np.asarray(Ydata), chunks=(-1, nchunk), name=False)
        coords[S.NEURON] = _plain(resp[S.NEURON].values)
        trials = None
        if isinstance(responses, xr.Dataset) and S.TRIALS in responses:
            tr = responses[S.TRIALS].transpose(S.NEURON, S.IMAGE, S.TRIAL)
            trials = tr.sel({S.IMAGE: resp[S.IMAGE].values}).data
        for c, v in resp.coords.items():
            if c not in (S.NEURON, S.IMAGE) and v.dims == (S.NEURON,):
                coords[c] = (S.NEURON, _plain(v.values))
    for c, v in features.coords.items():
        if c == S.LAYER:
            layer_coords[c] = _plain(v.values)
        elif v.dims == (S.LAYER,):
            layer_coords[c] = (S.LAYER, _plain(v.values))
    lc = int(layer_chunk)

    def add_ridge(name, K):
        res = _ridge_graph(_layer_chunked(K, lc), Y, alphas, backend)
        out[name] = ((S.LAYER, S.NEURON), res[0])
        if len(alphas) > 1:
            idx = res[1]
            out[name.replace("_r", "_alpha")] = ((S.LAYER, S.NEURON), da.map_blocks(
                _index_to_alpha, idx, np.asarray(alphas), dtype=np.float64))

    if "ridge" in metrics:
        gname = GRAM_Z if zscore else GRAM
        if gname not in features:
            raise MissingDataError(f"{source}: no variable {gname!r} (found {list(features.data_vars)}); "
                                   "re-extract the features with `neuroxr extract`")
        add_ridge(S.RIDGE_R, features[gname].transpose(S.LAYER, S.IMAGE, S.IMAGE_J).data)
    if "srp-ridge" in metrics or "pls" in metrics:
        if S.SRP not in features:
            raise MissingDataError(
                f"{source}: no variable 'srp' (the sparse random projection) needed by "
                f"{[m for m in metrics if m in ('srp-ridge', 'pls')]}; extract it with `neuroxr extract --srp`")
        srp = _layer_chunked(features[S.SRP].transpose(S.LAYER, S.IMAGE, S.COMPONENT).data, lc)
        if "srp-ridge" in metrics:
            fn = _block_zscored_gram if zscore else _block_raw_gram
            n = srp.shape[1]
            Ks = srp.map_blocks(fn, dtype=np.float64, chunks=(srp.chunks[0], (n,), (n,)), token="nxr-srp-gram")
            add_ridge("srp_ridge_r", Ks)
        if "pls" in metrics:
            opts = {**DEFAULT_PLS, **(pls_options or {})}
            from .pls import make_splits

            splits = make_splits(srp.shape[1], kind=opts["kind"], n_splits=opts["n_splits"],
                                 test_size=opts["test_size"], seed=opts["seed"])
            Yfull = Y.rechunk({1: -1})
            cols = []
            pls_fn = dask.delayed(_pls_layer, pure=True)
            for l in range(srp.shape[0]):
                cols.append(da.from_delayed(pls_fn(srp[l], Yfull, splits, opts["n_components"]),
                                            shape=(Yfull.shape[1],), dtype=np.float64))
            pls = da.stack(cols, axis=0).rechunk({1: Y.chunks[1]}) if cols else da.zeros((0, Y.shape[1]))
            out["pls_r"] = ((S.LAYER, S.NEURON), pls)
    if "rsa" in metrics:
        for v in (GRAM, FEATURE_SUM):
            if v not in features:
                raise MissingDataError(f"{source}: no variable {v!r} needed by rsa; re-extract with `neuroxr extract`")
        if "n_features" not in features.coords:
            raise MissingDataError(f"{source}: no layer coordinate 'n_features' needed by rsa")
        K = _layer_chunked(features[GRAM].transpose(S.LAYER, S.IMAGE, S.IMAGE_J).data, lc)
        fs = _layer_chunked(features[FEATURE_SUM].transpose(S.LAYER, S.IMAGE).data, lc)
        p = da.from_array(np.asarray(features["n_features"].values, dtype=np.float64), chunks=(K.chunks[0],))
        mr = da.map_blocks(_block_model_rdms, K, fs[:, :, None], p[:, None, None], dtype=np.float64,
                           token="nxr-model-rdms")
        neural = []  # (name, dim, labels, dask (g, n, n))
        if responses is not None:
            labels = np.asarray(resp[S.AREA].values).astype(str) if S.AREA in resp.coords else None
            if labels is None:
                raise S.SchemaError(f"{responses_source}: neuron coordinate 'area' is missing; rsa needs it")
            use = list(areas) if areas is not None else [a for a in S.AREAS if a in set(labels)] + \
                sorted(set(labels) - set(S.AREAS))
            neural.append((S.RSA_R, S.AREA, use, _neural_rdms_from_responses(Y, labels, use, responses_source)))
            if trials is not None:
                out_areas["rsa_ceiling"] = ((S.AREA,), _rdm_ceiling_graph(trials, labels, use, rsa_method))
        if rdms is not None:
            r = rdms if isinstance(rdms, xr.DataArray) else rdms[S.RDM]
            r = r.transpose(S.SITE, S.IMAGE, S.IMAGE_J)
            r = _align_images(features[S.IMAGE].values, r, source, "rdms.zarr").sel(
                {S.IMAGE_J: features[S.IMAGE].values} if S.IMAGE_J in r.coords else {})
            sites = np.asarray(r[S.SITE].values)
            rd = r.data if isinstance(r.data, da.Array) else da.from_array(np.asarray(r.values))
            rd = rd.rechunk(-1)
            if responses is None:
                neural.append((S.RSA_R, S.AREA, [str(s) for s in sites], rd))
            else:
                neural.append(("rsa_site_r", S.SITE, _plain(sites), rd))
        for name, dim, labels, nr in neural:
            res = da.blockwise(_block_rsa, "la", mr, "lij", nr.rechunk(-1), "aij", method=rsa_method,
                               dtype=np.float64, concatenate=True, token=f"nxr-{name}")
            out_areas[name] = ((S.LAYER, dim), res)
            area_coords[dim] = np.asarray(labels, dtype=str) if dim == S.AREA else labels
    return build_scores_tree(out, out_areas, layer_coords=layer_coords, neuron_coords=coords,
                             area_coords=area_coords, attrs={"metrics": json.dumps(list(metrics))})


def _ceiling_one_area(trials, method):
    from ..rsa import calc_rdm_noise_ceiling

    t = np.asarray(trials, dtype=np.float64)
    _, ceiling, _ = calc_rdm_noise_ceiling(t, np.zeros(t.shape[0], dtype=int), method=method)
    return ceiling


def _rdm_ceiling_graph(trials, labels, areas, method):
    """Split-half (odd/even trials) RDM noise ceiling of each area, Spearman-Brown corrected (area,)."""
    fn = dask.delayed(_ceiling_one_area, pure=True)
    parts = []
    for a in areas:
        idx = np.flatnonzero(labels == a)
        t = trials[idx] if isinstance(trials, da.Array) else np.asarray(trials)[idx]
        parts.append(da.from_delayed(fn(t, method), shape=(1,), dtype=np.float64))
    return da.concatenate(parts) if parts else da.zeros((0,))


def _plain(values):
    """Coordinate values as a plain numpy array; variable-width strings become fixed-width str.

    (Zarr stores object strings as variable-length strings, which xarray cannot auto-chunk on
    opening; fixed-width strings open everywhere.)
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "T" or (arr.dtype == object and all(isinstance(x, str) for x in arr.ravel().tolist())):
        return np.array([str(x) for x in arr.ravel().tolist()], dtype=str).reshape(arr.shape)  # -> "<U"
    return arr


def _index_to_alpha(idx, alphas):
    out = np.full(idx.shape, np.nan)
    ok = np.isfinite(idx)
    out[ok] = alphas[idx[ok].astype(int)]
    return out


def count_nan_scores(tree) -> dict:
    """Number of NaN scores per variable, and of all-NaN layers / neurons (computes)."""
    lazy = {}  # (variable, key) -> 0-d count; all computed in one pass over the data
    nodes = tree.subtree if isinstance(tree, xr.DataTree) else [tree]
    variables = {k: v for node in nodes for k, v in node.data_vars.items()}
    for name, var in variables.items():
        if S.LAYER not in var.dims or var.dtype.kind != "f":
            continue
        isn = var.isnull()
        lazy[name, "nan"] = isn.sum().data
        other = [d for d in var.dims if d != S.LAYER]
        if other:
            lazy[name, "nan_layers"] = isn.all(other).sum().data
            lazy[name, f"nan_{other[0]}s"] = isn.all(S.LAYER).sum().data
    values = dask.compute(*lazy.values()) if lazy else ()
    out = {}
    for (name, key), v in zip(lazy, values):
        out.setdefault(name, {})[key] = int(v)
    return out


# --------------------------------------------------------------------------------------------
# score_study
# --------------------------------------------------------------------------------------------
def _load_responses(study):
    st_path = Path(study)
    if not (st_path / S.RESPONSES_STORE).exists():
        return None
    try:
        from ..responses import load_selected_responses
    except ImportError:  # pragma: no cover - responses module absent
        load_selected_responses = None
    if load_selected_responses is not None:
        return load_selected_responses(study)
    ds = _store.open_dataset(st_path / S.RESPONSES_STORE)
    if "selected" in ds.variables:
        keep = np.asarray(ds["selected"].values, dtype=bool)
        ds = ds.isel({S.NEURON: np.flatnonzero(keep)})
    return ds


def _features_fingerprint(ds: xr.Dataset) -> str:
    h = hashlib.sha256()
    attrs = {k: ds.attrs[k] for k in sorted(ds.attrs) if k in ("created", "settings", "inputs", "neuroxr_version")}
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    h.update(json.dumps([str(x) for x in np.asarray(ds[S.LAYER].values)]).encode())
    h.update(json.dumps(sorted(ds.data_vars)).encode())
    return h.hexdigest()[:16]


def _study_settings(metrics, alphas, zscore, rsa_method, pls_opts, areas, resp, has_rdms, nan_layers):
    settings = {
        "metrics": sorted(metrics),
        "alphas": [float(a) for a in alphas],
        "zscore": bool(zscore),
    }
    if "rsa" in metrics:
        settings["rsa_method"] = rsa_method
        settings["areas"] = None if areas is None else [str(a) for a in areas]
        settings["neural_rdms"] = bool(has_rdms)
    if "pls" in metrics:
        settings["pls"] = dict(pls_opts)
    settings["nan_layers"] = nan_layers
    if resp is not None:
        settings["neurons"] = _store.hash_array(np.asarray(resp[S.NEURON].values))
        settings["n_neurons"] = int(resp.sizes[S.NEURON])
        settings["responses"] = _store.hash_array(resp[S.MEAN].data)
    return settings


def _part_attrs(part: Path) -> dict:
    """A part store's attributes from its group metadata alone (no arrays read)."""
    try:
        import zarr

        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(zarr.open_group(str(part), mode="r").attrs)
    except Exception:  # unreadable metadata: the full open says what is wrong
        return dict(_store.open_dataset(part).attrs)


def score_study(study, metrics=("ridge", "rsa"), alpha=1.0, alphas=None, zscore: bool = True, models=None,
                client=None, overwrite: bool = False, neuron_chunk: int = DEFAULT_NEURON_CHUNK,
                layer_chunk: int = DEFAULT_LAYER_CHUNK, areas=None, rsa_method: str = "pearson",
                nan_layers: str = "raise", pls_options: dict | None = None, backend: str = "numpy",
                progress: bool = False, log=None) -> Path:
    """Score the study's models and write ``STUDY/scores.zarr``.

    Parameters
    ----------
    study : path-like
        The study directory (``responses.zarr`` and/or ``rdms.zarr``, ``features/*.zarr``).
    metrics : sequence of {"ridge", "rsa", "srp-ridge", "pls"}
    alpha, alphas, zscore, areas, rsa_method, nan_layers, pls_options, backend
        See :func:`score_layers`.
    models : sequence of str, optional
        Model stores (``features/<model>.zarr`` names) to score; default all.
    client : distributed.Client, optional
        Run on this cluster; default the threaded scheduler of this process.
    overwrite : bool
        Discard scores computed with other settings and rescore everything.
    progress : bool
        Show a progress bar (dask's, or ``distributed.progress`` with a client).

    Returns
    -------
    Path of ``scores.zarr``.
    """
    from ..study import open_study

    log = log or (lambda msg: None)
    st = open_study(study)
    metrics = check_metrics(metrics)
    alphas = _ridge.check_alphas(alpha if alphas is None else alphas)
    pls_opts = {**DEFAULT_PLS, **(pls_options or {})}
    resp = _load_responses(st.path)
    if resp is not None and client is None and S.MEAN in resp:
        # every model's graph reads the responses: read them once (a cluster's workers read the store)
        resp = resp.assign({S.MEAN: resp[S.MEAN].load()})
    rdms = _store.open_dataset(st.store(S.RDMS_STORE))[S.RDM] if st.has(S.RDMS_STORE) and "rsa" in metrics else None
    if resp is None and rdms is None:
        raise MissingDataError(f"{st.store(S.RESPONSES_STORE)} does not exist; ingest responses first "
                               "(`neuroxr ingest`, `neuroxr simulate`)")
    settings = _study_settings(metrics, alphas, zscore, rsa_method, pls_opts, areas, resp, rdms is not None,
                               nan_layers)
    scores_path = st.store(S.SCORES_STORE)
    parts_dir = st.store(PARTS_DIR)
    _store.clean_stale(st.path)
    _store.clean_stale(parts_dir)
    for tmp in list(_OWN_TMPS):  # this process's leftovers (clean_stale spares live pids)
        shutil.rmtree(tmp, ignore_errors=True)
        _OWN_TMPS.discard(tmp)
    if scores_path.exists() and not overwrite:
        existing = _store.read_settings(_store.open_dataset(scores_path))
        _store.check_settings(existing, settings, scores_path)
    if overwrite and parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)

    all_models = st.feature_models()
    if models:
        missing = [m for m in models if m not in all_models]
        if missing:
            raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: no features for {missing}; extracted: "
                                   f"{all_models or 'none'}; run `neuroxr extract` first")
        todo_models = list(models)
    else:
        todo_models = all_models
    if not todo_models and not any(parts_dir.glob("*.zarr")):
        raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: no extracted features; run `neuroxr extract` first")

    with _PartRunner(client, progress, log, len(todo_models)) as runner:
        for model in todo_models:
            fpath = st.store(S.FEATURES_DIR, f"{model}.zarr")
            # the graph's layer chunks straight from the store (no rechunk tasks); other dims as stored
            # (object coords cannot be auto-chunked)
            feats = _store.open_dataset(fpath, chunks={S.LAYER: int(layer_chunk)})
            fp = _features_fingerprint(feats)
            part = parts_dir / f"{model}.zarr"
            if part.exists():
                pattrs = _part_attrs(part)
                try:
                    _store.check_settings(_store.read_settings(pattrs), settings, part)
                except SettingsMismatchError:
                    if not overwrite:
                        raise
                else:
                    if pattrs.get("features_fingerprint") == fp:
                        log(f"{model}: already scored with these settings, skipped")
                        runner.skipped()
                        continue
            ds = score_layers(feats, resp, metrics, alphas=alphas, zscore=zscore, rdms=rdms, areas=areas,
                              rsa_method=rsa_method, neuron_chunk=neuron_chunk, layer_chunk=layer_chunk,
                              nan_layers=nan_layers, pls_options=pls_opts, backend=backend, source=fpath,
                              responses_source=st.store(S.RESPONSES_STORE))
            ds.attrs.update(_store.provenance(settings, {"features": str(fpath), "features_fingerprint": fp}))
            ds.attrs["features_fingerprint"] = fp
            ds.attrs["model_store"] = model
            runner.submit(model, ds, part)
    return assemble_scores(st.path, settings)


#: models scored at the same time locally (their tasks share one pool of Dask workers)
MODELS_IN_FLIGHT = 2


def _score_part(model, ds, part, client, progress, log, pool=None):
    """Compute one model's scores into a temporary store and move it to ``part``."""
    names = sorted(k for node in ds.subtree for k in node.data_vars)
    log(f"{model}: scoring {ds.sizes.get(S.LAYER, 0)} layers x {ds.sizes.get(S.NEURON, 0)} neurons "
        f"({', '.join(names)})")
    delayed, tmp = write_scores(ds, part, compute=False)
    try:
        if pool is None:
            _compute(delayed, client, progress, what=f"scoring {model}")
        else:
            dask.compute(delayed, scheduler="threads", pool=pool)
        _store.replace_store(tmp, part)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            # after an interrupt, Dask threads still running may recreate it: removed next run
            _OWN_TMPS.add(tmp)


def _local_threads() -> bool:
    """True if Dask computes with its threaded scheduler here (no client, no other scheduler set)."""
    import dask.threaded

    sched = dask.base.get_scheduler()
    return sched is None or sched is dask.threaded.get


class _PartRunner:
    """Score and write the models' parts as :func:`score_study` hands them over.

    Locally (Dask's threaded scheduler), ``MODELS_IN_FLIGHT`` models are scored at a time, all
    of their tasks going to one pool of ``num_workers`` threads, while the calling thread opens
    and sets up the next models: the zarr metadata of one model's part is written while the
    other's blocks keep the cores busy, and the last layer chunks of one model run beside the
    first of the next.  Each part is still written whole and moved into place as soon as its
    model is done.  With a client or another scheduler, each model is computed as it is handed
    over.  An error stops the models not yet started; those in flight finish (their parts are
    whole) and the first error is raised.
    """

    def __init__(self, client, progress, log, n_models):
        self.client, self.progress, self.log, self.n_models = client, progress, log, n_models
        self.pipelined = client is None and n_models > 1 and _local_threads()
        self.futures = []
        self.stop = threading.Event()
        self.bar, self._bar_lock = None, threading.Lock()
        # models handed over but not finished: the caller sets up at most this many ahead
        self.slots = threading.BoundedSemaphore(2 * MODELS_IN_FLIGHT)

    def __enter__(self):
        if self.pipelined:
            from concurrent.futures import ThreadPoolExecutor

            from dask.system import CPU_COUNT

            self._blas = single_threaded_blas()
            self._blas.__enter__()
            n_workers = int(dask.config.get("num_workers", None) or CPU_COUNT or 1)
            self.pool = ThreadPoolExecutor(n_workers, thread_name_prefix="nxr-score")
            self.drivers = ThreadPoolExecutor(MODELS_IN_FLIGHT, thread_name_prefix="nxr-model")
            if self.progress:
                from tqdm.auto import tqdm

                # Dask's own bar is per computation: this one counts models
                self.bar = tqdm(total=self.n_models, desc="scoring", unit="model")
        return self

    def skipped(self):
        self._tick()

    def _tick(self):
        if self.bar is not None:
            with self._bar_lock:  # the drivers and the caller update it
                self.bar.update()

    def submit(self, model, ds, part):
        if not self.pipelined:
            _score_part(model, ds, part, self.client, self.progress, self.log)
            return
        self.slots.acquire()
        for f in self.futures:  # a model failed: stop handing over more
            if f.done() and not f.cancelled() and f.exception() is not None:
                self.slots.release()
                raise f.exception()
        self.futures.append(self.drivers.submit(self._run, model, ds, part))

    def _run(self, model, ds, part):
        try:
            if self.stop.is_set():
                return
            _score_part(model, ds, part, None, False, self.log, pool=self.pool)
            self._tick()
        finally:
            self.slots.release()

    def __exit__(self, exc_type, exc, tb):
        if not self.pipelined:
            return False
        if exc_type is not None:
            self.stop.set()
        try:
            for f in self.futures:
                if not self.stop.is_set():
                    f.result()  # the first error, in model order
        except BaseException:
            self.stop.set()
            raise
        finally:
            for f in self.futures:
                f.cancel()
            self.drivers.shutdown(wait=True)  # models in flight finish (their parts are whole)
            self.pool.shutdown(wait=True)
            self._blas.__exit__(None, None, None)
            if self.bar is not None:
                self.bar.close()
        return False


def compute_scores(obj, *, client=None, progress: bool = False, what: str = "scoring"):
    """Compute a lazy result of :func:`score_layers` (or any delayed write of it).

    Locally, BLAS is held to one thread for the whole computation: Dask runs the blocks in
    parallel, and a multi-threaded BLAS on small n x n problems only adds synchronisation
    (five times the CPU time on a busy two-core machine).  With a ``client`` the blocks limit
    BLAS threads themselves on the workers.
    """
    if client is not None:
        from ..cluster import gather

        # polls the scheduler: a task bar, and a clear error if every worker stays paused
        return gather(client, client.compute(obj), what=what, progress=progress)
    with single_threaded_blas():
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                return dask.compute(obj)[0]
        return dask.compute(obj)[0]


def _compute(delayed, client, progress, what="scoring"):
    return compute_scores(delayed, client=client, progress=progress, what=what)


def assemble_scores(study, settings: dict | None = None) -> Path:
    """(Re)build ``STUDY/scores.zarr`` from the finished parts in ``STUDY/scores.parts`` (atomic)."""
    st_path = Path(study)
    parts_dir = st_path / PARTS_DIR
    parts = sorted(p for p in parts_dir.glob("*.zarr") if not p.name.startswith("."))
    if not parts:
        raise MissingDataError(f"{parts_dir}: no scored models to assemble")
    opened = [open_scores(p) for p in parts]
    if settings is None:
        settings = _store.read_settings(opened[-1])
    keep = [t for t in opened if _store.read_settings(t) == settings]
    layer_ids = np.concatenate([np.asarray(t[S.LAYER].values) for t in keep])
    uniq, counts = np.unique(layer_ids, return_counts=True)
    if (counts > 1).any():
        raise NeuroxrError(f"{parts_dir}: layer ids scored twice in different model stores: "
                           f"{uniq[counts > 1][:5].tolist()}; remove the duplicate features store")
    inputs = {t.attrs.get("model_store", str(i)): t.attrs.get("features_fingerprint") for i, t in enumerate(keep)}
    combined = concat_scores(keep, attrs=_store.provenance(settings, inputs))
    combined.attrs["nan_counts"] = json.dumps(count_nan_scores(combined))
    return replace_scores(combined, st_path / S.SCORES_STORE)
