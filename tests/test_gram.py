"""The streamed Gram matrices against scikit-learn's StandardScaler and plain float64 products."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import StandardScaler

from neuroxr.mapping import gram as G

KERNELS = [pytest.param(True, id="numba"), pytest.param(False, id="numpy")]


def _reference(X):
    X64 = np.asarray(X, dtype=np.float64)
    Z = StandardScaler().fit_transform(X64)
    return {"gram": X64 @ X64.T, "gram_z": Z @ Z.T, "feature_sum": X64.sum(1)}


def _relu_features(n, p, seed=0, offset=0.3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(dtype) + dtype(offset)
    return np.maximum(X, 0, out=X)


@pytest.mark.parametrize("use_numba", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_accumulator_equals_standard_scaler_and_float64_products(use_numba, dtype):
    if use_numba and not G.HAVE_NUMBA:
        pytest.skip("numba not installed")
    X = _relu_features(37, 1300, dtype=dtype)
    X[:, 5] = 2.5  # constant feature -> z = 0 (StandardScaler's scale 1 on a centred constant)
    X[:, 9] = 0.0
    acc = G.GramAccumulator(37, chunk=256, use_numba=use_numba)
    # uneven pieces, including a strided (non-contiguous) view and a piece larger than a chunk
    for a, b in [(0, 3), (3, 700), (700, 701), (701, 1300)]:
        acc.add(X[:, a:b])
    got, ref = acc.result(), _reference(X)
    assert acc.n_features == 1300
    for k in ("gram", "gram_z", "feature_sum"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-10 * np.abs(ref[k]).max(), err_msg=k)
    assert np.array_equal(got["gram_z"], got["gram_z"].T)


@pytest.mark.parametrize("use_numba", KERNELS)
def test_large_offsets_keep_full_precision(use_numba):
    """Features far from zero (mean/sd ~ 1e5): centring in the kernel, not after the product."""
    if use_numba and not G.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(1)
    X = 1e5 + rng.standard_normal((20, 300))
    ref = _reference(X)["gram_z"]
    got = G.calc_zscored_gram(X, chunk=64) if use_numba else \
        _accumulate(X, use_numba=False)["gram_z"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def _accumulate(X, **kw):
    acc = G.GramAccumulator(X.shape[0], **kw)
    acc.add(X)
    return acc.result()


def test_numba_and_numpy_kernels_agree_and_nan_propagates():
    X = _relu_features(12, 900, seed=3)
    ref = _reference(X)
    for use in (True, False):
        got = _accumulate(X, use_numba=use)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-9, err_msg=f"{k} numba={use}")
    X[4, 17] = np.nan
    for use in (True, False):
        out = _accumulate(X, use_numba=use)
        assert np.isnan(out["gram_z"]).any() and np.isnan(out["gram"]).any(), use


def test_torch_backend_and_threads_equal_numpy():
    X = _relu_features(25, 2000, seed=4)
    ref = _reference(X)
    for kw in ({"backend": "torch"}, {"n_threads": 2}, {"n_threads": 3, "chunk": 100}):
        np.testing.assert_allclose(G.calc_zscored_gram(X, **kw), ref["gram_z"], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(G.calc_gram(X, **kw), ref["gram"], rtol=1e-12, atol=1e-9)
    t = _accumulate(X, backend="torch")
    np.testing.assert_allclose(t["feature_sum"], ref["feature_sum"], rtol=1e-12)


def test_zscore_columns_equals_standard_scaler_with_ddof():
    X = _relu_features(15, 40, seed=5, dtype=np.float64)
    np.testing.assert_allclose(G.zscore_columns(X), StandardScaler().fit_transform(X), rtol=1e-12, atol=1e-12)
    Xc = X - X.mean(0)
    np.testing.assert_allclose(G.zscore_columns(X, ddof=1), Xc / Xc.std(0, ddof=1), rtol=1e-12, atol=1e-12)


def test_bad_shapes_are_refused():
    acc = G.GramAccumulator(5)
    with pytest.raises(ValueError, match=r"expected \(5, features\)"):
        acc.add(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="backend"):
        G.GramAccumulator(5, backend="cupy")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 9), p=st.integers(1, 80), chunk=st.integers(1, 33), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), offset=st.sampled_from([0.0, 1.0, -50.0]))
def test_property_streamed_equals_scaler(n, p, chunk, seed, scale, offset):
    rng = np.random.default_rng(seed)
    X = (offset + scale * rng.standard_normal((n, p))).astype(np.float32)
    X[:, rng.random(p) < 0.2] = np.float32(offset)  # some constant features
    ref = _reference(X)
    got = _accumulate(X, chunk=chunk)
    tol = 1e-9 * max(1.0, np.abs(ref["gram_z"]).max())
    np.testing.assert_allclose(got["gram_z"], ref["gram_z"], rtol=0, atol=tol)
    np.testing.assert_allclose(got["gram"], ref["gram"], rtol=1e-10, atol=1e-10 * np.abs(ref["gram"]).max())


# --- backend "auto" and benchmarks/gpu_check.sh ------------------------------------------------
def test_auto_backend_is_numpy_without_cuda_and_gram_unchanged():
    import torch

    from neuroxr.mapping.backend import resolve_backend
    from neuroxr.mapping.gram import GramAccumulator

    want = "torch:cuda" if torch.cuda.is_available() else "numpy"
    assert resolve_backend("auto") == want and GramAccumulator(3).backend == want
    assert resolve_backend("torch") == "torch" and resolve_backend("numpy") == "numpy"


def _gpu_check(env_extra):
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "NXR_GPU_CHECK_P": "20000", "NXR_GPU_CHECK_NEURONS": "300",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **env_extra}
    return subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=600)


def test_gpu_check_on_torch_cpu_compares_against_numpy():
    proc = _gpu_check({"NXR_GPU_CHECK_DEVICE": "torch", "NXR_GPU_CHECK_MODEL": "alexnet"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("gram ") and "max|dK|" in ln for ln in lines)
    assert any(ln.startswith("scoring ") and "max|dr|" in ln for ln in lines)
    # the whole extraction, device code (torch) against the CPU path, the same layers kept
    assert any(ln.startswith("extract ") and "alexnet" in ln and "same kept: True" in ln for ln in lines), lines
    assert lines[-1] == "gpu_check: OK"


def test_gpu_check_without_cuda_exits_clearly():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = _gpu_check({})
    assert proc.returncode == 3 and "no CUDA device" in proc.stdout
