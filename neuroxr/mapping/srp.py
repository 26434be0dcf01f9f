"""The paper's sparse random projection: scikit-learn's matrix, drawn fast, applied chunk by chunk.

scikit-learn's ``SparseRandomProjection`` draws the non-zero positions of each component with
one Python call of ``RandomState.randint`` per position (about four million calls at p = 10^6
and 4,089 components): that drawing is most of the paper pipeline's time, and it is repeated
for every layer.  :func:`calc_srp_matrix` draws the same positions from the same stream of
random numbers with one vectorised call per component (``randint(p, size=m)`` gives the same
values as ``m`` scalar calls, and a repeated position is redrawn from the next value, as
scikit-learn's set-based sampling does), so the matrix equals scikit-learn's exactly.
:class:`SRPCache` keeps it per (width, components, seed) and :func:`project_srp` applies it
over feature chunks in float64.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
from sklearn.random_projection import johnson_lindenstrauss_min_dim
from sklearn.utils.random import sample_without_replacement

from ..errors import NeuroxrError

__all__ = ["calc_srp_matrix", "find_n_components", "project_srp", "SRPCache", "SRP_EPS"]

#: the Johnson-Lindenstrauss distortion of the paper's projection
SRP_EPS = 0.1


def find_n_components(n_images: int, n_components="auto", eps: float = SRP_EPS) -> int:
    """Components of the projection: scikit-learn's ``'auto'`` (Johnson-Lindenstrauss) or the number given."""
    if n_components == "auto":
        return int(johnson_lindenstrauss_min_dim(n_images, eps=eps))
    k = int(n_components)
    if k < 1:
        raise NeuroxrError(f"sparse random projection: n_components must be >= 1 or 'auto', got {n_components!r}")
    return k


def _tracking_sample(rng, p: int, m: int) -> np.ndarray:
    """``m`` distinct positions of ``range(p)`` in draw order, redrawing repeats from the stream."""
    draw = rng.randint(p, size=m)
    srt = np.sort(draw)
    if not (srt[1:] == srt[:-1]).any():  # the common case: no repeat among the m draws
        return draw.astype(np.int64)
    seen, out = set(), []
    values = draw.tolist()
    while True:
        for v in values:
            if v not in seen:
                seen.add(v)
                out.append(v)
        if len(out) == m:
            return np.asarray(out, dtype=np.int64)
        values = rng.randint(p, size=m - len(out)).tolist()


def _positions(rng, p: int, m: int) -> np.ndarray:
    """scikit-learn's ``sample_without_replacement(p, m, method='auto')`` on ``rng``."""
    ratio = m / p if p else 1.0
    if 0.01 < ratio < 0.99 or ratio >= 0.2:
        return np.asarray(sample_without_replacement(p, m, random_state=rng), dtype=np.int64)
    return _tracking_sample(rng, p, m)


def calc_srp_matrix(n_features: int, n_components: int, seed: int) -> sp.csr_matrix:
    """scikit-learn's sparse random matrix (component, feature), float64, density ``1 / sqrt(p)``.

    Equal entry for entry to ``SparseRandomProjection(n_components, density='auto',
    random_state=seed).fit(X).components_`` (before its cast to ``X``'s dtype).
    """
    p, k = int(n_features), int(n_components)
    density = 1.0 / np.sqrt(p)
    rng = np.random.RandomState(seed)
    if density >= 1:
        return sp.csr_matrix((rng.binomial(1, 0.5, (k, p)) * 2 - 1) / np.sqrt(k))
    indices, indptr = [], [0]
    for _ in range(k):
        m = rng.binomial(p, density)
        indices.append(_positions(rng, p, m))
        indptr.append(indptr[-1] + m)
    idx = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    signs = (rng.binomial(1, 0.5, size=idx.size) * 2 - 1).astype(np.float64)
    mat = sp.csr_matrix((signs, idx, np.asarray(indptr)), shape=(k, p))
    return np.sqrt(1 / density) / np.sqrt(k) * mat


class SRPCache:
    """Projection matrices by (features, components, seed), each drawn once, kept as feature-major CSR."""

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def matrix(self, n_features: int, n_components: int, seed: int) -> sp.csr_matrix:
        """The (feature, component) CSR transpose of :func:`calc_srp_matrix`."""
        key = (int(n_features), int(n_components), int(seed))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        mat = calc_srp_matrix(*key).T.tocsr()
        with self._lock:
            self._cache[key] = mat
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return mat


#: the process's matrices (the same width and seed recur across layers and models)
DEFAULT_CACHE = SRPCache()


def project_srp(X, n_components="auto", seed: int = 0, *, chunk: int = 16384, cache: SRPCache | None = None):
    """``X (image, feature)`` -> ``X @ components.T`` (image, component) float64, over feature chunks.

    The answer of ``SparseRandomProjection(n_components, eps=0.1, random_state=seed)
    .fit_transform(X)`` in float64; with ``p <= n_components`` features, ``X`` itself, as
    neuroxr's extraction stores it.
    """
    n, p = X.shape
    k = find_n_components(n, n_components)
    if p <= k:
        return np.asarray(X, dtype=np.float64)
    PT = (cache or DEFAULT_CACHE).matrix(p, k, seed)
    out = np.zeros((k, n))
    for s in range(0, p, chunk):
        block = np.ascontiguousarray(np.asarray(X[:, s:s + chunk], dtype=np.float64).T)  # (c, n)
        out += PT[s:s + chunk].T @ block
    return out.T.copy()
