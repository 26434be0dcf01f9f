"""Per-layer tables of a study's scores: metric names, group labels and group-mean scores.

Everything reads ``scores.zarr`` as :func:`neuroxr.mapping.open_scores` gives it, a DataTree:
neuron-level scores (``ridge_r``, ``srp_ridge_r``, ``pls_r`` (layer, neuron)) at the root and
area-level ones (``rsa_r`` (layer, area), ``area`` an index of names) in the ``areas`` group.
A plain Dataset is read as one group holding every variable it has.  Which variable a metric
writes, and in which group, comes from the registry :data:`neuroxr.mapping.METRICS`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import NeuroxrError
from ..mapping import METRICS
from ..mapping.tree import label_variants
#: the order of areas in tables, figures and the depth-gradient test: the project's
#: :data:`neuroxr.schema.AREAS` (VISp, VISl, VISal, VISpm, VISrl, VISam), the order the study
#: reports and the simulated observatory plants its depth gradient in
HIERARCHY = tuple(S.AREAS)
ALL = "all"
OVERALL = "overall"
#: the interval reported on every ranking row
CI_LEVEL = 0.95

LAYER_META = ("model", "weights", "family", "layer_name", "depth", "relative_depth", S.VARIANT)


def to_strings(values) -> np.ndarray:
    """Fixed-width numpy strings of any string array (object, ``<U``, or NumPy 2's StringDType,
    which cannot be cast to ``str`` directly)."""
    a = np.asarray(values)
    return a.astype(object).astype(str) if a.dtype.kind not in "U" else a


def order_metrics(names) -> list[str]:
    """Metric names in table order: neuron-level metrics first, then area-level, each in registry order."""
    rank = {m: (METRICS[m].target != "neuron", i) for i, m in enumerate(METRICS)}
    return sorted(names, key=lambda m: rank.get(m, (True, len(rank))))


def _groups(scores) -> dict:
    """{group path: Dataset} of a scores DataTree (with the coords it inherits), or {"/": scores}."""
    if isinstance(scores, xr.DataTree):
        return {"/" if path == "." else path: node.to_dataset() for path, node in scores.subtree_with_keys}
    return {"/": scores}


def get_score(scores, metric: str) -> xr.DataArray | None:
    """The variable of ``metric`` (:data:`neuroxr.mapping.METRICS`) in its group of ``scores``, or None."""
    m = METRICS[metric]
    groups = _groups(scores)
    ds = groups.get(m.group) if isinstance(scores, xr.DataTree) else groups["/"]
    return ds[m.variable] if ds is not None and m.variable in ds.data_vars else None


def list_metrics(scores) -> list[str]:
    """Metric names (``ridge``, ``srp-ridge``, ``pls``, ``rsa``) whose variables ``scores`` holds (ranked ones:
    not p-values or layer properties such as ``effective_dim``, see :attr:`neuroxr.mapping.metrics.Metric.ranked`)."""
    return order_metrics([m for m in METRICS if METRICS[m].ranked and get_score(scores, m) is not None])


def _variables(scores) -> list[str]:
    return [str(v) for ds in _groups(scores).values() for v in ds.data_vars]


def check_metrics(scores, metrics) -> list[str]:
    """``metrics`` (default: every metric present) as a list, each one known and present in ``scores``."""
    have = list_metrics(scores)
    if metrics is None:
        metrics = have
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        if m not in METRICS:
            raise NeuroxrError(f"unknown metric {m!r}; choose from {sorted(METRICS)}")
        if m not in have:
            raise NeuroxrError(
                f"scores.zarr has no variable {METRICS[m].variable!r} for metric {m!r} (it holds "
                f"{_variables(scores)}); score with that metric first (`neuroxr score --metrics {m}`) "
                f"or choose from {have}")
    if not metrics:
        raise NeuroxrError(f"scores.zarr holds no score variable (expected one of "
                           f"{sorted(m.variable for m in METRICS.values())})")
    return metrics


def regression_metric(metrics: Sequence[str]) -> str | None:
    """The neural-regression metric of the overall ranking: ``srp-ridge``, else ``ridge``, else ``pls``."""
    for m in ("srp-ridge", "ridge", "pls"):
        if m in metrics:
            return m
    return None


def _group_layer_frame(ds: xr.Dataset) -> pd.DataFrame:
    coords = {c: np.asarray(ds[c].values) for c in LAYER_META if c in ds.coords}
    coords = {c: to_strings(v) if v.dtype.kind in "OUST" else v for c, v in coords.items()}
    return pd.DataFrame(coords, index=pd.Index(to_strings(ds[S.LAYER].values), name="layer"))


def build_layer_frame(scores) -> pd.DataFrame:
    """The layer coordinates of ``scores`` (:data:`LAYER_META`) as a DataFrame indexed by layer id:
    every layer of any group, the root's first; ``variant`` made from model and weights where absent."""
    frames = [_group_layer_frame(ds) for ds in _groups(scores).values() if S.LAYER in ds.coords and ds.data_vars]
    if not frames:
        raise NeuroxrError("scores hold no layer coordinate; rescore with `neuroxr score`")
    df = pd.concat(frames)
    df = df[~df.index.duplicated()]
    for c in LAYER_META:
        if c not in df:
            df[c] = np.nan if c in ("depth", "relative_depth") else ""
    if (df[S.VARIANT] == "").all() or df[S.VARIANT].isna().all():
        df[S.VARIANT] = label_variants(df["model"].to_numpy(), df["weights"].to_numpy())
    return df


def calc_layer_scores(scores: xr.DataTree, metrics=None, by: str = "area") -> pd.DataFrame:
    """Long table of every layer's group-mean score.

    Parameters
    ----------
    scores : DataTree or Dataset
        ``scores.zarr``: ``ridge_r``/``srp_ridge_r``/``pls_r`` (layer, neuron) at the root,
        ``rsa_r`` (layer, area) in ``areas``.
    metrics : list of str, optional
        Metric names (default: all present).
    by : str
        Neuron coordinate to group regression scores by (``area``, ``cre_line``, ``cortical_layer``).
        RSA scores are per area and only enter when ``by == "area"``.

    Returns
    -------
    DataFrame
        Columns ``layer, model, weights, family, layer_name, depth, relative_depth, variant,
        metric, <by>, score, n`` (n: neurons averaged; 1 for RSA).
    """
    metrics = check_metrics(scores, metrics)
    meta = build_layer_frame(scores)
    parts = []
    for m in metrics:
        found = group_matrix(scores, m, by, meta.index)
        if found is None:
            continue
        cols, M, N = found
        for j, g in enumerate(cols):
            parts.append(pd.DataFrame({"layer": meta.index, "metric": m, by: g, "score": M[:, j], "n": N[:, j]}))
    if not parts:
        raise NeuroxrError(f"no scores to group by {by!r} for metrics {metrics}")
    long = pd.concat(parts, ignore_index=True)
    return meta.reset_index().merge(long, on="layer", how="right")


def neuron_groups(scores, by: str = "area") -> np.ndarray:
    """The neuron coordinate ``by`` of ``scores`` (its root group) as strings (neuron,)."""
    ds = _groups(scores)["/"]
    if by in ds.coords and ds[by].dims == (S.NEURON,):
        return to_strings(ds[by].values)
    raise NeuroxrError(
        f"scores.zarr has no neuron coordinate {by!r} (neuron coords: "
        f"{[c for c in ds.coords if ds[c].dims == (S.NEURON,)]}); rescore with the neuron coords kept")


def order_groups(values, by: str) -> list[str]:
    """The distinct ``values`` in table order: areas in :data:`HIERARCHY` order, others sorted."""
    vals = list(pd.unique(to_strings(values)))
    if by == "area":
        return [a for a in HIERARCHY if a in vals] + sorted(a for a in vals if a not in HIERARCHY)
    return sorted(vals)


def sum_by_group(values, groups, cols) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of the finite values of ``values`` (layer, neuron) per neuron group.

    ``groups`` (neuron,) labels each column, ``cols`` the groups in output order; returns
    ``(sums, counts)`` (layer, group) float64.  One product with a (neuron, group) one-hot matrix,
    so a dask array is reduced chunk by chunk (each task: one (layer, neuron) chunk times its
    rows of the one-hot matrix; then the partial (layer, group) sums over the neuron chunks): the
    whole array is never in one task, and with a distributed client active the work runs on its
    workers.  A NumPy array is reduced in memory the same way.
    """
    codes = pd.Index(cols).get_indexer(np.asarray(groups))
    onehot = np.zeros((len(codes), len(cols)))
    ok = codes >= 0
    onehot[np.flatnonzero(ok), codes[ok]] = 1.0
    if hasattr(values, "dask"):
        import dask
        import dask.array as da

        x = values.astype(np.float64)
        finite = da.isfinite(x)
        oh = da.from_array(onehot, chunks=(x.chunks[1], len(cols)))
        sums, counts = dask.compute(da.where(finite, x, 0.0) @ oh, finite.astype(np.float64) @ oh)
        return np.asarray(sums), np.asarray(counts)
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    return np.where(finite, x, 0.0) @ onehot, finite.astype(np.float64) @ onehot


def group_matrix(scores, metric: str, by: str, layers: pd.Index):
    """(groups, M (layer, group) of group-mean scores, N (layer, group) counts) with rows in the order
    of ``layers`` (NaN where a layer lacks the metric), or None (area-level metrics unless ``by == "area"``)."""
    var = get_score(scores, metric)
    var = var.assign_coords({S.LAYER: to_strings(var[S.LAYER].values)})
    if not var.indexes[S.LAYER].equals(layers):
        var = var.reindex({S.LAYER: layers})
    if METRICS[metric].target == "neuron":
        grp = neuron_groups(scores, by)
        cols = list(pd.unique(grp))
        sums, counts = sum_by_group(var.transpose(S.LAYER, S.NEURON).data, grp, cols)
        N = counts.astype(int)
        with np.errstate(invalid="ignore", divide="ignore"):
            M = sums / np.where(N > 0, N, np.nan)
        return cols, M, N
    if by != "area":
        return None
    M = np.asarray(var.transpose(S.LAYER, S.AREA).values, dtype=float)
    return list(to_strings(var[S.AREA].values)), M, np.isfinite(M).astype(int)
