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
"""
from __future__ import annotations

from .depth import bin_depth_profile, summarize_best_depth
from .inference import (
    STAT_COLUMNS, adjust_bonferroni, calc_bootstrap_mean_ci, calc_hedges_g, calc_spearman_row, compare_family,
    compare_metrics, compare_trained_random, correlate_depth, correlate_model_properties, make_tidy,
)
from .ranking import (
    RANKING_COLUMNS, calc_percentile_ci, headline_metric, pick_depth_metric, rank_models, select_ranking,
)
from .rescore import RELIABILITY_THRESHOLDS, measure_method_tradeoff, rank_over_thresholds
from .tables import (
    ALL, CI_LEVEL, HIERARCHY, OVERALL, build_layer_frame, calc_layer_scores, check_metrics, get_score,
    list_metrics, neuron_groups, order_groups, order_metrics, regression_metric, to_strings,
)
from .taskonomy import summarize_taskonomy

__all__ = [
    "ALL", "CI_LEVEL", "HIERARCHY", "OVERALL", "RANKING_COLUMNS", "RELIABILITY_THRESHOLDS", "STAT_COLUMNS",
    "adjust_bonferroni", "bin_depth_profile", "build_layer_frame", "calc_bootstrap_mean_ci", "calc_hedges_g",
    "calc_layer_scores", "calc_percentile_ci", "calc_spearman_row", "check_metrics", "compare_family",
    "compare_metrics", "compare_trained_random", "correlate_depth", "correlate_model_properties", "get_score",
    "headline_metric", "list_metrics", "make_tidy", "measure_method_tradeoff", "neuron_groups", "order_groups",
    "order_metrics", "pick_depth_metric", "rank_models", "rank_over_thresholds", "regression_metric",
    "select_ranking", "summarize_best_depth", "summarize_taskonomy", "to_strings",
]
