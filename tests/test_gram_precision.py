"""Issue 13: Gram matrices with float32 products ("float32", "mixed") against a float64 brute force."""
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from neuroxr.mapping import gram as G


def _reference(X):
    X64 = np.asarray(X, dtype=np.float64)
    Z = StandardScaler().fit_transform(X64)
    return {"gram": X64 @ X64.T, "gram_z": Z @ Z.T, "feature_sum": X64.sum(1)}


@pytest.mark.parametrize("precision", ["float32", "mixed"])
@pytest.mark.parametrize("use_numba", [True, False])
@pytest.mark.parametrize("offset", [0.3, 300.0])
def test_float32_products_against_float64(precision, use_numba, offset):
    """Relative to the float64 brute force: the raw Gram within 1e-6 even with large offsets (it is
    rebuilt from the centred product), the z-scored Gram within 1e-6 (float32) or 1e-12 (mixed)."""
    if use_numba and not G.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(0)
    X = (np.maximum(rng.standard_normal((41, 3001)), 0) * rng.uniform(0.1, 3, 3001) + offset).astype(np.float32)
    X[:, 7] = 2.5  # constant feature: z = 0
    acc = G.GramAccumulator(41, precision=precision, n_threads=2, use_numba=use_numba)
    for a, b in [(0, 5), (5, 1700), (1700, 3001)]:  # uneven pieces, strided views
        acc.add(X[:, a:b])
    got, ref = acc.result(), _reference(X)
    rel = {k: np.abs(got[k] - ref[k]).max() / np.abs(ref[k]).max() for k in ref}
    assert rel["feature_sum"] < 1e-12
    assert rel["gram"] < 1e-6
    # the centred raw Gram (what RSA uses) keeps its precision relative to its own size
    def cen(K):
        return K - K.mean(0) - K.mean(1)[:, None] + K.mean()

    assert np.abs(cen(got["gram"]) - cen(ref["gram"])).max() / np.abs(cen(ref["gram"])).max() < 1e-5
    assert rel["gram_z"] < (1e-12 if precision == "mixed" else 1e-6)
    assert 0 < rel["gram_z"] or precision == "mixed"  # float32 products are not float64 ones
    np.testing.assert_array_equal(got["gram_z"], got["gram_z"].T)


def test_nan_propagates_and_bad_precision_refused():
    X = np.ones((5, 40), np.float32) + np.arange(40, dtype=np.float32)[None] * np.arange(5)[:, None]
    X[2, 3] = np.nan
    for precision in ("float32", "mixed"):
        out = G.GramAccumulator(5, precision=precision).__class__(5, precision=precision)
        out.add(X)
        r = out.result()
        assert np.isnan(r["gram_z"]).any() and np.isnan(r["gram"]).any()
    with pytest.raises(G.GramInputError, match="precision"):
        G.GramAccumulator(5, precision="float16")
    with pytest.raises(G.GramInputError, match="ddof"):
        G.GramAccumulator(5, precision="mixed", ddof=1).add(X)
