"""Taskonomy encoders grouped by task cluster, per area or cre line."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .inference import adjust_bonferroni, calc_bootstrap_mean_ci, make_tidy
from .tables import ALL, OVERALL, order_groups


def _taskonomy_task(model: str) -> str:
    m = str(model)
    for pre in ("taskonomy_", "taskonomy-", "taskonomy/"):
        if m.startswith(pre):
            return m[len(pre):]
    return m


def _kruskal_row(g, samples, metric, grp):
    """Kruskal-Wallis across the clusters' ``samples`` of one (metric, group); None when it cannot run."""
    if not (len(samples) >= 2 and sum(map(len, samples)) > len(samples)):
        return None
    try:
        h, p = sps.kruskal(*samples)
    except ValueError:
        return None
    n = sum(map(len, samples))
    best = max(range(len(samples)), key=lambda i: np.mean(samples[i]))
    return dict(analysis="taskonomy_clusters", test="Kruskal-Wallis", metric=metric, area=grp,
                group=f"best: {sorted(g.cluster.unique())[best]}", estimate=h, statistic=h, p=p,
                effect_size=h * (n + 1) / (n ** 2 - 1), effect_size_name="epsilon_squared", n=n)


def label_task_clusters(rankings: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """The rankings rows of family ``taskonomy`` (metric ``overall`` left out) with their task's
    ``cluster`` (``catalogs/taskonomy.csv``, matched by task name or model); unmatched rows dropped."""
    r = rankings[rankings.family == "taskonomy"].copy()
    key = "task" if "task" in tasks else "model"
    cmap = dict(zip(tasks[key].astype(str), tasks["cluster"].astype(str)))
    if "model" in tasks:
        cmap.update(zip(tasks["model"].astype(str), tasks["cluster"].astype(str)))
    r["cluster"] = [cmap.get(m, cmap.get(_taskonomy_task(m))) for m in r.model]
    return r[r.cluster.notna() & (r.metric != OVERALL)]


def summarize_taskonomy(rankings: pd.DataFrame, tasks: pd.DataFrame, *, by: str = "area",
                        n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Taskonomy scores by task cluster and area (or cre line).

    Parameters
    ----------
    rankings : DataFrame
        :func:`neuroxr.stats.rank_models` output (its grouping column named ``by``); rows of family
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
    r = label_task_clusters(rankings, tasks)
    summary, rows = [], []
    for (metric, grp), g in r.groupby(["metric", by]):
        samples = []
        for cl, gc in g.groupby("cluster"):
            lo, hi = calc_bootstrap_mean_ci(gc.score, n_boot, seed)
            summary.append(dict(metric=metric, **{by: grp}, cluster=cl, score=gc.score.mean(), ci_low=lo,
                                ci_high=hi, n=len(gc)))
            samples.append(gc.score.to_numpy(float))
        row = _kruskal_row(g, samples, metric, grp)
        if row:
            rows.append(row)
    tests = make_tidy(rows)
    if len(tests):
        tests = adjust_bonferroni(tests, by=["metric"])
        tests = _in_group_order(tests, "area", by)
    cols = ["metric", by, "cluster", "score", "ci_low", "ci_high", "n"]
    return _in_group_order(pd.DataFrame(summary, columns=cols), by, by), tests


def _in_group_order(df: pd.DataFrame, col: str, by: str) -> pd.DataFrame:
    """``df`` with rows in metric order, then ``col`` in table order (``all`` first, areas in
    hierarchy order), keeping the order within each."""
    if df.empty:
        return df
    order = {g: i for i, g in enumerate([ALL, *order_groups(df[col][df[col] != ALL], by)])}
    metrics = {m: i for i, m in enumerate(pd.unique(df.metric))}
    key = df.metric.map(metrics) * (len(order) + 1) + df[col].map(order)
    return df.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
