"""Issue 13: the device path of the one-pass extraction, run on the CPU through torch.

On a GPU the one pass keeps every layer on the device: fingerprints and Gram matrices are computed
there with torch (``backend="torch:cuda"``, chosen from the model's device).  ``backend="torch:cpu"``
runs that code here; its Gram matrices must equal the CPU path's (compiled kernel and BLAS) and a
float64 NumPy reference on the activations themselves, with the same layers kept.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuroxr.features.hooks import iter_layer_activations  # noqa: E402
from neuroxr.features.run import layer_backend, reduce_model  # noqa: E402
from neuroxr.features.zoo import load_model  # noqa: E402


@pytest.fixture(scope="module")
def model_and_images():
    images = np.random.default_rng(3).integers(0, 256, (14, 40, 40)).astype(np.uint8)
    return load_model("alexnet", weights="random", device="cpu"), images


def test_device_code_equals_the_cpu_path_and_numpy(model_and_images):
    loaded, images = model_and_images
    lines = []
    dev = reduce_model(loaded, images, backend="torch:cpu", one_pass=True, log=lines.append)
    cpu = reduce_model(loaded, images, one_pass=True)
    assert any("torch:cpu on the device" in m for m in lines), lines
    assert list(dev["layer_name"].values) == list(cpu["layer_name"].values)
    for var in ("gram", "gram_z", "feature_sum"):
        a, b = dev[var].values, cpu[var].values
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max(), var
    # the float64 reference from the activations themselves (every distinct layer, brute force)
    acts = dict((name, x) for name, _, x in iter_layer_activations(loaded, images, batch_size=len(images)))
    assert list(acts) == list(dev["layer_name"].values)
    for i, (name, x) in enumerate(acts.items()):
        x = x.astype(np.float64)
        sd = x.std(axis=0)
        z = np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
        np.testing.assert_allclose(dev["gram"].values[i], x @ x.T, rtol=1e-9, atol=1e-9 * np.abs(x @ x.T).max())
        np.testing.assert_allclose(dev["gram_z"].values[i], z @ z.T, rtol=1e-8, atol=1e-8 * x.shape[1])
        np.testing.assert_allclose(dev["feature_sum"].values[i], x.sum(axis=1), rtol=1e-9, atol=1e-6)


def test_device_code_with_a_projection(model_and_images):
    loaded, images = model_and_images
    dev = reduce_model(loaded, images, backend="torch:cpu", one_pass=True, srp=64)
    cpu = reduce_model(loaded, images, one_pass=True, srp=64)
    np.testing.assert_allclose(dev["srp"].values, cpu["srp"].values, rtol=1e-5, atol=1e-5)


def test_the_backend_follows_the_model():
    class M:  # a loaded model's device, as load_model records it
        device = "cuda:0"

    assert layer_backend(M()) == "torch:cuda:0"
    M.device = "cpu"
    assert layer_backend(M()) == "numpy"
