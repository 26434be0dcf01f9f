"""The brute-force duplicate check of iter_layer_activations: exact equality, first row tried first."""
import numpy as np

from neuroxr.features.hooks import _same


def test_same_is_exact_equality_with_nan():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7)).astype(np.float32)
    assert _same(a, a.copy())
    b = a.copy()
    b[4, 6] += 1e-6  # differs only after the first row
    assert not _same(a, b) and not np.array_equal(a, b)
    c = a.copy()
    c[0, 0] = -c[0, 0]
    assert not _same(a, c)
    assert not _same(a, a[:, :6])
    n = a.copy()
    n[2, 3] = np.nan
    assert _same(n, n.copy()) and not _same(a, n)
    assert _same(np.empty((0, 3)), np.empty((0, 3)))
