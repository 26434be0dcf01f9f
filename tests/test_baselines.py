"""Non-network baselines against independent numpy / scipy / scikit-learn computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import gabor_kernel
from sklearn.kernel_approximation import RBFSampler

from neuroxr.features.extract import iter_layer_activations
from neuroxr.features.zoo import load_model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (5, 20, 24)).astype(np.float32)


def _layers(name, px):
    return {n: a for n, _, a in iter_layer_activations(load_model(name, device="cpu"), px, batch_size=2)}


def test_pixels_is_the_stimuli_unchanged(images):
    got = _layers("pixels", images)
    assert list(got) == ["pixels"]
    np.testing.assert_array_equal(got["pixels"], images.reshape(5, -1))


def test_rff_matches_sklearn_rbfsampler(images):
    got = _layers("rff", images)["rff"]
    x = images.reshape(5, -1).astype(np.float64) / 255.0
    ref = RBFSampler(gamma=1.0 / x.shape[1], n_components=4089, random_state=0).fit(x).transform(x)
    assert got.shape == (5, 4089)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_gabor_energy_and_grid_match_scipy():
    img = np.random.default_rng(1).uniform(0, 255, (2, 64, 64)).astype(np.float32)
    got = _layers("gabor", img)
    assert list(got) == ["gabor_energy", "gabor_grid"] and got["gabor_grid"].shape == (2, 32 * 64)
    x = img[0].astype(np.float64) / 255.0
    energy = got["gabor_energy"][0].reshape(32, 64, 64)
    for i, (f, k) in enumerate([(0.1, 0), (0.2, 3), (0.4, 7)]):
        kern = gabor_kernel(f, theta=np.pi * k / 8)
        re = ndimage.correlate(x, kern.real, mode="mirror")
        im = ndimage.correlate(x, kern.imag, mode="mirror")
        idx = [0.1, 0.2, 0.3, 0.4].index(f) * 8 + k
        np.testing.assert_allclose(energy[idx], np.hypot(re, im), rtol=1e-4, atol=1e-4)
    grid = energy.reshape(32, 8, 8, 8, 8).mean(axis=(2, 4))
    np.testing.assert_allclose(got["gabor_grid"][0], grid.ravel(), rtol=1e-5, atol=1e-6)


def test_gist_grid_is_a_4x4_mean_of_the_energy(images):
    got = _layers("gist", images)
    assert list(got) == ["prefilter", "gist_energy", "gist_grid"]
    e = got["gist_energy"].reshape(5, 32, 128, 128)
    ref = e.reshape(5, 32, 4, 32, 4, 32).mean(axis=(3, 5)).reshape(5, -1)
    assert got["gist_grid"].shape == (5, 512)
    np.testing.assert_allclose(got["gist_grid"], ref, rtol=1e-4, atol=1e-6)


def test_gist_energy_matches_scipy_at_every_kernel_size():
    """GIST's Gabor energy at its lowest (69 x 69 kernels) and highest (11 x 11) frequency, from
    the prefiltered image, equals scipy's correlation with skimage's kernels (mirror edges)."""
    img = np.random.default_rng(2).uniform(0, 255, (1, 128, 128)).astype(np.float32)
    got = _layers("gist", img)
    pre = got["prefilter"][0].reshape(128, 128).astype(np.float64)
    energy = got["gist_energy"][0].reshape(32, 128, 128)
    for i, (f, k) in enumerate([(0.05, 0), (0.05, 2), (0.1, 5), (0.4, 1), (0.4, 7)]):
        kern = gabor_kernel(f, theta=np.pi * k / 8)
        ref = np.hypot(ndimage.correlate(pre, kern.real, mode="mirror"), ndimage.correlate(pre, kern.imag, mode="mirror"))
        idx = [0.05, 0.1, 0.2, 0.4].index(f) * 8 + k
        np.testing.assert_allclose(energy[idx], ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_gabor_banks_are_sized_per_frequency():
    """One bank per frequency, as large as that frequency's kernels (not the bank's largest)."""
    from neuroxr.features.baselines import _GaborEnergy

    mod = _GaborEnergy((0.05, 0.4))
    for g, f in enumerate((0.05, 0.4)):
        size = max(gabor_kernel(f, theta=np.pi * k / 8).shape[0] for k in range(8))
        assert getattr(mod, f"bank{g}").shape == (16, 1, size, size)
