"""BrainIO assemblies: netCDF files with dims presentation x neuroid [x time_bin]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..schema import SchemaError
from .builders import build_responses_dataset
from .labelled import open_labelled, pick_var
from .reader import to_float32
from .tables import normalise_meta


def is_brainio(obj) -> bool:
    """True for an xarray object with BrainIO's ``presentation`` and ``neuroid`` dims."""
    dims = set(obj.dims)
    return "presentation" in dims and "neuroid" in dims


def _assembly(path: Path, variable, time_bins) -> xr.DataArray:
    ds = open_labelled(path)
    da = pick_var(ds, variable, path) if isinstance(ds, xr.Dataset) else ds
    if not is_brainio(da):
        raise SchemaError(f"{path}: variable {da.name!r} has dims {da.dims}, expected (presentation, neuroid)")
    if "time_bin" in da.dims:
        da = da.mean("time_bin") if time_bins == "mean" else da.isel(time_bin=int(time_bins))
    extra = [d for d in da.dims if d not in ("presentation", "neuroid")]
    if extra:
        raise SchemaError(f"{path}: variable {da.name!r} has extra dims {extra}; select them away first")
    return da.transpose("presentation", "neuroid").load()


def _neuroid_meta(da: xr.DataArray):
    meta = pd.DataFrame({str(c): np.asarray(da[c].values) for c in da.coords
                         if da[c].dims == ("neuroid",) and c != "neuroid"})
    ids = None
    if "neuroid_id" in meta:
        try:
            ids = meta["neuroid_id"].astype(np.int64).to_numpy()
        except (TypeError, ValueError):
            ids = None
    return meta, ids


def read_brainio_assembly(path, variable=None, *, time_bins="mean", allow_unknown_area: bool = False) -> xr.Dataset:
    """Read a BrainIO-style netCDF assembly (dims presentation x neuroid [x time_bin]).

    Presentations of the same stimulus (``stimulus_id``, or the older ``image_id``) become
    trials; stimuli are numbered 0..n-1 in order of first appearance (the string id is kept as
    the image coord ``stimulus_id``).  Neuroid coords are mapped to the contract's neuron coords
    (``region`` -> ``area``, ...); string neuroid ids become ints 0..n-1 with the string kept as
    ``neuroid_id``.

    Parameters
    ----------
    path : path-like
        The netCDF file (read with xarray/h5netcdf; brainio itself is not needed).
    variable : str, optional
        Data variable to read; default the only one.
    time_bins : {"mean"} or int
        How to collapse a ``time_bin`` dim: average it, or take that index.
    allow_unknown_area : bool
        Keep region names outside :data:`neuroxr.io.builders.KNOWN_AREAS`.

    Returns
    -------
    Dataset
        ``mean`` (neuron, image), ``trials`` (neuron, image, trial) NaN-padded, neuron coords.
    """
    path = Path(path)
    da = _assembly(path, variable, time_bins)
    stim_coord = next((c for c in ("stimulus_id", "image_id") if c in da.coords), None)
    if stim_coord is None:
        raise SchemaError(
            f"{path}: presentation has no 'stimulus_id' or 'image_id' coordinate; "
            f"found {[c for c in da.coords if da[c].dims == ('presentation',)]}"
        )
    stim = pd.Index(np.asarray(da[stim_coord].values).astype(str))
    uniq = pd.unique(stim)
    code = pd.Index(uniq).get_indexer(stim)
    counts = np.bincount(code, minlength=len(uniq))
    rep = pd.Series(code).groupby(code).cumcount().to_numpy()
    values = np.asarray(da.values, dtype=np.float64)
    trials = np.full((values.shape[1], len(uniq), counts.max()), np.nan, dtype=np.float64)
    trials[:, code, rep] = values.T
    trials = to_float32(trials, S.TRIALS, path, allow_nan=True)  # checked here: the mean is of float32 trials
    meta, ids = _neuroid_meta(da)
    out = build_responses_dataset(
        trials=trials, neuron_ids=ids, meta=normalise_meta(meta, source=path), source=path,
        mean=np.nanmean(trials, axis=2) if counts.max() > 1 else trials[:, :, 0],
        allow_unknown_area=allow_unknown_area,
    )
    out = out.assign_coords(stimulus_id=(S.IMAGE, np.asarray(uniq, dtype=str)))
    if counts.max() == 1:
        out = out.drop_vars(S.TRIALS)
    return out


__all__ = ["read_brainio_assembly", "is_brainio"]
