"""Ridge regression with exact leave-one-out cross-validation from n x n Gram matrices.

Pure array functions (samples first: ``K (image, image)``, ``Y (image, neuron)``), batched
over any leading axes of ``K`` (layers), with the array backend passed explicitly
(``backend="numpy"`` or ``"torch"`` / ``"torch:cuda"``), in the style of himalaya.  A thin
scikit-learn style estimator, :class:`RidgeLOO`, sits on top.

The computation
---------------
Ridge with an unpenalised intercept, ``min_b,w ||y - b 1 - X w||^2 + alpha ||w||^2``, has the
hat matrix ``H = 11^T/n + Kc (Kc + alpha I)^+`` on centred data, where ``Kc = C K C`` and ``C``
removes the mean.  Double-centring ``K`` and dividing by ``1 - H_ii`` is numerically fragile
(centring leaves a near-zero eigenvalue whose rounding error is amplified by ``1/alpha^2``;
about three digits lost at p = 10^6).  Instead we restrict ``K`` to the directions orthogonal
to the all-ones vector exactly: one Householder reflection ``P`` maps ``1/sqrt(n)`` to a
coordinate axis, the other ``n - 1`` columns ``V`` of ``P`` are an orthonormal basis of the
complement, and

    K' = V^T K V = U diag(s) U^T            (one (n-1) x (n-1) eigendecomposition)
    R  = I - H = W diag(alpha / (s + alpha)) W^T,    W = V U

is the residual operator.  The leave-one-out residual of every target is ``(R y)_i / R_ii``,
so the leave-one-out prediction is ``y_i - (R y)_i / R_ii``.  ``R 1 = 0`` so the intercept is
exact and unpenalised; ``R_ii >= (1 - 1/n) min(alpha / (s + alpha)) > 0`` so nothing is divided
by a small number.  Cost per layer: one eigendecomposition and one ``(n x n) @ (n x neurons)``
product for every alpha, whatever the number of features.

A layer whose ``K'`` vanishes (constant features) predicts nothing: its predictions and
scores are NaN.  A neuron with constant responses has a NaN Pearson r.
"""
from __future__ import annotations

import numpy as np

from ..errors import NeuroxrError

__all__ = [
    "BACKENDS",
    "SOLVERS",
    "get_backend",
    "calc_gram",
    "calc_zscored_gram",
    "decompose_gram",
    "calc_residual_operator",
    "predict_loo",
    "fit_ridge_loo",
    "calc_pearson",
    "calc_loo_pearson",
    "check_alphas",
    "RidgeLOO",
]

#: relative size under which K' counts as zero (a constant layer)
CONSTANT_LAYER_RTOL = 1e-12
#: relative spread under which a column counts as constant (NaN Pearson r)
CONSTANT_COLUMN_RTOL = 1e-12


# --- BLAS threads -----------------------------------------------------------------------------
# --- backends ---------------------------------------------------------------------------------
class _NumpyBackend:
    name = "numpy"

    def asarray(self, x, dtype=np.float64):
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def eigh(self, a):
        return np.linalg.eigh(a)

    def eye(self, n, dtype=np.float64):
        return np.eye(n, dtype=dtype)

    def ones(self, shape, dtype=np.float64):
        return np.ones(shape, dtype=dtype)

    def einsum(self, spec, *ops):
        return np.einsum(spec, *ops, optimize=True)

    def sqrt(self, x):
        return np.sqrt(x)

    def where(self, c, a, b):
        return np.where(c, a, b)

    def swap_last(self, a):
        return np.swapaxes(a, -1, -2)

    def diagonal(self, a):
        return np.diagonal(a, axis1=-2, axis2=-1)

    def nan(self):
        return np.nan

    def isfinite_all(self, a, axes):
        return np.isfinite(a).all(axis=axes)

    def argmin(self, a, axis):
        return np.argmin(a, axis=axis)

    def take_along(self, a, idx, axis):
        return np.take_along_axis(a, idx, axis=axis)

    def abs(self, x):
        return np.abs(x)

    def max(self, x, axis):
        return np.max(x, axis=axis)


class _TorchBackend:
    def __init__(self, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.name = f"torch:{device}" if device != "cpu" else "torch"

    def asarray(self, x, dtype=None):
        t = self.torch
        return t.as_tensor(np.asarray(x) if not isinstance(x, t.Tensor) else x,
                           dtype=t.float64, device=self.device)

    def to_numpy(self, x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def eye(self, n, dtype=None):
        return self.torch.eye(n, dtype=self.torch.float64, device=self.device)

    def ones(self, shape, dtype=None):
        return self.torch.ones(shape, dtype=self.torch.float64, device=self.device)

    def einsum(self, spec, *ops):
        return self.torch.einsum(spec, *ops)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def where(self, c, a, b):
        t = self.torch
        return t.where(c, a if isinstance(a, t.Tensor) else t.as_tensor(a, dtype=t.float64, device=self.device),
                       b if isinstance(b, t.Tensor) else t.as_tensor(b, dtype=t.float64, device=self.device))

    def swap_last(self, a):
        return a.transpose(-1, -2)

    def diagonal(self, a):
        return self.torch.diagonal(a, dim1=-2, dim2=-1)

    def nan(self):
        return float("nan")

    def isfinite_all(self, a, axes):
        out = self.torch.isfinite(a)
        for ax in sorted(axes, reverse=True):
            out = out.all(dim=ax)
        return out

    def argmin(self, a, axis):
        return self.torch.argmin(a, dim=axis)

    def take_along(self, a, idx, axis):
        return self.torch.take_along_dim(a, idx, dim=axis)

    def abs(self, x):
        return self.torch.abs(x)

    def max(self, x, axis):
        return self.torch.amax(x, dim=axis)


_NUMPY = _NumpyBackend()


def _make_torch(device="cpu"):
    return _TorchBackend(device)


#: backend name -> factory; pass the name (or the object) explicitly to every function
BACKENDS = {
    "numpy": lambda: _NUMPY,
    "torch": lambda: _make_torch("cpu"),
    "torch:cuda": lambda: _make_torch("cuda"),
}


def get_backend(backend="numpy"):
    """The backend object for ``backend`` (a name of :data:`BACKENDS` or a backend object)."""
    if not isinstance(backend, str):
        return backend
    if backend not in BACKENDS:
        raise NeuroxrError(f"unknown array backend {backend!r}; choose one of {sorted(BACKENDS)}")
    try:
        return BACKENDS[backend]()
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise NeuroxrError(f"backend {backend!r} needs PyTorch: {exc}") from exc


# --- Gram matrices ----------------------------------------------------------------------------
# formed in neuroxr.mapping.gram (one fused pass per chunk); re-exported here for the ridge API
from .gram import calc_gram, calc_zscored_gram  # noqa: E402


# --- the core -----------------------------------------------------------------------------
def _complement_basis(n, xb):
    """V (n, n-1): orthonormal basis of the complement of the all-ones vector (Householder)."""
    v = np.full(n, 1.0 / np.sqrt(n))
    v[0] += 1.0  # v = u + e1 (no cancellation); P = I - 2 v v^T / v^T v maps u to -e1
    P = np.eye(n) - 2.0 * np.outer(v, v) / (v @ v)
    return xb.asarray(np.ascontiguousarray(P[:, 1:]))


def decompose_gram(K, *, backend="numpy"):
    """Eigendecomposition of ``K`` restricted to the complement of the all-ones vector.

    Parameters
    ----------
    K : array (..., image, image)
        Gram matrices (any leading axes, e.g. layer), symmetric.

    Returns
    -------
    s : array (..., image - 1)
        Eigenvalues of ``K' = V^T K V``.
    W : array (..., image, image - 1)
        ``V U``: eigenvectors mapped back to image space (orthonormal columns orthogonal to 1).
    scale : array (...)
        ``trace(K)`` (used to detect constant layers: ``sum(s) <= 1e-12 scale``).
    """
    xb = get_backend(backend)
    K = xb.asarray(K)
    n = K.shape[-1]
    if n < 3:
        raise NeuroxrError(f"leave-one-out ridge needs at least 3 images, got {n}")
    V = _complement_basis(n, xb)
    Kp = xb.swap_last(V) @ K @ V
    Kp = 0.5 * (Kp + xb.swap_last(Kp))
    s, U = xb.eigh(Kp)
    W = V @ U
    scale = xb.einsum("...ii->...", K)
    return s, W, scale


def calc_residual_operator(s, W, alpha, *, backend="numpy"):
    """``R = W diag(alpha / (s + alpha)) W^T`` (..., image, image): the ridge residual operator."""
    xb = get_backend(backend)
    f = alpha / (s + alpha)
    return (W * f[..., None, :]) @ xb.swap_last(W)


def predict_loo(R, Y, *, backend="numpy"):
    """Leave-one-out predictions ``Y - (R Y) / diag(R)`` from the residual operator.

    Parameters
    ----------
    R : array (..., image, image)
    Y : array (image, neuron)

    Returns
    -------
    array (..., image, neuron)
    """
    xb = get_backend(backend)
    d = xb.diagonal(R)
    return Y - (R @ Y) / d[..., :, None]


def check_alphas(alphas) -> tuple:
    """Validate ridge penalties: a non-empty sequence of finite numbers > 0."""
    if np.isscalar(alphas):
        alphas = (alphas,)
    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise NeuroxrError("no ridge penalty given; pass alpha=1.0 or alphas=(0.1, 1, 10)")
    bad = [a for a in alphas if not (np.isfinite(a) and a > 0)]
    if bad:
        raise NeuroxrError(
            f"ridge penalty alpha must be a finite number > 0, got {bad[0]!r}; "
            "alpha=0 is ordinary least squares, whose leave-one-out fit is undefined with more features than images"
        )
    return alphas


def _constant_layers(s, scale, xb):
    total = xb.einsum("...i->...", xb.abs(s))
    return total <= CONSTANT_LAYER_RTOL * xb.where(scale > 0, scale, 1.0)


def _fit_ridge_loo_eigen(K, Y, alphas, xb):
    """Solver ``eigen``: Householder-restricted eigendecomposition (see module docstring)."""
    s, W, scale = decompose_gram(K, backend=xb)
    Y = xb.asarray(Y)
    best = None
    best_err = None
    best_idx = None
    for i, alpha in enumerate(alphas):
        R = calc_residual_operator(s, W, alpha, backend=xb)
        E = (R @ Y) / xb.diagonal(R)[..., :, None]  # loo residuals (..., image, neuron)
        if len(alphas) == 1:
            best = E
            best_idx = None
            break
        err = xb.einsum("...in,...in->...n", E, E)
        if best is None:
            best, best_err = E, err
            best_idx = 0 * err
        else:
            better = err < best_err
            best = xb.where(better[..., None, :], E, best)
            best_err = xb.where(better, err, best_err)
            best_idx = xb.where(better, 0 * err + i, best_idx)
    pred = Y - best
    const = _constant_layers(s, scale, xb)
    pred = xb.where(const[..., None, None], xb.nan(), pred)
    return pred, best_idx


def _fit_ridge_loo_refit(K, Y, alphas, xb):
    """Solver ``refit``: brute force, n explicit refits on n - 1 images (a slow reference).

    Features are rebuilt from ``K`` (``X = Q sqrt(eigenvalues)``, so ``X X^T = K``); each
    refit centres its training features and targets (unpenalised intercept) and solves the
    ridge normal equations.
    """
    K = np.asarray(xb.to_numpy(xb.asarray(K)), dtype=np.float64)
    Y = np.asarray(xb.to_numpy(xb.asarray(Y)), dtype=np.float64)
    if K.ndim > 2:
        outs = [_fit_ridge_loo_refit(k, Y, alphas, xb) for k in K.reshape(-1, *K.shape[-2:])]
        pred = np.stack([o[0] for o in outs]).reshape(K.shape[:-2] + outs[0][0].shape)
        idx = None if outs[0][1] is None else np.stack([o[1] for o in outs]).reshape(K.shape[:-2] + Y.shape[1:])
        return pred, idx
    n = K.shape[0]
    lam, Q = np.linalg.eigh(0.5 * (K + K.T))
    X = Q * np.sqrt(np.clip(lam, 0, None))
    preds = []
    for alpha in alphas:
        pred = np.empty_like(Y)
        for i in range(n):
            tr = np.arange(n) != i
            xm, ym = X[tr].mean(0), Y[tr].mean(0)
            Xc, Yc = X[tr] - xm, Y[tr] - ym
            w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
            pred[i] = ym + (X[i] - xm) @ w
        preds.append(pred)
    if len(alphas) == 1:
        return preds[0], None
    errs = np.stack([((p - Y) ** 2).sum(0) for p in preds])
    idx = errs.argmin(0)
    return np.take_along_axis(np.stack(preds), idx[None, None], 0)[0], idx


#: solver name -> function(K, Y, alphas, backend) -> (predictions, best alpha index or None)
SOLVERS = {
    "eigen": _fit_ridge_loo_eigen,
    "refit": _fit_ridge_loo_refit,
}


def _check_ridge_inputs(K, Y) -> None:
    """Clear errors for malformed inputs (shapes, dtypes, non-finite K) before any linear algebra."""
    ks, ys = tuple(getattr(K, "shape", np.shape(K))), tuple(getattr(Y, "shape", np.shape(Y)))
    if len(ks) < 2 or ks[-1] != ks[-2]:
        raise NeuroxrError(f"Gram matrix K must be square (..., image, image), got shape {ks}")
    if len(ys) not in (1, 2) or ys[0] != ks[-1]:
        raise NeuroxrError(
            f"targets Y must be (image,) or (image, neuron) with {ks[-1]} images like K {ks}, got shape {ys}")
    if hasattr(K, "detach"):  # torch tensors: checked by the backend
        return
    for name, arr in (("K", K), ("Y", Y)):
        kind = np.asarray(arr).dtype.kind
        if kind not in "biuf":
            raise NeuroxrError(f"{name} must hold numbers, got dtype {np.asarray(arr).dtype}")
    if not np.isfinite(np.asarray(K)).all():
        bad = np.argwhere(~np.isfinite(np.asarray(K)))[0].tolist()
        raise NeuroxrError(f"Gram matrix K has NaN or infinite values (first at index {bad}); "
                           "the layer's features are not finite: re-extract it or skip it")


def fit_ridge_loo(K, Y, alphas=(1.0,), *, solver="eigen", backend="numpy", return_alpha=False):
    """Leave-one-out ridge predictions of every target from a Gram matrix.

    Parameters
    ----------
    K : array (..., image, image)
        Gram matrix ``X X^T`` of the (z-scored) features; leading axes (layers) are batched.
    Y : array (image, neuron)
        Targets.
    alphas : float or sequence of float
        Penalties; with several, each neuron gets the alpha of least leave-one-out squared
        error (as :class:`sklearn.linear_model.RidgeCV` with ``alpha_per_target=True``).
    solver : {"eigen", "refit"}
        A key of :data:`SOLVERS`.
    backend : str or backend
        ``"numpy"``, ``"torch"`` or ``"torch:cuda"``.
    return_alpha : bool
        Also return the chosen alpha per neuron (..., neuron).

    Returns
    -------
    pred : ndarray (..., image, neuron)
        Leave-one-out predictions (NaN for constant layers), float64 numpy.
    alpha : ndarray (..., neuron), only with ``return_alpha``
    """
    alphas = check_alphas(alphas)
    if solver not in SOLVERS:
        raise NeuroxrError(f"unknown ridge solver {solver!r}; choose one of {sorted(SOLVERS)}")
    _check_ridge_inputs(K, Y)
    xb = get_backend(backend)
    Y2 = np.asarray(Y, dtype=np.float64) if not hasattr(Y, "detach") else Y
    squeeze = getattr(Y2, "ndim", 2) == 1
    if squeeze:
        Y2 = Y2[:, None]
    pred, idx = SOLVERS[solver](K, Y2, alphas, xb)
    pred = np.asarray(xb.to_numpy(pred) if not isinstance(pred, np.ndarray) else pred)
    if squeeze:
        pred = pred[..., 0]
    if not return_alpha:
        return pred
    if idx is None:
        a = np.full(pred.shape[:-2] + pred.shape[-1:] if not squeeze else pred.shape[:-1], alphas[0])
    else:
        idx = np.asarray(xb.to_numpy(idx) if not isinstance(idx, np.ndarray) else idx).astype(int)
        a = np.asarray(alphas)[idx]
        if squeeze:
            a = a[..., 0]
    return pred, a


# --- Pearson ------------------------------------------------------------------------------
def calc_pearson(a, b, axis: int = 0):
    """Pearson r along ``axis`` of two arrays of the same shape, vectorised (one dot per column).

    Columns that are constant (or contain NaN) give NaN, never a warning.

    Parameters
    ----------
    a, b : array (image, neuron) (or any shape; ``axis`` is the sample axis)

    Returns
    -------
    r : ndarray, ``axis`` removed
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    ac = a - a.mean(axis=axis, keepdims=True)
    bc = b - b.mean(axis=axis, keepdims=True)
    saa = (ac * ac).sum(axis=axis)
    sbb = (bc * bc).sum(axis=axis)
    sab = (ac * bc).sum(axis=axis)
    # relative constancy test: spread tiny against magnitude
    n = a.shape[axis]
    ma = np.abs(a).max(axis=axis) if n else 0
    mb = np.abs(b).max(axis=axis) if n else 0
    tiny_a = saa <= (CONSTANT_COLUMN_RTOL * ma) ** 2 * n
    tiny_b = sbb <= (CONSTANT_COLUMN_RTOL * mb) ** 2 * n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sab / np.sqrt(saa * sbb)
    bad = tiny_a | tiny_b | ~np.isfinite(r)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def calc_loo_pearson(K, Y, alphas=(1.0,), *, backend="numpy", return_alpha=False):
    """Pearson r (..., neuron) of each neuron's leave-one-out ridge prediction with its responses.

    ``K (..., image, image)``, ``Y (image, neuron)``; see :func:`fit_ridge_loo`.  Constant
    neurons and constant layers give NaN.
    """
    out = fit_ridge_loo(K, Y, alphas, backend=backend, return_alpha=return_alpha)
    pred, a = out if return_alpha else (out, None)
    Yb = np.broadcast_to(np.asarray(Y, dtype=np.float64), pred.shape)
    r = calc_pearson(pred, Yb, axis=-2)
    return (r, a) if return_alpha else r


# --- estimator ------------------------------------------------------------------------------
class RidgeLOO:
    """Scikit-learn style estimator: exact leave-one-out ridge from features (or a Gram matrix).

    Parameters
    ----------
    alphas : sequence of float
    zscore : bool
        Z-score features over samples (ddof=0, zero-variance -> 0) before the ridge.
    kernel : {"linear", "precomputed"}
        With ``"precomputed"``, ``fit`` takes the Gram matrix ``(image, image)`` instead of X.
    backend : str

    Attributes
    ----------
    loo_predictions_ : ndarray (image, neuron)
    alpha_ : ndarray (neuron,)
    loo_r_ : ndarray (neuron,)
    """

    def __init__(self, alphas=(1.0,), zscore=True, kernel="linear", backend="numpy"):
        self.alphas = alphas
        self.zscore = zscore
        self.kernel = kernel
        self.backend = backend

    def get_params(self, deep=True):
        return {"alphas": self.alphas, "zscore": self.zscore, "kernel": self.kernel, "backend": self.backend}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X, Y):
        X = np.asarray(X)
        if self.kernel == "precomputed":
            K = np.asarray(X, dtype=np.float64)
        elif self.zscore:
            K = calc_zscored_gram(X)
        else:
            K = calc_gram(X)
        Y = np.asarray(Y, dtype=np.float64)
        self.loo_predictions_, self.alpha_ = fit_ridge_loo(K, Y, self.alphas, backend=self.backend,
                                                           return_alpha=True)
        self.loo_r_ = calc_pearson(self.loo_predictions_, Y, axis=0)
        return self
