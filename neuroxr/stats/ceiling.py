"""Noise ceilings of the scores: what a perfect model could reach, per metric and area.

- Regression metrics (``ridge``, ``srp-ridge``, ``pls``): the mean over an area's scored neurons of
  their split-half reliability ``splithalf_r`` (Spearman-Brown corrected, as
  :func:`neuroxr.responses.calc_splithalf_reliability` computes it).
- ``rsa``: ``rsa_ceiling`` (area) of ``scores.zarr``, the Spearman-Brown corrected split-half
  correlation of the area's RDM (:func:`neuroxr.rsa.calc_rdm_noise_ceiling`).
- Area ``all``: the mean over areas of the per-area ceilings (as the ``all`` score is the mean over
  areas); metric ``overall``: the mean of the regression and the RSA ``all`` ceilings.

Both are the same convention: the corrected split-half reliability of what the metric compares.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from .tables import (
    ALL,
    OVERALL,
    list_metrics,
    order_groups,
    regression_metric,
    to_strings,
)

CEILING_COLUMNS = ["metric", "area", "ceiling", "n", "source"]
_REGRESSION = ("srp-ridge", "ridge", "pls")


def _tree_groups(scores) -> dict:
    """{group path: Dataset} of a scores DataTree (coords inherited), or {"/": scores}."""
    if isinstance(scores, xr.DataTree):
        return {"/" if path == "." else path: node.to_dataset() for path, node in scores.subtree_with_keys}
    return {"/": scores}


def summarize_ceilings(scores, splithalf=None) -> pd.DataFrame:
    """The noise ceiling of every metric of ``scores`` per area, ``all`` and ``overall``.

    Parameters
    ----------
    scores : DataTree
        ``scores.zarr``.
    splithalf : Series or DataArray (neuron,), optional
        Split-half reliability by neuron id, used when the scores' neurons carry no ``splithalf_r``
        coordinate (e.g. read from ``responses.zarr``).

    Returns
    -------
    DataFrame
        ``metric, area, ceiling, n, source`` (n: neurons or areas averaged); empty when no ceiling
        is known.
    """
    groups = _tree_groups(scores)
    root = groups["/"]
    metrics = list_metrics(scores)
    rows = []
    reg = regression_metric(metrics)
    rel = None
    if S.NEURON in root.dims:
        if "splithalf_r" in root.coords:
            rel = pd.Series(np.asarray(root["splithalf_r"].values, float))
        elif splithalf is not None:
            ser = splithalf.to_series() if hasattr(splithalf, "to_series") else pd.Series(splithalf)
            rel = pd.Series(ser.reindex(np.asarray(root[S.NEURON].values)).to_numpy(float))
    if rel is not None and "area" in root.coords and np.isfinite(rel.to_numpy()).any():
        areas = to_strings(root["area"].values)
        per = {}
        for a in order_groups(areas, "area"):
            v = rel.to_numpy()[areas == a]
            v = v[np.isfinite(v)]
            if len(v):
                per[a] = (float(v.mean()), len(v))
        for m in [m for m in metrics if m in _REGRESSION]:
            rows += [{"metric": m, "area": a, "ceiling": c, "n": n, "source": "split-half reliability (Spearman-Brown), "
                          "mean over neurons"} for a, (c, n) in per.items()]
            if per:
                rows.append({"metric": m, "area": ALL, "ceiling": float(np.mean([c for c, _ in per.values()])),
                                 "n": len(per), "source": "mean over areas"})
    areas_ds = groups.get("areas")
    if "rsa" in metrics and areas_ds is not None and "rsa_ceiling" in areas_ds.data_vars:
        c = areas_ds["rsa_ceiling"]
        vals = dict(zip(to_strings(c[S.AREA].values), np.asarray(c.values, float)))
        per = {a: vals[a] for a in order_groups(list(vals), "area") if np.isfinite(vals[a])}
        rows += [{"metric": "rsa", "area": a, "ceiling": v, "n": 1, "source": "split-half RDM reliability (Spearman-Brown)"}
                 for a, v in per.items()]
        if per:
            rows.append({"metric": "rsa", "area": ALL, "ceiling": float(np.mean(list(per.values()))), "n": len(per),
                             "source": "mean over areas"})
    out = pd.DataFrame(rows, columns=CEILING_COLUMNS)
    alls = out[out.area == ALL].set_index("metric").ceiling
    if reg in alls.index and "rsa" in alls.index:
        extra = pd.DataFrame([{"metric": OVERALL, "area": ALL, "ceiling": float((alls[reg] + alls["rsa"]) / 2), "n": 2,
                                   "source": f"mean of the {reg} and rsa ceilings"}])
        out = pd.concat([out, extra], ignore_index=True)
    return out


def get_ceiling(ceilings: pd.DataFrame | None, metric: str, area: str = ALL) -> float:
    """The ceiling of (``metric``, ``area``) in a :func:`summarize_ceilings` table, or NaN."""
    if ceilings is None or not len(ceilings):
        return np.nan
    hit = ceilings[(ceilings.metric == metric) & (ceilings.area == area)]
    return float(hit.ceiling.iloc[0]) if len(hit) else np.nan
