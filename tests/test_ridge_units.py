"""Penalties in the paper's units and the mean-free leave-one-out score (issue 15).

References: scikit-learn's RidgeCV (leave-one-out predictions), Ridge + LeaveOneOut
(cross_val_predict) and johnson_lindenstrauss_min_dim; the mean-free r is computed here with
numpy from scikit-learn's predictions.  Noise features: Gaussian, and for p >= 10^5 their Gram
matrix drawn from its exact (Wishart) distribution by the Bartlett decomposition.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.preprocessing import StandardScaler
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from neuroxr.cli import build_parser
from neuroxr.cli._score import alphas_of_args
from neuroxr.mapping import ridge

GRID = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)


def _jl(n):
    return int(johnson_lindenstrauss_min_dim(n, eps=0.1))


def _sklearn_loo(Z, Y, alphas, per_target=False):
    m = RidgeCV(alphas=list(alphas), alpha_per_target=per_target, store_cv_results=True,
                scoring="neg_mean_squared_error").fit(Z, Y)
    return m


def _mean_free_r(pred, Y):
    """numpy: r(prediction - mean of the other images' responses, response), per column."""
    n = Y.shape[0]
    others = (Y.sum(0) - Y) / (n - 1)
    return np.array([np.corrcoef(pred[:, j] - others[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])])


def _data(n, p, N=6, seed=0, n_const=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p) + 1.0
    X[:, :n_const] = 3.0  # constant features: no variance, no trace
    Y = X[:, n_const:n_const + 3] @ rng.standard_normal((3, N)) + 2.0 * rng.standard_normal((n, N)) + 5.0
    return X, Y


@pytest.mark.parametrize("p", [20, 6_000, 12_000])
def test_paper_alpha_is_the_trace_ratio_and_the_route_reproduces_ridgecv(p):
    n = 40
    X, Y = _data(n, p, n_const=5)
    Z = StandardScaler().fit_transform(X)
    want_alpha = max(1.0, (p - 5) / _jl(n))  # the paper keeps layers with p <= c as they are
    r, a = ridge.calc_loo_pearson(Z @ Z.T, Y, None, return_alpha=True)
    np.testing.assert_allclose(a, want_alpha, rtol=1e-12)
    pred = _sklearn_loo(Z, Y, [want_alpha]).cv_results_[..., 0]
    np.testing.assert_allclose(r, _mean_free_r(pred, Y), atol=1e-8, rtol=0)
    # the same penalty, plain Pearson: scikit-learn's score of the same predictions
    r_plain = ridge.calc_loo_pearson(Z @ Z.T, Y, ridge.paper_alphas(1.0), mean_free=False)
    np.testing.assert_allclose(r_plain, [np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])],
                               atol=1e-8, rtol=0)


def test_mean_free_score_equals_brute_force_refits():
    n, p = 30, 400
    X, Y = _data(n, p, N=3, seed=4)
    Z = StandardScaler().fit_transform(X)
    a = max(1.0, p / _jl(n))
    pred = cross_val_predict(Ridge(alpha=a, solver="svd"), Z, Y, cv=LeaveOneOut())
    np.testing.assert_allclose(ridge.calc_loo_pearson(Z @ Z.T, Y, None), _mean_free_r(pred, Y), atol=1e-8)
    np.testing.assert_allclose(ridge.calc_loo_pearson(Z @ Z.T, Y, None, solver="refit"), _mean_free_r(pred, Y),
                               atol=1e-8)


def test_paper_grid_picks_sklearns_alpha_per_target():
    n, p = 40, 9_000
    X, Y = _data(n, p, N=8, seed=2)
    Y[:, :3] = np.random.default_rng(9).standard_normal((n, 3))  # noise neurons: the grid's top
    Z = StandardScaler().fit_transform(X)
    scale = p / _jl(n)
    r, a = ridge.calc_loo_pearson(Z @ Z.T, Y, ridge.paper_alphas(GRID), return_alpha=True)
    m = _sklearn_loo(Z, Y, np.asarray(GRID) * scale, per_target=True)
    np.testing.assert_allclose(a, m.alpha_, rtol=1e-12)
    idx = [int(np.argmin(np.abs(np.asarray(GRID) * scale - aj))) for aj in m.alpha_]
    pred = np.stack([m.cv_results_[:, j, k] for j, k in enumerate(idx)], axis=1)
    np.testing.assert_allclose(r, _mean_free_r(pred, Y), atol=1e-8, rtol=0)


def _noise_gram(n, p, rng):
    """Gram matrix of p Gaussian noise features over n images: z-scored features for p <= 10^4, else
    drawn from its exact Wishart(p, I) distribution (Bartlett; the intercept makes centring implicit)."""
    if p <= 10_000:
        Z = StandardScaler().fit_transform(rng.standard_normal((n, p)))
        return Z @ Z.T
    A = np.tril(rng.standard_normal((n, n)), -1)
    A[np.diag_indices(n)] = np.sqrt(rng.chisquare(p - np.arange(n)))
    return A @ A.T


#: the mean r on pure noise of the default (paper units, mean-free): within this of 0
NOISE_TOL = 0.03


@pytest.mark.parametrize("p", [100, 10_000, 100_000, 1_000_000])
def test_default_mean_r_on_noise_is_near_zero_at_every_width(p):
    n, N = 118, 1500
    rng = np.random.default_rng(p)
    K, Y = _noise_gram(n, p, rng), rng.standard_normal((n, N))
    assert abs(np.nanmean(ridge.calc_loo_pearson(K, Y, None))) < NOISE_TOL
    assert abs(np.nanmean(ridge.calc_loo_pearson(K, Y, ridge.paper_alphas(GRID)))) < NOISE_TOL


def test_the_old_failure_is_reproduced_as_a_contrast():
    """Documented contrast: the plain Pearson r of the penalty alpha = 1 sinks with width (-0.62 at
    p = 10^6, issue 15), and a per-neuron grid walks into the leave-one-out mean trap (-0.70); the
    paper-unit penalty alone does not help (the trap is the leave-one-out intercept, not the penalty)."""
    n, N = 118, 1500
    rng = np.random.default_rng(7)
    Y = rng.standard_normal((n, N))
    K6 = _noise_gram(n, 1_000_000, rng)
    plain = np.nanmean(ridge.calc_loo_pearson(K6, Y, 1.0))
    assert -0.68 < plain < -0.56
    assert np.nanmean(ridge.calc_loo_pearson(K6, Y, GRID)) < -0.6
    assert np.nanmean(ridge.calc_loo_pearson(K6, Y, ridge.paper_alphas(1.0), mean_free=False)) < -0.56
    K5 = _noise_gram(n, 100_000, rng)
    assert np.nanmean(ridge.calc_loo_pearson(K5, Y, 1.0)) < -0.2
    # the trap itself: at a huge penalty the LOO prediction is the mean of the others, r = -1
    assert np.nanmean(ridge.calc_loo_pearson(K5, Y[:, :50], 1e12)) < -0.999


def test_score_layers_paper_default_and_srp_ridge_is_the_papers_alpha_1():
    from sklearn.random_projection import SparseRandomProjection
    from test_score import make_features, make_responses

    from neuroxr.mapping import score

    n, ps = 40, (30, 7_000)
    rng = np.random.default_rng(3)
    Xs = {f"l{i}": rng.standard_normal((n, p)) for i, p in enumerate(ps)}
    Y = Xs["l1"][:, :3] @ rng.standard_normal((3, 5)) + rng.standard_normal((n, 5))
    srp = {k: SparseRandomProjection(n_components=25, random_state=0).fit_transform(X) for k, X in Xs.items()}
    ds = score.score_layers(make_features(Xs, srp=srp), make_responses(Y), ("ridge", "srp-ridge"),
                            alpha=ridge.PAPER_ALPHA).compute()
    assert "srp_ridge_alpha" not in ds
    for i, (k, X) in enumerate(Xs.items()):
        Z = StandardScaler().fit_transform(X)
        a = max(1.0, X.shape[1] / _jl(n))
        np.testing.assert_allclose(ds.ridge_alpha[i].values, a, rtol=1e-12)
        np.testing.assert_allclose(ds.ridge_r[i].values, _mean_free_r(_sklearn_loo(Z, Y, [a]).cv_results_[..., 0], Y),
                                   atol=1e-8)
        S_ = StandardScaler().fit_transform(srp[k].astype(np.float32).astype(np.float64))
        pred = _sklearn_loo(S_, Y, [1.0]).cv_results_[..., 0]
        np.testing.assert_allclose(ds.srp_ridge_r[i].values,
                                   [np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])], atol=1e-8)


@pytest.mark.parametrize("argv,unit,values", [
    ([], "paper", (1.0,)),
    (["--alpha", "2"], "penalty", (2.0,)),
    (["--alphas", "0.1,10"], "penalty", (0.1, 10.0)),
    (["--alphas", "0.1,10", "--alpha-unit", "paper"], "paper", (0.1, 10.0)),
    (["--alpha-unit", "penalty"], "penalty", (1.0,)),
])
def test_cli_default_is_the_papers_units_and_an_explicit_alpha_is_the_penalty(argv, unit, values):
    args = build_parser().parse_args(["score", "STUDY", *argv])
    a = alphas_of_args(args)
    assert ridge.alpha_unit(a) == unit and tuple(a) == values
    assert ridge.check_alphas(a) == a and ridge.alpha_unit(ridge.check_alphas(a)) == unit  # survives the re-check


def test_estimator_in_the_papers_units():
    from neuroxr.mapping.estimator import RidgeLOO

    n, p = 40, 8_000
    X, Y = _data(n, p, N=3, seed=11)
    Z = StandardScaler().fit_transform(X)
    a = p / _jl(n)
    m = RidgeLOO(alphas="paper").fit(X, Y)
    np.testing.assert_allclose(m.alpha_, a, rtol=1e-12)
    sk = _sklearn_loo(Z, Y, [a])
    np.testing.assert_allclose(m.loo_predictions_, sk.cv_results_[..., 0], atol=1e-8)
    np.testing.assert_allclose(m.loo_r_, _mean_free_r(sk.cv_results_[..., 0], Y), atol=1e-8)
    np.testing.assert_allclose(m.predict(X[:5]), Ridge(alpha=a).fit(Z, Y).predict(Z[:5]), atol=1e-8)
