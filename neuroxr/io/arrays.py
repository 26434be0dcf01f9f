"""Bring your own data: plain arrays, netCDF, xarray Zarr, BrainIO assemblies and neural RDMs.

Conventions
-----------
Plain arrays (``.npy``, ``.npz:key``) are *samples first*, as in scikit-learn:

- responses ``(image, neuron)``
- trials ``(image, neuron, trial)`` (NaN where an image had fewer trials)
- images ``(image, y, x)``, or ``(image, y, x, 3)`` RGB which is turned into grayscale with
  scikit-image's luminance weights (range kept, e.g. 0..255 stays 0..255).

Labelled inputs (netCDF, xarray Zarr, BrainIO assemblies) carry their own dims and are
transposed to the store's order.  Recognised dim names: ``image`` (also ``presentation``,
``stimulus``, ``stimulus_id``, ``image_id``, ``frame``), ``neuron`` (also ``neuroid``, ``unit``,
``cell``, ``cell_specimen_id``, ``roi``), ``trial`` (also ``repetition``, ``rep``).

The stores follow the contract of ``DESIGN.md``: ``stimuli.zarr`` holds ``pixels`` (image, y, x)
float32 and ``responses.zarr`` holds ``mean`` (neuron, image) float32, optional ``trials``
(neuron, image, trial) float32, with the neuron coords ``area``, ``cre_line``, ``depth_um``,
``cortical_layer`` and, where known, ``container``, ``p_run_mod``, ``p_image``, ``splithalf_r``.

Everything is validated before anything is written, and all stores of one call are first
written to temporary siblings and only then moved into place, so a failed ingest leaves the
study as it was.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError, StoreExistsError
from ..runtime import quiet_warnings
from ..schema import SchemaError
from . import store as _store

#: Zarr chunk sizes of the responses store (a neuron chunk holds every image and trial).
RESPONSES_CHUNKS = {S.NEURON: 2048, S.IMAGE: -1, S.TRIAL: -1}
#: Zarr chunk sizes of the stimuli store.
STIMULI_CHUNKS = {S.IMAGE: 256}

_DIM_ALIASES = {
    S.IMAGE: ("image", "presentation", "stimulus", "stimulus_id", "image_id", "frame", "stimuli", "images"),
    S.NEURON: ("neuron", "neuroid", "unit", "cell", "cell_specimen_id", "roi", "neurons", "units"),
    S.TRIAL: ("trial", "repetition", "rep", "trials", "repetitions"),
}
#: metadata column / coordinate names mapped to the neuron coords of the contract
_META_ALIASES = {
    "region": "area", "targeted_structure": "area", "brain_area": "area",
    "cre": "cre_line", "creline": "cre_line", "cre-line": "cre_line",
    "depth": "depth_um", "imaging_depth": "depth_um", "depth_um": "depth_um",
    "experiment_container_id": "container", "container_id": "container",
    "p_run_mod_ns": "p_run_mod", "p_ns": "p_image", "reliability": "splithalf_r",
}
_ID_COLUMNS = ("neuron", "neuron_id", "cell_specimen_id", "id")
_FLOAT_COORDS = ("depth_um", "p_run_mod", "p_image", "splithalf_r")
_STRING_COORDS = ("area", "cre_line", "cortical_layer")


# --------------------------------------------------------------------------- reading
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


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".zarr"):
        return ".zarr"
    return path.suffix.lower()


def _pick_var(ds: xr.Dataset, key, path) -> xr.DataArray:
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


def _open_labelled(path: Path, kind: str) -> xr.Dataset:
    try:
        if kind == ".zarr":
            return _store.open_dataset(path, chunks=None)
        try:
            return xr.open_dataset(path, engine="h5netcdf")
        except Exception:
            return xr.open_dataset(path)
    except NeuroxrError:
        raise
    except Exception as exc:
        raise SchemaError(f"{path}: cannot be read as netCDF/Zarr ({type(exc).__name__}: {exc})") from exc


def read_array(spec):
    """Read ``FILE[:key]``: a numpy array (``.npy``, ``.npz``, ``.csv``, ``.txt``) or a labelled
    xarray object (netCDF ``.nc``/``.h5``, ``.zarr``).

    Returns
    -------
    numpy.ndarray, DataArray or Dataset
        A Dataset only when a labelled file holds a neuroxr responses Dataset (``mean``/``trials``)
        or a BrainIO assembly (see :func:`read_brainio_assembly`) and no key was given.
    """
    path, key = parse_source(spec)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (from {str(spec)!r})")
    kind = _suffix(path)
    if kind in (".npy", ".npz"):
        # header checked against the file before reading: truncated/corrupt files and absurd
        # sizes fail fast with a SchemaError naming the file (issue 8, hostile input)
        from .integrity import read_numpy_file

        return read_numpy_file(path, key)
    if kind in (".csv", ".txt", ".tsv"):
        try:
            df = pd.read_csv(path, sep=_csv_sep(path), header=None)
        except Exception as exc:
            raise SchemaError(f"{path}: cannot be read as a table ({exc})") from exc
        return df.to_numpy()
    if kind in (".nc", ".nc4", ".netcdf", ".h5", ".hdf5", ".cdf", ".zarr"):
        ds = _open_labelled(path, kind)
        if key is None and (S.MEAN in ds or S.TRIALS in ds or S.PIXELS in ds):
            return ds
        if key is None and _is_brainio(ds):
            return read_brainio_assembly(path)
        da = _pick_var(ds, key, path)
        if _is_brainio(da):
            return read_brainio_assembly(path, variable=key)
        return da
    raise SchemaError(
        f"{path}: unknown file type {kind!r}; use .npy, .npz:KEY, .nc (netCDF), .zarr or .csv"
    )


def _is_brainio(obj) -> bool:
    dims = set(obj.dims)
    return "presentation" in dims and "neuroid" in dims


def read_brainio_assembly(path, variable=None, *, time_bins="mean") -> xr.Dataset:
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

    Returns
    -------
    Dataset
        ``mean`` (neuron, image), ``trials`` (neuron, image, trial) NaN-padded, neuron coords.
    """
    path = Path(path)
    ds = _open_labelled(path, _suffix(path))
    da = _pick_var(ds, variable, path) if isinstance(ds, xr.Dataset) else ds
    if not _is_brainio(da):
        raise SchemaError(f"{path}: variable {da.name!r} has dims {da.dims}, expected (presentation, neuroid)")
    if "time_bin" in da.dims:
        da = da.mean("time_bin") if time_bins == "mean" else da.isel(time_bin=int(time_bins))
    extra = [d for d in da.dims if d not in ("presentation", "neuroid")]
    if extra:
        raise SchemaError(f"{path}: variable {da.name!r} has extra dims {extra}; select them away first")
    da = da.transpose("presentation", "neuroid").load()
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
    n_neuron = values.shape[1]
    trials = np.full((n_neuron, len(uniq), counts.max()), np.nan, dtype=np.float32)
    trials[:, code, rep] = values.T
    meta = {}
    for c in da.coords:
        if da[c].dims == ("neuroid",) and c != "neuroid":
            meta[str(c)] = np.asarray(da[c].values)
    meta = pd.DataFrame(meta)
    ids = None
    if "neuroid_id" in meta:
        try:
            ids = meta["neuroid_id"].astype(np.int64).to_numpy()
        except (TypeError, ValueError):
            ids = None
    out = build_responses_dataset(
        trials=trials, neuron_ids=ids, meta=_normalise_meta(meta, source=path), source=path,
        mean=np.nanmean(trials, axis=2) if counts.max() > 1 else trials[:, :, 0],
    )
    out = out.assign_coords(stimulus_id=(S.IMAGE, np.asarray(uniq, dtype=str)))
    if counts.max() == 1:
        out = out.drop_vars(S.TRIALS)
    return out


def _csv_sep(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    if "\t" in head:
        return "\t"
    if ";" in head and "," not in head:
        return ";"
    return ","


def read_neuron_table(spec) -> pd.DataFrame:
    """Read a neuron metadata CSV (one row per neuron); column names mapped to the contract."""
    path = Path(spec)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (neuron metadata)")
    try:
        df = pd.read_csv(path, sep=_csv_sep(path))
    except Exception as exc:
        raise SchemaError(f"{path}: cannot be read as a CSV table ({exc})") from exc
    return _normalise_meta(df, source=path)


def _normalise_meta(df: pd.DataFrame, source=None) -> pd.DataFrame:
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    ren = {c: _META_ALIASES[c.lower()] for c in df.columns if c.lower() in _META_ALIASES and c != _META_ALIASES[c.lower()]}
    for c, new in ren.items():
        if new in df.columns:
            raise SchemaError(f"{source}: both columns {c!r} and {new!r} given; keep one")
    return df.rename(columns=ren)


def read_ids(spec, source_name="neuron ids") -> np.ndarray:
    """Read integer ids from ``.npy``/``.npz:key``/``.txt``/``.csv`` (one per line)."""
    path, _ = parse_source(spec)
    arr = np.asarray(read_array(spec)).ravel()
    return _as_int_ids(arr, source_name, path)


def _as_int_ids(values, name, source) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    try:
        return np.asarray(arr, dtype=str).astype(np.int64)
    except (TypeError, ValueError):
        bad = next((v for v in arr.ravel() if not _is_int_like(v)), arr.ravel()[:1])
        raise SchemaError(
            f"{_where(source)}{name} must be integers; got {bad!r} (dtype {arr.dtype})"
        ) from None


def _is_int_like(v) -> bool:
    try:
        int(str(v))
        return True
    except ValueError:
        return False


def _where(source) -> str:
    return f"{source}: " if source else ""


# --------------------------------------------------------------------------- datasets
def _is_dask(x) -> bool:
    return type(x).__module__.startswith("dask")


def _to_store_order(arr, expected: tuple, name, source):
    """A DataArray with aliased dims -> raw data in ``expected`` order; plain arrays unchanged."""
    if isinstance(arr, xr.DataArray):
        ren = {}
        for d in arr.dims:
            for target, aliases in _DIM_ALIASES.items():
                if str(d).lower() in aliases and target in expected:
                    ren[d] = target
        arr = arr.rename(ren)
        if set(arr.dims) != set(expected):
            raise SchemaError(f"{_where(source)}variable {name!r} has dims {tuple(arr.dims)}, expected {expected}")
        return arr.transpose(*expected).data
    return arr


def _check_numeric(arr, name, ndim, source):
    shape = getattr(arr, "shape", None)
    if shape is None or len(shape) != ndim:
        raise SchemaError(
            f"{_where(source)}variable {name!r} must have {ndim} dims, got shape {shape}"
        )
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "iuf":
        raise SchemaError(
            f"{_where(source)}variable {name!r} has dtype {dtype}; expected numbers (float or int)"
        )
    if 0 in shape:
        raise SchemaError(f"{_where(source)}variable {name!r} is empty (shape {shape})")


def _lazy_check(x, name, source, allow_nan: bool):
    """Wrap a dask array so a non-finite value raises :class:`SchemaError` when it is computed."""

    def check(block, block_info=None):
        bad = np.isinf(block) if allow_nan else ~np.isfinite(block)
        if bad.any():
            loc = (block_info or {}).get(0, {}).get("array-location")
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            if loc:
                idx = tuple(i + lo for i, (lo, _) in zip(idx, loc))
            raise SchemaError(
                f"{_where(source)}variable {name!r} has non-finite values (e.g. at index {idx}: "
                f"{block[tuple(np.argwhere(bad)[0])]!r}); clean or drop them before ingesting"
            )
        return block

    return x.map_blocks(check, dtype=x.dtype)


def _check_values(x, name, source, allow_nan=False):
    if _is_dask(x):
        return _lazy_check(x, name, source, allow_nan)
    x = np.asarray(x)
    if allow_nan:
        bad = np.isinf(x)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise SchemaError(
                f"{_where(source)}variable {name!r} has {int(bad.sum())} infinite values "
                f"(first at index {idx}: {x[idx]!r}); clean or drop them before ingesting"
            )
    else:
        S.check_finite(x, name, source)
    return x


def _float32(x):
    if _is_dask(x):
        return x.astype(np.float32)
    return np.asarray(x, dtype=np.float32)


def _check_ids(ids, n, dim, source):
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = _as_int_ids(ids, f"{dim} ids", source)
    if ids.ndim != 1 or len(ids) != n:
        raise SchemaError(f"{_where(source)}{dim} ids: {len(ids)} given for {n} {dim}s")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SchemaError(
            f"{_where(source)}duplicate {dim} ids, e.g. {uniq[counts > 1][:5].tolist()}; ids must be unique"
        )
    return ids


def _align_meta(meta: pd.DataFrame, ids: np.ndarray | None, n: int, source):
    """Return (meta aligned to the neurons, neuron ids)."""
    meta = _normalise_meta(meta, source)
    idcol = next((c for c in _ID_COLUMNS if c in meta.columns), None)
    if idcol is None and meta.index.name in _ID_COLUMNS:
        meta = meta.reset_index()
        idcol = meta.columns[0]
    if idcol is not None:
        mids = _as_int_ids(meta[idcol].to_numpy(), f"column {idcol!r}", source)
        u, c = np.unique(mids, return_counts=True)
        if (c > 1).any():
            raise SchemaError(f"{_where(source)}column {idcol!r} has duplicate neuron ids, e.g. {u[c > 1][:5].tolist()}")
        meta = meta.drop(columns=[idcol])
        if ids is None:
            if len(mids) != n:
                raise SchemaError(
                    f"{_where(source)}{len(mids)} metadata rows for {n} neurons; one row per neuron "
                    f"(in the order of the responses) is needed"
                )
            return meta.reset_index(drop=True), mids
        pos = pd.Index(mids).get_indexer(ids)
        if (pos < 0).any():
            missing = ids[pos < 0][:5].tolist()
            raise SchemaError(f"{_where(source)}no metadata row for neuron ids {missing} (column {idcol!r})")
        if len(mids) != n:
            extra = sorted(set(mids.tolist()) - set(ids.tolist()))[:5]
            raise SchemaError(
                f"{_where(source)}{len(mids)} metadata rows for {n} neurons; ids not among the neurons: {extra}"
            )
        return meta.iloc[pos].reset_index(drop=True), ids
    if len(meta) != n:
        raise SchemaError(
            f"{_where(source)}{len(meta)} metadata rows for {n} neurons; one row per neuron "
            f"(in the order of the responses) is needed"
        )
    return meta.reset_index(drop=True), ids


def _meta_coords(meta: pd.DataFrame, n: int, source) -> dict:
    coords = {}
    for col in meta.columns:
        vals = meta[col]
        name = str(col)
        if name in _FLOAT_COORDS:
            try:
                arr = pd.to_numeric(vals, errors="raise").to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                bad = next(v for v in vals if not _is_number(v))
                raise SchemaError(f"{_where(source)}column {name!r} must be numbers; got {bad!r}") from None
        elif name in _STRING_COORDS or vals.dtype.kind in "OUSb":
            arr = np.asarray(vals.where(vals.notna(), "unknown").astype(str).to_numpy(), dtype=str)
        elif vals.dtype.kind in "iuf":
            arr = vals.to_numpy()
        else:
            arr = np.asarray(vals.astype(str).to_numpy(), dtype=str)
        coords[name] = arr
    for c in ("area", "cre_line"):
        coords.setdefault(c, np.full(n, "unknown"))
    coords.setdefault("depth_um", np.full(n, np.nan))
    if "cortical_layer" not in coords:
        coords["cortical_layer"] = np.asarray(
            [S.cortical_layer(d, c) for d, c in zip(coords["depth_um"], coords["cre_line"])], dtype=str
        )
    for c in ("area", "cre_line"):
        empty = np.asarray([str(v).strip() == "" for v in coords[c]])
        if empty.any():
            raise SchemaError(f"{_where(source)}column {c!r} is empty for neuron #{int(np.argmax(empty))}")
    return coords


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def build_responses_dataset(
    mean=None,
    trials=None,
    neuron_ids=None,
    meta: pd.DataFrame | None = None,
    image_ids=None,
    source=None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Validate responses and label them as the ``responses.zarr`` Dataset of the contract.

    Parameters
    ----------
    mean : array (neuron, image), optional
        Trial-averaged responses in the *store's* order (numpy or dask, or a DataArray whose
        dims are transposed by name).  Computed as the NaN-mean of ``trials`` when omitted.
    trials : array (neuron, image, trial), optional
        Trial responses, NaN where an image had fewer trials.  Infinite values are refused.
    neuron_ids : array (neuron,) of int, optional
        Default 0..n-1 (or the id column of ``meta``).
    meta : DataFrame, optional
        One row per neuron, in order, or with an id column (``neuron``, ``cell_specimen_id``, ...)
        matched to ``neuron_ids``.  Columns become neuron coords; ``region`` -> ``area``,
        ``imaging_depth`` -> ``depth_um`` etc. are renamed.  Missing ``area``/``cre_line`` are
        ``'unknown'``, missing ``depth_um`` NaN; ``cortical_layer`` follows from depth and cre line.
    image_ids : array (image,) of int, optional
        Default 0..n-1.
    source : str, optional
        File name used in error messages.

    Returns
    -------
    Dataset
        ``mean`` (neuron, image) float32, optional ``trials`` (neuron, image, trial) float32.
        Dask inputs stay lazy; their finiteness is checked as chunks are computed (a failure
        then aborts :func:`~neuroxr.io.store.write_dataset` before anything is replaced).
    """
    if mean is None and trials is None:
        raise SchemaError(f"{_where(source)}neither mean responses nor trials given")
    if trials is not None:
        trials = _to_store_order(trials, (S.NEURON, S.IMAGE, S.TRIAL), S.TRIALS, source)
        _check_numeric(trials, S.TRIALS, 3, source)
        trials = _float32(_check_values(trials, S.TRIALS, source, allow_nan=True))
    if mean is not None:
        mean = _to_store_order(mean, (S.NEURON, S.IMAGE), S.MEAN, source)
        _check_numeric(mean, S.MEAN, 2, source)
        if trials is not None and tuple(mean.shape) != tuple(trials.shape[:2]):
            raise SchemaError(
                f"{_where(source)}variable 'mean' has shape {tuple(mean.shape)} (neuron, image) but "
                f"'trials' has {tuple(trials.shape[:2])} neurons x images"
            )
    else:
        if _is_dask(trials):
            import dask.array as da

            mean = da.nanmean(trials, axis=2)
        else:
            with np.errstate(all="ignore"), quiet_warnings(RuntimeWarning):
                mean = np.nanmean(trials, axis=2)
        empty_src = f"{source} (trials)" if source else "trials"
        if not _is_dask(mean):
            allnan = np.isnan(mean)
            if allnan.any():
                idx = tuple(int(i) for i in np.argwhere(allnan)[0])
                raise SchemaError(
                    f"{empty_src}: (neuron, image) {idx} has no finite trial; every image needs at least one"
                )
    mean = _float32(_check_values(mean, S.MEAN, source, allow_nan=False))
    n_neuron, n_image = (int(s) for s in mean.shape)
    neuron_ids = _check_ids(neuron_ids, n_neuron, "neuron", source) if neuron_ids is not None else None
    if meta is not None:
        if not isinstance(meta, pd.DataFrame):
            raise SchemaError(f"{_where(source)}neuron metadata must be a pandas DataFrame, got {type(meta).__name__}")
        meta, neuron_ids = _align_meta(meta, neuron_ids, n_neuron, source)
    else:
        meta = pd.DataFrame(index=range(n_neuron))
    neuron_ids = _check_ids(neuron_ids, n_neuron, "neuron", source)
    image_ids = _check_ids(image_ids, n_image, "image", source)
    coords = {S.NEURON: neuron_ids, S.IMAGE: image_ids}
    for k, v in _meta_coords(meta, n_neuron, source).items():
        coords[k] = (S.NEURON, v)
    data = {S.MEAN: ((S.NEURON, S.IMAGE), mean)}
    if trials is not None:
        data[S.TRIALS] = ((S.NEURON, S.IMAGE, S.TRIAL), trials)
        coords[S.TRIAL] = np.arange(trials.shape[2], dtype=np.int64)
    ds = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
    ds[S.MEAN].attrs["description"] = "trial-averaged response"
    if trials is not None:
        ds[S.TRIALS].attrs["description"] = "response per trial; NaN where an image had fewer trials"
    S.validate_responses(ds, source)
    return ds




def build_stimuli_dataset(pixels, image_ids=None, source=None, attrs: dict | None = None) -> xr.Dataset:
    """Validate images and label them as the ``stimuli.zarr`` Dataset.

    Parameters
    ----------
    pixels : array (image, y, x) or (image, y, x, 3)
        Grayscale images (kept as recorded) or RGB(A) images, turned into grayscale with
        :func:`skimage.color.rgb2gray` weights, keeping the value range.
    image_ids : array (image,) of int, optional

    Returns
    -------
    Dataset
        ``pixels`` (image, y, x) float32 with an int ``image`` coord.
    """
    if isinstance(pixels, xr.Dataset):
        if S.PIXELS not in pixels:
            raise SchemaError(f"{_where(source)}no variable {S.PIXELS!r} (found {list(pixels.data_vars)})")
        if image_ids is None and S.IMAGE in pixels.coords:
            image_ids = pixels[S.IMAGE].values
        pixels = pixels[S.PIXELS]
    if isinstance(pixels, xr.DataArray):
        if image_ids is None and S.IMAGE in pixels.coords and pixels[S.IMAGE].dtype.kind in "iu":
            image_ids = pixels[S.IMAGE].values
        pixels = pixels.values
    arr = np.asarray(pixels)
    if arr.ndim == 4 and arr.shape[-1] in (3, 4):
        from skimage.color import rgb2gray, rgba2rgb

        arr = arr.astype(np.float64)
        if arr.shape[-1] == 4:
            arr = np.stack([rgba2rgb(a) for a in arr])
        arr = rgb2gray(arr)  # float input: weighted sum, range kept
    if arr.ndim != 3:
        hint = " (channels must be last: (image, y, x, 3))" if arr.ndim == 4 else ""
        raise SchemaError(
            f"{_where(source)}variable 'pixels' must be (image, y, x) or (image, y, x, 3), got shape {arr.shape}{hint}"
        )
    _check_numeric(arr, S.PIXELS, 3, source)
    S.check_finite(arr, S.PIXELS, source)
    ids = _check_ids(image_ids, arr.shape[0], "image", source)
    ds = xr.Dataset(
        {S.PIXELS: ((S.IMAGE, S.Y, S.X), arr.astype(np.float32))},
        coords={S.IMAGE: ids}, attrs=dict(attrs or {}),
    )
    S.validate_stimuli(ds, source)
    return ds


def build_rdms_dataset(rdm, sites=None, image_ids=None, source=None, attrs: dict | None = None) -> xr.Dataset:
    """Validate neural RDMs (site, image, image) and label them as the ``rdms.zarr`` Dataset.

    Each RDM must be square, finite and symmetric (to 1e-6 of its largest value).
    """
    arr = np.asarray(rdm)
    if arr.ndim == 2:
        arr = arr[None]
    _check_numeric(arr, S.RDM, 3, source)
    if arr.shape[1] != arr.shape[2]:
        raise SchemaError(f"{_where(source)}variable 'rdm' must be (site, image, image); got shape {arr.shape}")
    if arr.shape[1] < 3:
        raise SchemaError(f"{_where(source)}variable 'rdm' covers {arr.shape[1]} images; RSA needs at least 3")
    S.check_finite(arr, S.RDM, source)
    arr = arr.astype(np.float64)
    tol = 1e-6 * max(1.0, float(np.abs(arr).max()))
    asym = np.abs(arr - arr.transpose(0, 2, 1))
    if (asym > tol).any():
        s, i, j = (int(v) for v in np.unravel_index(np.argmax(asym), asym.shape))
        raise SchemaError(
            f"{_where(source)}variable 'rdm' of site #{s} is not symmetric: [{i},{j}]={arr[s, i, j]!r} "
            f"but [{j},{i}]={arr[s, j, i]!r}"
        )
    n_site = arr.shape[0]
    if sites is None:
        sites = [f"site{k}" for k in range(n_site)]
    sites = [str(s).strip() for s in sites]
    if len(sites) != n_site:
        raise SchemaError(f"{_where(source)}{len(sites)} site names {sites} for {n_site} RDMs")
    if len(set(sites)) != len(sites):
        dup = sorted({s for s in sites if sites.count(s) > 1})
        raise SchemaError(f"{_where(source)}duplicate site names {dup}")
    ids = _check_ids(image_ids, arr.shape[1], "image", source)
    ds = xr.Dataset(
        {S.RDM: ((S.SITE, S.IMAGE, S.IMAGE_J), arr)},
        coords={S.SITE: np.asarray(sites, dtype=str), S.IMAGE: ids, S.IMAGE_J: ids.copy()},
        attrs=dict(attrs or {}),
    )
    ds[S.RDM].attrs["description"] = "neural representational dissimilarity matrix per site"
    return ds


def read_rdms(spec, sites=None) -> tuple[np.ndarray, list]:
    """Read RDMs from a CSV (one column per site, rows = the upper triangle above the diagonal,
    row-major) or an array file (site, image, image).

    Returns
    -------
    rdm : ndarray (site, image, image)
    sites : list of str
    """
    path, key = parse_source(spec)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (RDMs)")
    if _suffix(path) in (".csv", ".tsv", ".txt"):
        try:
            df = pd.read_csv(path, sep=_csv_sep(path))
        except Exception as exc:
            raise SchemaError(f"{path}: cannot be read as a CSV table ({exc})") from exc
        m = len(df)
        n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
        if n * (n - 1) // 2 != m or m == 0:
            raise SchemaError(
                f"{path}: {m} rows is not an upper triangle n(n-1)/2 of any image count; "
                f"give the entries above the diagonal, row by row"
            )
        bad = [c for c in df.columns if df[c].dtype.kind not in "iuf"]
        if bad:
            raise SchemaError(f"{path}: column {bad[0]!r} is not numeric (e.g. {df[bad[0]].iloc[0]!r})")
        vals = df.to_numpy(dtype=np.float64)
        S.check_finite(vals, "rdm", path)
        iu = np.triu_indices(n, k=1)
        rdm = np.zeros((vals.shape[1], n, n))
        rdm[:, iu[0], iu[1]] = vals.T
        rdm[:, iu[1], iu[0]] = vals.T
        names = [str(c) for c in df.columns]
        if sites is not None:
            if len(sites) != len(names):
                raise SchemaError(f"{path}: {len(sites)} site names {list(sites)} for {len(names)} columns {names}")
            names = list(sites)
        return rdm, names
    arr = read_array(spec)
    if isinstance(arr, xr.Dataset):
        arr = _pick_var(arr, key or (S.RDM if S.RDM in arr else None), path)
    if isinstance(arr, xr.DataArray):
        if sites is None and S.SITE in arr.coords:
            sites = [str(s) for s in arr[S.SITE].values]
        arr = arr.values
    return np.asarray(arr), (list(sites) if sites is not None else None)


# --------------------------------------------------------------------------- study level
def _study_image_ids(study: Path, skip: set) -> dict:
    """{store path: image ids} of the study's existing stores (except those in ``skip``)."""
    out = {}
    for name in (S.STIMULI_STORE, S.RESPONSES_STORE, S.RDMS_STORE):
        p = study / name
        if p.exists() and name not in skip:
            try:
                ds = _store.open_dataset(p)
            except Exception:
                continue
            if S.IMAGE in ds.coords:
                out[p] = np.asarray(ds[S.IMAGE].values)
    return out


def _check_against(study: Path, new_ids: np.ndarray, what: str, skip: set):
    for p, ids in _study_image_ids(study, skip).items():
        if len(ids) != len(new_ids):
            raise SchemaError(
                f"{what} has {len(new_ids)} images but {p} has {len(ids)}; image counts must agree "
                f"in every store of a study (ingest the matching images, or pass --overwrite with all stores)"
            )
        if not np.array_equal(np.sort(ids), np.sort(new_ids)):
            diff = sorted(set(new_ids.tolist()) ^ set(ids.tolist()))[:5]
            raise SchemaError(f"{what}: image ids differ from those of {p}, e.g. {diff}")


def _write_all(study: Path, datasets: dict, overwrite: bool) -> dict:
    """Write each ``{store name: Dataset}`` to a temporary sibling, then move them all into place."""
    study.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        if (study / name).exists() and not overwrite:
            raise StoreExistsError(
                f"{study / name} already exists; pass --overwrite (overwrite=True) to replace it"
            )
    chunks = {S.STIMULI_STORE: STIMULI_CHUNKS, S.RESPONSES_STORE: RESPONSES_CHUNKS}
    tmps = {}
    try:
        for name, ds in datasets.items():
            tmp = _store.tmp_sibling(study / name)
            if name == S.RESPONSES_STORE:
                ds = rechunk_responses(ds)
            _store.write_dataset(ds, tmp, chunks=_concrete_chunks(chunks.get(name), ds))
            tmps[name] = tmp
        for name, tmp in tmps.items():
            _store.replace_store(tmp, study / name)
    finally:
        import shutil

        for tmp in tmps.values():
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return {name: study / name for name in datasets}


def _concrete_chunks(chunks, ds):
    if not chunks:
        return None
    return {d: (ds.sizes[d] if c == -1 else c) for d, c in chunks.items() if d in ds.sizes}


def rechunk_responses(ds: xr.Dataset) -> xr.Dataset:
    """Rechunk the dask-backed variables of a responses Dataset to the store's chunks
    (:data:`RESPONSES_CHUNKS`) so they align with the Zarr chunks."""
    if any(v.chunks is not None for v in ds.data_vars.values()):
        ds = ds.chunk({d: c for d, c in RESPONSES_CHUNKS.items() if d in ds.dims})
    return ds


def write_responses_dataset(ds: xr.Dataset, path, *, overwrite=False) -> Path:
    """Write a responses Dataset with the store's chunking (:data:`RESPONSES_CHUNKS`), atomically."""
    S.validate_responses(ds, path)
    ds = rechunk_responses(ds)
    return _store.write_dataset(ds, path, overwrite=overwrite, chunks=_concrete_chunks(RESPONSES_CHUNKS, ds))


def _inputs_entry(spec):
    if spec is None or not isinstance(spec, (str, Path)):
        return None if spec is None else "in-memory"
    path, key = parse_source(spec)
    entry = {"path": str(path), "key": key}
    if path.is_file():
        entry["sha256"] = _store.hash_file(path)
    return entry


def _load(spec, what):
    if spec is None:
        return None, None
    if isinstance(spec, (str, Path)):
        path, _ = parse_source(spec)
        return read_array(spec), path
    return spec, what


def ingest_arrays(
    study,
    images=None,
    responses=None,
    trials=None,
    neurons=None,
    area=None,
    cre_line=None,
    depth_um=None,
    neuron_ids=None,
    overwrite: bool = False,
) -> dict:
    """Ingest your own arrays into ``study``: ``stimuli.zarr`` and ``responses.zarr``.

    Parameters
    ----------
    study : path-like
        Study directory (created when missing).
    images : str, array (image, y, x) or (image, y, x, 3), optional
        ``FILE[:key]`` or an array.  Optional: without it, features must be imported later.
        When left out but ``stimuli.zarr`` exists, the image counts must agree.
    responses : str or array (image, neuron), optional
        Trial-averaged responses, samples first; labelled files (netCDF, Zarr, BrainIO) are
        transposed by their dim names.  Computed from ``trials`` when omitted.
    trials : str or array (image, neuron, trial), optional
        Per-trial responses, NaN-padded.
    neurons : str or DataFrame, optional
        Neuron metadata CSV: one row per neuron in order, or with an id column (``neuron``,
        ``cell_specimen_id``, ...) giving the neuron ids.
    area, cre_line, depth_um : optional
        One value for every neuron (e.g. one experiment); cannot be combined with the same column
        in ``neurons``.
    neuron_ids : str or array (neuron,), optional
        Integer neuron ids (default: the metadata id column, or 0..n-1).
    overwrite : bool
        Replace existing stores.  Without it an existing store raises before anything is written.

    Returns
    -------
    dict
        ``{store name: path}`` of what was written.
    """
    study = Path(study)
    if responses is None and trials is None:
        raise SchemaError("give --responses and/or --trials (nothing to ingest)")
    img, img_src = _load(images, "images")
    resp, resp_src = _load(responses, "responses")
    tri, tri_src = _load(trials, "trials")
    ids_src = "neuron ids"
    if neuron_ids is not None and isinstance(neuron_ids, (str, Path)):
        ids_src = parse_source(neuron_ids)[0]
        neuron_ids = read_ids(neuron_ids)
    meta = None
    meta_src = None
    if neurons is not None:
        if isinstance(neurons, (str, Path)):
            meta, meta_src = read_neuron_table(neurons), Path(neurons)
        else:
            meta, meta_src = neurons, "neuron metadata"

    # labelled inputs (netCDF, Zarr, BrainIO) -> Datasets with the store's dim names
    resp = _as_labelled(resp, S.MEAN, resp_src)
    tri = _as_labelled(tri, S.TRIALS, tri_src)
    image_ids = None
    labelled = [(o, s) for o, s in ((resp, resp_src), (tri, tri_src)) if isinstance(o, xr.Dataset)]
    mean_arr = resp[S.MEAN] if isinstance(resp, xr.Dataset) and S.MEAN in resp else resp
    tri_arr = tri[S.TRIALS] if isinstance(tri, xr.Dataset) and S.TRIALS in tri else tri
    if isinstance(resp, xr.Dataset) and tri is None and S.TRIALS in resp:
        tri_arr = resp[S.TRIALS]
    if isinstance(mean_arr, xr.Dataset) or isinstance(tri_arr, xr.Dataset):
        lds, src = labelled[0]
        raise SchemaError(f"{src}: no variable 'mean' or 'trials' (found {list(lds.data_vars)})")
    source = resp_src or tri_src
    if labelled:
        lds, src = labelled[0]
        source = src
        lmeta = pd.DataFrame({
            str(c): np.asarray(lds[c].values) for c in lds.coords
            if lds[c].dims == (S.NEURON,) and c != S.NEURON
        }, index=range(lds.sizes.get(S.NEURON, 0))) if S.NEURON in lds.dims else None
        if meta is None and lmeta is not None and len(lmeta.columns):
            meta, meta_src = lmeta, src
        lids = lds[S.NEURON].values if S.NEURON in lds.coords else None
        if neuron_ids is None and lids is not None and np.asarray(lids).dtype.kind in "iu":
            neuron_ids = lids
        if S.IMAGE in lds.coords and lds[S.IMAGE].dtype.kind in "iu":
            image_ids = lds[S.IMAGE].values
    # plain arrays are samples first: (image, neuron[, trial]) -> (neuron, image[, trial])
    if mean_arr is not None and not isinstance(mean_arr, xr.DataArray):
        mean_arr = np.asarray(mean_arr)
        _check_numeric(mean_arr, "responses", 2, resp_src)
        mean_arr = mean_arr.T
    if tri_arr is not None and not isinstance(tri_arr, xr.DataArray):
        tri_arr = np.asarray(tri_arr)
        _check_numeric(tri_arr, "trials", 3, tri_src)
        tri_arr = np.transpose(tri_arr, (1, 0, 2))
    if mean_arr is not None and tri_arr is not None:
        ms = tuple(_shape_store(mean_arr, (S.NEURON, S.IMAGE)))
        ts = tuple(_shape_store(tri_arr, (S.NEURON, S.IMAGE, S.TRIAL))[:2])
        if ms != ts:
            raise SchemaError(
                f"{resp_src}: responses cover {ms[1]} images x {ms[0]} neurons but {tri_src} trials cover "
                f"{ts[1]} images x {ts[0]} neurons"
            )
    # constant metadata
    consts = {"area": area, "cre_line": cre_line, "depth_um": depth_um}
    if any(v is not None for v in consts.values()):
        n = int(_shape_store(mean_arr if mean_arr is not None else tri_arr, (S.NEURON,))[0])
        meta = pd.DataFrame(index=range(n)) if meta is None else _normalise_meta(meta, meta_src)
        for k, v in consts.items():
            if v is None:
                continue
            if k in meta.columns:
                raise SchemaError(f"{meta_src}: column {k!r} is in the metadata and --{k.replace('_', '-')} "
                                  f"was given too; keep one")
            if k == "depth_um":
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise SchemaError(f"--depth-um must be a number, got {v!r}") from None
            meta[k] = v
    settings = {"area": area, "cre_line": cre_line, "depth_um": depth_um}
    inputs = {k: _inputs_entry(v) for k, v in
              dict(images=images, responses=responses, trials=trials, neurons=neurons).items()
              if v is not None}
    # metadata and ids are checked here so their errors name their own files
    n_neuron = int(_shape_store(mean_arr if mean_arr is not None else tri_arr, (S.NEURON,))[0])
    if neuron_ids is not None:
        neuron_ids = _check_ids(neuron_ids, n_neuron, "neuron", ids_src)
    if meta is not None:
        meta, neuron_ids = _align_meta(meta, neuron_ids, n_neuron, meta_src)
        _meta_coords(meta, n_neuron, meta_src)
    rds = build_responses_dataset(
        mean=mean_arr, trials=tri_arr, neuron_ids=neuron_ids, meta=meta, image_ids=image_ids,
        source=source, attrs=_store.provenance(settings, inputs),
    )
    rds.attrs["source"] = "arrays"
    out = {S.RESPONSES_STORE: rds}
    if img is not None:
        sds = build_stimuli_dataset(img, source=img_src, attrs=_store.provenance(settings, inputs))
        if sds.sizes[S.IMAGE] != rds.sizes[S.IMAGE]:
            raise SchemaError(
                f"{img_src}: {sds.sizes[S.IMAGE]} images but the responses ({source}) cover "
                f"{rds.sizes[S.IMAGE]} images; they must agree"
            )
        if not np.array_equal(sds[S.IMAGE].values, rds[S.IMAGE].values):
            sds = sds.assign_coords({S.IMAGE: rds[S.IMAGE].values})
        out[S.STIMULI_STORE] = sds
    _check_study(study, out, overwrite)
    return _write_all(study, out, overwrite)


def _as_labelled(obj, name, src):
    """A labelled input as a Dataset with the store's dim names (plain arrays pass through)."""
    if isinstance(obj, xr.DataArray):
        obj = obj.to_dataset(name=name) if obj.name is None or obj.name not in obj.coords else \
            obj.rename(None).to_dataset(name=name)
        if obj[name].name != name:
            obj = obj.rename({list(obj.data_vars)[0]: name})
    if not isinstance(obj, xr.Dataset):
        return obj
    ren = {}
    for d in obj.dims:
        for target, aliases in _DIM_ALIASES.items():
            if str(d).lower() in aliases and d != target:
                ren[d] = target
    if ren:
        if any(t in obj.variables and t not in ren for t in ren.values()):
            raise SchemaError(f"{src}: cannot rename dims {ren}: a variable already has that name")
        obj = obj.rename(ren)
    return obj


def _shape_store(arr, dims):
    return tuple(int(s) for s in arr.shape) if not isinstance(arr, xr.DataArray) or dims is None else \
        tuple(int(arr.sizes[_alias_dim(arr, d)]) for d in dims)


def _alias_dim(arr, target):
    for d in arr.dims:
        if str(d).lower() in _DIM_ALIASES[target]:
            return d
    raise SchemaError(f"variable {arr.name!r} has dims {arr.dims}; none is {target!r}")


def _check_study(study: Path, new: dict, overwrite: bool):
    """Refuse existing stores (without overwrite) and image ids that disagree with other stores."""
    for name in new:
        if (study / name).exists() and not overwrite:
            raise StoreExistsError(f"{study / name} already exists; pass --overwrite (overwrite=True) to replace it")
    ref = next(iter(new.values()))
    what = ", ".join(str(study / n) for n in new)
    _check_against(study, np.asarray(ref[S.IMAGE].values), what, skip=set(new))


def ingest_rdms(study, rdms, images=None, sites=None, overwrite: bool = False) -> dict:
    """Ingest neural RDMs a user already has into ``study/rdms.zarr`` (variable ``rdm``
    (site, image, image_j)).

    Parameters
    ----------
    rdms : str or array (site, image, image)
        A CSV with one column per site whose rows are the upper triangle above the diagonal in
        row-major order ((0,1), (0,2), ..., (1,2), ...), or an array file ``FILE[:key]``.
    images : str or array (image, y, x), optional
        The stimuli; written to ``stimuli.zarr`` (image counts must agree).
    sites : list of str or "A,B", optional
        Site names (default: the CSV column names, or site0..).

    Returns
    -------
    dict
        ``{store name: path}`` of what was written.
    """
    study = Path(study)
    if isinstance(sites, str):
        sites = [s for s in sites.split(",") if s.strip()]
    if isinstance(rdms, (str, Path)):
        arr, names = read_rdms(rdms, sites)
        src = parse_source(rdms)[0]
    else:
        arr, names, src = np.asarray(rdms), sites, "rdms"
    inputs = {"rdms": _inputs_entry(rdms)}
    if images is not None:
        inputs["images"] = _inputs_entry(images)
    prov = _store.provenance({"sites": names}, inputs)
    ds = build_rdms_dataset(arr, sites=names, source=src, attrs=prov)
    out = {S.RDMS_STORE: ds}
    if images is not None:
        img, img_src = _load(images, "images")
        sds = build_stimuli_dataset(img, source=img_src, attrs=prov)
        if sds.sizes[S.IMAGE] != ds.sizes[S.IMAGE]:
            raise SchemaError(
                f"{img_src}: {sds.sizes[S.IMAGE]} images but the RDMs ({src}) cover {ds.sizes[S.IMAGE]}"
            )
        out[S.STIMULI_STORE] = sds
    _check_study(study, out, overwrite)
    return _write_all(study, out, overwrite)


__all__ = [
    "ingest_arrays", "ingest_rdms", "read_brainio_assembly", "read_array", "read_rdms",
    "read_neuron_table", "build_responses_dataset", "build_stimuli_dataset", "build_rdms_dataset",
    "write_responses_dataset", "rechunk_responses", "RESPONSES_CHUNKS",
]
