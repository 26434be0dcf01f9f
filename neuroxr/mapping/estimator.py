"""``RidgeLOO``: the leave-one-out ridge engine of :mod:`neuroxr.mapping.ridge` as a scikit-learn estimator.

Kept apart from the solvers so that scoring (and ``import neuroxr``) does not import scikit-learn.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .backend import get_backend
from .gram import calc_gram, calc_zscored_gram
from .kernels import (
    calc_loo_residuals,
    calc_mean_free_pearson,
    calc_paper_alpha_scale,
    calc_pearson,
    calc_residual_operators,
    decompose_gram,
)
from .ridge import RidgeInputError, alpha_unit, as_targets, check_alphas

__all__ = ["RidgeLOO"]


class RidgeLOO(RegressorMixin, BaseEstimator):
    """Ridge regression with exact leave-one-out cross-validation, a scikit-learn estimator.

    Each target gets the alpha of least leave-one-out squared error (as
    :class:`sklearn.linear_model.RidgeCV` with ``alpha_per_target=True``); the intercept is
    unpenalised.  The fit runs the ``eigen`` solver of :data:`SOLVERS` on the Gram matrix.

    Parameters
    ----------
    alphas : sequence of float, or ``"paper"`` / :class:`~neuroxr.mapping.ridge.PaperAlphas`
        Penalties as given; in the paper's units they are scaled to the Gram matrix's trace
        (``alpha_`` holds the penalty applied) and ``loo_r_`` is the mean-free r.
    zscore : bool
        Z-score features over samples (ddof=0, zero-variance -> 0) before the ridge.
    kernel : {"linear", "precomputed"}
        With ``"precomputed"``, ``fit`` takes the Gram matrix ``(image, image)`` of the (already
        scaled) features and ``predict`` the test-by-train Gram matrix ``(test, image)``.
    backend : str

    Attributes
    ----------
    loo_predictions_ : ndarray (image, neuron) or (image,)
    loo_r_ : ndarray (neuron,) or float: Pearson r of the leave-one-out predictions
    alpha_ : ndarray (neuron,) or float
    coef_ : ndarray (neuron, feature) or (feature,), ``kernel="linear"``
    intercept_ : ndarray (neuron,) or float
    dual_coef_ : ndarray (image, neuron) or (image,)
    """

    def __init__(self, alphas=(1.0,), zscore=True, kernel="linear", backend="numpy"):
        self.alphas = alphas
        self.zscore = zscore
        self.kernel = kernel
        self.backend = backend

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.pairwise = self.kernel == "precomputed"
        return tags

    def _gram(self, X):
        if self.kernel == "precomputed":
            return X
        if self.kernel != "linear":
            raise RidgeInputError(f"RidgeLOO: kernel must be 'linear' or 'precomputed', got {self.kernel!r}")
        return calc_zscored_gram(X) if self.zscore else calc_gram(X)

    def fit(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if X.shape[0] < 3:
            raise RidgeInputError(f"RidgeLOO needs at least 3 samples for leave-one-out, got n_samples = {X.shape[0]}")
        alphas = check_alphas(self.alphas)
        K = self._gram(X)
        paper = alpha_unit(alphas) == "paper"
        if paper:  # the paper's units: the penalties applied to this Gram matrix
            scale = calc_paper_alpha_scale(K[None])[0] if (self.zscore or self.kernel == "precomputed") else 1.0
            alphas = tuple(a * (scale if np.isfinite(scale) else 1.0) for a in alphas)
        Y, squeeze = as_targets(y)
        s, W, _ = decompose_gram(K, backend=self.backend)
        s, W = (np.asarray(get_backend(self.backend).to_numpy(v)) for v in (s, W))
        E, idx = calc_loo_residuals(calc_residual_operators(K[None], alphas, self.backend), Y)
        alpha = np.asarray(alphas)[idx[0]]
        pred = Y - E[0]
        # dual coefficients of the centred problem: (Kc + alpha I)^-1 (y - ybar) = W diag(1/(s+alpha)) W^T y
        dual = W @ ((W.T @ Y) / (s[:, None] + alpha[None, :]))
        self._y_mean = Y.mean(0)
        if self.kernel == "precomputed":
            self._k_mean, self._k_all = K.mean(0), K.mean()
        else:
            mean = X.mean(0)
            sd = X.std(0) if self.zscore else np.ones(X.shape[1])
            sd = np.where(sd > 0, sd, 1.0)
            coef = (((X - mean) / sd).T @ dual / sd[:, None]).T  # (neuron, feature)
            self.coef_ = coef[0] if squeeze else coef
            self.intercept_ = (self._y_mean - coef @ mean)
            self.intercept_ = self.intercept_[0] if squeeze else self.intercept_
        one = (lambda a: a[..., 0]) if squeeze else (lambda a: a)
        self.dual_coef_, self.loo_predictions_ = one(dual), one(pred)
        pearson = calc_mean_free_pearson if paper else calc_pearson
        self.alpha_, self.loo_r_ = one(alpha), one(pearson(pred, Y, axis=0))
        return self

    def predict(self, X):
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if self.kernel != "precomputed":
            return X @ np.asarray(self.coef_).T + self.intercept_
        Kc = X - X.mean(1, keepdims=True) - self._k_mean[None, :] + self._k_all
        pred = Kc @ self.dual_coef_.reshape(Kc.shape[1], -1) + self._y_mean
        return pred[:, 0] if np.ndim(self.dual_coef_) == 1 else pred
