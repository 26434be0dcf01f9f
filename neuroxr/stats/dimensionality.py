"""Effective dimensionality of each layer against its score (Elmoznino & Bonner's question).

- :func:`dimensionality_table`: per model variant and layer, ``effective_dim`` (the ``effdim``
  metric: participation ratio of the centred raw Gram's eigenvalues, scores group ``layers``) and
  the layer's scores: each ranked metric present (``ridge``, ``rsa``, ``cka``, ``versa`` ...) as the
  mean over areas of the area means (each area weighted equally, as the ranking's ``all`` rows).
- :func:`correlate_dimensionality`: the Spearman correlation (:func:`scipy.stats.spearmanr`) of
  score with effective dimensionality over layers, per variant and over all layers pooled.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError
from .tables import build_layer_frame, calc_layer_scores, list_metrics, to_strings

__all__ = ["EFFECTIVE_DIM", "correlate_dimensionality", "dimensionality_table"]

EFFECTIVE_DIM = "effective_dim"
_ID_COLUMNS = ["variant", "model", "weights", "family", "layer", "layer_name", "depth", "relative_depth"]


def _effective_dims(scores) -> pd.Series:
    node = None
    if isinstance(scores, xr.DataTree):
        for _, n in scores.subtree_with_keys:
            if EFFECTIVE_DIM in n.data_vars:
                node = n.to_dataset()
                break
    elif EFFECTIVE_DIM in scores:
        node = scores
    if node is None:
        raise MissingDataError(f"scores hold no variable {EFFECTIVE_DIM!r}; score with "
                               "`neuroxr score STUDY --metric effdim` first")
    var = node[EFFECTIVE_DIM]
    return pd.Series(np.asarray(var.values, dtype=float), index=pd.Index(to_strings(var[S.LAYER].values), name="layer"),
                     name=EFFECTIVE_DIM)


def dimensionality_table(scores, metrics=None) -> pd.DataFrame:
    """Per model variant and layer: effective dimensionality and the layer's scores.

    Parameters
    ----------
    scores : DataTree
        ``scores.zarr`` (:func:`neuroxr.mapping.open_scores`) holding ``effective_dim`` (layer,).
    metrics : list of str, optional
        Ranked metrics to tabulate (default: all present).

    Returns
    -------
    DataFrame
        Columns ``variant, model, weights, family, layer, layer_name, depth, relative_depth,
        effective_dim``, then one column per metric (``ridge``, ``rsa`` ...): the mean over areas
        of the layer's area-mean score.  Rows in variant, then depth order.
    """
    dims = _effective_dims(scores)
    meta = build_layer_frame(scores)
    out = meta.reset_index().rename(columns={"index": "layer"})
    out = out.merge(dims.reset_index(), on="layer", how="left")
    have = list_metrics(scores)
    metrics = have if metrics is None else list(metrics)
    if metrics:
        long = calc_layer_scores(scores, metrics, by="area")
        per = long.groupby(["layer", "metric"], sort=False)["score"].mean().unstack("metric")
        out = out.merge(per.reset_index(), on="layer", how="left")
    cols = [c for c in _ID_COLUMNS if c in out] + [EFFECTIVE_DIM] + [m for m in metrics if m in out]
    return out[cols].sort_values(["variant", "depth"], kind="stable").reset_index(drop=True)


def correlate_dimensionality(table: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Spearman correlation of each score with effective dimensionality over layers.

    Parameters
    ----------
    table : DataFrame
        From :func:`dimensionality_table`.
    metrics : list of str, optional
        Score columns (default: every column after ``effective_dim``).

    Returns
    -------
    DataFrame
        Columns ``variant`` (``all`` for every layer pooled), ``metric``, ``rho``, ``p``, ``n``
        (layers with both values finite); NaN where fewer than 3 layers.
    """
    from scipy.stats import spearmanr

    if metrics is None:
        metrics = list(table.columns[list(table.columns).index(EFFECTIVE_DIM) + 1:])
    rows = []
    groups = [(v, g) for v, g in table.groupby("variant", sort=False)] + [("all", table)]
    for variant, g in groups:
        for m in metrics:
            ok = np.isfinite(g[EFFECTIVE_DIM].to_numpy(float)) & np.isfinite(g[m].to_numpy(float))
            n = int(ok.sum())
            rho = p = np.nan
            if n >= 3:
                res = spearmanr(g[EFFECTIVE_DIM].to_numpy(float)[ok], g[m].to_numpy(float)[ok])
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append({"variant": variant, "metric": m, "rho": rho, "p": p, "n": n})
    return pd.DataFrame(rows, columns=["variant", "metric", "rho", "p", "n"])
