"""Analyses that rescore: rankings at rising reliability thresholds, and the method trade-off."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from ..errors import NeuroxrError
from ..mapping import gram, pls, ridge
from ..mapping.srp import SRPCache, project_srp
from .ranking import rank_models
from .tables import ALL

#: the reliability thresholds of the study's Figure 6
RELIABILITY_THRESHOLDS = tuple(np.round(np.arange(0, 1.0, 0.1), 1))


def rank_over_thresholds(scores_at, reliability, thresholds=RELIABILITY_THRESHOLDS, *,
                         n_boot: int = 1000, seed: int = 0, min_neurons: int = 2) -> pd.DataFrame:
    """The ``all`` rankings as the split-half reliability threshold rises (the study's Figure 6).

    Parameters
    ----------
    scores_at : callable
        ``scores_at(mask) -> DataTree``: scores recomputed on the neurons where ``mask`` (bool,
        per neuron, aligned with ``reliability``) is True.
        :func:`neuroxr.pipeline.rescore_by_reliability` passes a function that calls the in-memory
        scoring API on the study's features.
    reliability : DataArray or array (neuron,)
        Split-half reliability of each neuron.
    thresholds : sequence of float
        Neurons with reliability >= threshold are kept.

    Returns
    -------
    DataFrame
        ``threshold, n_neurons, model, weights, metric, area, score, ci_low, ci_high, best_layer,
        relative_depth, family, variant`` (area
        ``all`` rows of :func:`neuroxr.stats.rank_models`, intervals bootstrapped across areas).
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
            "best_layer", "relative_depth", "family", "variant"]
    return pd.concat(out, ignore_index=True)[cols]


def _reduce(X, method, size, seed):
    if method == "none" or size is None or size >= X.shape[1]:
        return X
    if method == "pca":
        return PCA(n_components=min(size, *X.shape), random_state=seed).fit_transform(X)
    if method == "srp":  # scikit-learn's seeded matrix, drawn anew each time (the method's whole cost)
        return project_srp(X, size, seed, cache=SRPCache(maxsize=1))
    raise NeuroxrError(f"unknown reduction {method!r}; choose none, pca or srp")


def _fit_ridge(X, Y, alpha):
    """neuroxr's exact leave-one-out ridge (fixed ``alpha``, intercept, z-scored features):
    Pearson r per neuron (column of ``Y``)."""
    return ridge.calc_loo_pearson(gram.calc_zscored_gram(X), Y, (alpha,))


def _fit_pls(X, Y, n_components, seed):
    """neuroxr's cross-validated PLS (5-fold): held-out Pearson r per neuron, mean over folds."""
    splits = pls.make_splits(len(X), "kfold", 5, seed=seed)
    return np.nanmean(pls.cross_validated_pls(X, Y, splits, n_components), axis=0)


def _method_settings(n_features, n_images, sizes, reductions):
    """(reduction, size) pairs that apply to a layer: sizes below the feature count (PCA: at most
    the smaller side); ``none`` once with size None."""
    for reduction in reductions:
        for size in ([None] if reduction == "none" else sizes):
            if reduction == "pca" and size > min(n_images, n_features):
                continue
            if reduction == "srp" and size >= n_features:
                continue
            yield reduction, size


def _best_time(fn, repeats):
    """(best seconds of ``repeats`` calls of ``fn()``, its last result)."""
    best, out = np.inf, None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _time_fit(Z, Y, regression, *, alpha, pls_components, seed, repeats):
    """(best seconds of ``repeats`` fits of ``regression`` on ``Z``, Pearson r per neuron)."""
    if regression == "ridge":
        return _best_time(lambda: _fit_ridge(Z, Y, alpha), repeats)
    return _best_time(lambda: _fit_pls(Z, Y, pls_components, seed), repeats)


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
        of the reduction plus the best of ``repeats`` fits (each reduction is computed once per
        layer and size, and its time counted in every regression's row).  PCA: scikit-learn's;
        SRP: scikit-learn's seeded SparseRandomProjection matrix, entry for entry, drawn anew each
        time by :func:`neuroxr.mapping.srp.project_srp` (without its cache).
    """
    Y = np.asarray(responses, float)
    rows = []
    for layer, X in features.items():
        X = np.asarray(X, float).reshape(len(X), -1)
        for reduction, size in _method_settings(X.shape[1], X.shape[0], sizes, reductions):
            # the reduction is computed (and timed) once and its time counted in each regression's row
            t_red, Z = _best_time(lambda: _reduce(X, reduction, size, seed), repeats)  # noqa: B023
            for regression in regressions:
                t_fit, r = _time_fit(Z, Y, regression, alpha=alpha, pls_components=pls_components, seed=seed,
                                     repeats=repeats)
                best = t_red + t_fit
                rows.append(dict(layer=layer, reduction=reduction, size=size if size else X.shape[1],
                                 regression=regression, score=float(np.nanmean(r)), seconds=best,
                                 n_features=X.shape[1]))
    return pd.DataFrame(rows)
