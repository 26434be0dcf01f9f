"""Closed-form leave-one-out ridge against scikit-learn's RidgeCV and explicit refits."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

from neuroxr.errors import NeuroxrError
from neuroxr.mapping import ridge
from neuroxr.mapping.estimator import RidgeLOO


def _data(n, p, N=4, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * scale + shift
    Y = X[:, : min(p, 3)] @ rng.standard_normal((min(p, 3), N)) + rng.standard_normal((n, N)) + 7.0
    return X, Y


def _sklearn_loo(Z, Y, alpha):
    """LOO predictions stored by RidgeCV: with a scorer, cv_results_ holds predictions (not squared errors)."""
    m = RidgeCV(alphas=[alpha], fit_intercept=True, store_cv_results=True, scoring="neg_mean_squared_error")
    return m.fit(Z, Y).cv_results_[..., 0]


def _refit_loo(Z, Y, alpha):
    """Brute force with scikit-learn Ridge: n fits on n - 1 images."""
    n = Z.shape[0]
    pred = np.empty_like(Y)
    for i in range(n):
        tr = np.arange(n) != i
        pred[i] = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(Z[tr], Y[tr]).predict(Z[i:i + 1])[0]
    return pred


@pytest.mark.parametrize("n,p", [(40, 8), (30, 300), (25, 25)])
@pytest.mark.parametrize("alpha", [1e-2, 1.0, 1e3])
def test_loo_predictions_equal_sklearn_ridgecv(n, p, alpha):
    X, Y = _data(n, p)
    Z = StandardScaler().fit_transform(X)
    K = Z @ Z.T
    got = ridge.fit_ridge_loo(K, Y, alpha)
    want = _sklearn_loo(Z, Y, alpha)
    np.testing.assert_allclose(got, want, atol=1e-8 * np.abs(Y).max())
    # scoring=None stores squared LOO errors instead: same numbers
    m = RidgeCV(alphas=[alpha], store_cv_results=True).fit(Z, Y)
    np.testing.assert_allclose((Y - got) ** 2, m.cv_results_[..., 0], atol=1e-8 * (Y ** 2).max())


@pytest.mark.parametrize("n,p", [(20, 5), (18, 60)])
def test_loo_predictions_equal_brute_force_refit(n, p):
    X, Y = _data(n, p, seed=1)
    Z = StandardScaler().fit_transform(X)
    K = Z @ Z.T
    want = _refit_loo(Z, Y, 0.7)
    np.testing.assert_allclose(ridge.fit_ridge_loo(K, Y, 0.7), want, atol=1e-10)
    np.testing.assert_allclose(ridge.fit_ridge_loo(K, Y, 0.7, solver="refit"), want, atol=1e-9)


def test_zscored_gram_streams_to_the_same_matrix():
    X, _ = _data(30, 1000, seed=2, scale=3.0, shift=5.0)
    X[:, 7] = 2.0  # zero variance -> 0
    Z = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(ridge.calc_zscored_gram(X, chunk=97), Z @ Z.T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ridge.calc_gram(X.astype(np.float32), chunk=97),
                               X.astype(np.float32).astype(np.float64) @ X.astype(np.float32).astype(np.float64).T,
                               rtol=1e-12)


def test_stable_where_double_centring_is_not():
    """Many features with a large common offset: the naive centred-hat route loses digits, ours does not."""
    n, p, alpha = 30, 20000, 1e-3
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, p)) + 50.0
    Y = rng.standard_normal((n, 3))
    K = X @ X.T  # raw features: intercept handled by the method, not by centring X first
    # exact reference: sklearn on the raw features (it centres X itself), via the primal 'cov' route
    m = RidgeCV(alphas=[alpha], store_cv_results=True, scoring="neg_mean_squared_error", gcv_mode="svd")
    want = m.fit(X, Y).cv_results_[..., 0]
    got = ridge.fit_ridge_loo(K, Y, alpha)
    np.testing.assert_allclose(got, want, atol=1e-7)
    # the data do spring the trap: double-centre K, form H, divide by 1 - H_ii
    C = np.eye(n) - 1.0 / n
    s, U = np.linalg.eigh(C @ K @ C)
    H = 1.0 / n + (U * (s / (s + alpha))) @ U.T
    naive = Y - (Y - H @ Y) / (1 - np.diag(H))[:, None]
    assert np.abs(naive - want).max() > 1e3 * np.abs(got - want).max()


def test_alpha_grid_picks_sklearns_alpha_per_target():
    X, Y = _data(35, 50, N=8, seed=4)
    Z = StandardScaler().fit_transform(X)
    grid = [0.01, 0.3, 10.0, 300.0, 1e4]
    pred, alpha = ridge.fit_ridge_loo(Z @ Z.T, Y, grid, return_alpha=True)
    m = RidgeCV(alphas=grid, alpha_per_target=True).fit(Z, Y)
    np.testing.assert_array_equal(alpha, m.alpha_)
    for j in range(Y.shape[1]):
        np.testing.assert_allclose(pred[:, j], _sklearn_loo(Z, Y[:, j], m.alpha_[j]), atol=1e-8 * np.abs(Y).max())


def test_batched_layers_and_torch_backend():
    X1, Y = _data(20, 10, seed=5)
    X2, _ = _data(20, 70, seed=6)
    K = np.stack([X1 @ X1.T, X2 @ X2.T])
    want = np.stack([_sklearn_loo(X1, Y, 2.0), _sklearn_loo(X2, Y, 2.0)])
    for backend in ("numpy", "torch"):
        np.testing.assert_allclose(ridge.fit_ridge_loo(K, Y, 2.0, backend=backend), want, atol=1e-8 * np.abs(Y).max())
    np.testing.assert_allclose(ridge.fit_ridge_loo(K[1], Y, 2.0), want[1], atol=1e-8 * np.abs(Y).max())


def test_pearson_vectorised_against_scipy_and_nan_for_constants():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((50, 6)), rng.standard_normal((50, 6))
    b[:, 1] += 3 * a[:, 1]
    want = [pearsonr(a[:, j], b[:, j]).statistic for j in range(6)]
    np.testing.assert_allclose(ridge.calc_pearson(a, b), want, atol=1e-12)
    a[:, 2] = 1e6 / 3.0  # constant, not exactly representable: mean rounding must not fake variance
    b[:, 4] = np.nan
    with np.errstate(all="raise"):
        r = ridge.calc_pearson(a, b)
    assert np.isnan(r[2]) and np.isnan(r[4]) and np.isfinite(r[[0, 1, 3, 5]]).all()


def test_constant_layer_and_neuron_give_nan_never_a_crash():
    X, Y = _data(20, 10)
    Y[:, 1] = 4.2
    r = ridge.calc_loo_pearson(np.zeros((20, 20)), Y, 1.0)
    assert np.isnan(r).all()
    r = ridge.calc_loo_pearson(np.full((20, 20), 9.0), Y, 1.0)  # constant raw features: K = c 11^T
    assert np.isnan(r).all()
    r = ridge.calc_loo_pearson(X @ X.T, Y, 1.0)
    assert np.isnan(r[1]) and np.isfinite(np.delete(r, 1)).all()


@pytest.mark.parametrize("bad", [0, -1.0, np.inf, np.nan, ()])
def test_bad_alpha_is_refused(bad):
    X, Y = _data(10, 3)
    with pytest.raises(NeuroxrError, match="alpha|penalty"):
        ridge.fit_ridge_loo(X @ X.T, Y, bad)


def test_estimator_matches_sklearn():
    X, Y = _data(30, 40, seed=8)
    est = RidgeLOO(alphas=(1.0,)).fit(X, Y)
    Z = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(est.loo_predictions_, _sklearn_loo(Z, Y, 1.0), atol=1e-8 * np.abs(Y).max())
    want = [pearsonr(_sklearn_loo(Z, Y, 1.0)[:, j], Y[:, j]).statistic for j in range(Y.shape[1])]
    np.testing.assert_allclose(est.loo_r_, want, atol=1e-8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(4, 25), p=st.integers(1, 40), log_alpha=st.floats(-3, 3), seed=st.integers(0, 10_000),
       offset=st.floats(-100, 100))
def test_property_loo_equals_sklearn_and_is_equivariant(n, p, log_alpha, seed, offset):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    Y = rng.standard_normal((n, 2))
    alpha = 10.0 ** log_alpha
    K = X @ X.T
    got = ridge.fit_ridge_loo(K, Y, alpha)
    want = _sklearn_loo(X, Y, alpha)
    np.testing.assert_allclose(got, want, atol=1e-7 * (1 + np.abs(want).max()))
    # shifting targets shifts predictions (the intercept is unpenalised)
    np.testing.assert_allclose(ridge.fit_ridge_loo(K, Y + offset, alpha), got + offset, atol=1e-7 * (1 + abs(offset)))
    # permuting images permutes predictions
    perm = rng.permutation(n)
    np.testing.assert_allclose(ridge.fit_ridge_loo(K[np.ix_(perm, perm)], Y[perm], alpha), got[perm], atol=1e-8)


def test_estimator_predicts_like_sklearn_ridge():
    """Fitted on all images, RidgeLOO predicts new samples as scikit-learn's Ridge (z-scored, per-target alpha)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    X, Y = _data(25, 12, seed=4)
    Xt = np.random.default_rng(5).standard_normal((7, 12))
    est = RidgeLOO(alphas=(0.1, 10.0)).fit(X, Y)
    for j in range(Y.shape[1]):
        ref = make_pipeline(StandardScaler(), Ridge(alpha=float(est.alpha_[j]))).fit(X, Y[:, j])
        np.testing.assert_allclose(est.predict(Xt)[:, j], ref.predict(Xt), atol=1e-9)
    raw = RidgeLOO(alphas=(2.0,), zscore=False).fit(X, Y[:, 0])
    np.testing.assert_allclose(raw.predict(Xt), Ridge(alpha=2.0).fit(X, Y[:, 0]).predict(Xt), atol=1e-9)
    pre = RidgeLOO(alphas=(2.0,), zscore=False, kernel="precomputed").fit(X @ X.T, Y)
    np.testing.assert_allclose(pre.predict(Xt @ X.T), Ridge(alpha=2.0).fit(X, Y).predict(Xt), atol=1e-9)
    assert est.get_params() == {"alphas": (0.1, 10.0), "zscore": True, "kernel": "linear", "backend": "numpy"}


@pytest.mark.parametrize("params", [{}, {"zscore": False, "alphas": (0.1, 10.0)}, {"kernel": "precomputed"}])
def test_estimator_passes_sklearn_checks(params):
    from sklearn.utils.estimator_checks import check_estimator

    # every check applies (none is listed as an expected failure); "precomputed" gets square
    # Gram inputs through the pairwise tag
    check_estimator(RidgeLOO(**params))


# --- the sparse random projection: scikit-learn's matrix, drawn fast ---------------------------
@pytest.mark.parametrize("p,k,seed", [(300, 50, 1), (5000, 300, 0), (20000, 400, 3), (3, 2, 0)])
def test_srp_matrix_equals_sklearn(p, k, seed):
    from sklearn.random_projection import SparseRandomProjection

    from neuroxr.mapping.srp import calc_srp_matrix

    want = SparseRandomProjection(n_components=k, random_state=seed).fit(np.zeros((1, p))).components_
    got = calc_srp_matrix(p, k, seed)
    assert got.shape == want.shape and (got != want).nnz == 0


def test_project_srp_matches_sklearn_fit_transform():
    from sklearn.random_projection import SparseRandomProjection

    from neuroxr.mapping.srp import project_srp

    X = np.random.default_rng(0).standard_normal((40, 12000))
    want = SparseRandomProjection(n_components="auto", eps=0.1, random_state=2).fit_transform(X)
    np.testing.assert_allclose(project_srp(X, "auto", 2, chunk=2500), want, rtol=0, atol=1e-10)
