"""Partial least squares mappings from model features to neural responses.

Three pure functions on plain arrays (samples first, as in scikit-learn):

- :func:`make_splits` draws image train/test splits (k-fold or repeated random halves);
- :func:`cross_validated_pls` fits :class:`sklearn.cross_decomposition.PLSRegression` on the
  training images of every split and returns the Pearson r of each neuron's held-out
  prediction, ``r (split, neuron)``;
- :func:`calc_pls_consistency` is the noise-corrected "neural consistency" of Prasad et al.
  (2022) (talmolab/domain_rep, ``rep_analysis/neural_pred.py``) in the style of Nayebi et al.
  (2021): with the trials split in two halves, giving responses ``Y1`` and ``Y2``, a mapping is
  fitted to each half on the training images and, on the held-out images,

  .. math::

      c = \\frac{r(\\hat Y_1, Y_2)}
               {\\sqrt{\\mathrm{SB}(r(\\hat Y_1, \\hat Y_2))\\;\\mathrm{SB}(r(Y_1, Y_2))}},
      \\qquad \\mathrm{SB}(r) = \\frac{2r}{1 + r},

  i.e. the correlation of the half-1 mapping's prediction with the half-2 responses, divided
  by the geometric mean of the Spearman-Brown corrected split-half reliabilities of the
  mapping and of the responses.

Pearson correlations are vectorised over neurons (centre, normalise, one dot per column);
a constant column gives NaN, never a warning.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import rsa
from ..errors import NeuroxrError
from ..runtime import quiet_warnings
from ..responses import draw_split_keys
from .kernels import calc_pearson, split_trial_means

__all__ = [
    "make_splits",
    "cross_validated_pls",
    "calc_pls_consistency",
    "calc_pearson_columns",
    "calc_spearman_brown",
    "split_trial_halves",
    "calc_pls_layer_scores",
]


def make_splits(n_images: int, kind: str = "kfold", n_splits: int | None = None,
                test_size: float = 0.5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test splits of ``n_images`` images.

    Parameters
    ----------
    n_images : int
        Number of images (rows of X and Y).
    kind : {"kfold", "random"}
        ``"kfold"``: :class:`sklearn.model_selection.KFold` with shuffling (every image is held
        out once); ``"random"``: :class:`sklearn.model_selection.ShuffleSplit`, ``n_splits``
        independent random splits holding out ``test_size`` of the images (the study's 100
        random 50/50 splits are ``kind="random", n_splits=100, test_size=0.5``).
    n_splits : int, optional
        Default 5 for ``"kfold"``, 100 for ``"random"``.
    test_size : float
        Fraction of held-out images (``"random"`` only).
    seed : int
        Random seed; the same arguments always give the same splits.

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted integer index arrays into the image axis.
    """
    from sklearn.model_selection import KFold, ShuffleSplit

    n_images = int(n_images)
    if n_images < 4:
        raise NeuroxrError(f"make_splits: n_images={n_images} is too small for train/test splits; need at least 4 images")
    if kind == "kfold":
        n_splits = 5 if n_splits is None else int(n_splits)
        cv = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    elif kind == "random":
        n_splits = 100 if n_splits is None else int(n_splits)
        if not 0.0 < float(test_size) < 1.0:
            raise NeuroxrError(f"make_splits: test_size={test_size!r} must be a fraction in (0, 1)")
        cv = ShuffleSplit(n_splits=n_splits, test_size=float(test_size), random_state=seed)
    else:
        raise NeuroxrError(f"make_splits: kind={kind!r} is not one of 'kfold', 'random'")
    idx = np.arange(n_images)
    return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(idx)]


def calc_pearson_columns(a, b) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (sample, column), vectorised.

    NaN where either column is constant (or has a non-finite value).  A 1-D input counts as one
    column.  The computation is :func:`neuroxr.mapping.ridge.calc_pearson`.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.shape != b.shape:
        raise NeuroxrError(f"calc_pearson_columns: shapes {a.shape} and {b.shape} differ")
    return calc_pearson(a, b, axis=0)


def calc_spearman_brown(r) -> np.ndarray:
    """Spearman-Brown prophecy for doubling the data: ``2 r / (1 + r)`` (NaN at r <= -1).

    :func:`neuroxr.rsa.calc_spearman_brown` with the undefined range set to NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > -1.0, rsa.calc_spearman_brown(r), np.nan)


def split_trial_halves(trials, kind: str = "even_odd", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two half-trial means of ``trials`` (neuron, image, trial), returned samples first.

    Parameters
    ----------
    trials : array (neuron, image, trial)
        NaN where an image had fewer trials.
    kind : {"even_odd", "random"}
        ``"even_odd"``: the available trials 1st, 3rd, 5th, ... vs 2nd, 4th, ... (as domain_rep);
        ``"random"``: random halves drawn by :func:`neuroxr.responses.draw_split_keys` (see
        :func:`neuroxr.mapping.kernels.split_trial_means`).

    Returns
    -------
    Y1, Y2 : array (image, neuron)
        NaN-aware means over each half.
    """
    t = np.asarray(trials, dtype=np.float64)
    if t.ndim != 3:
        raise NeuroxrError(f"split_trial_halves: trials must be (neuron, image, trial), got shape {t.shape}")
    if t.shape[2] < 2:
        raise NeuroxrError("split_trial_halves: need at least 2 trials per image to split them in halves")
    if kind not in ("even_odd", "random"):
        raise NeuroxrError(f"split_trial_halves: kind={kind!r} is not one of 'even_odd', 'random'")
    keys = draw_split_keys(1, t.shape[1], t.shape[2], seed)[0] if kind == "random" else None
    y1, y2 = split_trial_means(t, keys)
    return y1.T, y2.T


def _check_xy(X, Y, name="Y"):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2:
        raise NeuroxrError(f"PLS: X must be (image, feature), got shape {X.shape}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise NeuroxrError(f"PLS: {name} must be (image, neuron) with {X.shape[0]} images, got shape {Y.shape}")
    for arr, nm in ((X, "X"), (Y, name)):
        if not np.isfinite(arr).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise NeuroxrError(f"PLS: {nm} has non-finite values (first at index {bad}); drop or impute them first")
    return X, Y


def _n_comp(n_components, n_train, n_features):
    return int(max(1, min(int(n_components), n_features, n_train - 1)))


def _fit_predict(Xtr, Ytr, Xte, n_components, scale, max_iter, tol):
    """PLSRegression fit on (Xtr, Ytr), prediction for Xte.

    With more features than training images, X is first standardised exactly as
    scikit-learn does (training mean, ddof=1 std, zero std -> 1) and projected onto an
    orthonormal basis of the training rows (from the n x n Gram matrix).  PLS weights are linear
    combinations of the training rows, so scores, weights and predictions are unchanged, but
    every NIPALS iteration costs n x n instead of n x p (p = 14,400 for AlexNet conv1 at 64 px,
    3 s -> 20 ms per fit).  Y is standardised the same way and the prediction mapped back.
    """
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.exceptions import ConvergenceWarning

    n_tr, p = Xtr.shape
    k = _n_comp(n_components, n_tr, p)
    project = p > n_tr
    if project:
        xm = Xtr.mean(axis=0)
        if scale:
            xs = Xtr.std(axis=0, ddof=1)
            xs[xs == 0.0] = 1.0
        else:
            xs = np.ones(p)
        A = (Xtr - xm) / xs
        # coordinates in an orthonormal basis Q = A^T U S^-1/2 of the training rows, from the
        # n x n Gram matrix A A^T = U S U^T (null directions give zero columns)
        s, U = np.linalg.eigh(A @ A.T)
        keep = s > s.max(initial=0.0) * n_tr * np.finfo(np.float64).eps
        inv = np.zeros_like(s)
        inv[keep] = 1.0 / np.sqrt(s[keep])
        Xtr_ = U * np.sqrt(np.where(keep, s, 0.0))
        Xte_ = (((Xte - xm) / xs) @ A.T) @ (U * inv)
        ym = Ytr.mean(axis=0)
        if scale:
            ys = Ytr.std(axis=0, ddof=1)
            ys[ys == 0.0] = 1.0
        else:
            ys = np.ones(Ytr.shape[1])
        Ytr_ = (Ytr - ym) / ys
    else:
        Xtr_, Xte_, Ytr_ = Xtr, Xte, Ytr
    pls = PLSRegression(n_components=k, scale=scale and not project, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        pls.fit(Xtr_, Ytr_)
        pred = np.asarray(pls.predict(Xte_), dtype=np.float64).reshape(Xte.shape[0], -1)
    if project:
        pred = pred * ys + ym
    return pred


def cross_validated_pls(X, Y, splits, n_components: int = 25, scale: bool = True,
                        max_iter: int = 500, tol: float = 1e-6) -> np.ndarray:
    """Held-out Pearson r of a PLS mapping from features to every neuron, per split.

    Parameters
    ----------
    X : array (image, feature)
        Model features.
    Y : array (image, neuron)
        Responses (one PLS2 fit over all neurons jointly, as in the study).
    splits : list of (train_idx, test_idx)
        From :func:`make_splits`.
    n_components : int
        PLS components (25 in the study); lowered to ``min(n_features, n_train - 1)`` when
        there are fewer features or training images.
    scale : bool
        Standardise X and Y inside the PLS (scikit-learn's default, used by the study).

    Returns
    -------
    r : ndarray (split, neuron)
        Pearson r between prediction and response on the held-out images; NaN where either
        is constant.
    """
    X, Y = _check_xy(X, Y)
    out = np.full((len(splits), Y.shape[1]), np.nan)
    for s, (tr, te) in enumerate(splits):
        pred = _fit_predict(X[tr], Y[tr], X[te], n_components, scale, max_iter, tol)
        out[s] = calc_pearson_columns(pred, Y[te])
    return out


def calc_pls_consistency(X, Y1, Y2, splits, n_components: int = 25, scale: bool = True,
                         groups=None, pool: bool = False, max_iter: int = 500,
                         tol: float = 1e-6, return_parts: bool = False):
    """Noise-corrected PLS consistency (Prasad et al. 2022; Nayebi et al. 2021 style).

    For every split, one PLS is fitted to each half of the trials (``Y1``, ``Y2``) on the
    training images; on the held-out images

    ``c = r(P1, Y2) / sqrt(SB(r(P1, P2)) * SB(r(Y1, Y2)))`` with ``SB(r) = 2r / (1 + r)``,

    where ``P1``, ``P2`` are the predictions of the half-1 and half-2 mappings.

    Parameters
    ----------
    X : array (image, feature)
    Y1, Y2 : array (image, neuron)
        Mean responses over two disjoint halves of the trials (:func:`split_trial_halves`).
    splits : list of (train_idx, test_idx)
    n_components, scale :
        As in :func:`cross_validated_pls`.
    groups : array (neuron,), optional
        Fit one PLS per group of neurons (domain_rep fits one per specimen); default one fit
        over all neurons.
    pool : bool
        False: one value per neuron (Nayebi et al.), correlations over held-out images.
        True: one value per group, correlations over the flattened (image x neuron) held-out
        block of the group, as ``inter_animal_consistency`` in domain_rep.
    return_parts : bool
        Also return the three correlations ``r``, ``mapping_r``, ``response_r`` (uncorrected).

    Returns
    -------
    consistency : ndarray (split, neuron), or (split, group) when ``pool`` (groups in
        ``np.unique(groups)`` order).  NaN where a reliability is not positive or a
        correlation is undefined.
    parts : dict of ndarray, same shape, only with ``return_parts``.
    """
    X, Y1 = _check_xy(X, Y1, "Y1")
    _, Y2 = _check_xy(X, Y2, "Y2")
    if Y1.shape != Y2.shape:
        raise NeuroxrError(f"calc_pls_consistency: Y1 {Y1.shape} and Y2 {Y2.shape} differ in shape")
    n_neuron = Y1.shape[1]
    if groups is None:
        labels = np.zeros(n_neuron, dtype=int)
    else:
        labels = np.asarray(groups)
        if labels.shape != (n_neuron,):
            raise NeuroxrError(f"calc_pls_consistency: groups has shape {labels.shape}, expected ({n_neuron},)")
    uniq = np.unique(labels)
    width = len(uniq) if pool else n_neuron
    r = np.full((len(splits), width), np.nan)
    mr = np.full_like(r, np.nan)
    rr = np.full_like(r, np.nan)
    for s, (tr, te) in enumerate(splits):
        for g, lab in enumerate(uniq):
            cols = np.flatnonzero(labels == lab)
            p1 = _fit_predict(X[tr], Y1[tr][:, cols], X[te], n_components, scale, max_iter, tol)
            p2 = _fit_predict(X[tr], Y2[tr][:, cols], X[te], n_components, scale, max_iter, tol)
            y1, y2 = Y1[te][:, cols], Y2[te][:, cols]
            if pool:
                r[s, g] = calc_pearson_columns(p1.ravel(), y2.ravel())[0]
                mr[s, g] = calc_pearson_columns(p1.ravel(), p2.ravel())[0]
                rr[s, g] = calc_pearson_columns(y1.ravel(), y2.ravel())[0]
            else:
                r[s, cols] = calc_pearson_columns(p1, y2)
                mr[s, cols] = calc_pearson_columns(p1, p2)
                rr[s, cols] = calc_pearson_columns(y1, y2)
    den = calc_spearman_brown(mr) * calc_spearman_brown(rr)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(den > 0, r / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)
    if return_parts:
        return c, {"r": r, "mapping_r": mr, "response_r": rr}
    return c


def calc_pls_layer_scores(X, Y, splits, n_components: int) -> np.ndarray:
    """One layer ``X (image, feature)``, ``Y (image, neuron)`` -> mean held-out r over ``splits`` (neuron,).

    A layer with non-finite or constant features scores NaN.
    """
    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all() or np.ptp(X, axis=0).max(initial=0) == 0:
        return np.full(Y.shape[1], np.nan)
    r = cross_validated_pls(X, np.asarray(Y, dtype=np.float64), splits, n_components=n_components)
    with quiet_warnings(RuntimeWarning):
        return np.nanmean(r, axis=0)
