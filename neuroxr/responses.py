"""Trials -> reliability -> neuron selection.

Split-half reliability
----------------------
For each of ``n_splits`` random splits, the trials of every image are split into two halves,
each half is averaged, and the Pearson r across images of the two half-means is computed per
neuron and corrected with Spearman-Brown, ``2 r / (1 + r)``; the corrected values are averaged
over splits.

The splits are drawn once, from the seed alone, so every neuron sees the same splits and the
result does not depend on chunking::

    keys = numpy.random.default_rng(seed).random((n_splits, n_images, n_trials))

For split ``s`` and image ``i`` the trial slots are ranked by ``keys[s, i]`` (ascending).  A
neuron's *available* trials for that image (the finite ones; NaN marks an image shown fewer
times) keep that order; the first ``k // 2`` of its ``k`` available trials form half A and the
remaining ``k - k // 2`` half B.  Images with fewer than 2 available trials are left out of that
neuron's correlation.  A neuron with constant half-means gets NaN.

The computation is a batched matrix product (per image: trials @ half-A weights; half B
follows from the trial sum), vectorised over
neurons and mapped over neuron chunks with dask, so 60,000 neurons x 118 images x 50 trials run
out of core.  Neurons sharing the same pattern of missing trials share one weight tensor.
"""
from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from . import schema as S
from .errors import InvalidArgumentError, MissingDataError
from .io.lock import study_lock
from .io.store import append_variables, open_dataset
from .schema import SchemaError
from .study import open_study

RUNNING_P = 0.05
SELECTIVE_P = 0.05


# --------------------------------------------------------------------------- reliability
def draw_split_keys(n_splits: int, n_images: int, n_trials: int, seed: int = 0) -> np.ndarray:
    """The random keys (split, image, trial) that define the splits (see the module docstring)."""
    return np.random.default_rng(seed).random((n_splits, n_images, n_trials))


def _split_weights(keys: np.ndarray, valid: np.ndarray):
    """Half-A weights for one pattern of available trials.

    Parameters
    ----------
    keys : (split, image, trial)
    valid : (image, trial) bool

    Returns
    -------
    wa : (image, trial, split) float64, averaging half A (the first ``k // 2`` available trials)
    ka, kb : (image,) trials in half A and half B (``k - k // 2``)
    ok : (image,) bool, images with at least 2 available trials
    """
    masked = np.where(valid[None], keys, keys + 2.0)  # unavailable trials sort last
    pos = np.argsort(np.argsort(masked, axis=-1, kind="stable"), axis=-1, kind="stable")
    k = valid.sum(-1)  # (image,)
    ka = k // 2
    kb = k - ka
    in_a = valid[None] & (pos < ka[None, :, None])
    wa = in_a / np.maximum(ka, 1)[None, :, None]
    return np.ascontiguousarray(wa.transpose(1, 2, 0)), ka, kb, k >= 2


def _reliability_dense(x: np.ndarray, keys: np.ndarray, batch: int = 512) -> np.ndarray:
    """Split-half reliability of a block ``x`` (neuron, image, trial) -> (neuron,) float64.

    Half A's means are one (neuron, trial) @ (trial, split) product per image; half B's follow
    from the sum of the available trials.
    """
    n_neuron, n_image, n_trial = x.shape
    out = np.full(n_neuron, np.nan)
    if n_neuron == 0:
        return out
    finite = np.isfinite(x)
    packed = np.packbits(finite.reshape(n_neuron, -1), axis=1)
    patterns, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    for p in range(len(patterns)):
        members = np.flatnonzero(inverse == p)
        wa, ka, kb, ok = _split_weights(keys, finite[first[p]])
        if ok.sum() < 3:
            continue  # fewer than 3 images with 2+ trials: no correlation
        imgs = np.flatnonzero(ok)
        for start in range(0, len(members), batch):
            idx = members[start:start + batch]
            # (image, neuron, trial), NaN -> 0, contiguous per image for BLAS
            xb = np.ascontiguousarray(
                np.where(finite[idx][:, imgs], x[idx][:, imgs], 0.0).astype(np.float64).transpose(1, 0, 2))
            a = np.matmul(xb, wa[imgs])  # (image, neuron, split)
            total = xb.sum(-1)[..., None]  # (image, neuron, 1)
            b = (total - a * ka[imgs, None, None]) / kb[imgs, None, None]
            a -= a.mean(0)
            b -= b.mean(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.einsum("ins,ins->ns", a, b) / np.sqrt(
                    np.einsum("ins,ins->ns", a, a) * np.einsum("ins,ins->ns", b, b))  # (neuron, split)
                sb = 2 * r / (1 + r)
            out[idx] = sb.mean(-1)
    return out


def calc_splithalf_reliability(trials: xr.DataArray, n_splits: int = 100, seed: int = 0) -> xr.DataArray:
    """Split-half reliability per neuron, Spearman-Brown corrected, averaged over seeded splits.

    Parameters
    ----------
    trials : DataArray (neuron, image, trial)
        NaN where an image had fewer trials (see the module docstring for how those are split).
        Dask-backed input stays lazy: the work is mapped over neuron chunks (image and trial
        are made single chunks).
    n_splits : int
        Number of random splits (default 100).
    seed : int
        Seed of the splits; the same splits apply to every neuron.

    Returns
    -------
    DataArray (neuron)
        float64 ``splithalf_r`` with the neuron coords of ``trials``; lazy when ``trials`` is.
    """
    if not isinstance(trials, xr.DataArray):
        raise SchemaError(f"trials must be a DataArray (neuron, image, trial), got {type(trials).__name__}")
    S.check_dims(trials, (S.NEURON, S.IMAGE, S.TRIAL), S.TRIALS)
    if trials.sizes[S.TRIAL] < 2:
        raise SchemaError(f"variable 'trials' has {trials.sizes[S.TRIAL]} trial; split halves need at least 2")
    if n_splits < 1:
        raise InvalidArgumentError(f"n_splits must be >= 1, got {n_splits}")
    keys = draw_split_keys(int(n_splits), trials.sizes[S.IMAGE], trials.sizes[S.TRIAL], int(seed))
    data = trials.data
    if trials.chunks is not None:
        data = data.rechunk({1: -1, 2: -1})
        values = da.map_blocks(
            _reliability_dense, data, keys, drop_axis=[1, 2], dtype=np.float64,
            meta=np.empty((0,), dtype=np.float64),
        )
    else:
        values = _reliability_dense(np.asarray(data), keys)
    coords = {k: v for k, v in trials.coords.items() if v.dims == (S.NEURON,)}
    out = xr.DataArray(values, dims=(S.NEURON,), coords=coords, name="splithalf_r")
    out.attrs.update({
        "description": "split-half reliability, Spearman-Brown corrected, mean over random splits",
        "n_splits": int(n_splits), "seed": int(seed),
    })
    return out


# --------------------------------------------------------------------------- selection
def _match_cre(values, lines) -> np.ndarray:
    vals = np.asarray(values).astype(str)
    if isinstance(lines, str) and lines.lower() == "excitatory":
        return np.array([S.is_excitatory(v) for v in vals], dtype=bool)
    if isinstance(lines, str):
        lines = [s for s in lines.split(",") if s.strip()]
    lines = [str(s).strip() for s in lines]
    return np.array(
        [any(v == c or v.startswith(c + "-") or v.startswith(c + "_") for c in lines) for v in vals], dtype=bool
    )


def _neuron_values(responses: xr.Dataset, name: str, why: str) -> np.ndarray:
    if name not in responses.variables:
        raise SchemaError(
            f"responses have no {name!r} (neuron) values, needed {why}; ingest them with the metadata "
            f"or drop that criterion"
        )
    return np.asarray(responses[name].values, dtype=np.float64)


def _reliability_of(responses: xr.Dataset, n_splits=100, seed=0) -> np.ndarray:
    if "splithalf_r" in responses.variables:
        return np.asarray(responses["splithalf_r"].values, dtype=np.float64)
    if S.TRIALS in responses:
        return np.asarray(calc_splithalf_reliability(responses[S.TRIALS], n_splits, seed).values)
    raise SchemaError(
        "responses have neither 'splithalf_r' nor 'trials'; a reliability threshold needs trial-level "
        "responses (ingest them with --trials) or drop --min-reliability"
    )


def select_neurons(
    responses: xr.Dataset,
    min_reliability: float | None = None,
    cre_lines=None,
    exclude_running: bool = False,
    image_selective: bool = False,
    *,
    n_splits: int = 100,
    seed: int = 0,
) -> xr.DataArray:
    """Which neurons pass the selection criteria.

    Parameters
    ----------
    responses : Dataset
        A responses Dataset (neuron coords ``cre_line``, ``p_run_mod``, ``p_image``,
        ``splithalf_r`` as needed).  Without ``splithalf_r`` but with ``trials``, the
        reliability is computed (``n_splits``, ``seed``).
    min_reliability : float, optional
        Keep ``splithalf_r >= min_reliability`` (NaN reliability fails).
    cre_lines : None, "excitatory", list of str or "A,B"
        ``"excitatory"``: :data:`neuroxr.schema.EXCITATORY_CRE_LINES`; a name matches itself and
        its full driver names (``Cux2`` matches ``Cux2-CreERT2``).
    exclude_running : bool
        Drop running-modulated neurons: keep ``p_run_mod`` NaN or > 0.05.
    image_selective : bool
        Keep ``p_image < 0.05``.

    Returns
    -------
    DataArray (neuron) of bool, named ``selected``, with the criteria in its attrs.
    """
    n = responses.sizes[S.NEURON]
    keep = np.ones(n, dtype=bool)
    if cre_lines is not None and not (isinstance(cre_lines, str) and cre_lines.lower() in ("all", "")):
        if "cre_line" not in responses.variables:
            raise SchemaError("responses have no 'cre_line' coordinate; drop --cre-lines")
        keep &= _match_cre(responses["cre_line"].values, cre_lines)
    if exclude_running:
        p = _neuron_values(responses, "p_run_mod", "to exclude running-modulated neurons (--exclude-running)")
        keep &= np.isnan(p) | (p > RUNNING_P)
    if image_selective:
        p = _neuron_values(responses, "p_image", "to keep image-selective neurons (--image-selective)")
        keep &= p < SELECTIVE_P
    if min_reliability is not None:
        r = _reliability_of(responses, n_splits, seed)
        with np.errstate(invalid="ignore"):
            keep &= r >= float(min_reliability)
    out = xr.DataArray(keep, dims=(S.NEURON,), coords={S.NEURON: responses[S.NEURON].values}, name="selected")
    out.attrs["criteria"] = json.dumps({
        "min_reliability": min_reliability,
        "cre_lines": cre_lines if cre_lines is None or isinstance(cre_lines, str) else list(cre_lines),
        "exclude_running": bool(exclude_running), "image_selective": bool(image_selective),
        "running_p": RUNNING_P, "selective_p": SELECTIVE_P,
    })
    out.attrs["n_selected"] = int(keep.sum())
    return out


def count_reliable_neurons(responses: xr.Dataset, thresholds, *, by: str | None = "area", **criteria) -> pd.DataFrame:
    """Neuron counts as the reliability threshold varies.

    Parameters
    ----------
    responses : Dataset
        With ``splithalf_r`` or ``trials``.
    thresholds : sequence of float
    by : str or None
        Neuron coord to count by (default ``area``); ``None`` gives only the total.
    **criteria
        Other :func:`select_neurons` criteria applied at every threshold (``cre_lines``, ...).

    Returns
    -------
    DataFrame
        Index ``threshold``; one column per value of ``by`` plus ``total``.
    """
    base = select_neurons(responses, None, **criteria).values
    r = _reliability_of(responses, criteria.get("n_splits", 100), criteria.get("seed", 0))
    groups = np.asarray(responses[by].values).astype(str) if by else None
    rows = []
    for t in thresholds:
        with np.errstate(invalid="ignore"):
            keep = base & (r >= float(t))
        row = {"threshold": float(t)}
        if groups is not None:
            for g in sorted(set(groups.tolist())):
                row[g] = int((keep & (groups == g)).sum())
        row["total"] = int(keep.sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("threshold")


# --------------------------------------------------------------------------- study level
def select_study(
    study,
    min_reliability: float | None = None,
    cre_lines=None,
    exclude_running: bool = False,
    image_selective: bool = False,
    *,
    n_splits: int = 100,
    seed: int = 0,
    recompute: bool = False,
) -> xr.DataArray:
    """Select neurons of a study and store the result in ``responses.zarr``.

    Computes ``splithalf_r`` (neuron coord) from ``trials`` when it is missing (or with
    ``recompute``), then stores the bool data variable ``selected`` (neuron) whose attrs hold
    the criteria.  The store is rewritten atomically.

    Returns
    -------
    DataArray (neuron) bool
    """
    with study_lock(study, S.RESPONSES_STORE):  # read, compute and rewrite as one writer
        return _select_locked(Path(study) / S.RESPONSES_STORE, min_reliability, cre_lines, exclude_running,
                              image_selective, n_splits, seed, recompute)


def _select_locked(path, min_reliability, cre_lines, exclude_running, image_selective, n_splits, seed, recompute):
    ds = open_dataset(path, name="responses; run `neuroxr ingest` or `neuroxr simulate`")
    new_coords = {}
    if S.TRIALS in ds and (recompute or "splithalf_r" not in ds.variables):
        r = calc_splithalf_reliability(ds[S.TRIALS], n_splits, seed).compute()
        ds = ds.assign_coords(splithalf_r=(S.NEURON, r.values))
        ds["splithalf_r"].attrs.update(r.attrs)
        new_coords["splithalf_r"] = ds["splithalf_r"]
    sel = select_neurons(ds, min_reliability, cre_lines, exclude_running, image_selective,
                         n_splits=n_splits, seed=seed)
    upd = xr.Dataset({"selected": sel.variable}, coords={S.NEURON: ds[S.NEURON].values})
    for k, v in new_coords.items():
        upd = upd.assign_coords({k: v.variable})
    upd["selected"].attrs.update(sel.attrs)
    append_variables(path, upd)
    return sel


def load_selected_responses(study) -> xr.Dataset:
    """The study's responses restricted to the selected neurons (all neurons without a selection).

    Returns
    -------
    Dataset
        Lazy responses Dataset (``mean`` (neuron, image), ...).
    """
    ds = open_study(study).responses
    if "selected" not in ds.variables:
        return ds
    keep = np.asarray(ds["selected"].values, dtype=bool)
    if not keep.any():
        raise MissingDataError(
            f"{Path(study) / S.RESPONSES_STORE}: no neuron is selected ({ds['selected'].attrs.get('criteria')}); "
            f"loosen the criteria of `neuroxr select`"
        )
    return ds.isel({S.NEURON: np.flatnonzero(keep)})


__all__ = [
    "calc_splithalf_reliability", "draw_split_keys", "select_neurons", "count_reliable_neurons",
    "select_study", "load_selected_responses",
]
