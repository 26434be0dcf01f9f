"""RDMs, RDM comparisons and noise ceilings against scipy and numpy brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform
from scipy.stats import kendalltau, pearsonr, spearmanr

from neuroxr import rsa
from neuroxr.errors import NeuroxrError


def _features(n=25, p=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, p)) * rng.uniform(0.5, 3, (n, 1)) + rng.uniform(-2, 2, (n, 1))


def test_rdm_from_features_and_from_gram_equal_scipy_correlation_distance():
    X = _features()
    want = squareform(pdist(X, "correlation"))
    np.testing.assert_allclose(rsa.calc_rdm(X), want, atol=1e-12)
    K = X @ X.T
    got = rsa.calc_rdm(K, "gram", feature_sum=X.sum(1), n_features=X.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-10)
    # batched over layers
    X2 = _features(seed=1)
    got2 = rsa.calc_rdm(np.stack([K, X2 @ X2.T]), "gram", feature_sum=np.stack([X.sum(1), X2.sum(1)]),
                        n_features=np.array([60, 60]))
    np.testing.assert_allclose(got2[1], squareform(pdist(X2, "correlation")), atol=1e-10)


def test_rdm_from_responses_is_image_by_image():
    Y = _features(n=20, p=33, seed=2)  # (image, neuron)
    np.testing.assert_allclose(rsa.calc_rdm(Y, "responses"), 1 - np.corrcoef(Y), atol=1e-12)


def test_constant_image_gives_nan_row_not_a_crash():
    X = _features()
    X[3] = 1.0
    with np.errstate(all="raise"):
        r = rsa.calc_rdm(X)
    assert np.isnan(r[3, [0, 5]]).all() and r[3, 3] == 0 and np.isfinite(r[0, 1])


@pytest.mark.parametrize("method,ref", [("pearson", lambda a, b: pearsonr(a, b).statistic),
                                        ("spearman", lambda a, b: spearmanr(a, b).statistic)])
def test_compare_rdms_against_scipy(method, ref):
    A = np.stack([rsa.calc_rdm(_features(seed=s)) for s in range(3)])
    B = np.stack([rsa.calc_rdm(_features(seed=10 + s) + _features(seed=s)) for s in range(2)])
    got = rsa.compare_rdms(A, B, method)
    assert got.shape == (3, 2)
    iu = np.triu_indices(A.shape[-1], 1)
    for i, j in itertools.product(range(3), range(2)):
        assert got[i, j] == pytest.approx(ref(A[i][iu], B[j][iu]), abs=1e-12)
    assert rsa.compare_rdms(A[0], B[1], method) == pytest.approx(got[0, 1], abs=1e-14)


def test_kendall_tau_a():
    A = rsa.calc_rdm(_features(n=15, seed=3))
    B = rsa.calc_rdm(_features(n=15, seed=4) + _features(n=15, seed=3))
    iu = np.triu_indices(15, 1)
    # no ties: tau-a equals scipy's tau-b
    assert rsa.compare_rdms(A, B, "kendall") == pytest.approx(kendalltau(A[iu], B[iu]).statistic, abs=1e-12)
    # with ties: brute force over pairs, ties count as neither
    a = np.round(A[iu], 1)
    b = np.round(B[iu], 1)
    m = a.size
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(m) for j in range(i + 1, m))
    Ar, Br = np.zeros_like(A), np.zeros_like(B)
    Ar[iu], Br[iu] = a, b
    assert rsa.compare_rdms(Ar, Br, "tau-a") == pytest.approx(s / (m * (m - 1) / 2), abs=1e-12)


def test_unknown_methods_are_refused():
    with pytest.raises(NeuroxrError, match="pearson"):
        rsa.compare_rdms(np.zeros((3, 3)), np.zeros((3, 3)), "cosine")
    with pytest.raises(NeuroxrError, match="features"):
        rsa.calc_rdm(np.zeros((3, 3)), "nope")


def test_split_trials_with_nan_padding_matches_loops():
    rng = np.random.default_rng(5)
    t = rng.standard_normal((4, 6, 7))
    t[0, 1, 3:] = np.nan
    t[2, 5, 0] = np.nan  # a gap, not only trailing padding
    a, b = rsa.split_trials(t)
    for i, j in itertools.product(range(4), range(6)):
        v = t[i, j][np.isfinite(t[i, j])]
        assert a[i, j] == pytest.approx(v[0::2].mean()) and b[i, j] == pytest.approx(v[1::2].mean())
    # a random split (drawn by responses.draw_split_keys) uses every valid trial once: k // 2 in half A
    ra, rb = rsa.split_trials(t, seed=3)
    assert not np.allclose(ra, a)
    valid = np.isfinite(t)
    total = np.where(valid, t, 0).sum(-1)
    na = valid.sum(-1) // 2
    np.testing.assert_allclose(ra * na + rb * (valid.sum(-1) - na), total, atol=1e-12)


def test_noise_ceiling_spearman_brown_against_manual_computation():
    rng = np.random.default_rng(6)
    n_img, n_tr = 15, 8
    signal = rng.standard_normal((30, n_img))
    trials = signal[:, :, None] + 0.8 * rng.standard_normal((30, n_img, n_tr))
    groups = np.array(["VISp", "VISl", "VISal"])[np.arange(30) % 3]
    labels, ceil, r_half = rsa.calc_rdm_noise_ceiling(trials, groups)
    assert list(labels) == sorted(set(groups))
    for g, lab in enumerate(labels):
        m = groups == lab
        ra = 1 - np.corrcoef(trials[m][:, :, 0::2].mean(-1).T)
        rb = 1 - np.corrcoef(trials[m][:, :, 1::2].mean(-1).T)
        iu = np.triu_indices(n_img, 1)
        r = pearsonr(ra[iu], rb[iu]).statistic
        assert r_half[g] == pytest.approx(r, abs=1e-12)
        assert ceil[g] == pytest.approx(2 * r / (1 + r), abs=1e-12)
    # more noise, lower ceiling
    noisy = signal[:, :, None] + 3.0 * rng.standard_normal((30, n_img, n_tr))
    assert (rsa.calc_rdm_noise_ceiling(noisy, groups)[1] < ceil).all()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 12), p=st.integers(2, 30), seed=st.integers(0, 1000),
       scale=st.floats(0.1, 100), shift=st.floats(-100, 100))
def test_property_rdm_invariant_to_affine_feature_maps(n, p, seed, scale, shift):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    # Pearson across features per image: invariant to scaling and shifting each image's pattern
    Xt = X * scale + shift
    np.testing.assert_allclose(rsa.calc_rdm(Xt), rsa.calc_rdm(X), atol=1e-9)
    got = rsa.calc_rdm(Xt @ Xt.T, "gram", feature_sum=Xt.sum(1), n_features=p)
    np.testing.assert_allclose(got, squareform(pdist(Xt, "correlation"), checks=False), atol=1e-6)
