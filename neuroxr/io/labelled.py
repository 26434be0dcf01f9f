"""Labelled inputs: netCDF and xarray Zarr files, whose dims are mapped to the store's by name.

Recognised dim names: ``image`` (also ``presentation``, ``stimulus``, ``stimulus_id``,
``image_id``, ``frame``), ``neuron`` (also ``neuroid``, ``unit``, ``cell``, ``cell_specimen_id``,
``roi``), ``trial`` (also ``repetition``, ``rep``).
"""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from .. import schema as S
from ..errors import NeuroxrError
from ..schema import SchemaError
from .reader import where
from .store import open_dataset

SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5", ".cdf", ".zarr")

DIM_ALIASES = {
    S.IMAGE: ("image", "presentation", "stimulus", "stimulus_id", "image_id", "frame", "stimuli", "images"),
    S.NEURON: ("neuron", "neuroid", "unit", "cell", "cell_specimen_id", "roi", "neurons", "units"),
    S.TRIAL: ("trial", "repetition", "rep", "trials", "repetitions"),
}


def suffix(path: Path) -> str:
    """The format suffix of ``path``: ``.zarr`` for any directory, else the lower-cased suffix."""
    name = path.name.lower()
    if path.is_dir() or name.endswith(".zarr"):
        return ".zarr"
    return path.suffix.lower()


def open_labelled(path: Path) -> xr.Dataset:
    """Open a netCDF file (h5netcdf, then xarray's default engine) or a Zarr store."""
    try:
        if suffix(path) == ".zarr":
            return open_dataset(path, chunks=None)
        try:
            return xr.open_dataset(path, engine="h5netcdf")
        except Exception:  # noqa: BLE001 - netCDF3 and others: xarray's default engine decides
            return xr.open_dataset(path)
    except NeuroxrError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's
        raise SchemaError(f"{path}: cannot be read as netCDF/Zarr ({type(exc).__name__}: {exc})") from exc


def pick_var(ds: xr.Dataset, key, path) -> xr.DataArray:
    """The variable ``key`` of ``ds``, or its only data variable."""
    if key is not None:
        if key not in ds.variables:
            raise SchemaError(f"{path}: no variable {key!r}; it holds {sorted(map(str, ds.data_vars))}")
        return ds[key]
    names = list(ds.data_vars)
    if len(names) != 1:
        raise SchemaError(
            f"{path}: holds {len(names)} variables {sorted(map(str, names))}; name one as {path}:VARIABLE"
        )
    return ds[names[0]]


def _renames(dims, targets) -> dict:
    ren = {}
    for d in dims:
        for target, aliases in DIM_ALIASES.items():
            if str(d).lower() in aliases and target in targets and d != target:
                ren[d] = target
    return ren


def to_store_order(arr, expected: tuple, name, source):
    """A DataArray with aliased dims -> raw data in ``expected`` order; plain arrays unchanged."""
    if isinstance(arr, xr.DataArray):
        arr = arr.rename(_renames(arr.dims, expected))
        if set(arr.dims) != set(expected):
            raise SchemaError(f"{where(source)}variable {name!r} has dims {tuple(arr.dims)}, expected {expected}")
        return arr.transpose(*expected).data
    return arr


def as_labelled(obj, name, src):
    """A labelled input as a Dataset with the store's dim names (plain arrays pass through)."""
    if isinstance(obj, xr.DataArray):
        obj = obj.to_dataset(name=name) if obj.name is None or obj.name not in obj.coords else \
            obj.rename(None).to_dataset(name=name)
        if obj[name].name != name:
            obj = obj.rename({list(obj.data_vars)[0]: name})
    if not isinstance(obj, xr.Dataset):
        return obj
    ren = _renames(obj.dims, DIM_ALIASES)
    if ren:
        if any(t in obj.variables and t not in ren for t in ren.values()):
            raise SchemaError(f"{src}: cannot rename dims {ren}: a variable already has that name")
        obj = obj.rename(ren)
    return obj


def alias_dim(arr, target):
    """The dim of ``arr`` that is an alias of ``target``."""
    for d in arr.dims:
        if str(d).lower() in DIM_ALIASES[target]:
            return d
    raise SchemaError(f"variable {arr.name!r} has dims {arr.dims}; none is {target!r}")


def store_shape(arr, dims) -> tuple:
    """Sizes of ``dims`` (by alias) of a DataArray; a plain array's shape."""
    if not isinstance(arr, xr.DataArray):
        return tuple(int(s) for s in arr.shape)
    return tuple(int(arr.sizes[alias_dim(arr, d)]) for d in dims)


__all__ = ["DIM_ALIASES", "SUFFIXES", "suffix", "open_labelled", "pick_var", "to_store_order", "as_labelled",
           "alias_dim", "store_shape"]
