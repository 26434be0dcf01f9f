"""Where in depth: the relative depth of each model's best layer, and score against relative depth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from statsmodels.nonparametric.smoothers_lowess import lowess

from .inference import calc_bootstrap_mean_ci
from .ranking import pick_depth_metric
from .tables import ALL, calc_layer_scores, order_groups


def summarize_best_depth(rankings: pd.DataFrame, metric: str | None = None, weights: str | None = "trained",
                         *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Relative depth of the best layer per area: mean over models with a bootstrapped 95% interval.

    Baselines (one layer) are left out.  With ``weights`` ``None`` every variant counts; when no
    row has the requested ``weights`` all variants are used.  Areas in hierarchy order.
    """
    metric = metric or pick_depth_metric(rankings)
    r = rankings[(rankings.metric == metric) & (rankings.area != ALL) & (rankings.family != "baseline")]
    if weights is not None and (r.weights == weights).any():
        r = r[r.weights == weights]
    rows = []
    for area in order_groups(r.area, "area"):
        v = r.loc[r.area == area, "relative_depth"].to_numpy(float)
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        lo, hi = calc_bootstrap_mean_ci(v, n_boot, seed)
        rows.append(dict(metric=metric, area=area, relative_depth=v.mean(), median=np.median(v),
                         ci_low=lo, ci_high=hi, n=len(v)))
    return pd.DataFrame(rows, columns=["metric", "area", "relative_depth", "median", "ci_low", "ci_high", "n"])


def bin_depth_profile(scores: xr.DataTree, metrics=None, *, n_bins: int = 100, frac: float = 0.3,
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
