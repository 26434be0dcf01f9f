"""Split-half reliability against an independent plain-numpy loop; laziness; chunk independence."""
from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroxr.responses import calc_splithalf_reliability


def _reference(x, n_splits, seed):
    """Plain loops: for every split and image, rank the trial slots by the seed's keys, keep the
    finite trials in that order, first k//2 -> half A, rest -> half B; Pearson r of the half means
    across images (images with < 2 trials left out), Spearman-Brown, mean over splits."""
    n_neu, n_img, n_tr = x.shape
    keys = np.random.default_rng(seed).random((n_splits, n_img, n_tr))
    out = np.empty(n_neu)
    for n in range(n_neu):
        corrected = []
        for s in range(n_splits):
            a, b = [], []
            for i in range(n_img):
                avail = [t for t in sorted(range(n_tr), key=lambda t: keys[s, i, t]) if np.isfinite(x[n, i, t])]
                k = len(avail)
                if k < 2:
                    continue
                a.append(sum(x[n, i, t] for t in avail[: k // 2]) / (k // 2))
                b.append(sum(x[n, i, t] for t in avail[k // 2:]) / (k - k // 2))
            a, b = np.array(a), np.array(b)
            da, db = a - a.mean(), b - b.mean()
            r = (da @ db) / np.sqrt((da @ da) * (db @ db))
            corrected.append(2 * r / (1 + r))
        out[n] = np.mean(corrected)
    return out


def _simulated(rng, n_neu=30, n_img=25, n_tr=10):
    signal = rng.normal(size=(n_neu, n_img, 1))
    noise = rng.uniform(0.1, 4.0, size=(n_neu, 1, 1))
    x = signal + noise * rng.normal(size=(n_neu, n_img, n_tr))
    # NaN padding: some images shown fewer times, for some neurons (two recording patterns)
    x[:, 4, 7:] = np.nan
    x[10:20, 9, 5:] = np.nan
    x[3, 11, 1:] = np.nan  # one trial only: image left out of that neuron's correlation
    return x


def test_matches_numpy_loop_with_nan_padding(rng):
    x = _simulated(rng)
    got = calc_splithalf_reliability(xr.DataArray(x, dims=("neuron", "image", "trial")), n_splits=20, seed=7)
    np.testing.assert_allclose(got.values, _reference(x, 20, 7), rtol=0, atol=1e-10)
    assert got.dims == ("neuron",) and got.attrs["n_splits"] == 20 and got.attrs["seed"] == 7


def test_odd_trial_count_and_default_splits(rng):
    x = _simulated(rng, n_neu=6, n_img=12, n_tr=7)
    got = calc_splithalf_reliability(xr.DataArray(x, dims=("neuron", "image", "trial")))
    np.testing.assert_allclose(got.values, _reference(x, 100, 0), rtol=0, atol=1e-10)


def test_lazy_and_independent_of_chunking(rng):
    x = _simulated(rng, n_neu=50)
    da = xr.DataArray(x.astype("f4"), dims=("neuron", "image", "trial"),
                      coords={"neuron": np.arange(100, 150), "area": ("neuron", ["VISp"] * 50)})
    eager = calc_splithalf_reliability(da, n_splits=15, seed=1)

    def refuse(*a, **k):
        raise AssertionError("computed eagerly")

    with dask.config.set(scheduler=refuse):
        lazy = calc_splithalf_reliability(da.chunk({"neuron": 7, "image": 5}), n_splits=15, seed=1)
    assert lazy.chunks is not None
    assert lazy.chunks[0] == (7,) * 7 + (1,)
    np.testing.assert_allclose(lazy.values, eager.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(lazy["neuron"].values, np.arange(100, 150))
    assert list(lazy["area"].values) == ["VISp"] * 50


def test_reliability_tracks_the_noise(rng):
    """More trial noise, lower reliability; noiseless responses give 1."""
    n_img, n_tr = 40, 20
    signal = rng.normal(size=(1, n_img, 1))
    noise = np.array([0.0, 0.5, 2.0, 8.0])[:, None, None]
    x = signal + noise * rng.normal(size=(4, n_img, n_tr))
    r = calc_splithalf_reliability(xr.DataArray(x, dims=("neuron", "image", "trial")), n_splits=50).values
    assert r[0] == pytest.approx(1.0, abs=1e-12)
    assert r[0] > r[1] > r[2] > r[3]
    # expected value of the corrected r for Gaussian noise: var_s / (var_s + noise^2 / n_tr)
    np.testing.assert_allclose(r[1], 1 / (1 + 0.25 / n_tr), atol=0.02)


@settings(max_examples=25, deadline=None)
@given(n_tr=st.integers(2, 9), n_img=st.integers(3, 9), seed=st.integers(0, 10))
def test_property_matches_reference(n_tr, n_img, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, n_img, n_tr)) + rng.normal(size=(3, n_img, 1))
    if n_tr > 2:
        x[rng.integers(0, 3), rng.integers(0, n_img), n_tr - 1] = np.nan
    got = calc_splithalf_reliability(xr.DataArray(x, dims=("neuron", "image", "trial")), n_splits=5, seed=seed)
    # with 3 images r can come close to -1, where 2r/(1+r) amplifies rounding: relative tolerance
    np.testing.assert_allclose(got.values, _reference(x, 5, seed), rtol=1e-9, atol=1e-10)


def test_refuses_bad_dims():
    from neuroxr.schema import SchemaError

    with pytest.raises(SchemaError, match=r"'trials' has dims \('image', 'neuron', 'trial'\)"):
        calc_splithalf_reliability(xr.DataArray(np.ones((2, 3, 4)), dims=("image", "neuron", "trial")))
    with pytest.raises(SchemaError, match="at least 2"):
        calc_splithalf_reliability(xr.DataArray(np.ones((2, 3, 1)), dims=("neuron", "image", "trial")))
