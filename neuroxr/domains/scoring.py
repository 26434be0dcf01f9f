"""PLS predictivity per split from a features store's Gram matrix: the ``pls-splits`` metric.

The domain study (Prasad et al. 2022) scores a layer by a 25-component PLS regression from the
layer's activations to the neurons, on 100 random 50/50 image splits, and keeps every split
(the Mann-Whitney tests between domains are over splits).  Here the regression reads the
features store's ``gram_z`` (layer, image, image_j): the Gram matrix ``Z Z^T`` of the layer's
features z-scored over the study's images (:mod:`neuroxr.features.reduce`), so a layer of any
width costs n x n per split.

PLS weights are linear combinations of the training rows, so a PLS fit depends on the features
only through the (training-centred) Gram matrix: with ``A = H Z_tr`` (``H`` the centring matrix),
``A A^T = H K_tr,tr H`` and the test rows' cross products ``(K_te,tr - 1 k^T) H`` (``k`` the column
means of ``K_tr,tr``).  An orthonormal basis of the training rows (eigendecomposition of
``A A^T``) gives coordinates on which scikit-learn's :class:`~sklearn.cross_decomposition.PLSRegression`
(``scale=False``) returns exactly the predictions it gives on ``Z`` itself; the responses are
standardised with the training images' mean and sd (ddof 1), as ``scale=True`` does.

One difference from the paper's ``PLSRegression(scale=True)`` on the raw activations: the features
are standardised with the sd over all of the study's images (the store's z-scoring), not over
each split's training half.  The tests check the result against scikit-learn on the z-scored
features to 1e-8.

``pls_options["layer_names"]`` (a list of ``layer_name`` values) scores only those layers (the
others are NaN): the domain pipeline scores the study's conv1..conv5 (after ReLU) unless
``[compare] score_layers = "all"``.

Variables (scores.zarr root, with the first study's labels):

- ``pls_split_r`` (layer, neuron, split): Pearson r of each neuron's held-out prediction;
- ``pls_split_c`` (layer, neuron, split), when the responses have trials: the noise-corrected
  consistency of :func:`neuroxr.mapping.pls.calc_pls_consistency` (even/odd trial halves), per neuron.
"""
from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .. import schema as S
from ..mapping.pls import (
    calc_pearson_columns,
    calc_spearman_brown,
    make_splits,
    split_trial_halves,
)

__all__ = ["SPLIT", "calc_gram_pls_splits", "build_pls_splits", "PLS_SPLITS_DEFAULTS"]

#: the split dim of ``pls_split_r``
SPLIT = "split"
#: the study's settings (random 50/50 splits, 25 components)
PLS_SPLITS_DEFAULTS = {"kind": "random", "n_splits": 100, "test_size": 0.5, "n_components": 25, "seed": 0}


def _gram_fit_predict(K, tr, te, Ytr, n_components):
    """PLS fitted on the training images of Gram ``K`` (n, n), predictions for ``te`` (None: constant layer)."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.exceptions import ConvergenceWarning

    n = len(tr)
    Ktt = K[np.ix_(tr, tr)]
    Kst = K[np.ix_(te, tr)]
    H = np.eye(n) - 1.0 / n
    G = H @ Ktt @ H
    G = (G + G.T) / 2
    C = (Kst - Ktt.mean(axis=0)[None, :]) @ H
    s, U = np.linalg.eigh(G)
    keep = s > max(s.max(initial=0.0), 0.0) * n * np.finfo(np.float64).eps
    if not keep.any():
        return None
    s, U = s[keep], U[:, keep]
    Xtr = U * np.sqrt(s)
    Xte = C @ (U / np.sqrt(s))
    ym = Ytr.mean(axis=0)
    ys = Ytr.std(axis=0, ddof=1)
    ys[~(ys > 0)] = 1.0
    k = int(max(1, min(int(n_components), n - 1, Xtr.shape[1])))
    pls = PLSRegression(n_components=k, scale=False, max_iter=500, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        pls.fit(Xtr, (Ytr - ym) / ys)
        pred = np.asarray(pls.predict(Xte), dtype=np.float64).reshape(len(te), -1)
    return pred * ys + ym


def calc_gram_pls_splits(K, Y, splits, n_components: int = 25, Y1=None, Y2=None):
    """Held-out PLS predictivity of one layer per split, from its Gram matrix.

    Parameters
    ----------
    K : array (image, image)
        ``Z Z^T`` of the layer's (z-scored) features.
    Y : array (image, neuron)
        Mean responses (one PLS2 fit over all neurons jointly, as in the study).
    splits : list of (train_idx, test_idx)
    n_components : int
        Lowered to the training images - 1 or the rank of the training Gram when smaller.
    Y1, Y2 : array (image, neuron), optional
        Two half-trial means: also return the noise-corrected consistency
        ``r(P1, Y2) / sqrt(SB(r(P1, P2)) SB(r(Y1, Y2)))``.

    Returns
    -------
    r : ndarray (neuron, split)
    c : ndarray (neuron, split), only with ``Y1`` and ``Y2``
    """
    K = np.asarray(K, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n_neuron = Y.shape[1]
    r = np.full((n_neuron, len(splits)), np.nan)
    c = None if Y1 is None else np.full_like(r, np.nan)
    ok = np.isfinite(Y).all(axis=0)
    if c is not None:
        Y1, Y2 = np.asarray(Y1, dtype=np.float64), np.asarray(Y2, dtype=np.float64)
        ok_c = ok & np.isfinite(Y1).all(axis=0) & np.isfinite(Y2).all(axis=0)
    if not np.isfinite(K).all() or not ok.any():
        return r if c is None else (r, c)
    for s, (tr, te) in enumerate(splits):
        pred = _gram_fit_predict(K, tr, te, Y[tr][:, ok], n_components)
        if pred is None:
            continue
        r[ok, s] = calc_pearson_columns(pred, Y[te][:, ok])
        if c is not None and ok_c.any():
            p1 = _gram_fit_predict(K, tr, te, Y1[tr][:, ok_c], n_components)
            p2 = _gram_fit_predict(K, tr, te, Y2[tr][:, ok_c], n_components)
            y1, y2 = Y1[te][:, ok_c], Y2[te][:, ok_c]
            den = (calc_spearman_brown(calc_pearson_columns(p1, p2))
                   * calc_spearman_brown(calc_pearson_columns(y1, y2)))
            num = calc_pearson_columns(p1, y2)
            with np.errstate(invalid="ignore", divide="ignore"):
                c[ok_c, s] = np.where(den > 0, num / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)
    return r if c is None else (r, c)


def _layer_task(K, Y, trials, splits, n_components):
    """One layer: (1 or 2, neuron, split) stacked r [and consistency]."""
    from ..runtime import single_threaded_blas

    with single_threaded_blas():
        if trials is None:
            return calc_gram_pls_splits(K, Y, splits, n_components)[None]
        Y1, Y2 = split_trial_halves(np.asarray(trials, dtype=np.float64), kind="even_odd")
        r, c = calc_gram_pls_splits(K, Y, splits, n_components, Y1=Y1, Y2=Y2)
        return np.stack([r, c])


def build_pls_splits(inp):
    """The ``pls-splits`` metric's lazy graph (see the module docstring): one task per layer."""
    from ..mapping.metrics import Built

    K = inp.need("gram_z", "pls-splits")
    o = {**PLS_SPLITS_DEFAULTS, **{k: v for k, v in (inp.pls_options or {}).items()
                                   if k in PLS_SPLITS_DEFAULTS}}
    n_img = K.sizes[S.IMAGE]
    splits = make_splits(n_img, kind=o["kind"], n_splits=o["n_splits"], test_size=o["test_size"], seed=o["seed"])
    Yfull = inp.Y.data.rechunk({1: -1})
    trials = None
    if inp.trials is not None:
        trials = inp.trials if isinstance(inp.trials, da.Array) else da.from_array(np.asarray(inp.trials))
        trials = trials.rechunk(-1)
    n_out = 1 if trials is None else 2
    fn = dask.delayed(_layer_task, pure=True)
    n_neuron = Yfull.shape[1]
    only = (inp.pls_options or {}).get("layer_names")
    names = np.asarray(K["layer_name"].values).astype(str) if "layer_name" in K.coords else None
    shape = (n_out, n_neuron, len(splits))
    parts = [da.from_delayed(fn(K.data[k], Yfull, trials, splits, o["n_components"]), shape=shape, dtype=np.float64)
             if only is None or names is None or names[k] in set(only) else da.full(shape, np.nan)
             for k in range(K.sizes[S.LAYER])]
    arr = (da.stack(parts, axis=1) if parts else da.zeros((n_out, 0, n_neuron, len(splits))))
    ncoords = {c: v for c, v in inp.Y.coords.items() if v.dims == (S.NEURON,)}
    coords = {**ncoords, SPLIT: np.arange(len(splits))}
    dims = (S.LAYER, S.NEURON, SPLIT)
    attrs = {"kind": o["kind"], "n_splits": int(o["n_splits"]), "test_size": float(o["test_size"]),
             "n_components": int(o["n_components"]), "seed": int(o["seed"]), "features": "gram_z",
             "layers_scored": "all" if only is None else ",".join(only)}
    out = {"pls_split_r": xr.DataArray(arr[0], dims=dims, coords=coords, attrs=attrs)}
    if trials is not None:
        out["pls_split_c"] = xr.DataArray(arr[1], dims=dims, coords=coords, attrs={**attrs, "trials": "even_odd"})
    return Built(neuron=out)
