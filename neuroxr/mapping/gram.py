"""Gram matrices of layer activations, streamed over feature chunks.

Everything neuroxr scores is computed from three per-layer summaries of the activations
``X`` (image, feature): the Gram matrix ``X X^T``, the Gram matrix of the features z-scored
over images ``Z Z^T`` and each image's feature sum.  :class:`GramAccumulator` forms all three
in one pass over ``X``, chunk by chunk, in float64, so memory stays at one chunk whatever
the number of features.

How it is fast
--------------
Forming ``Z Z^T`` costs ``n^2 p`` multiply-adds (SYRK); everything else is ``O(n p)`` but,
done as separate NumPy passes (cast to float64, mean, centre, variance, scale), it would
cost more than the product itself.  On the CPU one compiled kernel (Numba, when installed)
reads each float32 chunk twice while it sits in cache: the first pass gathers the
per-feature sums (shifted by the first image, for stability), the second writes the z-scores (and, when the raw Gram is wanted, the float64 copy) into a reused
buffer that BLAS then multiplies.  Both the kernel and the SYRK (called through ctypes)
release the GIL, so threads take alternate chunks and run side by side.  Without Numba the same arithmetic runs as NumPy passes (about 2.5x slower).
With ``backend="torch:cuda"`` the chunk is moved to the GPU and z-scored and multiplied
there.

Constant features (variance at round-off level, scikit-learn's ``StandardScaler``
criterion ``var <= n eps var + (n mean eps)^2``) get z = 0, as scikit-learn's scale of 1
on a centred constant gives.  A NaN anywhere in a feature makes the Gram matrices NaN (the
layer is then reported as non-finite rather than silently scored).
"""
from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import NeuroxrError
from ..runtime import available_cores, single_threaded_blas, thread_pool
from .backend import get_backend, resolve_backend

__all__ = ["GramAccumulator", "GramInputError", "calc_gram", "calc_zscored_gram", "zscore_columns", "HAVE_NUMBA",
           "DEFAULT_CHUNK", "FLOAT32_CHUNK", "PRECISIONS", "blas_threads", "blas_budget"]


class GramInputError(NeuroxrError, ValueError):
    """Arguments or feature chunks a Gram accumulator cannot take."""

#: features per chunk: a (118, 1024) float64 block per buffer and thread stays near L2
DEFAULT_CHUNK = 1024
_EPS = float(np.finfo(np.float64).eps)

try:  # pragma: no branch
    import numba as _numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; kept for new Pythons without wheels
    _numba = None
    HAVE_NUMBA = False


def _mean_and_scale(xf, ddof):
    """Per-feature mean and 1 / standard deviation of ``xf`` (n, c) float64 over images, from sums
    shifted by the first image; 0 for a constant feature (variance within round-off of zero), NaN
    where the feature holds NaN.  What the compiled kernels compute in their first pass."""
    n = xf.shape[0]
    x0 = xf[0]
    d = xf - x0
    s1 = d.sum(axis=0)
    s2 = np.einsum("ij,ij->j", d, d)
    m = s1 / n
    var = (s2 - s1 * m) / (n - ddof)
    mean = m + x0
    const = (var <= n * _EPS * var + (n * mean * _EPS) ** 2) | (var <= 0.0)
    inv = np.zeros_like(var)
    ok = ~const
    inv[ok] = 1.0 / np.sqrt(var[ok])
    inv[np.isnan(var)] = np.nan
    return mean, inv


def _flat_rows(x):
    """``x`` (n, c) as a 1-D unit-stride view and its row stride (copied first unless its rows have
    unit stride): row i is ``flat[i * rs : i * rs + c]``, the layout the compiled kernels read."""
    item = x.itemsize
    if x.shape[1] > 1 and x.strides[1] != item or x.strides[0] % item or x.strides[0] < 0:
        x = np.ascontiguousarray(x)
    n, c = x.shape
    rs = x.strides[0] // item if n > 1 else c
    return np.lib.stride_tricks.as_strided(x, shape=((n - 1) * rs + c,), strides=(item,), writeable=False), rs


def _zscore_kernel_py(x, z, raw, ddof, want_raw):
    """Reference semantics of the compiled kernel (also the fallback without Numba).

    x (n, c) float; z (n, c) float64 out: z-scores; raw (n, c) float64 out: x as float64
    (when ``want_raw``).
    """
    xf = np.asarray(x, dtype=np.float64)
    mean, inv = _mean_and_scale(xf, ddof)
    np.subtract(xf, mean, out=z)
    z *= inv
    if want_raw:
        raw[...] = xf


if HAVE_NUMBA:
    @_numba.njit(nogil=True, cache=True, error_model="numpy")
    def _zscore_kernel_flat(flat, rs, n, c, z, raw, ddof, want_raw):  # pragma: no cover - compiled
        # flat: 1-D contiguous view of the chunk, row i at flat[i * rs : i * rs + c] (unit stride,
        # so LLVM vectorises the loops over j; a 2-D strided view would not be)
        s1 = np.zeros(c)
        s2 = np.zeros(c)
        x0 = np.empty(c)
        for j in range(c):
            x0[j] = flat[j]
        # pass 1: shifted sums per feature (and the float64 copy)
        for i in range(n):
            xi = flat[i * rs:i * rs + c]
            if want_raw:
                ri = raw[i]
                for j in range(c):
                    v = np.float64(xi[j])
                    ri[j] = v
                    d = v - x0[j]
                    s1[j] += d
                    s2[j] += d * d
            else:
                for j in range(c):
                    d = np.float64(xi[j]) - x0[j]
                    s1[j] += d
                    s2[j] += d * d
        mean = np.empty(c)
        inv = np.empty(c)
        for j in range(c):
            m = s1[j] / n
            var = (s2[j] - s1[j] * m) / (n - ddof)
            mu = m + x0[j]
            mean[j] = mu
            if var != var:  # NaN in the feature: propagate
                inv[j] = np.nan
            elif var <= 0.0 or var <= n * 2.220446049250313e-16 * var + (n * mu * 2.220446049250313e-16) ** 2:
                inv[j] = 0.0
            else:
                inv[j] = 1.0 / np.sqrt(var)
        # pass 2: z-scores
        for i in range(n):
            xi = flat[i * rs:i * rs + c]
            zi = z[i]
            for j in range(c):
                zi[j] = (np.float64(xi[j]) - mean[j]) * inv[j]
    def _zscore_kernel(x, z, raw, ddof, want_raw):
        """The compiled kernel on a chunk ``x`` (n, c) whose rows have unit stride (else copied)."""
        flat, rs = _flat_rows(x)
        _zscore_kernel_flat(flat, rs, *x.shape, z, raw, ddof, want_raw)
else:  # pragma: no cover
    _zscore_kernel = _zscore_kernel_py


def _center_kernel_py(x, xc, z, fsum, v):
    """Reference semantics of the compiled float32-product kernel (also its fallback without Numba).

    x (n, c) float in; xc (n, c) float32, z (n, c) float32 or float64 out: the features centred
    over images and their z-scores (ddof 0); fsum, v (n,) float64 accumulate each image's feature sum and
    ``(x - mean) . mean``.  Returns ``mean . mean`` (float64).
    """
    xf = np.asarray(x, dtype=np.float64)
    mean, inv = _mean_and_scale(xf, 0)
    c64 = xf - mean
    xc[...] = c64
    z[...] = c64 * inv
    fsum += xf.sum(axis=1)
    v += c64 @ mean
    return float(mean @ mean)


if HAVE_NUMBA:
    # reassociation lets LLVM vectorise the per-image sums (round-off order only; NaN and inf kept)
    @_numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def _center_kernel_flat(flat, rs, n, c, xc, z, fsum, v):  # pragma: no cover - compiled
        s1 = np.zeros(c)
        s2 = np.zeros(c)
        x0 = np.empty(c)
        for j in range(c):
            x0[j] = flat[j]
        for i in range(n):
            xi = flat[i * rs:i * rs + c]
            acc = 0.0
            for j in range(c):
                w = np.float64(xi[j])
                acc += w
                d = w - x0[j]
                s1[j] += d
                s2[j] += d * d
            fsum[i] += acc
        mean = np.empty(c)
        inv = np.empty(c)
        mm = 0.0
        for j in range(c):
            m = s1[j] / n
            var = (s2[j] - s1[j] * m) / n
            mu = m + x0[j]
            mean[j] = mu
            mm += mu * mu
            if np.isnan(var):
                inv[j] = np.nan
            elif var <= 0.0 or var <= n * 2.220446049250313e-16 * var + (n * mu * 2.220446049250313e-16) ** 2:
                inv[j] = 0.0
            else:
                inv[j] = 1.0 / np.sqrt(var)
        for i in range(n):
            xi = flat[i * rs:i * rs + c]
            ci = xc[i]
            zi = z[i]
            acc = 0.0
            for j in range(c):
                d = np.float64(xi[j]) - mean[j]
                ci[j] = d  # rounded to the buffers' dtype (float32 centred; z float32 or float64)
                zi[j] = d * inv[j]
                acc += d * mean[j]
            v[i] += acc
        return mm

    def _center_kernel(x, xc, z, fsum, v):
        """The compiled float32-product kernel on ``x`` (n, c) with unit-stride rows (else copied)."""
        flat, rs = _flat_rows(x)
        return _center_kernel_flat(flat, rs, *x.shape, xc, z, fsum, v)
else:  # pragma: no cover
    _center_kernel = _center_kernel_py


def _pick_kernel(use_numba):
    """The compiled kernel unless ``use_numba`` is False (or Numba is missing)."""
    return _zscore_kernel if (use_numba is None and HAVE_NUMBA) or use_numba else _zscore_kernel_py


def zscore_columns(x, *, ddof: int = 0, use_numba: bool | None = None) -> np.ndarray:
    """z-score the columns of ``x`` (n, c) over rows in float64 (the kernel behind the Gram).

    Equals ``sklearn.preprocessing.StandardScaler().fit_transform(x)`` to round-off (constant
    columns give 0).  ``use_numba=False`` forces the NumPy implementation.
    """
    x = _as_float(np.asarray(x))
    z = np.empty(x.shape)
    kernel = _pick_kernel(use_numba)
    kernel(x, z, z, ddof, False)
    return z


def _as_float(x):
    if x.dtype in (np.float32, np.float64):
        return x
    return x.astype(np.float64)


def _cython_blas_syrk(name: str = "dsyrk", accumulate: bool = True):
    """scipy's Fortran ``dsyrk``/``ssyrk`` through ctypes, which releases the GIL during the call.

    ``scipy.linalg.blas.dsyrk`` (f2py) holds the GIL, so threads feeding it chunks run one at a
    time; called through ctypes the products of several threads run side by side.  The returned
    ``syrk(C, b)`` sets the upper triangle of ``C`` (n, n), Fortran order, to ``b b^T`` (plus ``C``
    itself when ``accumulate``); ``b`` (n, c) C-contiguous, of the routine's dtype.  Returns
    ``None`` where the capsule is not available (then the f2py wrapper is used).
    """
    try:
        import ctypes

        import scipy.linalg.cython_blas as cb

        cap = cb.__pyx_capi__[name]
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
        get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
        get_ptr.restype, get_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        fn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 10))(get_ptr(cap, get_name(cap)))
    except (ImportError, KeyError, AttributeError, TypeError, ValueError):  # pragma: no cover - no capsules
        return None
    c_int, c_char, byref = ctypes.c_int, ctypes.c_char, ctypes.byref
    real = ctypes.c_double if name == "dsyrk" else ctypes.c_float
    upper, trans_t, one, beta = c_char(b"U"), c_char(b"T"), real(1.0), real(1.0 if accumulate else 0.0)

    def syrk(C, b):
        # b (n, c) C-contiguous is the Fortran matrix b^T (c, n), so this is C := A^T A (+ C), A = b^T,
        # k = c, lda = c
        n, c = b.shape
        fn(byref(upper), byref(trans_t), byref(c_int(n)), byref(c_int(c)), byref(one), b.ctypes.data,
           byref(c_int(max(1, c))), byref(beta), C.ctypes.data, byref(c_int(n)))
        return C

    return syrk


_SYRK_GIL_FREE = _cython_blas_syrk("dsyrk", accumulate=True)
_SSYRK_GIL_FREE = _cython_blas_syrk("ssyrk", accumulate=False)


def _syrk32_into(K, C32, b):
    """K (float64, F-order, upper triangle) += b b^T computed in float32 (b (n, c) C-contiguous float32)."""
    if b.shape[1] == 0:
        return K
    if _SSYRK_GIL_FREE is not None and C32.flags.f_contiguous and b.flags.c_contiguous:
        _SSYRK_GIL_FREE(C32, b)
    else:
        from scipy.linalg.blas import ssyrk

        C32[...] = ssyrk(1.0, b.T, trans=1)
    K += C32  # only the upper triangle is meaningful; _symmetrize reads that one
    return K


def _syrk(K, b):
    """K (F-order, upper triangle) += b b^T, b (n, c) C-contiguous float64."""
    if _SYRK_GIL_FREE is not None and b.flags.c_contiguous and K.flags.f_contiguous and b.dtype == np.float64 \
            and b.shape[1] > 0:
        return _SYRK_GIL_FREE(K, b)
    from scipy.linalg.blas import dsyrk

    return dsyrk(1.0, b.T, c=K, trans=1, beta=1.0, overwrite_c=1)


def _symmetrize(K):
    K = np.triu(K)
    return K + np.triu(K, 1).T


_CONTROLLER = None


def _blas_controller() -> ThreadpoolController:
    """One scan of the loaded BLAS libraries per process (a scan costs milliseconds)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER


def blas_threads() -> int:
    """The most threads any loaded BLAS library would start now."""
    return max((lib.num_threads for lib in _blas_controller().lib_controllers), default=1)


@contextlib.contextmanager
def blas_budget():
    """Hold BLAS to one thread in the block: the accumulator's own threads are the parallelism.

    One owner of parallelism: T Python threads each calling a BLAS that starts its own threads
    put T x BLAS busy threads on the process's cores.  Measured on a loaded 2-core machine at
    p = 3e5: 2 threads x 1 BLAS thread 0.23 s, 1 thread x 2 BLAS threads 3.1 s, 2 x 2 11.7 s;
    so the accumulator takes ``available_cores()`` threads and BLAS one.  Inside an already
    limited caller (a Dask task under :func:`neuroxr.runtime.single_threaded_blas`) the block
    costs nothing (no library scan).
    """
    if blas_threads() <= 1:
        yield
    else:
        with single_threaded_blas():
            yield


class _Part:
    """One thread's share of a CPU accumulation: its own buffers and triangles."""

    def __init__(self, n, chunk, raw, zscored, ddof, kernel):
        self.n, self.chunk, self.raw, self.zscored, self.ddof, self.kernel = n, chunk, raw, zscored, ddof, kernel
        self.gram = np.zeros((n, n), order="F") if raw else None
        self.gram_z = np.zeros((n, n), order="F") if zscored else None
        self.fsum = np.zeros(n)
        self.zbuf = np.empty((n, chunk)) if zscored else None
        self.rbuf = np.empty((n, chunk)) if raw else None

    def _buf(self, buf, c):
        return buf[:, :c] if c == self.chunk else np.empty((self.n, c))

    def add(self, x):
        c = x.shape[1]
        zb = self._buf(self.zbuf, c) if self.zscored else None
        rb = self._buf(self.rbuf, c) if self.raw else None
        if self.zscored:
            self.kernel(x, zb, zb if rb is None else rb, self.ddof, self.raw)
            self.gram_z = _syrk(self.gram_z, zb)
        elif self.raw:
            np.copyto(rb, x)
        if self.raw:
            self.fsum += rb.sum(axis=1)
            self.gram = _syrk(self.gram, rb)
        else:
            self.fsum += x.sum(axis=1, dtype=np.float64)

    def add_many(self, x, starts):
        for s in starts:
            self.add(x[:, s:s + self.chunk])
        return self


class _Part32:
    """One thread's share of an accumulation with float32 products and float64 sums across chunks.

    Each chunk is centred over images in float64 (the kernel), rounded to float32 and multiplied
    by ``ssyrk``; the chunk's product is added to float64 triangles.  The raw Gram is rebuilt
    from the centred one: ``X X^T = Xc Xc^T + v 1^T + 1 v^T + (mu . mu) 1 1^T`` with
    ``v = Xc mu`` kept in float64, so the float32 round-off is relative to the centred product
    (what RSA and the z-scored Gram depend on), never to the features' offsets.
    """

    #: dtype of the z-scores (and of their products): float32, or float64 in the "mixed" precision
    z_dtype = np.float32

    def __init__(self, n, chunk, raw, zscored, ddof, kernel):
        if ddof != 0:
            raise GramInputError("GramAccumulator: precision='float32' or 'mixed' supports ddof=0 only")
        self.n, self.chunk, self.raw, self.zscored, self.ddof, self.kernel = n, chunk, raw, zscored, ddof, kernel
        self.gram = np.zeros((n, n), order="F") if raw else None
        self.gram_z = np.zeros((n, n), order="F") if zscored else None
        self.fsum = np.zeros(n)
        self.v = np.zeros(n)
        self.mm = 0.0
        self.cbuf = np.empty((n, chunk), np.float32)
        self.zbuf = np.empty((n, chunk), self.z_dtype)
        self.c32 = np.zeros((n, n), np.float32, order="F")

    def add(self, x):
        c = x.shape[1]
        cb = self.cbuf[:, :c] if c == self.chunk else np.empty((self.n, c), np.float32)
        zb = self.zbuf[:, :c] if c == self.chunk else np.empty((self.n, c), self.z_dtype)
        if c != self.chunk:
            cb, zb = np.ascontiguousarray(cb), np.ascontiguousarray(zb)
        self.mm += self.kernel(x, cb, zb, self.fsum, self.v)
        if self.zscored and self.z_dtype == np.float64:
            _syrk(self.gram_z, np.ascontiguousarray(zb))
        elif self.zscored:
            _syrk32_into(self.gram_z, self.c32, zb)
        if self.raw:
            _syrk32_into(self.gram, self.c32, cb)

    def add_many(self, x, starts):
        for s in starts:
            self.add(x[:, s:s + self.chunk])
        return self


class _PartMixed(_Part32):
    """As :class:`_Part32`, but the z-scored Gram (ridge's) with float64 products: only the raw Gram
    (RSA's, rebuilt from the centred product) is multiplied in float32."""

    z_dtype = np.float64


#: products of the Gram matrices: float64 (round-off ~1e-13 relative); "mixed": the raw Gram with
#: float32 products (centred, float64 sums across chunks), the z-scored Gram in float64; float32:
#: both in float32 (fastest; ~1e-8 relative in the Gram, but leave-one-out ridge r at alpha 1 moved
#: by up to 4e-5 on resnet50, measured in benchmarks/bench_extract.py)
PRECISIONS = ("float64", "mixed", "float32")
#: features per chunk with float32 products (shorter float32 sums, ~6e-8 sqrt(chunk) relative)
FLOAT32_CHUNK = 512


class GramAccumulator:
    """Accumulate ``gram = X X^T``, ``gram_z = Z Z^T`` and ``feature_sum`` over feature chunks.

    Parameters
    ----------
    n : int
        Number of images (rows of every chunk).
    raw, zscored : bool
        Which Gram matrices to form (``feature_sum`` is always kept).
    ddof : int
        Delta degrees of freedom of the per-feature standard deviation (0, as scikit-learn).
    chunk : int
        Features per kernel call (a larger :meth:`add` is split).
    n_threads : int, optional
        Threads sharing each :meth:`add` (alternate chunks, each with its own buffers and
        triangles, summed by :meth:`result`).  The kernel and the SYRK release the GIL, so they
        run side by side.  ``None``: one per available core.  Use 1 inside an already parallel
        caller (a Dask task).
    backend : {"auto", "numpy", "torch", "torch:cuda", ...}
        ``"numpy"``: the compiled kernel and BLAS SYRK on the CPU (or NumPy without Numba);
        ``"torch[:device]"``: the chunk is z-scored and multiplied with PyTorch on ``device``;
        ``"auto"`` (default): ``"torch:cuda"`` where a CUDA device is present, else ``"numpy"``.
    use_numba : bool, optional
        Force the compiled kernel on or off (``None``: use it when Numba is installed).
    precision : {"float64", "mixed", "float32"}
        The products (CPU backend): ``"float64"`` (default; ~1e-13 relative to a float64 brute
        force); ``"float32"``: each chunk centred in float64, multiplied in float32 (``ssyrk``,
        about twice as fast) and summed across chunks in float64, the raw Gram rebuilt from the
        centred one (see :class:`_Part32`), ~1e-8 relative to the float64 brute force;
        ``"mixed"``: the raw Gram so, the z-scored Gram with float64 products.  ``chunk``
        defaults to :data:`FLOAT32_CHUNK` for both.  ddof 0 only.

    Examples
    --------
    >>> acc = GramAccumulator(3)
    >>> acc.add(np.array([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]]))
    >>> acc.result()["gram_z"].round(6).tolist()
    [[3.0, -1.5, -1.5], [-1.5, 1.5, 0.0], [-1.5, 0.0, 1.5]]
    """

    def __init__(self, n: int, *, raw: bool = True, zscored: bool = True, ddof: int = 0,
                 chunk: int = DEFAULT_CHUNK, n_threads: int | None = 1, backend: str = "auto",
                 use_numba: bool | None = None, precision: str = "float64"):
        if precision not in PRECISIONS:
            raise GramInputError(f"GramAccumulator: precision must be one of {PRECISIONS}, got {precision!r}")
        if n < 1:
            raise GramInputError(f"GramAccumulator: n must be >= 1, got {n}")
        if ddof >= n and zscored:
            raise GramInputError(f"GramAccumulator: ddof={ddof} must be < n={n}")
        self.n, self.raw, self.zscored, self.ddof = int(n), bool(raw), bool(zscored), int(ddof)
        if precision in ("float32", "mixed") and chunk == DEFAULT_CHUNK:
            chunk = FLOAT32_CHUNK
        self.precision = precision
        self.chunk = max(1, int(chunk))
        self.n_threads = available_cores() if n_threads is None else max(1, int(n_threads))
        self.backend = backend = resolve_backend(backend)
        self.n_features = 0
        if backend == "numpy":
            if precision in ("float32", "mixed"):
                use = (use_numba is None and HAVE_NUMBA) or use_numba
                self._part_type = _Part32 if precision == "float32" else _PartMixed
                kernel = _center_kernel if use else _center_kernel_py
            else:
                self._part_type, kernel = _Part, _pick_kernel(use_numba)
            self._parts = [self._part_type(self.n, self.chunk, self.raw, self.zscored, self.ddof, kernel)]
        elif backend.startswith("torch"):
            self._xb = xb = get_backend(backend)  # the torch backend of neuroxr.mapping.backend
            self._gram = xb.zeros((n, n)) if raw else None
            self._gram_z = xb.zeros((n, n)) if zscored else None
            self._fsum = xb.zeros(n)
        else:
            raise GramInputError(f"GramAccumulator: backend must be 'numpy' or 'torch[:device]', got {backend!r}")

    def add(self, x) -> None:
        """Add a chunk of features ``x`` (image, c): any float dtype, any strides."""
        if getattr(x, "ndim", None) != 2 or x.shape[0] != self.n:
            raise GramInputError(f"GramAccumulator.add: expected ({self.n}, features), got shape "
                             f"{getattr(x, 'shape', None)}")
        c = x.shape[1]
        if self.backend == "numpy":
            x = _as_float(np.asarray(x))
            starts = list(range(0, c, self.chunk))
            T = min(self.n_threads, len(starts))
            if T <= 1:
                with blas_budget():
                    self._parts[0].add_many(x, starts)
            else:
                while len(self._parts) < T:
                    p0 = self._parts[0]
                    self._parts.append(self._part_type(p0.n, p0.chunk, p0.raw, p0.zscored, p0.ddof, p0.kernel))
                with blas_budget():
                    list(thread_pool("gram", T).map(lambda i: self._parts[i].add_many(x, starts[i::T]), range(T)))
        else:
            self._add_torch(x)
        self.n_features += c

    def _add_torch(self, x):
        torch, n = self._xb.torch, self.n
        t = self._xb.asarray(x)
        self._fsum += t.sum(1)
        if self.raw:
            self._gram.addmm_(t, t.T)
        if self.zscored:
            mean = t.mean(0)
            t = t - mean
            var = (t * t).sum(0) / (n - self.ddof)
            const = (var <= n * _EPS * var + (n * mean * _EPS) ** 2) | (var <= 0)
            inv = torch.where(const, torch.zeros_like(var), 1.0 / var.clamp_min(1e-300).sqrt())
            inv = torch.where(torch.isnan(var), var, inv)
            t.mul_(inv)
            self._gram_z.addmm_(t, t.T)

    def result(self) -> dict:
        """``{"gram", "gram_z", "feature_sum"}`` as float64 NumPy arrays (full symmetric matrices)."""
        out = {}
        if self.backend == "numpy" and self.precision in ("float32", "mixed"):
            if self.raw:  # X X^T = Xc Xc^T + v 1^T + 1 v^T + (mu . mu) 1 1^T
                v = sum(p.v for p in self._parts)
                mm = sum(p.mm for p in self._parts)
                out["gram"] = _symmetrize(sum(p.gram for p in self._parts)) + v[:, None] + v[None, :] + mm
            if self.zscored:
                out["gram_z"] = _symmetrize(sum(p.gram_z for p in self._parts))
            out["feature_sum"] = sum(p.fsum for p in self._parts).copy()
        elif self.backend == "numpy":
            if self.raw:
                out["gram"] = _symmetrize(sum(p.gram for p in self._parts))
            if self.zscored:
                out["gram_z"] = _symmetrize(sum(p.gram_z for p in self._parts))
            out["feature_sum"] = sum(p.fsum for p in self._parts).copy()
        else:
            if self.raw:
                out["gram"] = self._xb.to_numpy(self._gram)
            if self.zscored:
                out["gram_z"] = self._xb.to_numpy(self._gram_z)
            out["feature_sum"] = self._xb.to_numpy(self._fsum)
        return out


def _gram(X, chunk, zscore, ddof, n_threads, backend="numpy"):
    acc = GramAccumulator(X.shape[0], raw=not zscore, zscored=zscore, ddof=ddof, chunk=chunk,
                          n_threads=n_threads, backend=backend)
    p = X.shape[1]
    # feed the accumulator a few chunks per thread at a time (X may be a memory map or Zarr array)
    step = acc.chunk * max(1, acc.n_threads) * 8
    with blas_budget() if acc.backend == "numpy" else contextlib.nullcontext():
        for s in range(0, p, step):
            acc.add(X[:, s:s + step])
    return acc.result()["gram_z" if zscore else "gram"]


def calc_gram(X, *, chunk: int = DEFAULT_CHUNK, n_threads: int | None = None, backend: str = "auto") -> np.ndarray:
    """``K = X X^T`` (image, image) in float64, streaming over feature chunks.

    Parameters
    ----------
    X : array (image, feature)
        Any float dtype (and anything with ``__getitem__`` on columns, e.g. a memory map).
    chunk : int
        Features per chunk: memory stays at one ``(image, chunk)`` float64 block.
    n_threads : int, optional
        Threads on alternate chunks (see :class:`GramAccumulator`); ``None``: one per core.
    backend : str
        ``"auto"``, ``"numpy"`` or ``"torch[:device]"`` (see :class:`GramAccumulator`).
    """
    return _gram(X, chunk, False, 0, n_threads, backend)


def calc_zscored_gram(X, *, chunk: int = DEFAULT_CHUNK, ddof: int = 0, n_threads: int | None = None,
                      backend: str = "auto") -> np.ndarray:
    """``Z Z^T`` with ``Z`` the features z-scored per feature over images, streamed over chunks.

    Equals ``Z = StandardScaler().fit_transform(X); Z @ Z.T`` to round-off (constant features
    give 0).  Parameters as :func:`calc_gram`.
    """
    return _gram(X, chunk, True, ddof, n_threads, backend)
