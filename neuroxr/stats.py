"""Rankings, statistics and bootstrap intervals over a study's scores.

Everything here reads ``scores.zarr`` (``ridge_r`` (layer, neuron), ``rsa_r`` (layer, area), and
optionally ``srp_ridge_r`` / ``pls_r`` (layer, neuron)) and returns tidy :class:`pandas.DataFrame`
tables: one row per result, with the test, the statistic, the p value, the effect size, n and a
95% interval where one applies.

The rankings follow the first study (Conwell et al. 2021): per model and area, the maximum over
layers of the area-mean score ("SRP-Ridge Max", "RSA Max"), the layer that attains it and its
relative depth; area ``all`` is the maximum over layers of the mean over areas (each area weighted
equally), and the ``overall`` metric is the mean of the neural-regression and the RSA ``all``
scores.  Intervals on ``all`` and ``overall`` rows are bootstrapped across areas (the same
resamples for every model, so intervals are comparable); per-area regression rows are bootstrapped
across neurons.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as _st

from . import schema as S
from .errors import NeuroxrError
from .runtime import quiet_warnings

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

_STAT_COLUMNS = ["analysis", "test", "metric", "area", "group", "estimate", "statistic", "p",
                 "p_bonferroni", "effect_size", "effect_size_name", "n", "ci_low", "ci_high"]

_LAYER_META = ("model", "weights", "family", "layer_name", "depth", "relative_depth")


# --------------------------------------------------------------------------------------------
# per-layer tables
# --------------------------------------------------------------------------------------------
def _as_str(values) -> np.ndarray:
    """Fixed-width numpy strings of any string array (object, ``<U``, or NumPy 2's StringDType,
    which cannot be cast to ``str`` directly)."""
    a = np.asarray(values)
    return a.astype(object).astype(str) if a.dtype.kind not in "U" else a


def list_metrics(scores: xr.Dataset) -> list[str]:
    """Metric names (``ridge``, ``srp-ridge``, ``pls``, ``rsa``) whose variables ``scores`` holds."""
    return [m for m, v in METRIC_VARS.items() if v in scores.data_vars]


def _check_metrics(scores, metrics):
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


def _layer_frame(scores: xr.Dataset) -> pd.DataFrame:
    coords = {c: np.asarray(scores[c].values) for c in _LAYER_META if c in scores.coords}
    coords = {c: _as_str(v) if v.dtype.kind in "OUST" else v for c, v in coords.items()}
    df = pd.DataFrame(coords, index=pd.Index(_as_str(scores[S.LAYER].values), name="layer"))
    for c in _LAYER_META:
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
    metrics = _check_metrics(scores, metrics)
    meta = _layer_frame(scores)
    parts = []
    for m in metrics:
        var = scores[METRIC_VARS[m]]
        if S.NEURON in var.dims:
            grp = neuron_groups(scores, by)
            values = np.asarray(var.transpose(S.LAYER, S.NEURON).values, dtype=float)
            for g in pd.unique(grp):
                sel = grp == g
                block = values[:, sel]
                n = np.isfinite(block).sum(axis=1)
                with np.errstate(invalid="ignore"):
                    mean = np.nansum(block, axis=1) / np.where(n > 0, n, np.nan)
                parts.append(pd.DataFrame({"layer": meta.index, "metric": m, by: g, "score": mean, "n": n}))
        else:
            if by != "area":
                continue
            values = np.asarray(var.transpose(S.LAYER, S.AREA).values, dtype=float)
            for j, a in enumerate(rsa_areas(scores)):
                parts.append(pd.DataFrame({"layer": meta.index, "metric": m, by: a, "score": values[:, j],
                                           "n": np.isfinite(values[:, j]).astype(int)}))
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
            return _as_str(scores[name].values)
    raise NeuroxrError(
        f"scores.zarr has no neuron coordinate {by!r} (neuron coords: "
        f"{[c for c in scores.coords if scores[c].dims == (S.NEURON,)]}); rescore with the neuron coords kept")


def _group_order(values, by):
    vals = list(pd.unique(_as_str(values)))
    if by == "area":
        return [a for a in HIERARCHY if a in vals] + sorted(a for a in vals if a not in HIERARCHY)
    return sorted(vals)


# --------------------------------------------------------------------------------------------
# rankings
# --------------------------------------------------------------------------------------------
def _percentile_ci(samples, axis=0):
    lo, hi = (1 - CI_LEVEL) / 2 * 100, (1 + CI_LEVEL) / 2 * 100
    with np.errstate(all="ignore"):
        return np.nanpercentile(samples, lo, axis=axis), np.nanpercentile(samples, hi, axis=axis)


def _area_resamples(n_areas, n_boot, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_areas, size=(n_boot, n_areas))


def rank_models(scores: xr.Dataset, metrics=None, *, n_boot: int = 1000, seed: int = 0,
                by: str = "area") -> pd.DataFrame:
    """Rank models by the maximum over layers of their group-mean score.

    Parameters
    ----------
    scores : Dataset
        ``scores.zarr`` (see :func:`calc_layer_scores`).
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
        (the grouping column is named ``by``), then ``family, depth, ci_low, ci_high, n, rank``.
        One row per (model, weights, metric, group), a row per (model, weights, metric) with
        group ``all`` (max over layers of the mean over groups, interval bootstrapped across
        groups; with a single group, its own neuron interval), and with ``by == "area"`` and both a regression metric and ``rsa`` present,
        rows of metric ``overall`` (mean of the two ``all`` scores).
    """
    metrics = _check_metrics(scores, metrics)
    meta = _layer_frame(scores)
    mats = {m: _group_matrix(scores, m, by) for m in metrics}
    mats = {m: v for m, v in mats.items() if v is not None}
    groups = _group_order([g for _, (cols, _, _) in mats.items() for g in cols], by)
    rng = np.random.default_rng(seed)
    boot_idx = _area_resamples(len(groups), n_boot, seed) if n_boot else None
    neuron_vars = {m: scores[METRIC_VARS[m]] for m in mats if S.NEURON in scores[METRIC_VARS[m]].dims}
    ngroups = {m: neuron_groups(scores, by) for m in neuron_vars}
    cache, rows, all_boot = {}, [], {}
    depth = meta["depth"].to_numpy(float)
    keys = meta.groupby(["model", "weights"], sort=False).indices
    for metric, (cols, M, N) in mats.items():
        full = np.full((len(meta), len(groups)), np.nan)
        fulln = np.zeros((len(meta), len(groups)), int)
        for j, c in enumerate(cols):
            full[:, groups.index(c)] = M[:, j]
            fulln[:, groups.index(c)] = N[:, j]
        for (model, weights), idx in keys.items():
            idx = idx[np.argsort(depth[idx], kind="stable")]
            vals = full[idx]
            if not np.isfinite(vals).any():
                continue
            names = meta["layer_name"].to_numpy()[idx]
            rel = meta["relative_depth"].to_numpy(float)[idx]
            base = dict(model=model, weights=weights, metric=metric, family=meta["family"].iloc[idx[0]],
                        depth=len(idx))
            for j, grp in enumerate(groups):
                col = vals[:, j]
                if not np.isfinite(col).any():
                    continue
                k = int(np.nanargmax(col))
                lo = hi = np.nan
                if n_boot and metric in neuron_vars:
                    lo, hi = _neuron_bootstrap(cache, neuron_vars, ngroups, metric, grp, meta.index[idx],
                                               n_boot, rng)
                rows.append({**base, by: grp, "score": col[k], "best_layer": names[k], "relative_depth": rel[k],
                             "ci_low": lo, "ci_high": hi, "n": int(fulln[idx, j].max())})
            with quiet_warnings(RuntimeWarning):
                mean = np.nanmean(vals, axis=1)
            if np.isfinite(mean).any():
                k = int(np.nanargmax(mean))
                lo = hi = np.nan
                if n_boot:  # resample groups (columns) with replacement
                    with quiet_warnings(RuntimeWarning):
                        samples = np.nanmax(np.nanmean(vals[:, boot_idx], axis=2), axis=0)
                    all_boot[(model, weights, metric)] = samples
                    lo, hi = _percentile_ci(samples)
                n_groups = int(np.isfinite(vals).any(axis=0).sum())
                if n_groups < 2:  # one group: resampling groups says nothing; use its own interval
                    lo = hi = np.nan
                    if n_boot and metric in neuron_vars:
                        j = int(np.flatnonzero(np.isfinite(vals).any(axis=0))[0])
                        lo, hi = _neuron_bootstrap(cache, neuron_vars, ngroups, metric, groups[j], meta.index[idx],
                                                   n_boot, rng)
                    all_boot.pop((model, weights, metric), None)
                rows.append({**base, by: ALL, "score": mean[k], "best_layer": names[k], "relative_depth": rel[k],
                             "ci_low": lo, "ci_high": hi, "n": n_groups})
    out = pd.DataFrame(rows)
    if out.empty:
        raise NeuroxrError("scores.zarr holds no finite scores to rank")
    reg = regression_metric(list(mats))
    if by == "area" and reg is not None and "rsa" in mats:
        a = out[(out[by] == ALL) & (out.metric == reg)].set_index(["model", "weights"])
        b = out[(out[by] == ALL) & (out.metric == "rsa")].set_index(["model", "weights"])
        ov = []
        for key in a.index.intersection(b.index):
            lo = hi = np.nan
            if n_boot and (key + (reg,)) in all_boot and (key + ("rsa",)) in all_boot:
                lo, hi = _percentile_ci((all_boot[key + (reg,)] + all_boot[key + ("rsa",)]) / 2)
            ov.append({"model": key[0], "weights": key[1], "metric": OVERALL, by: ALL,
                       "score": (a.loc[key, "score"] + b.loc[key, "score"]) / 2, "best_layer": "",
                       "relative_depth": np.nan, "family": a.loc[key, "family"], "depth": a.loc[key, "depth"],
                       "ci_low": lo, "ci_high": hi, "n": int(min(a.loc[key, "n"], b.loc[key, "n"]))})
        out = pd.concat([out, pd.DataFrame(ov)], ignore_index=True)
    out["rank"] = out.groupby(["metric", by])["score"].rank(ascending=False, method="min").astype(int)
    metric_order = {m: i for i, m in enumerate([OVERALL, *METRIC_VARS])}
    grp_order = {g: i for i, g in enumerate([ALL, *groups])}
    out = out.sort_values(["metric", by, "rank"], key=lambda s: s.map(metric_order) if s.name == "metric"
                          else (s.map(grp_order) if s.name == by else s)).reset_index(drop=True)
    cols = ["model", "weights", by, "metric", "score", "best_layer", "relative_depth", "family", "depth",
            "ci_low", "ci_high", "n", "rank"]
    return out[cols]


def _group_matrix(scores, metric, by):
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
            return list(_as_str(var[name].values))
    if "area_name" in scores.coords and scores["area_name"].dims == (S.AREA,):
        return list(_as_str(scores["area_name"].values))
    raise NeuroxrError(f"scores.zarr: {S.RSA_R!r} has no area labels (coordinate 'area_name' (area)); rescore")




def _neuron_bootstrap(cache, neuron_vars, neuron_groups, metric, grp, layers, n_boot, rng):
    """95% interval of max over ``layers`` of the mean over resampled neurons of group ``grp``."""
    if metric not in cache:  # the whole (layer, neuron) array once, in memory
        var = neuron_vars[metric]
        cache[metric] = (np.asarray(var.transpose(S.LAYER, S.NEURON).values, dtype=float),
                         {k: i for i, k in enumerate(_as_str(var[S.LAYER].values))})
    values, pos = cache[metric]
    rows = [pos[k] for k in layers]
    block = values[np.ix_(rows, np.flatnonzero(neuron_groups[metric] == grp))]
    block = block[:, np.isfinite(block).all(axis=0)]
    n = block.shape[1]
    if n < 2:
        return np.nan, np.nan
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (boot, neuron)
    samples = (counts @ block.T / n).max(axis=1)
    return _percentile_ci(samples)


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


# --------------------------------------------------------------------------------------------
# statistical tests
# --------------------------------------------------------------------------------------------
def _tidy(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in _STAT_COLUMNS:
        if c not in df:
            df[c] = np.nan
    return df[_STAT_COLUMNS + [c for c in df.columns if c not in _STAT_COLUMNS]]


def adjust_bonferroni(table: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Fill ``p_bonferroni`` (statsmodels ``multipletests``) over the rows of ``table`` (or each ``by`` group)."""
    from statsmodels.stats.multitest import multipletests

    table = table.copy()
    table["p_bonferroni"] = np.nan
    groups = [(None, table)] if not by else table.groupby(list(by), dropna=False)
    for _, g in groups:
        ok = g["p"].notna()
        if ok.any():
            table.loc[g.index[ok], "p_bonferroni"] = multipletests(g.loc[ok, "p"].to_numpy(float),
                                                                   method="bonferroni")[1]
    return table


def _areas_in(rankings):
    return [a for a in pd.unique(rankings.area)]


def test_trained_vs_random(rankings: pd.DataFrame, metrics=None, areas=None) -> pd.DataFrame:
    """Paired t-test of trained against randomly initialised variants of the same architectures.

    For each metric and area, pairs are the models with both a ``trained`` and a ``random`` row.
    The effect size is Cohen's d for paired samples, d_z = mean(trained - random) / SD(differences)
    (ddof 1); the interval is the t interval of the mean difference.  ``p_bonferroni`` corrects
    over all (metric, area) tests of the table.
    """
    rows = []
    metrics = metrics or list(pd.unique(rankings.metric))
    for metric in metrics:
        for area in areas or _areas_in(rankings):
            r = rankings[(rankings.metric == metric) & (rankings.area == area)]
            t = r[r.weights == "trained"].set_index("model")["score"]
            u = r[r.weights == "random"].set_index("model")["score"]
            common = t.index.intersection(u.index)
            if len(common) < 2:
                continue
            a, b = t.loc[common].to_numpy(float), u.loc[common].to_numpy(float)
            res = _st.ttest_rel(a, b)
            ci = res.confidence_interval(CI_LEVEL)
            diff = a - b
            sd = diff.std(ddof=1)
            rows.append(dict(analysis="trained_vs_random", test="paired t-test", metric=metric, area=area,
                             group="trained - random", estimate=diff.mean(), statistic=res.statistic,
                             p=res.pvalue, effect_size=diff.mean() / sd if sd > 0 else np.nan,
                             effect_size_name="cohen_dz", n=len(common), ci_low=ci.low, ci_high=ci.high,
                             df=len(common) - 1))
    return adjust_bonferroni(_tidy(rows))


def calc_hedges_g(a, b) -> float:
    """Hedges' g of ``a`` against ``b``: pooled-SD Cohen's d times 1 - 3 / (4 (n_a + n_b) - 9)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    d = (a.mean() - b.mean()) / sp if sp > 0 else np.nan
    return d * (1 - 3 / (4 * (na + nb) - 9))


def test_family_contrast(rankings: pd.DataFrame, family: str = "transformer", metrics=None, areas=None,
                         weights: str = "trained", equal_var: bool = False) -> pd.DataFrame:
    """t-test of one family (default transformers) against all other non-baseline models.

    Welch's t-test by default (``equal_var=False``; Student's with ``True``), effect size Hedges'
    g, interval: the t interval of the difference of means (Welch-Satterthwaite df).
    """
    rows = []
    metrics = metrics or list(pd.unique(rankings.metric))
    for metric in metrics:
        for area in areas or _areas_in(rankings):
            r = rankings[(rankings.metric == metric) & (rankings.area == area) & (rankings.family != "baseline")]
            if weights is not None:
                r = r[r.weights == weights]
            a = r.loc[r.family == family, "score"].to_numpy(float)
            b = r.loc[r.family != family, "score"].to_numpy(float)
            if len(a) < 2 or len(b) < 2:
                continue
            res = _st.ttest_ind(a, b, equal_var=equal_var)
            ci = res.confidence_interval(CI_LEVEL)
            rows.append(dict(analysis=f"{family}_vs_rest", test="Welch t-test" if not equal_var else "Student t-test",
                             metric=metric, area=area, group=f"{family} - rest", estimate=a.mean() - b.mean(),
                             statistic=res.statistic, p=res.pvalue, effect_size=calc_hedges_g(a, b),
                             effect_size_name="hedges_g", n=len(a) + len(b), n_a=len(a), n_b=len(b),
                             ci_low=ci.low, ci_high=ci.high, df=float(res.df)))
    return adjust_bonferroni(_tidy(rows))


def _spearman_row(x, y, **kw):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    res = _st.spearmanr(x, y)
    rho = float(res.statistic)
    lo = hi = np.nan
    if n > 3 and abs(rho) < 1:
        # Fisher z interval with the Bonett-Wright variance 1.06 / (n - 3) for Spearman's rho
        z, se = np.arctanh(rho), np.sqrt(1.06 / (n - 3))
        q = _st.norm.ppf((1 + CI_LEVEL) / 2)
        lo, hi = np.tanh(z - q * se), np.tanh(z + q * se)
    return dict(test="Spearman", estimate=rho, statistic=rho, p=float(res.pvalue), effect_size=rho,
                effect_size_name="spearman_rho", n=n, ci_low=lo, ci_high=hi, **kw)


def correlate_model_properties(rankings: pd.DataFrame, catalog: pd.DataFrame | None = None,
                               properties: Iterable[str] = ("n_layers", "params", "top1"), metrics=None,
                               areas=(ALL,), weights: str = "trained") -> pd.DataFrame:
    """Spearman correlation of each model's score with its depth, parameter count and top-1 accuracy.

    ``n_layers`` is the number of scored layers (the rankings' ``depth`` column); ``params`` and
    ``top1`` come from ``catalog`` (``catalogs/models.csv``: a ``model`` column), where given.
    Bonferroni over all rows.
    """
    r = rankings[rankings.family != "baseline"]
    if weights is not None:
        r = r[r.weights == weights]
    r = r.rename(columns={"depth": "n_layers"})
    if catalog is not None and "model" in catalog:
        cat = catalog.drop_duplicates("model").set_index("model")
        for p in properties:
            if p != "n_layers" and p in cat:
                r[p] = pd.to_numeric(r["model"].map(cat[p]), errors="coerce")
    rows = []
    for metric in metrics or list(pd.unique(r.metric)):
        for area in areas or _areas_in(r):
            sub = r[(r.metric == metric) & (r.area == area)]
            for p in properties:
                if p not in sub:
                    continue
                row = _spearman_row(sub[p], sub["score"], analysis="score_vs_property", metric=metric,
                                    area=area, group=p)
                if row:
                    rows.append(row)
    return adjust_bonferroni(_tidy(rows))


def _bootstrap_mean_ci(values, n_boot, seed):
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or not n_boot:
        return np.nan, np.nan
    res = _st.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=CI_LEVEL,
                        method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_metrics(scores: xr.Dataset, rankings: pd.DataFrame | None = None, metric_a: str | None = None,
                    metric_b: str = "rsa", *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Agreement of two metrics (default: the regression metric and RSA).

    Rows: Spearman over models of the two ``all`` scores (one row per weights kind and one for
    all models); and per model and area the Spearman over layers of the two area-mean scores,
    averaged over (model, area) pairs with a bootstrapped 95% interval of the mean (row
    ``test == "mean Spearman over layers"``), also per area.
    """
    metrics = list_metrics(scores)
    metric_a = metric_a or regression_metric(metrics)
    if metric_a is None or metric_b not in metrics:
        return _tidy([])
    rankings = rankings if rankings is not None else rank_models(scores, [metric_a, metric_b], n_boot=0)
    rows = []
    r = rankings[(rankings.area == ALL) & (rankings.family != "baseline")]
    for label, sub in [("all models", r), *[(w, g) for w, g in r.groupby("weights")]]:
        a = sub[sub.metric == metric_a].set_index(["model", "weights"])["score"]
        b = sub[sub.metric == metric_b].set_index(["model", "weights"])["score"]
        common = a.index.intersection(b.index)
        row = _spearman_row(a.loc[common], b.loc[common], analysis="metric_agreement_models",
                            metric=f"{metric_a} vs {metric_b}", area=ALL, group=label)
        if row:
            rows.append(row)
    lt = calc_layer_scores(scores, [metric_a, metric_b])
    piv = lt.pivot_table(index=["model", "weights", "area", "layer"], columns="metric", values="score")
    per = []
    for (model, weights, area), g in piv.groupby(level=[0, 1, 2]):
        if len(g) < 3:
            continue
        rho = _st.spearmanr(g[metric_a], g[metric_b]).statistic
        if np.isfinite(rho):
            per.append((model, weights, area, rho))
    per = pd.DataFrame(per, columns=["model", "weights", "area", "rho"])
    for area, sub in [(ALL, per), *[(a, per[per.area == a]) for a in _group_order(per.area, "area")]]:
        if sub.empty:
            continue
        lo, hi = _bootstrap_mean_ci(sub["rho"], n_boot, seed)
        rows.append(dict(analysis="metric_agreement_layers", test="mean Spearman over layers",
                         metric=f"{metric_a} vs {metric_b}", area=area, group="per model",
                         estimate=sub["rho"].mean(), statistic=sub["rho"].mean(), effect_size=sub["rho"].mean(),
                         effect_size_name="mean_spearman_rho", n=len(sub), ci_low=lo, ci_high=hi))
    return _tidy(rows)


# --------------------------------------------------------------------------------------------
# where in depth
# --------------------------------------------------------------------------------------------
def summarize_best_depth(rankings: pd.DataFrame, metric: str | None = None, weights: str | None = "trained",
                         *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Relative depth of the best layer per area: mean over models with a bootstrapped 95% interval.

    Baselines (one layer) are left out.  With ``weights`` ``None`` every variant counts; when no
    row has the requested ``weights`` all variants are used.  Areas in hierarchy order.
    """
    metric = metric or _depth_metric(rankings)
    r = rankings[(rankings.metric == metric) & (rankings.area != ALL) & (rankings.family != "baseline")]
    if weights is not None and (r.weights == weights).any():
        r = r[r.weights == weights]
    rows = []
    for area in _group_order(r.area, "area"):
        v = r.loc[r.area == area, "relative_depth"].to_numpy(float)
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        lo, hi = _bootstrap_mean_ci(v, n_boot, seed)
        rows.append(dict(metric=metric, area=area, relative_depth=v.mean(), median=np.median(v),
                         ci_low=lo, ci_high=hi, n=len(v)))
    return pd.DataFrame(rows, columns=["metric", "area", "relative_depth", "median", "ci_low", "ci_high", "n"])


def _depth_metric(rankings):
    have = set(rankings.metric)
    for m in ("srp-ridge", "ridge", "pls", "rsa"):
        if m in have:
            return m
    raise NeuroxrError("rankings table holds no per-area metric")


def test_depth_gradient(rankings: pd.DataFrame, metrics=None, weights: str | None = "trained") -> pd.DataFrame:
    """Does the best layer get deeper along the hierarchy VISp -> VISam?

    Spearman over (model, area) pairs between the area's position in :data:`HIERARCHY` and the
    best layer's relative depth; baselines left out.  Bonferroni over metrics.
    """
    rows = []
    for metric in metrics or [m for m in pd.unique(rankings.metric) if m != OVERALL]:
        r = rankings[(rankings.metric == metric) & (rankings.area.isin(HIERARCHY)) & (rankings.family != "baseline")]
        if weights is not None and (r.weights == weights).any():
            r = r[r.weights == weights]
        pos = r.area.map({a: i for i, a in enumerate(HIERARCHY)})
        row = _spearman_row(pos, r.relative_depth, analysis="depth_gradient", metric=metric, area="hierarchy",
                            group="area order vs best relative depth")
        if row:
            rows.append(row)
    return adjust_bonferroni(_tidy(rows))


def bin_depth_profile(scores: xr.Dataset, metrics=None, *, n_bins: int = 100, frac: float = 0.3,
                      by_area: bool = False, exclude_families=("baseline",)) -> pd.DataFrame:
    """Score as a function of relative depth: means in ``n_bins`` bins and a lowess trend.

    Every (model, layer)'s area-mean score (mean over areas, or per area with ``by_area``) is put
    in one of ``n_bins`` equal bins of relative depth in [0, 1]; the lowess
    (``statsmodels.nonparametric.lowess``, ``frac``) is fitted to the bin means against the bin
    centres and evaluated there.

    Returns
    -------
    DataFrame
        ``metric, weights, area, bin, bin_center, score, n, lowess`` (bins with no layer omitted).
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    lt = calc_layer_scores(scores, metrics)
    lt = lt[~lt.family.isin(exclude_families)]
    if not by_area:
        lt = (lt.groupby(["layer", "metric"], sort=False)
              .agg(score=("score", "mean"), relative_depth=("relative_depth", "first"),
                   weights=("weights", "first")).reset_index())
        lt["area"] = ALL
    edges = np.linspace(0, 1, n_bins + 1)
    lt = lt[np.isfinite(lt.relative_depth.astype(float)) & np.isfinite(lt.score.astype(float))].copy()
    # bin k holds relative depths in [k / n_bins, (k + 1) / n_bins); depth 1 goes to the last bin
    lt["bin"] = np.clip(np.floor(lt.relative_depth.to_numpy(float) * n_bins).astype(int), 0, n_bins - 1)
    out = []
    for (metric, weights, area), g in lt.groupby(["metric", "weights", "area"]):
        b = g.groupby("bin")["score"].agg(["mean", "size"]).reset_index()
        b.columns = ["bin", "score", "n"]
        b["bin_center"] = (edges[b["bin"]] + edges[b["bin"] + 1]) / 2
        if len(b) >= 3:
            b["lowess"] = lowess(b["score"], b["bin_center"], frac=frac, return_sorted=False)
        else:
            b["lowess"] = np.nan
        b["metric"], b["weights"], b["area"] = metric, weights, area
        out.append(b)
    cols = ["metric", "weights", "area", "bin", "bin_center", "score", "n", "lowess"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------------------------
# Taskonomy
# --------------------------------------------------------------------------------------------
def _taskonomy_task(model: str) -> str:
    m = str(model)
    for pre in ("taskonomy_", "taskonomy-", "taskonomy/"):
        if m.startswith(pre):
            return m[len(pre):]
    return m


def summarize_taskonomy(rankings: pd.DataFrame, tasks: pd.DataFrame, *, by: str = "area",
                        n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Taskonomy scores by task cluster and area (or cre line).

    Parameters
    ----------
    rankings : DataFrame
        :func:`rank_models` output (its grouping column named ``by``); rows of family
        ``taskonomy`` are used, matched to ``tasks`` by task name (``model`` with any
        ``taskonomy_`` prefix removed, or equal to the ``model`` column of ``tasks``).
    tasks : DataFrame
        ``catalogs/taskonomy.csv``: a ``task`` (or ``model``) column and ``cluster``.

    Returns
    -------
    summary : DataFrame
        ``metric, <by>, cluster, score (mean), ci_low, ci_high, n`` per cluster and group.
    tests : DataFrame
        Tidy rows: per metric and group a Kruskal-Wallis test across clusters (does any cluster
        dominate?), effect size epsilon^2 = H (n + 1) / (n^2 - 1); Bonferroni per metric.
    """
    r = rankings[rankings.family == "taskonomy"].copy()
    key = "task" if "task" in tasks else "model"
    cmap = dict(zip(tasks[key].astype(str), tasks["cluster"].astype(str)))
    if "model" in tasks:
        cmap.update(zip(tasks["model"].astype(str), tasks["cluster"].astype(str)))
    r["cluster"] = [cmap.get(m, cmap.get(_taskonomy_task(m))) for m in r.model]
    r = r[r.cluster.notna() & (r.metric != OVERALL)]
    summary, rows = [], []
    for (metric, grp), g in r.groupby(["metric", by]):
        samples = []
        for cl, gc in g.groupby("cluster"):
            lo, hi = _bootstrap_mean_ci(gc.score, n_boot, seed)
            summary.append(dict(metric=metric, **{by: grp}, cluster=cl, score=gc.score.mean(), ci_low=lo,
                                ci_high=hi, n=len(gc)))
            samples.append(gc.score.to_numpy(float))
        if len(samples) >= 2 and all(len(s) >= 1 for s in samples) and sum(map(len, samples)) > len(samples):
            try:
                h, p = _st.kruskal(*samples)
            except ValueError:
                continue
            n = sum(map(len, samples))
            best = max(range(len(samples)), key=lambda i: np.mean(samples[i]))
            rows.append(dict(analysis="taskonomy_clusters", test="Kruskal-Wallis", metric=metric, area=grp,
                             group=f"best: {sorted(g.cluster.unique())[best]}", estimate=h, statistic=h, p=p,
                             effect_size=h * (n + 1) / (n ** 2 - 1), effect_size_name="epsilon_squared", n=n))
    tests = _tidy(rows)
    if len(tests):
        tests = adjust_bonferroni(tests, by=["metric"])
    cols = ["metric", by, "cluster", "score", "ci_low", "ci_high", "n"]
    return pd.DataFrame(summary, columns=cols), tests


# --------------------------------------------------------------------------------------------
# reliability sweep and method trade-off (these recompute scores)
# --------------------------------------------------------------------------------------------
def sweep_reliability(scores_at, reliability, thresholds=tuple(np.round(np.arange(0, 1.0, 0.1), 1)), *,
                      n_boot: int = 1000, seed: int = 0, min_neurons: int = 2) -> pd.DataFrame:
    """Scores as the split-half reliability threshold rises (the study's Figure 6).

    Parameters
    ----------
    scores_at : callable
        ``scores_at(mask) -> Dataset``: scores recomputed on the neurons where ``mask`` (bool,
        per neuron, aligned with ``reliability``) is True.  :func:`neuroxr.pipeline` passes a
        function that calls the in-memory scoring API on the study's features.
    reliability : DataArray or array (neuron,)
        Split-half reliability of each neuron.
    thresholds : sequence of float
        Neurons with reliability >= threshold are kept.

    Returns
    -------
    DataFrame
        ``threshold, n_neurons, model, weights, metric, area, score, ci_low, ci_high`` (area
        ``all`` rows of :func:`rank_models`, intervals bootstrapped across areas).
    """
    rel = np.asarray(getattr(reliability, "values", reliability), float)
    out = []
    for th in thresholds:
        mask = np.isfinite(rel) & (rel >= th)
        if mask.sum() < min_neurons:
            continue
        ranks = rank_models(scores_at(mask), n_boot=n_boot, seed=seed)
        ranks = ranks[ranks.area == ALL].copy()
        ranks.insert(0, "n_neurons", int(mask.sum()))
        ranks.insert(0, "threshold", float(th))
        out.append(ranks)
    if not out:
        raise NeuroxrError(f"no reliability threshold in {list(thresholds)} keeps {min_neurons} neurons "
                           f"(max reliability {np.nanmax(rel) if rel.size else 'n/a'})")
    cols = ["threshold", "n_neurons", "model", "weights", "metric", "area", "score", "ci_low", "ci_high",
            "best_layer", "relative_depth", "family"]
    return pd.concat(out, ignore_index=True)[cols]


def _reduce(X, method, size, seed):
    if method == "none" or size is None or size >= X.shape[1]:
        return X
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=min(size, *X.shape), random_state=seed).fit_transform(X)
    if method == "srp":
        from sklearn.random_projection import SparseRandomProjection

        return SparseRandomProjection(n_components=size, random_state=seed).fit_transform(X)
    raise NeuroxrError(f"unknown reduction {method!r}; choose none, pca or srp")


def _fit_ridge(X, Y, alpha):
    """neuroxr's exact leave-one-out ridge (fixed ``alpha``, intercept, z-scored features):
    Pearson r per neuron (column of ``Y``)."""
    from .mapping.ridge import calc_loo_pearson, calc_zscored_gram

    return calc_loo_pearson(calc_zscored_gram(X), Y, (alpha,))


def _fit_pls(X, Y, n_components, seed):
    """neuroxr's cross-validated PLS (5-fold): held-out Pearson r per neuron, mean over folds."""
    from .mapping.pls import cross_validated_pls, make_splits

    return np.nanmean(cross_validated_pls(X, Y, make_splits(len(X), "kfold", 5, seed=seed), n_components), axis=0)


def measure_method_tradeoff(features: dict, responses, *, sizes=(64, 256, 1024, 4096),
                            reductions=("none", "pca", "srp"), regressions=("ridge", "pls"),
                            alpha: float = 1.0, pls_components: int = 10, seed: int = 0,
                            repeats: int = 1) -> pd.DataFrame:
    """Score against compute time for each dimensionality reduction and regression (Figure 5).

    Parameters
    ----------
    features : dict of str -> array (image, feature)
        Raw activations of a few layers.
    responses : array (image, neuron)
        Trial-averaged responses, images aligned with ``features``.
    sizes : sequence of int
        Output sizes for PCA and the sparse random projection (capped at the image count for
        PCA and at the feature count for SRP).

    Returns
    -------
    DataFrame
        ``layer, reduction, size, regression, score, seconds, n_features``: score is the mean over
        neurons of the leave-one-out Pearson r (ridge: :mod:`neuroxr.mapping.ridge`, alpha
        ``alpha``, z-scored features) or the 5-fold held-out Pearson r (PLS:
        :mod:`neuroxr.mapping.pls`, ``pls_components``); seconds is the best of ``repeats`` runs
        of reduction + fit (PCA: scikit-learn; SRP: scikit-learn's SparseRandomProjection, seeded).
    """
    Y = np.asarray(responses, float)
    rows = []
    for layer, X in features.items():
        X = np.asarray(X, float).reshape(len(X), -1)
        for reduction in reductions:
            for size in ([None] if reduction == "none" else sizes):
                if reduction == "pca" and size > min(X.shape):
                    continue
                if reduction == "srp" and size >= X.shape[1]:
                    continue
                for regression in regressions:
                    best, r = np.inf, None
                    for _ in range(max(1, repeats)):
                        t0 = time.perf_counter()
                        Z = _reduce(X, reduction, size, seed)
                        if regression == "ridge":
                            r = _fit_ridge(Z, Y, alpha)
                        else:
                            r = _fit_pls(Z, Y, pls_components, seed)
                        best = min(best, time.perf_counter() - t0)
                    rows.append(dict(layer=layer, reduction=reduction, size=size if size else X.shape[1],
                                     regression=regression, score=float(np.nanmean(r)), seconds=best,
                                     n_features=X.shape[1]))
    return pd.DataFrame(rows)


# pytest collects module-level names starting with ``test``; these are library functions
for _f in (test_trained_vs_random, test_family_contrast, test_depth_gradient):
    _f.__test__ = False
