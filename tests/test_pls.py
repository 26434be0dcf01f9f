"""PLS mapping and the noise-corrected consistency against independent sklearn + scipy references."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.cross_decomposition import PLSRegression

from neuroxr.errors import NeuroxrError
from neuroxr.mapping.pls import (
    calc_pearson_columns,
    calc_pls_consistency,
    cross_validated_pls,
    make_splits,
    split_trial_halves,
)


def _data(rng, n=40, p=30, q=6, trials=6, noise=1.0):
    X = rng.normal(size=(n, p))
    W = rng.normal(size=(p, q)) / np.sqrt(p)
    signal = X @ W  # (image, neuron)
    T = signal.T[:, :, None] + noise * rng.normal(size=(q, n, trials))  # (neuron, image, trial)
    return X, signal, T


def _sb(r):
    return 2 * r / (1 + r)


def test_make_splits_kfold_and_random():
    folds = make_splits(20, kind="kfold", n_splits=4, seed=1)
    assert len(folds) == 4
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(20))  # every image held out once
    for tr, te in folds:
        assert set(tr).isdisjoint(te) and len(tr) + len(te) == 20
    rand = make_splits(118, kind="random", n_splits=7, test_size=0.5, seed=3)
    assert len(rand) == 7
    assert all(len(te) == 59 and len(tr) == 59 and set(tr).isdisjoint(te) for tr, te in rand)
    # reproducible, and different seeds give different splits
    again = make_splits(118, kind="random", n_splits=7, test_size=0.5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(rand, again))
    other = make_splits(118, kind="random", n_splits=7, test_size=0.5, seed=4)
    assert not np.array_equal(rand[0][1], other[0][1])
    with pytest.raises(NeuroxrError, match="kind"):
        make_splits(10, kind="loo")


def test_pearson_columns_matches_scipy_and_nan_for_constant(rng):
    a = rng.normal(size=(15, 5))
    b = a + rng.normal(size=(15, 5))
    b[:, 3] = 0.1  # constant
    r = calc_pearson_columns(a, b)
    for j in range(5):
        if j == 3:
            assert np.isnan(r[j])
        else:
            assert r[j] == pytest.approx(stats.pearsonr(a[:, j], b[:, j])[0], abs=1e-12)


@pytest.mark.parametrize("p", [30, 300])  # narrow, and wider than the training set (projected route)
def test_cross_validated_pls_matches_sklearn_reference(rng, p):
    X, signal, T = _data(rng, p=p)
    Y = T.mean(axis=2).T
    splits = make_splits(40, kind="random", n_splits=3, seed=0)
    got = cross_validated_pls(X, Y, splits, n_components=5)
    assert got.shape == (3, Y.shape[1])
    for s, (tr, te) in enumerate(splits):
        pred = PLSRegression(n_components=5).fit(X[tr], Y[tr]).predict(X[te])
        ref = [stats.pearsonr(pred[:, j], Y[te][:, j])[0] for j in range(Y.shape[1])]
        np.testing.assert_allclose(got[s], ref, atol=1e-10)
    # informative features predict better than shuffled ones
    shuffled = cross_validated_pls(rng.permutation(X), Y, splits, n_components=5)
    assert np.nanmean(got) > np.nanmean(shuffled) + 0.1


@pytest.mark.parametrize("p", [30, 300])
def test_pls_consistency_matches_independent_reference(rng, p):
    X, signal, T = _data(rng, p=p, trials=8)
    Y1, Y2 = split_trial_halves(T)
    # the halves are the means of even and odd trials
    np.testing.assert_allclose(Y1, T[:, :, 0::2].mean(axis=2).T)
    np.testing.assert_allclose(Y2, T[:, :, 1::2].mean(axis=2).T)
    splits = make_splits(40, kind="random", n_splits=3, seed=2)
    got = calc_pls_consistency(X, Y1, Y2, splits, n_components=4)
    for s, (tr, te) in enumerate(splits):
        p1 = PLSRegression(n_components=4).fit(X[tr], Y1[tr]).predict(X[te])
        p2 = PLSRegression(n_components=4).fit(X[tr], Y2[tr]).predict(X[te])
        for j in range(Y1.shape[1]):
            r = stats.pearsonr(p1[:, j], Y2[te][:, j])[0]
            m = _sb(stats.pearsonr(p1[:, j], p2[:, j])[0])
            q = _sb(stats.pearsonr(Y1[te][:, j], Y2[te][:, j])[0])
            ref = r / np.sqrt(m * q) if m * q > 0 else np.nan
            if np.isnan(ref):
                assert np.isnan(got[s, j])
            else:
                assert got[s, j] == pytest.approx(ref, abs=1e-9)


def test_pls_consistency_pooled_per_group_is_domain_rep_flattened(rng):
    X, signal, T = _data(rng, p=100, q=6, trials=6)
    Y1, Y2 = split_trial_halves(T)
    groups = np.array(["a", "a", "b", "b", "b", "a"])
    splits = make_splits(40, kind="random", n_splits=2, seed=5)
    got = calc_pls_consistency(X, Y1, Y2, splits, n_components=3, groups=groups, pool=True)
    assert got.shape == (2, 2)
    for s, (tr, te) in enumerate(splits):
        for g, lab in enumerate(["a", "b"]):
            cols = groups == lab
            p1 = PLSRegression(n_components=3).fit(X[tr], Y1[tr][:, cols]).predict(X[te])
            p2 = PLSRegression(n_components=3).fit(X[tr], Y2[tr][:, cols]).predict(X[te])
            r = stats.pearsonr(p1.ravel(), Y2[te][:, cols].ravel())[0]
            m = _sb(stats.pearsonr(p1.ravel(), p2.ravel())[0])
            q = _sb(stats.pearsonr(Y1[te][:, cols].ravel(), Y2[te][:, cols].ravel())[0])
            assert got[s, g] == pytest.approx(r / np.sqrt(m * q), abs=1e-9)


def test_consistency_near_one_when_model_is_the_signal(rng):
    # features that contain the true signal: the corrected score approaches 1 while raw r does not
    n, q = 80, 5
    signal = rng.normal(size=(n, q))
    X = np.hstack([signal, 0.01 * rng.normal(size=(n, 3))])
    T = signal.T[:, :, None] + 1.5 * rng.normal(size=(q, n, 10))
    Y1, Y2 = split_trial_halves(T)
    splits = make_splits(n, kind="random", n_splits=10, seed=0)
    c, parts = calc_pls_consistency(X, Y1, Y2, splits, n_components=q, return_parts=True)
    assert np.nanmedian(parts["r"]) < 0.9
    assert np.nanmedian(c) == pytest.approx(1.0, abs=0.12)


def test_bad_inputs_raise_clear_errors(rng):
    X = rng.normal(size=(10, 4))
    with pytest.raises(NeuroxrError, match="10 images"):
        cross_validated_pls(X, rng.normal(size=(9, 2)), make_splits(10, n_splits=2))
    Y = rng.normal(size=(10, 2))
    Y[3, 1] = np.nan
    with pytest.raises(NeuroxrError, match="non-finite"):
        cross_validated_pls(X, Y, make_splits(10, n_splits=2))
