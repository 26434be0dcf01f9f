"""The verdict of a ranking: does any model score above zero and above the best baseline beyond its interval?

A "top model" is only named when its bootstrapped 95% interval lies above both zero and the best
baseline's score; otherwise the verdict says plainly that no model does (as on recordings where
every score is about 0).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .ranking import headline_metric, select_ranking
from .tables import ALL

BASELINE = "baseline"
#: the metrics a verdict falls back to, in order, when the headline metric has no intervals (the
#: ``overall`` row of a one-area study: its interval would resample a single area)
FALLBACK_METRICS = ("srp-ridge", "ridge", "pls", "rsa")


def _judged_metric(rankings: pd.DataFrame, area: str) -> str:
    """The headline metric, or the first of :data:`FALLBACK_METRICS` whose models have intervals."""
    first = headline_metric(rankings)
    for m in (first, *FALLBACK_METRICS):
        r = select_ranking(rankings, m, area)
        if np.isfinite(r.loc[r.family != BASELINE, "ci_low"].to_numpy(float)).any():
            return m
    return first


def _label(row) -> str:
    """``alexnet (trained)``, a checkpoint by the first 12 hex digits of its sha256; a baseline is
    named alone (its weights are not a variant)."""
    from ..mapping.tree import label_weights

    if row.family == BASELINE:
        return str(row.model)
    return f"{row.model} ({label_weights(row.weights)})"


def _interval(row) -> str:
    lo, hi = float(row.ci_low), float(row.ci_high)
    return f", 95% CI {lo:.3f}..{hi:.3f}" if np.isfinite(lo) and np.isfinite(hi) else ""


def judge_ranking(rankings: pd.DataFrame, metric: str | None = None, area: str = ALL) -> dict:
    """The verdict of one ranking (default: the headline metric, area ``all``; when its models have
    no intervals, the first of :data:`FALLBACK_METRICS` whose models have them).

    A model (any family but ``baseline``) *beats the reference* when the lower end of its 95%
    interval is above ``max(0, best baseline score)``.

    Returns
    -------
    dict
        ``metric``, ``area``, ``supported`` (True: at least one model beats the reference; False:
        none does; None: no intervals to judge by), ``n_beating``, ``n_models``, ``reference``
        (the threshold), ``baseline`` and ``baseline_score`` (None without baselines), ``best_model``,
        ``best_weights``, ``best_score``, ``best_ci`` (the highest-scoring model) and ``text``: one
        line saying the verdict.
    """
    metric = metric or _judged_metric(rankings, area)
    r = select_ranking(rankings, metric, area)
    models = r[r.family != BASELINE]
    bases = r[r.family == BASELINE]
    base = bases.iloc[0] if len(bases) else None
    reference = max(0.0, float(base.score)) if base is not None else 0.0
    against = "zero and the best baseline" if base is not None else "zero"
    best = models.iloc[0] if len(models) else r.iloc[0]
    lows = models.ci_low.to_numpy(float)
    beating = models[np.isfinite(lows) & (lows > reference)]
    out = {"metric": metric, "area": area, "n_models": int(len(models)), "n_beating": int(len(beating)),
           "reference": reference, "baseline": None if base is None else str(base.model),
           "baseline_score": None if base is None else float(base.score),
           "best_model": str(best.model), "best_weights": str(best.weights), "best_score": float(best.score),
           "best_ci": [float(best.ci_low), float(best.ci_high)]}
    base_txt = f"; best baseline: {base.model} {float(base.score):.3f}" if base is not None else ""
    if not len(models):
        out["supported"] = False
        out["text"] = f"no network models ranked ({metric}); only baselines{base_txt}"
    elif not np.isfinite(lows).any():
        out["supported"] = None
        out["text"] = (f"no 95% intervals ({metric}, n_boot = 0): no verdict; highest score: {_label(best)} "
                       f"{float(best.score):.3f}{base_txt}")
    elif len(beating):
        top = beating.iloc[0]
        out["supported"] = True
        out.update(best_model=str(top.model), best_weights=str(top.weights), best_score=float(top.score),
                   best_ci=[float(top.ci_low), float(top.ci_high)])
        out["text"] = (f"top model ({metric}): {_label(top)}, score {float(top.score):.3f}{_interval(top)}; "
                       f"{len(beating)} of {len(models)} models above {against} beyond their 95% interval"
                       f"{base_txt}")
    else:
        out["supported"] = False
        out["text"] = (f"no model scores above {against} beyond its 95% interval ({metric}); highest: "
                       f"{_label(best)} {float(best.score):.3f}{_interval(best)}{base_txt}")
    return out
