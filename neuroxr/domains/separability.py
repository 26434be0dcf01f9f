"""How distinct the domains' networks are: activation norms, a linear SVM telling them apart, distances."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import make_scorer, precision_score, recall_score
from sklearn.model_selection import StratifiedGroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..errors import NeuroxrError


def calc_activation_norms(activations: dict, image_ids=None) -> pd.DataFrame:
    """L2 norm of each image's activation: columns ``model, layer, image, norm``."""
    rows = []
    for label, layers in activations.items():
        for layer, X in layers.items():
            X = np.asarray(X, dtype=np.float64)
            ids = np.arange(X.shape[0]) if image_ids is None else np.asarray(image_ids)
            rows.append(pd.DataFrame({"model": label, "layer": layer, "image": ids,
                                      "norm": np.linalg.norm(X, axis=1)}))
    return pd.concat(rows, ignore_index=True)


def classify_domains(activations: dict, n_folds: int = 5, seed: int = 0, standardize: bool = True,
                     C: float = 1.0, max_iter: int = 5000) -> pd.DataFrame:
    """Which network produced an activation?  Linear SVM, cross-validated by image, per layer.

    The samples of a layer are every network's activation to every image (rows stacked), the
    label is the network.  Two networks' activations to one image are a pair: the folds are
    drawn by image (:class:`sklearn.model_selection.StratifiedGroupKFold`, the group of a
    sample is its image), so a test image's activation from another network is never in the
    training set.  (Ungrouped folds let the SVM learn "this image belongs to the other class":
    two identical networks then score far below chance.)  ``standardize`` z-scores features
    inside each training fold (:class:`~sklearn.pipeline.Pipeline` with
    :class:`~sklearn.preprocessing.StandardScaler`).

    Returns
    -------
    DataFrame
        ``layer, fold, accuracy, precision, recall, chance, n_samples`` (macro precision and
        recall), one row per fold and one with ``fold = "mean"``.
    """
    labels = list(activations)
    if len(labels) < 2:
        raise NeuroxrError("classify_domains: need at least two networks to tell apart")
    layers = list(activations[labels[0]])
    rows = []
    for layer in layers:
        mats = [np.asarray(activations[m][layer], dtype=np.float64) for m in labels]
        n_img = {len(x) for x in mats}
        if len(n_img) != 1:
            raise NeuroxrError(f"classify_domains: layer {layer} has activations to {sorted(n_img)} images across "
                               "networks; every network must see the same images")
        n = n_img.pop()
        X = np.concatenate(mats)
        y = np.repeat(np.arange(len(labels)), n)
        groups = np.tile(np.arange(n), len(labels))
        k = int(min(n_folds, n))
        if k < 2:
            raise NeuroxrError(f"classify_domains: layer {layer} has too few images for {n_folds}-fold CV")
        svc = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
        est = make_pipeline(StandardScaler(), svc) if standardize else svc
        cv = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = cross_validate(est, X, y, groups=groups, cv=cv,
                                 scoring={"accuracy": "accuracy",
                                          "precision": make_scorer(precision_score, average="macro", zero_division=0),
                                          "recall": make_scorer(recall_score, average="macro", zero_division=0)})
        for f in range(k):
            rows.append({"layer": layer, "fold": str(f), "accuracy": res["test_accuracy"][f],
                         "precision": res["test_precision"][f], "recall": res["test_recall"][f],
                         "chance": 1.0 / len(labels), "n_samples": len(y)})
        rows.append({"layer": layer, "fold": "mean", "accuracy": res["test_accuracy"].mean(),
                     "precision": res["test_precision"].mean(), "recall": res["test_recall"].mean(),
                     "chance": 1.0 / len(labels), "n_samples": len(y)})
    return pd.DataFrame(rows)


def calc_activation_distances(activations: dict, image_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Euclidean distance between two networks' activations to the same image.

    Returns
    -------
    per_image : DataFrame ``model_a, model_b, layer, image, distance`` (unordered pairs)
    summary : DataFrame ``model_a, model_b, layer, mean, sd, median, total`` where ``total`` is
        the distance of the whole (image x feature) activation matrices (Frobenius norm of
        the difference, as the study's distance matrices).
    """
    labels = list(activations)
    rows, summ = [], []
    for a, b in itertools.combinations(labels, 2):
        for layer in activations[a]:
            A = np.asarray(activations[a][layer], dtype=np.float64)
            B = np.asarray(activations[b][layer], dtype=np.float64)
            d = np.linalg.norm(A - B, axis=1)
            ids = np.arange(len(d)) if image_ids is None else np.asarray(image_ids)
            rows.append(pd.DataFrame({"model_a": a, "model_b": b, "layer": layer, "image": ids, "distance": d}))
            summ.append({"model_a": a, "model_b": b, "layer": layer, "mean": d.mean(),
                         "sd": d.std(ddof=1) if len(d) > 1 else np.nan, "median": float(np.median(d)),
                         "total": float(np.sqrt((d ** 2).sum()))})
    per = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["model_a", "model_b", "layer", "image", "distance"])
    return per, pd.DataFrame(summ, columns=["model_a", "model_b", "layer", "mean", "sd", "median", "total"])


__all__ = ["calc_activation_norms", "classify_domains", "calc_activation_distances"]
