"""Many images (issue 16): the feature-space leave-one-out ridge, the route's cost model, RSA in blocks.

References: scikit-learn's RidgeCV leave-one-out predictions (``store_cv_results``),
cross_val_predict with LeaveOneOut, and scipy's pdist for RDMs.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.preprocessing import StandardScaler

from neuroxr.mapping import feature_ridge as fr
from neuroxr.mapping import ridge


def _data(n, p, N=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.2, 3.0, p) + rng.uniform(-2, 2, p)
    Y = X[:, :3] @ rng.standard_normal((3, N)) + 2.0 * rng.standard_normal((n, N)) + 4.0
    return X, Y


def _pearson_cols(a, b):
    return np.array([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


@pytest.mark.parametrize("p", [50, 2_000])
@pytest.mark.parametrize("alpha", [1e-2, 1.0, 1e3])
def test_feature_route_equals_ridgecv_loo(p, alpha):
    n = 600
    X, Y = _data(n, p)
    Z = StandardScaler().fit_transform(X)
    want = RidgeCV(alphas=[alpha], store_cv_results=True, scoring="neg_mean_squared_error").fit(Z, Y).cv_results_[..., 0]
    pred, _ = fr.calc_loo_predictions_features(X, Y, (alpha,))
    np.testing.assert_allclose(pred, want, atol=1e-8, rtol=0)
    r = fr.calc_loo_scores_features(X[None], Y, (alpha,))[0, 0]
    np.testing.assert_allclose(r, _pearson_cols(want, Y), atol=1e-8, rtol=0)


def test_feature_route_raw_features_equal_loo_refits():
    n, p = 120, 30
    X, Y = _data(n, p, N=3, seed=1)
    want = cross_val_predict(Ridge(alpha=3.0, solver="svd"), X, Y, cv=LeaveOneOut())
    pred, _ = fr.calc_loo_predictions_features(X, Y, (3.0,), zscore=False)
    np.testing.assert_allclose(pred, want, atol=1e-8, rtol=0)


@pytest.mark.parametrize("p", [50, 2_000])
def test_both_routes_agree_and_pick_sklearns_alpha(p):
    n = 600
    X, Y = _data(n, p, N=6, seed=2)
    grid = (0.1, 10.0, 1e3, 1e5)
    Z = StandardScaler().fit_transform(X)
    m = RidgeCV(alphas=grid, alpha_per_target=True).fit(Z, Y)
    out = fr.calc_loo_scores_features(X[None], Y, grid, n_out=2)
    np.testing.assert_allclose(out[1, 0], m.alpha_, rtol=1e-12)
    r_gram, a_gram = ridge.calc_loo_pearson(Z @ Z.T, Y, grid, return_alpha=True)
    np.testing.assert_allclose(out[0, 0], r_gram, atol=1e-8, rtol=0)
    np.testing.assert_allclose(a_gram, m.alpha_, rtol=1e-12)
    # paper units and the mean-free score on both routes
    pa = ridge.paper_alphas(grid)
    outp = fr.calc_loo_scores_features(X[None], Y, pa, n_out=2, paper=True, mean_free=True)
    r_p, a_p = ridge.calc_loo_pearson(Z @ Z.T, Y, pa, return_alpha=True)
    np.testing.assert_allclose(outp[0, 0], r_p, atol=1e-8, rtol=0)
    np.testing.assert_allclose(outp[1, 0], a_p, rtol=1e-12)


def test_constant_and_nonfinite_layers_give_nan_on_the_feature_route():
    n = 50
    X, Y = _data(n, 10)
    Xs = np.stack([X, np.full_like(X, 2.0), np.where(np.arange(10) == 3, np.nan, X)])
    out = fr.calc_loo_scores_features(Xs, Y, (1.0,))
    assert np.isfinite(out[0, 0]).all() and np.isnan(out[0, 1:]).all()


@pytest.mark.parametrize("n,c,N,route", [
    (118, 4_089, 6_619, "gram"),      # the paper's study: 118 images, the 4,089-component projection
    (600, 50, 1_000, "features"),     # a narrow layer
    (600, 2_000, 1_000, "gram"),      # wider than the images
    (5_000, 7_300, 8_000, "gram"),    # 5,000 images: the projection (JL) has 7,300 components
    (5_000, 1_000, 8_000, "features"),
    (25_000, 8_680, 8_000, "features"),  # 25,000 images: the projection has fewer components than images
])
def test_cost_model_picks_the_cheaper_route(n, c, N, route, caplog):
    costs = fr.calc_route_costs(n, c, N)
    cheaper = min(costs, key=lambda k: costs[k]["flops"])
    with caplog.at_level(logging.INFO, logger="neuroxr.score"):
        got = fr.choose_ridge_route(n, c, N)
    assert got == route
    if costs[cheaper]["bytes"] <= fr.MEMORY_BUDGET:
        assert got == cheaper
    assert f"{got} route for n={n} images" in caplog.text


def test_cost_model_counts_grow_as_derived():
    """n x n work grows as n^3 on the Gram route and only linearly in n on the feature route."""
    a, b = fr.calc_route_costs(1_000, 500, 100), fr.calc_route_costs(2_000, 500, 100)
    assert 7.0 < b["gram"]["flops"] / a["gram"]["flops"] <= 8.0
    assert 1.0 < b["features"]["flops"] / a["features"]["flops"] < 2.0
    assert b["gram"]["bytes"] / a["gram"]["bytes"] > 3.5  # n^2 matrices
    # the budget decides where the cheaper route would not fit
    c = fr.calc_route_costs(10_000, 12_000, 100)
    assert c["gram"]["flops"] < c["features"]["flops"]
    assert c["features"]["bytes"] <= fr.MEMORY_BUDGET < c["gram"]["bytes"]
    assert fr.choose_ridge_route(10_000, 12_000, 100) == "features"
    assert fr.choose_ridge_route(10_000, 12_000, 100, memory_budget=2 ** 40) == "gram"


def test_srp_ridge_takes_the_feature_route_and_equals_sklearn(caplog):
    from test_score import make_features, make_responses

    from neuroxr.mapping import score

    n = 300
    rng = np.random.default_rng(5)
    Xs = {"l0": rng.standard_normal((n, 40)), "l1": rng.standard_normal((n, 90))}
    Y = Xs["l1"][:, :3] @ rng.standard_normal((3, 7)) + rng.standard_normal((n, 7))
    srp = {"l0": Xs["l0"][:, :20], "l1": Xs["l1"][:, :20]}  # 20 components of 300 images: feature route
    with caplog.at_level(logging.INFO, logger="neuroxr.score"):
        ds = score.score_layers(make_features(Xs, srp=srp), make_responses(Y), ("srp-ridge",),
                                alphas=(0.5, 50.0)).compute()
    assert "srp-ridge: features route" in caplog.text
    for i, k in enumerate(Xs):
        S_ = StandardScaler().fit_transform(srp[k].astype(np.float32).astype(np.float64))
        m = RidgeCV(alphas=(0.5, 50.0), alpha_per_target=True, store_cv_results=True,
                    scoring="neg_mean_squared_error").fit(S_, Y)
        np.testing.assert_allclose(ds.srp_ridge_alpha[i].values, m.alpha_)
        idx = [0 if a == 0.5 else 1 for a in m.alpha_]
        pred = np.stack([m.cv_results_[:, j, a] for j, a in enumerate(idx)], axis=1)
        np.testing.assert_allclose(ds.srp_ridge_r[i].values, _pearson_cols(pred, Y), atol=1e-8)


def test_streamed_rsa_equals_pdist_pearson_without_rdms():
    from scipy.spatial.distance import pdist

    from neuroxr import rsa

    n = 301
    rng = np.random.default_rng(8)
    Xs = [np.maximum(rng.standard_normal((n, p)) + 0.5, 0) for p in (20, 150)]
    areas = [Xs[1][:, :10] @ rng.standard_normal((10, N)) + rng.standard_normal((n, N)) for N in (7, 30)]
    want = np.array([[np.corrcoef(pdist(X, "correlation"), pdist(Y, "correlation"))[0, 1] for Y in areas]
                     for X in Xs])
    K = np.stack([X @ X.T for X in Xs[:1]] + [Xs[1][:, :20] @ Xs[1][:, :20].T])
    got_f = rsa.compare_rdms_streamed([X for X in Xs[:1]] + [Xs[1][:, :20]], areas, kind="features", block_rows=17)
    got_g = rsa.compare_rdms_streamed(K, areas, kind="gram", feature_sum=np.stack([X.sum(1) for X in Xs[:1]]
                                      + [Xs[1][:, :20].sum(1)]), n_features=[20, 20], block_rows=40)
    want_g = np.array([[np.corrcoef(pdist(X, "correlation"), pdist(Y, "correlation"))[0, 1] for Y in areas]
                       for X in (Xs[0], Xs[1][:, :20])])
    np.testing.assert_allclose(got_f, want_g, atol=1e-10, rtol=0)
    np.testing.assert_allclose(got_g, want_g, atol=1e-10, rtol=0)
    got = rsa.compare_rdms_streamed(Xs, areas, kind="features")
    np.testing.assert_allclose(got, want, atol=1e-10, rtol=0)
    with pytest.raises(Exception, match="pearson"):
        rsa.compare_rdms_streamed(Xs, areas, kind="features", method="spearman")


def test_tasks_hold_as_many_layers_as_fit_the_budget(monkeypatch):
    from test_score import make_features, make_responses

    from neuroxr.mapping import metrics, score

    rng = np.random.default_rng(6)
    Xs = {f"l{i}": rng.standard_normal((60, 30)) for i in range(4)}
    Y = rng.standard_normal((60, 5))
    feats, resp = make_features(Xs, srp={k: X[:, :10] for k, X in Xs.items()}), make_responses(Y)
    per_layer = fr.calc_route_costs(60, 10, 5)["features"]["bytes"]
    monkeypatch.setattr(metrics, "MEMORY_BUDGET", 2.5 * per_layer)
    ds = score.score_layers(feats, resp, ("srp-ridge",), alpha=1.0, layer_chunk=4)
    assert ds.srp_ridge_r.data.chunks[0] == (2, 2)
    ref = score.score_layers(feats, resp, ("srp-ridge",), alpha=1.0, layer_chunk=1).compute()
    np.testing.assert_array_equal(ds.srp_ridge_r.values, ref.srp_ridge_r.values)


def test_ridge_without_a_gram_says_to_score_the_projection():
    from test_score import make_features, make_responses

    from neuroxr.errors import MissingDataError
    from neuroxr.mapping import score

    rng = np.random.default_rng(6)
    Xs = {"l0": rng.standard_normal((30, 40))}
    feats = make_features(Xs, srp={"l0": Xs["l0"][:, :10]}).drop_vars(["gram_z", "gram"])
    with pytest.raises(MissingDataError, match="srp-ridge"):
        score.score_layers(feats, make_responses(rng.standard_normal((30, 4))), ("ridge",))
