"""Rankings, statistics and bootstrap intervals over a study's scores.

Everything here reads ``scores.zarr`` as a DataTree (``ridge_r``, and optionally ``srp_ridge_r`` /
``pls_r``, (layer, neuron) at the root; ``rsa_r`` (layer, area) in ``areas``) and returns tidy :class:`pandas.DataFrame`
tables: one row per result, with the test, the statistic, the p value, the effect size, n and a
95% interval where one applies.

- :mod:`.tables`: metric names, group labels, per-layer group-mean scores.
- :mod:`.ranking`: :func:`rank_models` (max over layers, bootstrap intervals) and its selections.
- :mod:`.inference`: tests and correlations on rankings (trained vs random, a family vs the rest,
  model properties, metric agreement, the depth gradient) with Bonferroni correction.
- :mod:`.depth`: the best layer's relative depth per area, score against relative depth.
- :mod:`.taskonomy`: Taskonomy encoders by task cluster.
- :mod:`.rescore`: rankings at rising reliability thresholds, the method trade-off.
- :mod:`.ceiling`: noise ceilings per metric and area.
- :mod:`.verdict`: :func:`judge_ranking`, whether any model beats zero and the baselines.
"""
from __future__ import annotations

import importlib

#: public names and the submodule that defines each: a submodule is imported on first use, so that
#: ``neuroxr.stats.tables`` (light: numpy, pandas, xarray) does not pull in scipy, statsmodels and sklearn
_LAZY = {
    **dict.fromkeys(["bin_depth_profile", "summarize_best_depth"], "depth"),
    **dict.fromkeys(["STAT_COLUMNS", "adjust_bonferroni", "calc_bootstrap_mean_ci", "calc_hedges_g",
                     "calc_spearman_row", "calc_bootstrap_spearman_ci", "calc_cohen_dz", "PAPER_NAMES", "name_paper_statistic", "compare_family", "compare_metrics", "compare_trained_random",
                     "correlate_depth", "correlate_model_properties", "make_tidy"], "inference"),
    **dict.fromkeys(["RANKING_COLUMNS", "calc_percentile_ci", "headline_metric", "pick_depth_metric",
                     "rank_models", "select_ranking"], "ranking"),
    **dict.fromkeys(["RELIABILITY_THRESHOLDS", "measure_method_tradeoff", "rank_over_thresholds"], "rescore"),
    **dict.fromkeys(["ALL", "CI_LEVEL", "HIERARCHY", "OVERALL", "build_layer_frame", "calc_layer_scores",
                     "check_metrics", "get_score", "list_metrics", "neuron_groups", "order_groups",
                     "order_metrics", "regression_metric", "to_strings"], "tables"),
    **dict.fromkeys(["label_task_clusters", "summarize_taskonomy"], "taskonomy"),
    **dict.fromkeys(["CEILING_COLUMNS", "get_ceiling", "summarize_ceilings"], "ceiling"),
    **dict.fromkeys(["BASELINE", "judge_ranking"], "verdict"),
    **dict.fromkeys(["MIN_MODELS", "mark_too_few"], "inference"),
}
_SUBMODULES = frozenset(_LAZY.values())

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*_LAZY, *_SUBMODULES])
