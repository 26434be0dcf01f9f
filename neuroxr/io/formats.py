"""Reading any supported input file: ``FILE[:key]`` dispatched to its format's reader by suffix.

=================================  ==========================================
suffix                             reader
=================================  ==========================================
``.npy``, ``.npz``                 :mod:`neuroxr.io.npy` (header-checked)
``.csv``, ``.tsv``, ``.txt``       :mod:`neuroxr.io.tables`
``.nc``, ``.h5``, ``.zarr``, ...   :mod:`neuroxr.io.labelled`, BrainIO assemblies
                                   through :mod:`neuroxr.io.brainio`
=================================  ==========================================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError
from ..schema import SchemaError
from . import labelled, npy, tables
from .brainio import is_brainio, read_brainio_assembly
from .builders import as_int_ids
from .reader import check_allocation
from .store import hash_file


def parse_source(spec) -> tuple[Path, str | None]:
    """Split ``'FILE[:key]'`` into the path and the key (variable or array name).

    A path that exists as given is never split, so file names with colons work.
    """
    if isinstance(spec, Path):
        return spec, None
    s = str(spec)
    if Path(s).exists() or ":" not in s:
        return Path(s), None
    path, key = s.rsplit(":", 1)
    return Path(path), (key or None)


def _read_labelled(path: Path, key, allow_unknown_area: bool):
    ds = labelled.open_labelled(path)
    if key is None and (S.MEAN in ds or S.TRIALS in ds or S.PIXELS in ds):
        check_allocation(int(ds.nbytes), f"{path} (variables {sorted(map(str, ds.data_vars))})")
        return ds
    if key is None and is_brainio(ds):
        check_allocation(int(ds.nbytes), f"{path} (a BrainIO assembly)")
        return read_brainio_assembly(path, allow_unknown_area=allow_unknown_area)
    da = labelled.pick_var(ds, key, path)
    check_allocation(int(da.nbytes), f"{path}: variable {da.name!r} (shape {da.shape}, {da.dtype})")
    if is_brainio(da):
        return read_brainio_assembly(path, variable=key, allow_unknown_area=allow_unknown_area)
    return da


_READERS = {
    **{s: lambda path, key, _: npy.read_numpy_file(path, key) for s in npy.SUFFIXES},
    **{s: lambda path, key, _: tables.read_numeric_table(path) for s in tables.SUFFIXES},
    **{s: _read_labelled for s in labelled.SUFFIXES},
}


def read_array(spec, *, allow_unknown_area: bool = False):
    """Read ``FILE[:key]``: a numpy array (``.npy``, ``.npz``, ``.csv``, ``.txt``) or a labelled
    xarray object (netCDF ``.nc``/``.h5``, ``.zarr``).

    Returns
    -------
    numpy.ndarray, DataArray or Dataset
        A Dataset only when a labelled file holds a neuroxr responses Dataset (``mean``/``trials``)
        or a BrainIO assembly (see :func:`~neuroxr.io.brainio.read_brainio_assembly`) and no key was given.
    """
    path, key = parse_source(spec)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (from {str(spec)!r})")
    kind = labelled.suffix(path)
    reader = _READERS.get(kind)
    if reader is None:
        raise SchemaError(f"{path}: unknown file type {kind!r}; use .npy, .npz:KEY, .nc (netCDF), .zarr or .csv")
    return reader(path, key, allow_unknown_area)


def read_ids(spec, source_name="neuron ids") -> np.ndarray:
    """Read integer ids from ``.npy``/``.npz:key``/``.txt``/``.csv`` (one per line)."""
    path, _ = parse_source(spec)
    return as_int_ids(np.asarray(read_array(spec)).ravel(), source_name, path)


def read_rdms(spec, sites=None) -> tuple[np.ndarray, list]:
    """Read RDMs from a CSV (:func:`~neuroxr.io.tables.read_rdm_csv`) or an array file (site, image, image).

    Returns
    -------
    rdm : ndarray (site, image, image)
    sites : list of str
    """
    path, key = parse_source(spec)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (RDMs)")
    if labelled.suffix(path) in tables.SUFFIXES:
        return tables.read_rdm_csv(path, sites)
    arr = read_array(spec)
    if isinstance(arr, xr.Dataset):
        arr = labelled.pick_var(arr, key or (S.RDM if S.RDM in arr else None), path)
    if isinstance(arr, xr.DataArray):
        if sites is None and S.SITE in arr.coords:
            sites = [str(s) for s in arr[S.SITE].values]
        arr = arr.values
    return np.asarray(arr), (list(sites) if sites is not None else None)


def input_entry(spec):
    """The provenance entry of an input: path, key and (files) sha256, hashed only after the
    header checks of :func:`~neuroxr.io.npy.inspect_numpy_file` (a sparse file claiming TBs is
    refused, not hashed for hours)."""
    if spec is None or not isinstance(spec, (str, Path)):
        return None if spec is None else "in-memory"
    path, key = parse_source(spec)
    entry = {"path": str(path), "key": key}
    if path.is_file():
        if path.suffix.lower() in npy.SUFFIXES:
            npy.inspect_numpy_file(path, key)
        entry["sha256"] = hash_file(path)
    return entry


__all__ = ["parse_source", "read_array", "read_ids", "read_rdms", "input_entry"]
