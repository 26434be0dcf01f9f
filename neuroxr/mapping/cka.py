"""Centred kernel alignment (CKA) and effective dimensionality from n x n Gram matrices.

Labels-free NumPy kernels, samples first and batched over leading axes (layers, areas), like
:mod:`neuroxr.mapping.kernels`.  Everything here needs only the Gram matrix ``K = X X^T`` of a
layer's **raw** features (the features store's ``gram``) and the Gram matrix ``L = Y Y^T`` of an
area's responses (image, neuron); never the p-wide features.

- :func:`center_gram`: ``H K H`` with ``H = I - 11^T / n`` (the Gram of the features centred over
  images).
- :func:`calc_cka`: linear CKA (Kornblith et al. 2019), ``<Kc, Lc>_F / (||Kc||_F ||Lc||_F)``.
- :func:`calc_debiased_cka`: CKA with the unbiased HSIC estimator (Song et al. 2012), as used by
  Kornblith et al. 2019 and Nguyen et al. 2021; computed here with the "unbiased centring" form
  (zero diagonal, row/column means over ``n - 2`` with a ``2 (n - 1)`` correction).
- :func:`calc_participation_ratio`: effective dimensionality ``(sum l)^2 / sum l^2`` of the
  eigenvalues ``l`` of the centred Gram, which is ``trace(Kc)^2 / ||Kc||_F^2`` (no
  eigendecomposition needed).

Why the raw Gram (``gram``), not the z-scored one (``gram_z``): linear CKA is defined on centred
features and is invariant to orthogonal transforms and isotropic scaling, not to rescaling each
feature; z-scoring would give every unit the same weight, blowing up units that barely vary
(a ReLU unit firing on one image counts as much as the strongest unit), and the responses side
is not z-scored either.  The same holds for the participation ratio, the PCA of the raw features
(as in Elmoznino & Bonner).  Centring the Gram is exact: ``H (X X^T) H = Xc Xc^T``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["calc_cka", "calc_debiased_cka", "calc_participation_ratio", "center_gram", "center_gram_unbiased"]


def center_gram(K):
    """``H K H`` (..., n, n): the Gram matrix of features centred over images (symmetrised)."""
    K = np.asarray(K, dtype=np.float64)
    Kc = K - K.mean(axis=-1, keepdims=True)
    Kc = Kc - Kc.mean(axis=-2, keepdims=True)
    return 0.5 * (Kc + np.swapaxes(Kc, -1, -2))


def center_gram_unbiased(K):
    """The "unbiased centring" of ``K`` (..., n, n): ``<U(K), U(L)> / (n (n - 3))`` is the unbiased HSIC.

    The diagonal is set to zero, row and column means are taken over ``n - 2`` and corrected by
    their total over ``2 (n - 1)``, and the diagonal is zero again.
    """
    K = np.array(K, dtype=np.float64)
    n = K.shape[-1]
    if n < 4:
        raise InvalidArgumentError(f"the unbiased HSIC estimator (cka-debiased) needs at least 4 images, got {n}")
    K = 0.5 * (K + np.swapaxes(K, -1, -2))
    idx = np.arange(n)
    K[..., idx, idx] = 0.0
    means = K.sum(axis=-1) / (n - 2)
    means = means - means.sum(axis=-1, keepdims=True) / (2 * (n - 1))
    K = K - means[..., :, None] - means[..., None, :]
    K[..., idx, idx] = 0.0
    return K


def _aligned(A, B):
    """A (L, n, n), B (G, n, n) -> <A_l, B_g>_F / (||A_l|| ||B_g||) (L, G); NaN where a norm vanishes."""
    a = A.reshape(A.shape[0], -1)
    b = B.reshape(B.shape[0], -1)
    na = np.sqrt(np.einsum("li,li->l", a, a))
    nb = np.sqrt(np.einsum("gi,gi->g", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a @ b.T) / (na[:, None] * nb[None, :])
    bad = ~(na > 0)[:, None] | ~(nb > 0)[None, :]
    return np.where(bad | ~np.isfinite(out), np.nan, out)


def _aligned_unbiased(A, B):
    """Debiased CKA from unbiased-centred A (L, n, n), B (G, n, n): HSIC_1(A, B) / sqrt(HSIC_1(A, A) HSIC_1(B, B)).

    The self-HSIC terms can be negative for tiny samples: NaN there.
    """
    a = A.reshape(A.shape[0], -1)
    b = B.reshape(B.shape[0], -1)
    saa = np.einsum("li,li->l", a, a)
    sbb = np.einsum("gi,gi->g", b, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a @ b.T) / np.sqrt(saa[:, None] * sbb[None, :])
    bad = ~(saa > 0)[:, None] | ~(sbb > 0)[None, :]
    return np.where(bad | ~np.isfinite(out), np.nan, out)


def _layers(K):
    K = np.asarray(K, dtype=np.float64)
    return K.reshape(-1, *K.shape[-2:]), K.shape[:-2]


def calc_cka(K, L):
    """Linear CKA of every Gram matrix of ``K`` against every one of ``L``.

    Parameters
    ----------
    K : array (..., image, image)
        Gram matrices ``X X^T`` of raw features (centred here).
    L : array (..., image, image)
        Gram matrices ``Y Y^T`` of responses (image, neuron) (centred here).

    Returns
    -------
    ndarray (K_leading..., L_leading...)
        NaN where a centred Gram vanishes (constant features or responses) or is not finite.
    """
    K3, lk = _layers(K)
    L3, ll = _layers(L)
    return _aligned(center_gram(K3), center_gram(L3)).reshape(lk + ll)


def calc_debiased_cka(K, L):
    """Debiased linear CKA (unbiased HSIC estimator) of every ``K`` against every ``L``; see :func:`calc_cka`."""
    K3, lk = _layers(K)
    L3, ll = _layers(L)
    return _aligned_unbiased(center_gram_unbiased(K3), center_gram_unbiased(L3)).reshape(lk + ll)


def calc_participation_ratio(K):
    """Effective dimensionality ``(sum l)^2 / sum l^2`` of the centred Gram's eigenvalues, (...,).

    With ``Kc = H K H``: ``sum l = trace(Kc)`` and ``sum l^2 = ||Kc||_F^2``.  It equals the
    participation ratio of PCA's explained variances of the features.  NaN for a constant layer.
    """
    K3, lead = _layers(K)
    Kc = center_gram(K3)
    tr = np.einsum("lii->l", Kc)
    fro = np.einsum("lij,lij->l", Kc, Kc)
    scale = np.einsum("lii->l", np.abs(K3))
    with np.errstate(invalid="ignore", divide="ignore"):
        pr = tr * tr / fro
    const = ~(tr > 1e-12 * np.where(scale > 0, scale, 1.0))
    return np.where(const | ~np.isfinite(pr), np.nan, pr).reshape(lead)
