"""Contract builders: validated, labelled Datasets of ``responses.zarr``, ``stimuli.zarr`` and ``rdms.zarr``.

The builders take arrays in the *store's* order (any reader's output) and return the Datasets of
the contract in ``DESIGN.md``; nothing here reads files.  ``responses.zarr`` holds ``mean``
(neuron, image) float32, optional ``trials`` (neuron, image, trial) float32, with the neuron
coords ``area``, ``cre_line``, ``depth_um``, ``cortical_layer`` and, where known, ``container``,
``p_run_mod``, ``p_image``, ``splithalf_r``.

Metadata is validated: depths must be finite and >= 0 (or all unknown), area names one of :data:`KNOWN_AREAS`
(unless ``allow_unknown_area=True``), values beyond float32's range are refused.
"""
from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from skimage.color import rgb2gray, rgba2rgb

from .. import schema as S
from ..runtime import quiet_warnings
from ..schema import SchemaError
from .labelled import to_store_order
from .reader import to_float32, where
from .store import write_dataset
from .tables import normalise_meta

#: Zarr chunk sizes of the responses store (a neuron chunk holds every image and trial).
RESPONSES_CHUNKS = {S.NEURON: 2048, S.IMAGE: -1, S.TRIAL: -1}
#: Zarr chunk sizes of the stimuli store.
STIMULI_CHUNKS = {S.IMAGE: 256}

#: area names accepted without ``allow_unknown_area``: the contract's six mouse areas, the other
#: visual areas of the Allen CCF, primate visual areas (BrainIO assemblies) and ``unknown``
KNOWN_AREAS = (*S.AREAS, "VISli", "VISpl", "VISpor", "VISa", "VISm", "VISmma", "VISmmp", "VISrll", "VISlla",
               "V1", "V2", "V3", "V4", "MT", "IT", "pIT", "cIT", "aIT", "unknown")

ID_COLUMNS = ("neuron", "neuron_id", "cell_specimen_id", "id")
_FLOAT_COORDS = ("depth_um", "p_run_mod", "p_image", "splithalf_r")
_STRING_COORDS = ("area", "cre_line", "cortical_layer")


class MetadataError(SchemaError):
    """A neuron's metadata (depth, area, ids) is invalid; the message names file, column and value."""


# --------------------------------------------------------------------------- ids
def _is_int_like(v) -> bool:
    try:
        int(str(v))
        return True
    except ValueError:
        return False


def as_int_ids(values, name, source) -> np.ndarray:
    """Integer ids from ints, integral floats or digit strings; :class:`SchemaError` otherwise."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    try:
        return np.asarray(arr, dtype=str).astype(np.int64)
    except (TypeError, ValueError):
        bad = next((v for v in arr.ravel() if not _is_int_like(v)), arr.ravel()[:1])
        raise SchemaError(f"{where(source)}{name} must be integers; got {bad!r} (dtype {arr.dtype})") from None


def check_ids(ids, n, dim, source) -> np.ndarray:
    """``n`` unique integer ids of ``dim`` (default 0..n-1)."""
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = as_int_ids(ids, f"{dim} ids", source)
    if ids.ndim != 1 or len(ids) != n:
        raise SchemaError(f"{where(source)}{dim} ids: {len(ids)} given for {n} {dim}s")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise SchemaError(f"{where(source)}duplicate {dim} ids, e.g. {uniq[counts > 1][:5].tolist()}; ids must be unique")
    return ids


def check_numeric(arr, name, ndim, source) -> None:
    """Refuse arrays of the wrong rank, of non-numeric dtype or empty."""
    shape = getattr(arr, "shape", None)
    if shape is None or len(shape) != ndim:
        raise SchemaError(f"{where(source)}variable {name!r} must have {ndim} dims, got shape {shape}")
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "iuf":
        raise SchemaError(f"{where(source)}variable {name!r} has dtype {dtype}; expected numbers (float or int)")
    if 0 in shape:
        raise SchemaError(f"{where(source)}variable {name!r} is empty (shape {shape})")


# --------------------------------------------------------------------------- metadata
def _rows_error(source, n_rows, n, extra=""):
    return SchemaError(f"{where(source)}{n_rows} metadata rows for {n} neurons; "
                       f"{extra or 'one row per neuron (in the order of the responses) is needed'}")


def _id_column(meta: pd.DataFrame):
    idcol = next((c for c in ID_COLUMNS if c in meta.columns), None)
    if idcol is None and meta.index.name in ID_COLUMNS:
        meta = meta.reset_index()
        idcol = meta.columns[0]
    return meta, idcol


def align_meta(meta: pd.DataFrame, ids: np.ndarray | None, n: int, source):
    """Return (meta aligned to the neurons, neuron ids), matching an id column when there is one."""
    meta, idcol = _id_column(normalise_meta(meta, source))
    if idcol is None:
        if len(meta) != n:
            raise _rows_error(source, len(meta), n)
        return meta.reset_index(drop=True), ids
    mids = as_int_ids(meta[idcol].to_numpy(), f"column {idcol!r}", source)
    u, c = np.unique(mids, return_counts=True)
    if (c > 1).any():
        raise SchemaError(f"{where(source)}column {idcol!r} has duplicate neuron ids, e.g. {u[c > 1][:5].tolist()}")
    meta = meta.drop(columns=[idcol])
    if ids is None:
        if len(mids) != n:
            raise _rows_error(source, len(mids), n)
        return meta.reset_index(drop=True), mids
    pos = pd.Index(mids).get_indexer(ids)
    if (pos < 0).any():
        raise SchemaError(f"{where(source)}no metadata row for neuron ids {ids[pos < 0][:5].tolist()} (column {idcol!r})")
    if len(mids) != n:
        extra = sorted(set(mids.tolist()) - set(ids.tolist()))[:5]
        raise _rows_error(source, len(mids), n, f"ids not among the neurons: {extra}")
    return meta.iloc[pos].reset_index(drop=True), ids


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _column(vals: pd.Series, name: str, source) -> np.ndarray:
    if name in _FLOAT_COORDS:
        try:
            return pd.to_numeric(vals, errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            bad = next(v for v in vals if not _is_number(v))
            raise SchemaError(f"{where(source)}column {name!r} must be numbers; got {bad!r}") from None
    if name in _STRING_COORDS or vals.dtype.kind in "OUSb":
        return np.asarray(vals.where(vals.notna(), "unknown").astype(str).to_numpy(), dtype=str)
    if vals.dtype.kind in "iuf":
        return vals.to_numpy()
    return np.asarray(vals.astype(str).to_numpy(), dtype=str)


def check_depths(depth: np.ndarray, source) -> None:
    """Depths (um below the pia) must be finite and >= 0.

    An all-NaN column is how the stores record "depths unknown" and passes; a NaN among known
    depths, an infinite or a negative depth is refused.
    """
    if np.isnan(depth).all():
        return
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(depth) | (depth < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise MetadataError(
            f"{where(source)}column 'depth_um' of neuron #{i} is {float(depth[i])!r}; imaging depths must be "
            f"finite and >= 0 (um below the pia): fix the value, or leave the column out if depths are unknown"
        )


def check_areas(area: np.ndarray, source, *, allow_unknown_area: bool = False) -> None:
    """Area names must be in :data:`KNOWN_AREAS` unless ``allow_unknown_area``."""
    empty = np.asarray([str(v).strip() == "" for v in area], dtype=bool)
    if empty.any():
        raise MetadataError(f"{where(source)}column 'area' is empty for neuron #{int(np.argmax(empty))}")
    if allow_unknown_area:
        return
    unknown = ~np.isin(area.astype(str), KNOWN_AREAS)
    if unknown.any():
        i = int(np.argmax(unknown))
        raise MetadataError(
            f"{where(source)}column 'area' of neuron #{i} is {str(area[i])!r}, not a known area "
            f"({', '.join(S.AREAS)}, ...); fix the name, or pass --allow-unknown-area "
            f"(allow_unknown_area=True) to keep it"
        )


def meta_coords(meta: pd.DataFrame, n: int, source, *, allow_unknown_area: bool = False) -> dict:
    """The neuron coords of validated metadata: given columns plus defaults and ``cortical_layer``."""
    coords = {str(c): _column(meta[c], str(c), source) for c in meta.columns}
    if "depth_um" in coords:
        check_depths(coords["depth_um"], source)
    else:
        coords["depth_um"] = np.full(n, np.nan)
    for c in ("area", "cre_line"):
        coords.setdefault(c, np.full(n, "unknown"))
    if "cortical_layer" not in coords:
        coords["cortical_layer"] = np.asarray(
            [S.cortical_layer(d, c) for d, c in zip(coords["depth_um"], coords["cre_line"])], dtype=str
        )
    empty = np.asarray([str(v).strip() == "" for v in coords["cre_line"]], dtype=bool)
    if empty.any():
        raise MetadataError(f"{where(source)}column 'cre_line' is empty for neuron #{int(np.argmax(empty))}")
    check_areas(coords["area"], source, allow_unknown_area=allow_unknown_area)
    return coords


# --------------------------------------------------------------------------- responses
def _mean_of_trials(trials, source):
    if isinstance(trials, da.Array):
        return da.nanmean(trials, axis=2)
    with np.errstate(all="ignore"), quiet_warnings(RuntimeWarning):
        mean = np.nanmean(trials, axis=2)
    allnan = np.isnan(mean)
    if allnan.any():
        idx = tuple(int(i) for i in np.argwhere(allnan)[0])
        raise SchemaError(f"{f'{source} (trials)' if source else 'trials'}: (neuron, image) {idx} has no finite "
                          f"trial; every image needs at least one")
    return mean


def _responses_arrays(mean, trials, source):
    """(mean, trials) in store order, float32, checked."""
    if mean is None and trials is None:
        raise SchemaError(f"{where(source)}neither mean responses nor trials given")
    if trials is not None:
        trials = to_store_order(trials, (S.NEURON, S.IMAGE, S.TRIAL), S.TRIALS, source)
        check_numeric(trials, S.TRIALS, 3, source)
        trials = to_float32(trials, S.TRIALS, source, allow_nan=True)
    if mean is not None:
        mean = to_store_order(mean, (S.NEURON, S.IMAGE), S.MEAN, source)
        check_numeric(mean, S.MEAN, 2, source)
        if trials is not None and tuple(mean.shape) != tuple(trials.shape[:2]):
            raise SchemaError(
                f"{where(source)}variable 'mean' has shape {tuple(mean.shape)} (neuron, image) but "
                f"'trials' has {tuple(trials.shape[:2])} neurons x images"
            )
    else:
        mean = _mean_of_trials(trials, source)
    return to_float32(mean, S.MEAN, source, allow_nan=False), trials


def build_responses_dataset(
    mean=None,
    trials=None,
    neuron_ids=None,
    meta: pd.DataFrame | None = None,
    image_ids=None,
    source=None,
    attrs: dict | None = None,
    *,
    allow_unknown_area: bool = False,
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
        Given depths must be finite and >= 0, areas one of :data:`KNOWN_AREAS`.
    image_ids : array (image,) of int, optional
        Default 0..n-1.
    source : str, optional
        File name used in error messages.
    allow_unknown_area : bool
        Keep area names outside :data:`KNOWN_AREAS`.

    Returns
    -------
    Dataset
        ``mean`` (neuron, image) float32, optional ``trials`` (neuron, image, trial) float32.
        Dask inputs stay lazy; their values are checked as chunks are computed (a failure
        then aborts :func:`~neuroxr.io.store.write_dataset` before anything is replaced).
    """
    mean, trials = _responses_arrays(mean, trials, source)
    n_neuron, n_image = (int(s) for s in mean.shape)
    neuron_ids = check_ids(neuron_ids, n_neuron, "neuron", source) if neuron_ids is not None else None
    if meta is not None:
        if not isinstance(meta, pd.DataFrame):
            raise SchemaError(f"{where(source)}neuron metadata must be a pandas DataFrame, got {type(meta).__name__}")
        meta, neuron_ids = align_meta(meta, neuron_ids, n_neuron, source)
    else:
        meta = pd.DataFrame(index=range(n_neuron))
    coords = {S.NEURON: check_ids(neuron_ids, n_neuron, "neuron", source),
              S.IMAGE: check_ids(image_ids, n_image, "image", source)}
    for k, v in meta_coords(meta, n_neuron, source, allow_unknown_area=allow_unknown_area).items():
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


def concrete_chunks(chunks, ds):
    """``chunks`` with -1 replaced by the dim's size, restricted to the dims of ``ds``."""
    if not chunks:
        return None
    return {d: (ds.sizes[d] if c == -1 else c) for d, c in chunks.items() if d in ds.sizes}


def rechunk_responses(ds: xr.Dataset) -> xr.Dataset:
    """Rechunk the dask-backed variables of a responses Dataset to the store's chunks
    (:data:`RESPONSES_CHUNKS`) so they align with the Zarr chunks."""
    if any(v.chunks is not None for v in ds.data_vars.values()):
        ds = ds.chunk({d: c for d, c in RESPONSES_CHUNKS.items() if d in ds.dims})
    return ds


def store_chunks(name: str, ds: xr.Dataset):
    """The stored chunks of the study store ``name`` (responses, stimuli) for ``ds``."""
    chunks = {S.STIMULI_STORE: STIMULI_CHUNKS, S.RESPONSES_STORE: RESPONSES_CHUNKS}.get(name)
    return concrete_chunks(chunks, ds)


def write_responses_dataset(ds: xr.Dataset, path, *, overwrite=False):
    """Write a responses Dataset with the store's chunking (:data:`RESPONSES_CHUNKS`), atomically."""
    S.validate_responses(ds, path)
    ds = rechunk_responses(ds)
    return write_dataset(ds, path, overwrite=overwrite, chunks=concrete_chunks(RESPONSES_CHUNKS, ds))


# --------------------------------------------------------------------------- stimuli and RDMs
def _pixels_and_ids(pixels, image_ids, source):
    if isinstance(pixels, xr.Dataset):
        if S.PIXELS not in pixels:
            raise SchemaError(f"{where(source)}no variable {S.PIXELS!r} (found {list(pixels.data_vars)})")
        if image_ids is None and S.IMAGE in pixels.coords:
            image_ids = pixels[S.IMAGE].values
        pixels = pixels[S.PIXELS]
    if isinstance(pixels, xr.DataArray):
        if image_ids is None and S.IMAGE in pixels.coords and pixels[S.IMAGE].dtype.kind in "iu":
            image_ids = pixels[S.IMAGE].values
        pixels = pixels.values
    return np.asarray(pixels), image_ids


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
    arr, image_ids = _pixels_and_ids(pixels, image_ids, source)
    if arr.ndim == 4 and arr.shape[-1] in (3, 4) and arr.dtype.kind in "iuf":
        arr = arr.astype(np.float64)
        if arr.shape[-1] == 4:
            arr = np.stack([rgba2rgb(a) for a in arr])
        arr = rgb2gray(arr)  # float input: weighted sum, range kept
    if arr.ndim != 3:
        hint = " (channels must be last: (image, y, x, 3))" if arr.ndim == 4 else ""
        raise SchemaError(
            f"{where(source)}variable 'pixels' must be (image, y, x) or (image, y, x, 3), got shape {arr.shape}{hint}"
        )
    check_numeric(arr, S.PIXELS, 3, source)
    ids = check_ids(image_ids, arr.shape[0], "image", source)
    ds = xr.Dataset(
        {S.PIXELS: ((S.IMAGE, S.Y, S.X), to_float32(arr, S.PIXELS, source))},
        coords={S.IMAGE: ids}, attrs=dict(attrs or {}),
    )
    S.validate_stimuli(ds, source)
    return ds


def _check_symmetric(arr: np.ndarray, source) -> None:
    tol = 1e-6 * max(1.0, float(np.abs(arr).max()))
    asym = np.abs(arr - arr.transpose(0, 2, 1))
    if (asym > tol).any():
        s, i, j = (int(v) for v in np.unravel_index(np.argmax(asym), asym.shape))
        raise SchemaError(
            f"{where(source)}variable 'rdm' of site #{s} is not symmetric: [{i},{j}]={arr[s, i, j]!r} "
            f"but [{j},{i}]={arr[s, j, i]!r}"
        )


def _site_names(sites, n_site, source) -> list:
    if sites is None:
        sites = [f"site{k}" for k in range(n_site)]
    sites = [str(s).strip() for s in sites]
    if len(sites) != n_site:
        raise SchemaError(f"{where(source)}{len(sites)} site names {sites} for {n_site} RDMs")
    if len(set(sites)) != len(sites):
        dup = sorted({s for s in sites if sites.count(s) > 1})
        raise SchemaError(f"{where(source)}duplicate site names {dup}")
    return sites


def build_rdms_dataset(rdm, sites=None, image_ids=None, source=None, attrs: dict | None = None) -> xr.Dataset:
    """Validate neural RDMs (site, image, image) and label them as the ``rdms.zarr`` Dataset.

    Each RDM must be square, finite and symmetric (to 1e-6 of its largest value).
    """
    arr = np.asarray(rdm)
    if arr.ndim == 2:
        arr = arr[None]
    check_numeric(arr, S.RDM, 3, source)
    if arr.shape[1] != arr.shape[2]:
        raise SchemaError(f"{where(source)}variable 'rdm' must be (site, image, image); got shape {arr.shape}")
    if arr.shape[1] < 3:
        raise SchemaError(f"{where(source)}variable 'rdm' covers {arr.shape[1]} images; RSA needs at least 3")
    S.check_finite(arr, S.RDM, source)
    arr = arr.astype(np.float64)
    _check_symmetric(arr, source)
    sites = _site_names(sites, arr.shape[0], source)
    ids = check_ids(image_ids, arr.shape[1], "image", source)
    ds = xr.Dataset(
        {S.RDM: ((S.SITE, S.IMAGE, S.IMAGE_J), arr)},
        coords={S.SITE: np.asarray(sites, dtype=str), S.IMAGE: ids, S.IMAGE_J: ids.copy()},
        attrs=dict(attrs or {}),
    )
    ds[S.RDM].attrs["description"] = "neural representational dissimilarity matrix per site"
    return ds


__all__ = [
    "build_responses_dataset", "build_stimuli_dataset", "build_rdms_dataset", "write_responses_dataset",
    "rechunk_responses", "concrete_chunks", "store_chunks", "check_ids", "check_numeric", "as_int_ids",
    "align_meta", "meta_coords", "check_depths", "check_areas", "MetadataError", "KNOWN_AREAS",
    "RESPONSES_CHUNKS", "STIMULI_CHUNKS", "ID_COLUMNS",
]
