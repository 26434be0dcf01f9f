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
