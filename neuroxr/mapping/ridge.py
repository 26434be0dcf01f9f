"""Ridge regression with exact leave-one-out cross-validation from n x n Gram matrices.

Pure array functions (samples first: ``K (image, image)``, ``Y (image, neuron)``), batched
over any leading axes of ``K`` (layers), with the array backend passed explicitly
(``backend="numpy"`` or ``"torch"`` / ``"torch:cuda"``, :mod:`neuroxr.mapping.backend`), in the
style of himalaya: the solvers are a registry, :data:`SOLVERS`, and the ``eigen`` solver's
residual operators with the blocked leave-one-out kernel of :mod:`neuroxr.mapping.kernels` are
what :mod:`neuroxr.mapping.score` runs.  A scikit-learn estimator, :class:`~neuroxr.mapping.estimator.RidgeLOO`, sits on top.

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

Penalty units and the mean-free score
-------------------------------------
A plain float is the penalty itself (scikit-learn's ``Ridge(alpha)`` on the same features).
:class:`PaperAlphas` (the exact ``ridge`` metric's default on the command line) are in the
paper's units: ``alpha * max(1, trace(K) / (n c))`` per layer, what ``alpha`` means after the
paper's ``c``-component projection (:func:`~neuroxr.mapping.kernels.calc_paper_alpha_scale`),
scored without the leave-one-out intercept (:func:`~neuroxr.mapping.kernels.calc_mean_free_pearson`):
the intercept's ``mean(y_j, j != i)`` has r = -1 with ``y`` and, on wide layers, outweighs the
model part (mean r -0.62 on pure noise at p = 10^6, whatever the penalty).  With many images,
:mod:`neuroxr.mapping.feature_ridge` computes the same fit in feature space.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import NeuroxrError
from .backend import BACKENDS, get_backend
from .gram import calc_gram, calc_zscored_gram
from .kernels import (
    calc_loo_residuals,
    calc_loo_scores,
    calc_mean_free_pearson,
    calc_paper_alpha_scale,
    calc_pearson,
    calc_residual_operator,
    calc_residual_operators,
    decompose_gram,
)

__all__ = [
    "BACKENDS",
    "PAPER_ALPHA",
    "SOLVERS",
    "PaperAlphas",
    "RidgeInputError",
    "RidgeSolver",
    "alpha_unit",
    "calc_gram",
    "calc_loo_pearson",
    "calc_pearson",
    "calc_residual_operator",
    "calc_zscored_gram",
    "check_alphas",
    "decompose_gram",
    "fit_ridge_loo",
    "get_backend",
    "get_solver",
    "paper_alphas",
    "predict_loo",
]


def predict_loo(R, Y, *, backend="numpy"):
    """Leave-one-out predictions ``Y - (R Y) / diag(R)`` (..., image, neuron) from the residual operator R (..., image, image)."""
    xb = get_backend(backend)
    return Y - (R @ Y) / xb.diagonal(R)[..., :, None]


class PaperAlphas(tuple):
    """Ridge penalties in the paper's units: what they mean after its sparse random projection.

    The exact ``ridge`` metric applies ``alpha * max(1, trace(K) / (n c))`` to the Gram matrix
    of the z-scored features (:func:`neuroxr.mapping.kernels.calc_paper_alpha_scale`: the same shrinkage
    against the spectrum as ``alpha`` on the paper's ``c``-component projection), scores the
    leave-one-out predictions without their leave-one-out intercept
    (:func:`neuroxr.mapping.kernels.calc_mean_free_pearson`) and stores the penalty applied
    (``ridge_alpha``).  ``srp-ridge`` runs on the projection itself, so there ``alpha`` is the
    penalty (the paper's setting).  A plain tuple of floats is the penalty itself everywhere.
    """

    unit = "paper"

    def __repr__(self):
        return f"PaperAlphas({tuple(self)!r})"


#: the default of the exact ridge: the paper's alpha = 1, in its units
PAPER_ALPHA = PaperAlphas((1.0,))


def paper_alphas(alphas=(1.0,)) -> PaperAlphas:
    """``alphas`` (a number or sequence), checked, in the paper's units (:class:`PaperAlphas`)."""
    return PaperAlphas(check_alphas(tuple(alphas) if not np.isscalar(alphas) else (alphas,)))


def resolve_alphas(alpha=None, alphas=None, unit=None):
    """The penalties a user asked for, as the command line and pipelines read them.

    Nothing given: :data:`PAPER_ALPHA` (the paper's alpha = 1 in its units). An explicit ``alpha``
    or ``alphas`` is a plain penalty (scikit-learn's ``Ridge(alpha)``) unless ``unit="paper"``;
    ``unit="penalty"`` with nothing given is the plain penalty 1.
    """
    if unit not in (None, "paper", "penalty"):
        raise NeuroxrError(f"alpha_unit must be 'paper' or 'penalty', got {unit!r}")
    if alpha is not None and alphas is not None:
        raise NeuroxrError(f"give alpha ({alpha!r}) or alphas ({alphas!r}), not both")
    values = alphas if alphas is not None else (1.0 if alpha is None else alpha)
    unit = unit or ("paper" if alpha is None and alphas is None else "penalty")
    return paper_alphas(values) if unit == "paper" else check_alphas(values)


def alpha_unit(alphas) -> str:
    """``"paper"`` for :class:`PaperAlphas`, ``"penalty"`` for plain penalties."""
    return getattr(alphas, "unit", "penalty")


def check_alphas(alphas) -> tuple:
    """Validate ridge penalties: a non-empty sequence of finite numbers > 0 (and not subnormal).

    ``None`` or ``"paper"``: :data:`PAPER_ALPHA` (the default of the exact ridge); a
    :class:`PaperAlphas` keeps its unit.  A penalty tiny against the Gram matrix's scale is
    refused where the scale is known, by :func:`neuroxr.mapping.kernels.calc_residual_operators`
    (:data:`~neuroxr.mapping.kernels.ALPHA_RTOL`).
    """
    if alphas is None or (isinstance(alphas, str) and alphas == "paper"):
        return PAPER_ALPHA
    if isinstance(alphas, str):
        raise NeuroxrError(f"ridge penalty alpha must be a number, a sequence of numbers or 'paper', got {alphas!r}")
    unit = alpha_unit(alphas)
    if np.isscalar(alphas):
        alphas = (alphas,)
    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise NeuroxrError("no ridge penalty given; pass alpha=1.0 or alphas=(0.1, 1, 10)")
    bad = [a for a in alphas if not (np.isfinite(a) and a >= np.finfo(np.float64).tiny)]
    if bad:
        raise NeuroxrError(
            f"ridge penalty alpha must be a finite number >= {np.finfo(np.float64).tiny:.3g}, got {bad[0]!r}; "
            "alpha=0 is ordinary least squares, whose leave-one-out fit is undefined with more features than images"
        )
    return PaperAlphas(alphas) if unit == "paper" else alphas


def _as_layers(K):
    """K (..., n, n) -> (L, n, n) float64 numpy and the leading shape."""
    K = K.detach().cpu().numpy() if hasattr(K, "detach") else K
    K = np.asarray(K, dtype=np.float64)
    return K.reshape(-1, *K.shape[-2:]), K.shape[:-2]


def _fit_eigen(K, Y, alphas, xb):
    """Solver ``eigen``: Householder-restricted eigendecomposition (see the module docstring)."""
    K3, lead = _as_layers(K)
    E, idx = calc_loo_residuals(calc_residual_operators(K3, alphas, xb), Y)
    pred = (Y - E).reshape(lead + E.shape[-2:])
    return pred, None if len(alphas) == 1 else idx.reshape(lead + idx.shape[-1:])


def _refit_one(X, Y, alpha):
    n = X.shape[0]
    pred = np.empty_like(Y)
    for i in range(n):
        tr = np.arange(n) != i
        xm, ym = X[tr].mean(0), Y[tr].mean(0)
        Xc, Yc = X[tr] - xm, Y[tr] - ym
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
        pred[i] = ym + (X[i] - xm) @ w
    return pred


def _fit_refit(K, Y, alphas, xb):
    """Solver ``refit``: brute force, n explicit refits on n - 1 images (a slow reference).

    Features are rebuilt from ``K`` (``X = Q sqrt(eigenvalues)``, so ``X X^T = K``); each
    refit centres its training features and targets (unpenalised intercept) and solves the
    ridge normal equations.
    """
    K3, lead = _as_layers(K)
    preds, idxs = [], []
    for k in K3:
        lam, Q = np.linalg.eigh(0.5 * (k + k.T))
        X = Q * np.sqrt(np.clip(lam, 0, None))
        P = np.stack([_refit_one(X, Y, a) for a in alphas])
        idx = ((P - Y) ** 2).sum(1).argmin(0)
        preds.append(np.take_along_axis(P, idx[None, None], 0)[0])
        idxs.append(idx)
    pred = np.stack(preds).reshape(lead + Y.shape)
    return pred, None if len(alphas) == 1 else np.stack(idxs).reshape(lead + Y.shape[1:])


@dataclass(frozen=True)
class RidgeSolver:
    """A leave-one-out ridge solver.

    ``fit(K, Y, alphas, backend) -> (predictions (..., image, neuron), best alpha index or None)``;
    ``operators(K (L, n, n), alphas, backend) -> R (L, alpha, n, n)``, where the solver has
    residual operators: scoring then runs the blocked kernel
    :func:`neuroxr.mapping.kernels.calc_loo_scores` on them.
    """

    name: str
    fit: Callable
    operators: Callable | None = None


#: solver name -> :class:`RidgeSolver`
SOLVERS = {
    "eigen": RidgeSolver("eigen", _fit_eigen, calc_residual_operators),
    "refit": RidgeSolver("refit", _fit_refit),
}


def get_solver(name: str) -> RidgeSolver:
    if name not in SOLVERS:
        raise NeuroxrError(f"unknown ridge solver {name!r}; choose one of {sorted(SOLVERS)}")
    return SOLVERS[name]


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


def as_targets(Y):
    """Targets as float64 (image, neuron), and whether they were one column."""
    Y = Y.detach().cpu().numpy() if hasattr(Y, "detach") else Y
    Y = np.asarray(Y, dtype=np.float64)
    return (Y[:, None], True) if Y.ndim == 1 else (Y, False)


def fit_ridge_loo(K, Y, alphas=(1.0,), *, solver="eigen", backend="numpy", return_alpha=False):
    """Leave-one-out ridge predictions of every target from a Gram matrix.

    Parameters
    ----------
    K : array (..., image, image)
        Gram matrix ``X X^T`` of the (z-scored) features; leading axes (layers) are batched.
    Y : array (image, neuron) or (image,)
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
    fit = get_solver(solver).fit
    _check_ridge_inputs(K, Y)
    Y2, squeeze = as_targets(Y)
    if alpha_unit(alphas) == "paper":  # per layer: the penalties in the paper's units, applied
        K3, lead = _as_layers(K)
        scale = calc_paper_alpha_scale(K3)
        fits = [fit(k, Y2, tuple(a * sc for a in alphas), get_backend(backend)) for k, sc in zip(K3, scale)]
        pred = np.stack([f[0] for f in fits]).reshape(lead + Y2.shape)
        idx = np.stack([np.zeros(Y2.shape[1], dtype=int) if f[1] is None else f[1] for f in fits])
        a = (np.asarray(alphas)[idx] * scale[:, None]).reshape(lead + Y2.shape[1:])
    else:
        pred, idx = fit(K, Y2, alphas, get_backend(backend))
        a = np.full(pred.shape[:-2] + pred.shape[-1:], alphas[0]) if idx is None else np.asarray(alphas)[idx]
    if squeeze:
        pred, a = pred[..., 0], a[..., 0]
    return (pred, a) if return_alpha else pred


def calc_loo_pearson(K, Y, alphas=(1.0,), *, solver="eigen", backend="numpy", return_alpha=False,
                     mean_free=None, n_components=None):
    """Pearson r (..., neuron) of each neuron's leave-one-out ridge prediction with its responses.

    ``K (..., image, image)``, ``Y (image, neuron)``; see :func:`fit_ridge_loo`.  With the
    ``eigen`` solver this is the blocked kernel that scoring runs.  Constant neurons and
    constant layers give NaN.

    ``alphas`` as :class:`PaperAlphas` (or ``"paper"``): penalties in the paper's units, scaled
    per layer by :func:`~neuroxr.mapping.kernels.calc_paper_alpha_scale` (``K`` of z-scored
    features; ``n_components`` the projection's, default Johnson-Lindenstrauss for n images),
    and scored mean-free.  ``mean_free`` (default: ``True`` with paper units, else ``False``):
    score the prediction without its leave-one-out intercept
    (:func:`~neuroxr.mapping.kernels.calc_mean_free_pearson`).  The returned alpha is the
    penalty applied.
    """
    alphas = check_alphas(alphas)
    paper = alpha_unit(alphas) == "paper"
    mean_free = paper if mean_free is None else bool(mean_free)
    sol = get_solver(solver)
    _check_ridge_inputs(K, Y)
    Y2, squeeze = as_targets(Y)
    K3, lead = _as_layers(K)
    scale = calc_paper_alpha_scale(K3, n_components) if paper else np.ones(K3.shape[0])
    if sol.operators is None:
        preds, idxs = zip(*[sol.fit(k, Y2, tuple(a * sc for a in alphas), get_backend(backend))
                            for k, sc in zip(K3, scale)])
        pred = np.stack(preds)
        pearson = calc_mean_free_pearson if mean_free else calc_pearson
        r = pearson(pred, np.broadcast_to(Y2, pred.shape), axis=-2)
        idx = np.zeros(r.shape, dtype=int) if idxs[0] is None else np.stack(idxs)
    else:
        R = sol.operators(K3, alphas, backend, **({"alpha_scale": scale} if paper else {}))
        idx_r = calc_loo_scores(R, Y2, n_out=2, backend=backend, mean_free=mean_free)
        r, idx = idx_r[0], idx_r[1]
    r, idx = r.reshape(lead + r.shape[-1:]), idx.reshape(lead + idx.shape[-1:])
    a = np.where(np.isfinite(idx), np.asarray(alphas)[np.nan_to_num(idx).astype(int)], np.nan)
    a = a * scale.reshape(lead + (1,))
    if squeeze:
        r, a = r[..., 0], a[..., 0]
    return (r, a) if return_alpha else r


class RidgeInputError(NeuroxrError, ValueError):
    """Inputs a leave-one-out ridge cannot be fitted on (too few samples, unknown kernel)."""
