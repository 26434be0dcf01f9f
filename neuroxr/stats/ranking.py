"""Rankings: per model variant and group, the maximum over layers of the group-mean score.

The rankings follow the first study (Conwell et al. 2021): per model and area, the maximum over
layers of the area-mean score ("SRP-Ridge Max", "RSA Max"), the layer that attains it and its
relative depth; area ``all`` is the maximum over layers of the mean over areas (each area weighted
equally), and the ``overall`` metric is the mean of the neural-regression and the RSA ``all``
scores.  Intervals on ``all`` and ``overall`` rows are bootstrapped across areas (the same
resamples for every model, so intervals are comparable); per-area regression rows are bootstrapped
across neurons.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import NeuroxrError
from ..mapping import METRICS
from ..runtime import quiet_warnings
from .tables import (
    ALL, CI_LEVEL, OVERALL, build_layer_frame, check_metrics, get_score, group_matrix, neuron_groups,
    order_groups, order_metrics, regression_metric, to_strings,
)

RANKING_COLUMNS = ["model", "weights", "area", "metric", "score", "best_layer", "relative_depth", "family",
                   "depth", "ci_low", "ci_high", "n", "rank", S.VARIANT]


def calc_percentile_ci(samples, axis=0):
    """The :data:`CI_LEVEL` percentile interval of bootstrap ``samples`` (NaNs ignored)."""
    lo, hi = (1 - CI_LEVEL) / 2 * 100, (1 + CI_LEVEL) / 2 * 100
    with np.errstate(all="ignore"):
        return np.nanpercentile(samples, lo, axis=axis), np.nanpercentile(samples, hi, axis=axis)


class LayerRows:
    """Rows of a (layer, neuron) score read by blocks of ``block`` layers (default: the dask array's
    layer chunks, so each chunk is read once), the last ``keep`` blocks cached in their stored dtype:
    a model variant's layers (consecutive in the store) cost one read of their blocks, and memory
    stays at ``keep`` blocks of every neuron, never the whole array."""

    def __init__(self, var: xr.DataArray, block: int | None = None, keep: int = 2):
        self.var = var.transpose(S.LAYER, S.NEURON)
        if block is None:  # a dask array's own layer chunks (256 layers in memory)
            block = self.var.chunks[0][0] if self.var.chunks else 256
        self.block, self.keep = max(1, int(block)), int(keep)
        self._blocks: dict = {}

    def _get(self, b: int) -> np.ndarray:
        if b not in self._blocks:
            if len(self._blocks) >= self.keep:
                self._blocks.pop(next(iter(self._blocks)))
            part = self.var.isel({S.LAYER: slice(b * self.block, (b + 1) * self.block)})
            self._blocks[b] = np.asarray(part.values)  # the stored dtype (float32): rows() converts
        return self._blocks[b]

    def rows(self, idx) -> np.ndarray:
        """``values[idx]`` (len(idx), neuron) float64."""
        idx = np.asarray(idx, dtype=int)
        out = np.empty((len(idx), self.var.sizes[S.NEURON]))
        for b in np.unique(idx // self.block):
            sel = np.flatnonzero(idx // self.block == b)
            out[sel] = self._get(int(b))[idx[sel] - b * self.block]
        return out


@dataclass
class _Bootstrap:
    """What every interval of one ranking shares: the seeded generator (drawn in row order), the
    group resamples of the ``all`` rows and the neuron-level values of the regression metrics."""

    n_boot: int
    rng: np.random.Generator
    group_idx: np.ndarray | None
    neuron_vars: dict
    neuron_groups: dict
    cache: dict = field(default_factory=dict)

    def over_neurons(self, metric, grp, layers):
        """95% interval of the max over ``layers`` of the mean over resampled neurons of ``grp``."""
        if not self.n_boot or metric not in self.neuron_vars:
            return np.nan, np.nan
        if metric not in self.cache:  # rows read by blocks of layers, never the whole (layer, neuron) array
            var = self.neuron_vars[metric]
            self.cache[metric] = (LayerRows(var), {k: i for i, k in enumerate(to_strings(var[S.LAYER].values))})
        reader, pos = self.cache[metric]
        block = reader.rows([pos[k] for k in layers])[:, np.flatnonzero(self.neuron_groups[metric] == grp)]
        block = block[:, np.isfinite(block).all(axis=0)]
        n = block.shape[1]
        if n < 2:
            return np.nan, np.nan
        counts = self.rng.multinomial(n, np.full(n, 1.0 / n), size=self.n_boot)  # (boot, neuron)
        samples = (counts @ block.T / n).max(axis=1)
        return calc_percentile_ci(samples)

    def over_groups(self, vals):
        """Bootstrap samples of the max over layers of the mean over resampled groups (columns)."""
        with quiet_warnings(RuntimeWarning):
            return np.nanmax(np.nanmean(vals[:, self.group_idx], axis=2), axis=0)


def _draw_group_resamples(n_groups, n_boot, seed):
    """(boot, group) indices of groups drawn with replacement, the same for every model; None without resamples."""
    if not n_boot:
        return None
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))


def _variant_rows(boot, meta, groups, metric, base, idx, vals, counts, by):
    """The rows of one model variant and metric: one per group, then group ``all``; and the
    bootstrap samples of its ``all`` score (None without them)."""
    names = meta["layer_name"].to_numpy()[idx]
    rel = meta["relative_depth"].to_numpy(float)[idx]
    layers = meta.index[idx]
    rows = []
    for j, grp in enumerate(groups):
        col = vals[:, j]
        if not np.isfinite(col).any():
            continue
        k = int(np.nanargmax(col))
        lo, hi = boot.over_neurons(metric, grp, layers)
        rows.append({**base, by: grp, "score": col[k], "best_layer": names[k], "relative_depth": rel[k],
                     "ci_low": lo, "ci_high": hi, "n": int(counts[:, j].max())})
    with quiet_warnings(RuntimeWarning):
        mean = np.nanmean(vals, axis=1)
    if not np.isfinite(mean).any():
        return rows, None
    k = int(np.nanargmax(mean))
    lo = hi = np.nan
    samples = None
    if boot.n_boot:
        samples = boot.over_groups(vals)
        lo, hi = calc_percentile_ci(samples)
    present = np.flatnonzero(np.isfinite(vals).any(axis=0))
    if len(present) < 2:  # one group: resampling groups says nothing; use its own interval
        samples = None
        lo, hi = boot.over_neurons(metric, groups[int(present[0])], layers)
    rows.append({**base, by: ALL, "score": mean[k], "best_layer": names[k], "relative_depth": rel[k],
                 "ci_low": lo, "ci_high": hi, "n": len(present)})
    return rows, samples


def _overall_rows(out, reg, all_boot, by, n_boot):
    """Metric ``overall``: per model variant the mean of its regression and RSA ``all`` scores."""
    a = out[(out[by] == ALL) & (out.metric == reg)].set_index(S.VARIANT)
    b = out[(out[by] == ALL) & (out.metric == "rsa")].set_index(S.VARIANT)
    rows = []
    for key in a.index.intersection(b.index):
        lo = hi = np.nan
        if n_boot and (key, reg) in all_boot and (key, "rsa") in all_boot:
            lo, hi = calc_percentile_ci((all_boot[key, reg] + all_boot[key, "rsa"]) / 2)
        rows.append({"model": a.loc[key, "model"], "weights": a.loc[key, "weights"], S.VARIANT: key,
                     "metric": OVERALL, by: ALL,
                     "score": (a.loc[key, "score"] + b.loc[key, "score"]) / 2, "best_layer": "",
                     "relative_depth": np.nan, "family": a.loc[key, "family"], "depth": a.loc[key, "depth"],
                     "ci_low": lo, "ci_high": hi, "n": int(min(a.loc[key, "n"], b.loc[key, "n"]))})
    return pd.DataFrame(rows)


def _sort_ranking(out, groups, by):
    """Ranks within (metric, group), then rows ordered by metric, group (``all`` first) and rank."""
    out["rank"] = out.groupby(["metric", by])["score"].rank(ascending=False, method="min").astype(int)
    metric_order = {m: i for i, m in enumerate([OVERALL, *order_metrics(METRICS)])}
    grp_order = {g: i for i, g in enumerate([ALL, *groups])}
    out = out.sort_values(["metric", by, "rank"], key=lambda s: s.map(metric_order) if s.name == "metric"
                          else (s.map(grp_order) if s.name == by else s)).reset_index(drop=True)
    return out[[by if c == "area" else c for c in RANKING_COLUMNS]]


def _spread(cols, M, N, groups, n_layers):
    """(layer, group) matrices of the scores and counts with columns in ``groups`` order."""
    full = np.full((n_layers, len(groups)), np.nan)
    fulln = np.zeros((n_layers, len(groups)), int)
    for j, c in enumerate(cols):
        full[:, groups.index(c)] = M[:, j]
        fulln[:, groups.index(c)] = N[:, j]
    return full, fulln


def rank_models(scores: xr.DataTree, metrics=None, *, n_boot: int = 1000, seed: int = 0,
                by: str = "area") -> pd.DataFrame:
    """Rank models by the maximum over layers of their group-mean score.

    Parameters
    ----------
    scores : DataTree
        ``scores.zarr`` (see :func:`neuroxr.stats.calc_layer_scores`).
    metrics : list of str, optional
        ``ridge``, ``srp-ridge``, ``pls``, ``rsa`` (default: all present).
    n_boot : int
        Bootstrap resamples for the 95% intervals (0: no intervals).
    seed : int
        Seed of the bootstrap.
    by : str
        Neuron grouping (``area`` by default; ``cre_line`` for the per-cre-line table).

    Returns
    -------
    DataFrame
        Contract columns ``model, weights, area, metric, score, best_layer, relative_depth``
        (the grouping column is named ``by``), then ``family, depth, ci_low, ci_high, n, rank,
        variant``.  One row per (model variant, metric, group), a row per (variant, metric) with
        group ``all`` (max over layers of the mean over groups, interval bootstrapped across
        groups; with a single group, its own neuron interval), and with ``by == "area"`` and both
        a regression metric and ``rsa`` present, rows of metric ``overall`` (mean of the two ``all``
        scores).
    """
    metrics = check_metrics(scores, metrics)
    meta = build_layer_frame(scores)
    mats = {m: group_matrix(scores, m, by, meta.index) for m in metrics}
    mats = {m: v for m, v in mats.items() if v is not None}
    groups = order_groups([g for _, (cols, _, _) in mats.items() for g in cols], by)
    neuron_vars = {m: get_score(scores, m) for m in mats if METRICS[m].target == "neuron"}
    boot = _Bootstrap(n_boot, np.random.default_rng(seed), _draw_group_resamples(len(groups), n_boot, seed),
                      neuron_vars, {m: neuron_groups(scores, by) for m in neuron_vars})
    rows, all_boot = [], {}
    depth = meta["depth"].to_numpy(float)
    variants = meta.groupby(S.VARIANT, sort=False).indices
    for metric, (cols, M, N) in mats.items():
        full, fulln = _spread(cols, M, N, groups, len(meta))
        for variant, idx in variants.items():
            idx = idx[np.argsort(depth[idx], kind="stable")]
            if not np.isfinite(full[idx]).any():
                continue
            first = meta.iloc[idx[0]]
            base = {"model": first["model"], "weights": first["weights"], S.VARIANT: variant, "metric": metric,
                    "family": first["family"], "depth": len(idx)}
            got, samples = _variant_rows(boot, meta, groups, metric, base, idx, full[idx], fulln[idx], by)
            rows += got
            if samples is not None:
                all_boot[variant, metric] = samples
    out = pd.DataFrame(rows)
    if out.empty:
        raise NeuroxrError("scores.zarr holds no finite scores to rank")
    reg = regression_metric(list(mats))
    if by == "area" and reg is not None and "rsa" in mats:
        out = pd.concat([out, _overall_rows(out, reg, all_boot, by, n_boot)], ignore_index=True)
    return _sort_ranking(out, groups, by)


def select_ranking(rankings: pd.DataFrame, metric: str = OVERALL, area: str = ALL, weights=None) -> pd.DataFrame:
    """Rows of one ranking (metric, area), best first; ``weights`` filters (e.g. ``'trained'``)."""
    r = rankings[(rankings.metric == metric) & (rankings.area == area)]
    if weights is not None:
        r = r[r.weights == weights]
    return r.sort_values("score", ascending=False).reset_index(drop=True)


def headline_metric(rankings: pd.DataFrame) -> str:
    """``overall`` when present, else the regression metric, else ``rsa``."""
    have = set(rankings.metric)
    for m in (OVERALL, "srp-ridge", "ridge", "pls", "rsa"):
        if m in have:
            return m
    raise NeuroxrError("rankings table holds no metric")


def pick_depth_metric(rankings: pd.DataFrame) -> str:
    """The per-area metric that depth analyses use: ``srp-ridge``, ``ridge``, ``pls``, else ``rsa``."""
    have = set(rankings.metric)
    for m in ("srp-ridge", "ridge", "pls", "rsa"):
        if m in have:
            return m
    raise NeuroxrError("rankings table holds no per-area metric")
