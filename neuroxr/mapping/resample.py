"""Permutation tests and bootstrap intervals computed on the n x n matrices alone.

Labels-free NumPy kernels.  A layer's score against an area compares two image-by-image
matrices (RDMs for RSA, centred Grams for CKA), so a permutation of the images or a bootstrap
resample of them is a reindexing of the n x n matrices: no feature is read again.

Permutation test (``rsa_p``, ``cka_p``)
    The null distribution of a layer's score permutes the images of the model's matrix (rows and
    columns together) with the responses fixed; the same ``n_perm`` permutations (drawn from the
    seed alone) serve every layer and area.  The p-value is one-sided (a score at least as large),
    ``(1 + #{null >= observed}) / (1 + n_perm)``, never 0.  Correction over layers: the
    max-statistic (Westfall & Young): the null of the largest score over the layers of one model
    variant (one features store) for each permutation, ``(1 + #{max null >= observed}) / (1 + n_perm)``;
    it controls the family-wise error over those layers and keeps their dependence
    (``rsa_p_fwer``, ``cka_p_fwer``).
Bootstrap intervals (``rsa_ci_low/high``, ``cka_ci_low/high``)
    ``n_boot`` resamples of the images with replacement (the same for every layer and area);
    the score is recomputed on the resampled matrices with every pair of an image with its own
    duplicate left out (as rsatoolbox does), and the interval is the 2.5 and 97.5 percentiles.
    For CKA the kept pairs are the diagonal and the pairs of distinct images (the matrices
    centred over the resampled images).

Pearson and Spearman RDM comparisons are vectorised (the ranks of a permuted RDM are the
permuted ranks); Kendall's tau-a runs one comparison at a time (slow).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .. import rsa
from ..errors import InvalidArgumentError
from .cka import center_gram

__all__ = [
    "DEFAULT_RESAMPLE",
    "calc_bootstrap",
    "calc_max_p_values",
    "calc_p_values",
    "calc_percentiles",
    "calc_permutation_null",
    "check_resample_options",
    "draw_image_permutations",
    "draw_image_resamples",
]

#: the settings of the resampling metrics: permutations, bootstrap resamples (for scores), trial
#: splits and image resamples (for the ceilings), and the one seed they are all drawn from
DEFAULT_RESAMPLE = {"n_perm": 1000, "n_boot": 1000, "n_splits": 10, "ceiling_boot": 200, "seed": 0}
#: permutations or resamples per vectorised block
BLOCK = 128


def check_resample_options(options) -> dict:
    """``DEFAULT_RESAMPLE`` updated by ``options``; each count an int >= 1, the seed an int >= 0."""
    out = dict(DEFAULT_RESAMPLE)
    for k, v in dict(options or {}).items():
        if k not in DEFAULT_RESAMPLE:
            raise InvalidArgumentError(f"unknown resampling option {k!r}; choose from {sorted(DEFAULT_RESAMPLE)}")
        if isinstance(v, bool) or not float(v).is_integer() or int(v) < (0 if k == "seed" else 1):
            raise InvalidArgumentError(f"resampling option {k}={v!r} must be an integer >= {0 if k == 'seed' else 1}")
        out[k] = int(v)
    return out


def draw_image_permutations(n_images: int, n_perm: int, seed: int = 0) -> np.ndarray:
    """``n_perm`` permutations of ``range(n_images)`` (perm, image), from the seed alone."""
    rng = np.random.default_rng([int(seed), 17, 1])
    return np.argsort(rng.random((int(n_perm), int(n_images))), axis=1)


def draw_image_resamples(n_images: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``n_boot`` resamples of the images with replacement (boot, image) of indices, from the seed alone."""
    rng = np.random.default_rng([int(seed), 17, 2])
    return rng.integers(0, int(n_images), size=(int(n_boot), int(n_images)))


# --- the statistics -----------------------------------------------------------------------------
def _prepare(kind, model, targets, method):
    """The model side (L, n, n) and the standardised target vectors of ``kind``.

    ``rsa``: model RDMs, targets the neural RDMs' upper triangles; ``cka``: centred Grams, targets
    the centred response Grams flattened.
    """
    model = np.asarray(model, dtype=np.float64)
    model = 0.5 * (model + np.swapaxes(model, -1, -2))
    targets = np.asarray(targets, dtype=np.float64)
    targets = 0.5 * (targets + np.swapaxes(targets, -1, -2))
    if kind == "cka":
        return center_gram(model), center_gram(targets)
    if kind != "rsa":
        raise InvalidArgumentError(f"unknown resampled statistic {kind!r}; choose 'rsa' or 'cka'")
    if method == "spearman":
        # rank each RDM's upper triangle and write the ranks back: permuting images permutes them
        iu = np.triu_indices(model.shape[-1], 1)
        def ranked(m):
            out = np.zeros_like(m)
            v = m[..., iu[0], iu[1]]
            r = np.where(np.isnan(v).any(axis=-1, keepdims=True), np.nan, rankdata(v, axis=-1))
            out[..., iu[0], iu[1]] = r
            out[..., iu[1], iu[0]] = r
            return out
        return ranked(model), ranked(targets)
    return model, targets


def _standardised(v):
    """Rows of v (..., m) centred and scaled to unit norm; NaN rows stay NaN."""
    vc = v - v.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return vc / np.sqrt((vc * vc).sum(axis=-1, keepdims=True))


def _perm_block_rsa(M, T, perms, method):
    """M (n, n) prepared model, T (A, n, n) prepared targets, perms (P, n) -> (P, A)."""
    n = M.shape[-1]
    iu = np.triu_indices(n, 1)
    t = T[:, iu[0], iu[1]]
    if method in ("pearson", "spearman"):
        a = M[perms[:, iu[0]], perms[:, iu[1]]]  # (P, m)
        return np.clip(_standardised(a) @ _standardised(t).T, -1.0, 1.0)
    fn = rsa.COMPARISONS[method]
    return np.stack([fn(M[p[iu[0]], p[iu[1]]][None], t)[0] for p in perms])


def _perm_block_cka(M, T, perms):
    """Centred M (n, n), centred T (A, n, n), perms (P, n) -> CKA (P, A); norms are permutation-invariant."""
    a = M[perms[:, :, None], perms[:, None, :]].reshape(len(perms), -1)
    t = T.reshape(T.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a @ t.T) / (np.linalg.norm(M) * np.linalg.norm(t, axis=1))[None, :]


def calc_permutation_null(kind: str, model, targets, perms, method: str = "pearson"):
    """Null scores of every layer against every target under image permutations.

    Parameters
    ----------
    kind : {"rsa", "cka"}
    model : array (layer, image, image)
        ``rsa``: model RDMs; ``cka``: raw Gram matrices of the layers.
    targets : array (group, image, image)
        ``rsa``: neural RDMs; ``cka``: response Grams ``Y Y^T``.
    perms : int array (perm, image)
        From :func:`draw_image_permutations`.
    method : str
        RDM comparison (``rsa``).

    Returns
    -------
    observed : ndarray (layer, group)
    null : ndarray (layer, group, perm)
    """
    M, T = _prepare(kind, model, targets, method)
    perms = np.asarray(perms)
    L, A, P = M.shape[0], T.shape[0], perms.shape[0]
    null = np.full((L, A, P), np.nan)
    ident = np.arange(M.shape[-1])[None]
    obs = np.full((L, A), np.nan)
    for k in range(L):
        if not np.isfinite(M[k]).all():
            continue
        block = _perm_block_cka if kind == "cka" else (lambda m, t, p: _perm_block_rsa(m, t, p, method))
        obs[k] = block(M[k], T, ident)[0]
        for j in range(0, P, BLOCK):
            null[k, :, j:j + BLOCK] = block(M[k], T, perms[j:j + BLOCK]).T
    return obs, null


def calc_bootstrap(kind: str, model, targets, boots, method: str = "pearson"):
    """Scores of every layer against every target on bootstrap resamples of the images -> (layer, group, boot).

    Pairs of an image with its own duplicate are left out (see the module docstring); ``model``
    and ``targets`` as in :func:`calc_permutation_null` (RSA with ``method`` recomputed on the kept
    entries, so Spearman ranks only those).
    """
    # exactly symmetric: a resampled pair (b, a) is the same dissimilarity as (a, b) (ties for Spearman)
    model = np.asarray(model, dtype=np.float64)
    model = 0.5 * (model + np.swapaxes(model, -1, -2))
    targets = np.asarray(targets, dtype=np.float64)
    targets = 0.5 * (targets + np.swapaxes(targets, -1, -2))
    boots = np.asarray(boots)
    L, A, B = model.shape[0], targets.shape[0], boots.shape[0]
    n = model.shape[-1]
    out = np.full((L, A, B), np.nan)
    iu = np.triu_indices(n, 1)
    for b, idx in enumerate(boots):
        if kind == "rsa":
            keep = idx[iu[0]] != idx[iu[1]]
            i, j = idx[iu[0]][keep], idx[iu[1]][keep]
            out[:, :, b] = rsa.COMPARISONS[method](model[:, i, j], targets[:, i, j])
        else:
            keep = (idx[:, None] != idx[None, :]) | np.eye(n, dtype=bool)
            Kb = center_gram(model[:, idx[:, None], idx[None, :]]) * keep
            Tb = center_gram(targets[:, idx[:, None], idx[None, :]]) * keep
            a, t = Kb.reshape(L, -1), Tb.reshape(A, -1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, :, b] = (a @ t.T) / (np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(t, axis=1)[None, :])
    return out


def calc_p_values(observed, null):
    """One-sided permutation p-values ``(1 + #{null >= observed}) / (1 + n_perm)``; NaN where observed is NaN.

    observed (..., ), null (..., perm).
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    ge = (null >= observed[..., None] - 1e-12 * np.abs(observed[..., None])).sum(axis=-1)
    p = (1.0 + ge) / (1.0 + null.shape[-1])
    return np.where(np.isfinite(observed), p, np.nan)


def calc_max_p_values(observed, null):
    """Max-statistic p-values over the first axis (layers): observed (layer, ...), null (layer, ..., perm).

    ``(1 + #{max over layers of null >= observed}) / (1 + n_perm)``; layers with NaN scores are left
    out of the maximum (and get NaN).
    """
    null = np.asarray(null, dtype=np.float64)
    top = np.nanmax(np.where(np.isfinite(null), null, -np.inf), axis=0)  # (..., perm)
    return calc_p_values(observed, np.broadcast_to(top, null.shape))


def calc_percentiles(samples, q=(2.5, 97.5)):
    """Percentiles over the last axis, ignoring NaN draws -> (len(q), ...)."""
    samples = np.asarray(samples, dtype=np.float64)
    ok = np.isfinite(samples).any(axis=-1)
    out = np.full((len(q),) + samples.shape[:-1], np.nan)
    if ok.any():
        out[:, ok] = np.nanpercentile(samples[ok], q, axis=-1)
    return out


def calc_ridge_permutation(R, Y, perms, backend="numpy"):
    """Permutation p-values of leave-one-out ridge r, per layer and neuron, from one set of operators.

    Permuting the images of the Gram matrix, ``K -> P K P^T``, permutes its eigenvectors (``U -> P U``)
    and so the residual operator (``R -> P R P^T``); the leave-one-out r of ``P K P^T`` against ``Y``
    is the r of ``K`` against ``P^T Y`` (the responses' images in the inverse permutation).  So the null needs no new eigendecomposition: the
    responses' images are permuted instead, each permutation scored with the same ``R`` (and, with
    several alphas, each neuron's alpha chosen again, as for the observed score).

    Parameters
    ----------
    R : array (layer, alpha, image, image)
        Residual operators of every layer of one model (:func:`neuroxr.mapping.kernels.calc_residual_operators`).
    Y : array (image, neuron)
    perms : int array (perm, image)

    Returns
    -------
    ndarray (2, layer, neuron)
        The one-sided p-value ``(1 + #{null >= r}) / (1 + n_perm)`` and the max-statistic
        p-value over the layers (``#{max over layers of null >= r}``); NaN where r is NaN.
    """
    from .kernels import calc_loo_scores

    Y = np.asarray(Y, dtype=np.float64)
    L, N = R.shape[0], Y.shape[1]
    n_out = 1 if R.shape[1] == 1 else 2
    obs = calc_loo_scores(R, Y, n_out=n_out, backend=backend)[0]  # (layer, neuron)
    ge = np.zeros((L, N))
    ge_max = np.zeros((L, N))
    tol = 1e-12 * np.abs(obs)
    step = max(1, BLOCK // max(1, N // 256 + 1))
    for j in range(0, len(perms), step):
        block = perms[j:j + step]
        # K[p][:, p] against Y is K against Y[p^-1]: columns (perm, neuron)
        Yp = np.concatenate([Y[np.argsort(p)] for p in block], axis=1)
        null = calc_loo_scores(R, Yp, n_out=n_out, backend=backend)[0].reshape(L, len(block), N)
        ge += (null >= (obs - tol)[:, None]).sum(axis=1)
        top = np.max(np.where(np.isfinite(null), null, -np.inf), axis=0)  # (perm, neuron)
        ge_max += (top[None] >= (obs - tol)[:, None]).sum(axis=1)
    P = len(perms)
    out = np.stack([(1.0 + ge) / (1.0 + P), (1.0 + ge_max) / (1.0 + P)])
    return np.where(np.isfinite(obs)[None], out, np.nan)
