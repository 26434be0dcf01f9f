"""Per-layer tables of a study's scores: metric names, group labels and group-mean scores.

Everything reads ``scores.zarr`` (``ridge_r`` (layer, neuron), ``rsa_r`` (layer, area), and
optionally ``srp_ridge_r`` / ``pls_r`` (layer, neuron)).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import NeuroxrError

#: score variables of ``scores.zarr`` and the metric names used in tables and figures
METRIC_VARS = {"ridge": "ridge_r", "srp-ridge": "srp_ridge_r", "pls": "pls_r", "rsa": S.RSA_R}
#: the order of areas in tables, figures and the depth-gradient test: the project's
#: :data:`neuroxr.schema.AREAS` (VISp, VISl, VISal, VISpm, VISrl, VISam), the order the study
#: reports and the simulated observatory plants its depth gradient in
HIERARCHY = tuple(S.AREAS)
ALL = "all"
OVERALL = "overall"
#: the interval reported on every ranking row
CI_LEVEL = 0.95

LAYER_META = ("model", "weights", "family", "layer_name", "depth", "relative_depth")


def to_strings(values) -> np.ndarray:
    """Fixed-width numpy strings of any string array (object, ``<U``, or NumPy 2's StringDType,
    which cannot be cast to ``str`` directly)."""
    a = np.asarray(values)
    return a.astype(object).astype(str) if a.dtype.kind not in "U" else a


def list_metrics(scores: xr.Dataset) -> list[str]:
    """Metric names (``ridge``, ``srp-ridge``, ``pls``, ``rsa``) whose variables ``scores`` holds."""
    return [m for m, v in METRIC_VARS.items() if v in scores.data_vars]


def check_metrics(scores: xr.Dataset, metrics) -> list[str]:
    """``metrics`` (default: every metric present) as a list, each one known and present in ``scores``."""
    have = list_metrics(scores)
    if metrics is None:
        metrics = have
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        if m not in METRIC_VARS:
            raise NeuroxrError(f"unknown metric {m!r}; choose from {sorted(METRIC_VARS)}")
        if m not in have:
            raise NeuroxrError(
                f"scores.zarr has no variable {METRIC_VARS[m]!r} for metric {m!r} (it holds {list(scores.data_vars)}); "
                f"score with that metric first (`neuroxr score --metrics {m}`) or choose from {have}")
    if not metrics:
        raise NeuroxrError(f"scores.zarr holds no score variable (expected one of {sorted(METRIC_VARS.values())})")
    return metrics


def regression_metric(metrics: Sequence[str]) -> str | None:
    """The neural-regression metric of the overall ranking: ``srp-ridge``, else ``ridge``, else ``pls``."""
    for m in ("srp-ridge", "ridge", "pls"):
        if m in metrics:
            return m
    return None


def build_layer_frame(scores: xr.Dataset) -> pd.DataFrame:
    """The layer coordinates of ``scores`` (:data:`LAYER_META`) as a DataFrame indexed by layer id."""
    coords = {c: np.asarray(scores[c].values) for c in LAYER_META if c in scores.coords}
    coords = {c: to_strings(v) if v.dtype.kind in "OUST" else v for c, v in coords.items()}
    df = pd.DataFrame(coords, index=pd.Index(to_strings(scores[S.LAYER].values), name="layer"))
    for c in LAYER_META:
        if c not in df:
            df[c] = np.nan if c in ("depth", "relative_depth") else ""
    return df


def calc_layer_scores(scores: xr.Dataset, metrics=None, by: str = "area") -> pd.DataFrame:
    """Long table of every layer's group-mean score.

    Parameters
    ----------
    scores : Dataset
        ``scores.zarr``: ``ridge_r``/``srp_ridge_r``/``pls_r`` (layer, neuron), ``rsa_r`` (layer, area).
    metrics : list of str, optional
        Metric names (default: all present).
    by : str
        Neuron coordinate to group regression scores by (``area``, ``cre_line``, ``cortical_layer``).
        RSA scores are per area and only enter when ``by == "area"``.

    Returns
    -------
    DataFrame
        Columns ``layer, model, weights, family, layer_name, depth, relative_depth, metric,
        <by>, score, n`` (n: neurons averaged; 1 for RSA).
    """
    metrics = check_metrics(scores, metrics)
    meta = build_layer_frame(scores)
    parts = []
    for m in metrics:
        found = group_matrix(scores, m, by)
        if found is None:
            continue
        cols, M, N = found
        for j, g in enumerate(cols):
            parts.append(pd.DataFrame({"layer": meta.index, "metric": m, by: g, "score": M[:, j], "n": N[:, j]}))
    if not parts:
        raise NeuroxrError(f"no scores to group by {by!r} for metrics {metrics}")
    long = pd.concat(parts, ignore_index=True)
    return meta.reset_index().merge(long, on="layer", how="right")


def neuron_groups(scores: xr.Dataset, by: str = "area") -> np.ndarray:
    """The neuron coordinate ``by`` of ``scores`` as strings (neuron,).

    In ``scores.zarr`` the neurons' ``area`` coordinate sits beside ``rsa_r``'s ``area`` dim
    (labelled by ``area_name``); ``neuron_area`` is accepted too.
    """
    for name in (by, f"neuron_{by}", f"{by}_neuron"):
        if name in scores.coords and scores[name].dims == (S.NEURON,):
            return to_strings(scores[name].values)
    raise NeuroxrError(
        f"scores.zarr has no neuron coordinate {by!r} (neuron coords: "
        f"{[c for c in scores.coords if scores[c].dims == (S.NEURON,)]}); rescore with the neuron coords kept")


def order_groups(values, by: str) -> list[str]:
    """The distinct ``values`` in table order: areas in :data:`HIERARCHY` order, others sorted."""
    vals = list(pd.unique(to_strings(values)))
    if by == "area":
        return [a for a in HIERARCHY if a in vals] + sorted(a for a in vals if a not in HIERARCHY)
    return sorted(vals)


def group_matrix(scores: xr.Dataset, metric: str, by: str):
    """(groups, M (layer, group) of group-mean scores, N (layer, group) counts) or None (RSA not by area)."""
    var = scores[METRIC_VARS[metric]]
    if S.NEURON in var.dims:
        grp = neuron_groups(scores, by)
        values = np.asarray(var.transpose(S.LAYER, S.NEURON).values, dtype=float)
        cols = list(pd.unique(grp))
        M = np.full((values.shape[0], len(cols)), np.nan)
        N = np.zeros((values.shape[0], len(cols)), int)
        for j, g in enumerate(cols):
            block = values[:, grp == g]
            N[:, j] = np.isfinite(block).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                M[:, j] = np.nansum(block, axis=1) / np.where(N[:, j] > 0, N[:, j], np.nan)
        return cols, M, N
    if by != "area":
        return None
    M = np.asarray(var.transpose(S.LAYER, S.AREA).values, dtype=float)
    return rsa_areas(scores), M, np.isfinite(M).astype(int)


def rsa_areas(scores: xr.Dataset) -> list[str]:
    """Area labels of ``rsa_r``'s ``area`` dim: the ``area_name`` coordinate (scores.zarr), or the
    ``area`` index where ``rsa_r`` stands alone."""
    var = scores[S.RSA_R]
    for name in ("area_name", S.AREA):
        if name in var.coords and var[name].dims == (S.AREA,):
            return list(to_strings(var[name].values))
    if "area_name" in scores.coords and scores["area_name"].dims == (S.AREA,):
        return list(to_strings(scores["area_name"].values))
    raise NeuroxrError(f"scores.zarr: {S.RSA_R!r} has no area labels (coordinate 'area_name' (area)); rescore")
