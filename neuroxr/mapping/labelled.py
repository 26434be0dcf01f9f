"""The xarray layer of scoring: names to axes, checks, and the labelled result.

:func:`score_layers` takes a features Dataset (the ``features/<model>.zarr`` layout) and
responses (neuron, image), checks and aligns them, hands plain dask arrays to each registered
metric's ``build`` (:mod:`neuroxr.mapping.metrics`) and labels what comes back as a scores
DataTree (:mod:`neuroxr.mapping.tree`).  Nothing is computed.
"""
from __future__ import annotations

import json

import dask.array as da
import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from .backend import resolve_backend
from .metrics import DEFAULT_PLS, METRICS, ScoringInputs, check_metrics
from .resample import check_resample_options
from .ridge import check_alphas
from .tree import build_scores_tree

__all__ = ["score_layers", "DEFAULT_NEURON_CHUNK", "DEFAULT_LAYER_CHUNK"]

DEFAULT_NEURON_CHUNK = 8192
DEFAULT_LAYER_CHUNK = 8


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


def _plain(values):
    """Coordinate values as a plain numpy array; variable-width strings become fixed-width str.

    (Zarr stores object strings as variable-length strings, which xarray cannot auto-chunk on
    opening; fixed-width strings open everywhere.)
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "T" or (arr.dtype == object and all(isinstance(x, str) for x in arr.ravel().tolist())):
        return np.array([str(x) for x in arr.ravel().tolist()], dtype=str).reshape(arr.shape)  # -> "<U"
    return arr


def _plain_coords(obj, dim):
    """``obj`` with its coords along ``dim`` (and the index) as plain arrays (see :func:`_plain`)."""
    return obj.assign_coords({c: (v.dims, _plain(v.values)) for c, v in obj.coords.items() if v.dims == (dim,)})


def _responses_inputs(responses, features, neuron_chunk, source, responses_source):
    """(Y DataArray (image, neuron) on dask with the neuron coords, area labels, trials) of the aligned responses."""
    resp = _responses_array(responses)
    resp = _align_images(features[S.IMAGE].values, resp, source, responses_source)
    Yda = resp.transpose(S.IMAGE, S.NEURON)
    nchunk = min(int(neuron_chunk), max(1, resp.sizes[S.NEURON]))
    if isinstance(Yda.data, da.Array):
        Y = Yda.data.rechunk({0: -1, 1: nchunk})
    else:
        # name=False: a random key instead of hashing every response (30 ms at 60,000 neurons)
        Y = da.from_array(np.asarray(Yda.data), chunks=(-1, nchunk), name=False)
    Y = _plain_coords(Yda.copy(data=Y), S.NEURON).drop_vars(S.IMAGE)
    trials = None
    if isinstance(responses, xr.Dataset) and S.TRIALS in responses:
        tr = responses[S.TRIALS].transpose(S.NEURON, S.IMAGE, S.TRIAL)
        trials = tr.sel({S.IMAGE: resp[S.IMAGE].values}).data
    labels = np.asarray(resp[S.AREA].values).astype(str) if S.AREA in resp.coords else None
    return Y, labels, trials


def _site_rdms(rdms, features, source):
    r = (rdms if isinstance(rdms, xr.DataArray) else rdms[S.RDM]).transpose(S.SITE, S.IMAGE, S.IMAGE_J)
    r = _align_images(features[S.IMAGE].values, r, source, "rdms.zarr")
    return r.sel({S.IMAGE_J: features[S.IMAGE].values}) if S.IMAGE_J in r.coords else r


def score_layers(features: xr.Dataset, responses=None, metrics=("ridge", "rsa"), *, alpha=1.0, alphas=None,
                 zscore: bool = True, rdms=None, areas=None, rsa_method: str = "pearson",
                 neuron_chunk: int = DEFAULT_NEURON_CHUNK, layer_chunk: int = DEFAULT_LAYER_CHUNK,
                 nan_layers: str = "raise", pls_options: dict | None = None, backend: str = "auto",
                 solver: str = "eigen", source=None, responses_source=None,
                 resample_options: dict | None = None) -> xr.DataTree:
    """Lazy scores of every layer of one features Dataset.

    Parameters
    ----------
    features : Dataset
        The ``features/<model>.zarr`` layout: ``gram_z`` (or ``gram`` with ``zscore=False``)
        (layer, image, image_j); ``gram``, ``feature_sum`` (layer, image) and the layer coord
        ``n_features`` for ``rsa``; ``srp`` (layer, image, component) for ``srp-ridge`` and ``pls``.
    responses : DataArray (neuron, image) or Dataset with ``mean``, optional
        The (selected) neurons; neuron coords (``area``, ...) are copied to the result.
    metrics : sequence of str
        Names of :data:`neuroxr.mapping.metrics.METRICS` ("ridge", "rsa", "srp-ridge", "pls", ...).
    alpha : float or PaperAlphas
        Ridge penalty (> 0): a float is a plain penalty (scikit-learn's ``Ridge(alpha)``, the
        default 1.0); ``neuroxr.mapping.ridge.PAPER_ALPHA`` (or ``None``) is the paper's alpha = 1
        in its units with the mean-free score, what ``neuroxr score`` and the pipelines use by
        default (docs/metrics.md).
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
    backend : {"auto", "numpy", "torch", "torch:cuda"}
        ``"auto"``: ``"torch:cuda"`` where a CUDA device is present, else ``"numpy"``.
    solver : str
        A ridge solver of :data:`neuroxr.mapping.ridge.SOLVERS` with residual operators.
    resample_options : dict, optional
        ``n_perm``, ``n_boot``, ``n_splits``, ``ceiling_boot``, ``seed`` of the permutation,
        bootstrap and ceiling metrics (:data:`neuroxr.mapping.resample.DEFAULT_RESAMPLE`).

    Returns
    -------
    DataTree
        Dask-backed: ``ridge_r``/``srp_ridge_r``/``pls_r`` (layer, neuron) at the root,
        ``rsa_r`` (layer, area) in ``areas`` (``area`` indexed by name); layer coords
        (with ``variant``) and neuron coords copied.
    """
    metrics = check_metrics(metrics)
    alphas = check_alphas(alpha if alphas is None else alphas)
    if nan_layers not in ("raise", "skip"):
        raise NeuroxrError(f"nan_layers must be 'raise' or 'skip', got {nan_layers!r}")
    source, responses_source = source or "features", responses_source or "responses"
    if S.LAYER not in features.dims:
        raise S.SchemaError(f"{source}: no 'layer' dim (dims {dict(features.sizes)})")
    _nan_layers(features, source, nan_layers)
    needs_resp = [m for m in metrics if METRICS[m].needs_responses]
    if responses is None and (needs_resp or rdms is None):
        raise MissingDataError(f"metrics {needs_resp or ['rsa']} need responses (neuron, image); "
                               "ingest them (`neuroxr ingest`)" + ("" if needs_resp else " or neural RDMs"))
    features = _plain_coords(features, S.LAYER)
    inp = ScoringInputs(features, alphas=alphas, zscore=zscore, backend=resolve_backend(backend), solver=solver,
                        layer_chunk=int(layer_chunk), areas=areas, rsa_method=rsa_method,
                        pls_options={**DEFAULT_PLS, **(pls_options or {})}, source=source,
                        responses_source=responses_source, resample=check_resample_options(resample_options))
    if responses is not None:
        inp.Y, inp.labels, inp.trials = _responses_inputs(responses, features, neuron_chunk, source, responses_source)
    if rdms is not None:
        inp.rdms = _site_rdms(rdms, features, source)
    neuron, area, layer = {}, {}, {}
    for m in metrics:
        built = METRICS[m].build(inp)
        neuron.update(built.neuron)
        area.update(built.area)
        layer.update(built.layer)
    layer_coords = features.drop_vars([c for c in features.coords if features[c].dims != (S.LAYER,)]).coords
    return build_scores_tree(neuron, area, layer_coords=layer_coords, attrs={"metrics": json.dumps(list(metrics))},
                             layer_vars=layer)
