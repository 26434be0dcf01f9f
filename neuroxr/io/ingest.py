"""Study-level ingest of your own data: arrays, netCDF, xarray Zarr, BrainIO assemblies, neural RDMs.

Conventions
-----------
Plain arrays (``.npy``, ``.npz:key``) are *samples first*, as in scikit-learn:

- responses ``(image, neuron)``
- trials ``(image, neuron, trial)`` (NaN where an image had fewer trials)
- images ``(image, y, x)``, or ``(image, y, x, 3)`` RGB which is turned into grayscale with
  scikit-image's luminance weights (range kept, e.g. 0..255 stays 0..255).

Labelled inputs (netCDF, xarray Zarr, BrainIO assemblies) carry their own dims and are
transposed to the store's order (:mod:`neuroxr.io.labelled`).

Everything is validated before anything is written, and all stores of one call are written
as one transaction (:func:`neuroxr.io.store.transaction`), so a failed or killed ingest leaves
the study entirely as it was or entirely new.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..schema import SchemaError
from . import store
from .builders import (
    align_meta,
    build_rdms_dataset,
    build_responses_dataset,
    build_stimuli_dataset,
    check_ids,
    check_numeric,
    meta_coords,
    rechunk_responses,
    store_chunks,
)
from .formats import input_entry, parse_source, read_array, read_ids, read_rdms
from .labelled import as_labelled, store_shape
from .lock import study_lock
from .tables import normalise_meta, read_neuron_table


# --------------------------------------------------------------------------- the study
def _study_image_ids(study: Path, skip: set) -> dict:
    """{store path: image ids} of the study's existing stores (except those in ``skip``)."""
    out = {}
    for name in (S.STIMULI_STORE, S.RESPONSES_STORE, S.RDMS_STORE):
        p = study / name
        if p.exists() and name not in skip:
            try:
                ds = store.open_dataset(p)
            except Exception:  # noqa: BLE001 - an unreadable store is replaced, not compared
                continue
            if S.IMAGE in ds.coords:
                out[p] = np.asarray(ds[S.IMAGE].values)
    return out


def check_study(study: Path, new: dict, overwrite: bool) -> None:
    """Refuse existing stores (without overwrite) and image ids that disagree with other stores."""
    store.check_writable([study / n for n in new], overwrite)
    new_ids = np.asarray(next(iter(new.values()))[S.IMAGE].values)
    what = ", ".join(str(study / n) for n in new)
    for p, ids in _study_image_ids(study, set(new)).items():
        if len(ids) != len(new_ids):
            raise SchemaError(
                f"{what} has {len(new_ids)} images but {p} has {len(ids)}; image counts must agree "
                f"in every store of a study (ingest the matching images, or pass --overwrite with all stores)"
            )
        if not np.array_equal(np.sort(ids), np.sort(new_ids)):
            diff = sorted(set(new_ids.tolist()) ^ set(ids.tolist()))[:5]
            raise SchemaError(f"{what}: image ids differ from those of {p}, e.g. {diff}")


def write_study(study, datasets: dict, overwrite: bool) -> dict:
    """Write ``{store name: Dataset}`` into ``study`` as one transaction, with the stores' chunks.

    The stores' locks (:func:`neuroxr.io.lock.study_lock`) are held while they are written.
    """
    study = Path(study)
    store.make_parent(study / next(iter(datasets)))
    with study_lock(study, list(datasets)), store.transaction(overwrite=overwrite) as tx:
        for name, ds in datasets.items():
            if name == S.RESPONSES_STORE:
                ds = rechunk_responses(ds)
            tx.write(ds, study / name, chunks=store_chunks(name, ds))
    return {name: study / name for name in datasets}


# --------------------------------------------------------------------------- inputs
def load_input(spec, what):
    """``(array, source)`` of a ``FILE[:key]`` or an in-memory array (source ``what``)."""
    if spec is None:
        return None, None
    if isinstance(spec, (str, Path)):
        return read_array(spec), parse_source(spec)[0]
    return spec, what


@dataclass
class _Inputs:
    """The inputs of :func:`ingest_arrays`, read and in the store's order."""

    mean: object = None
    trials: object = None
    meta: pd.DataFrame | None = None
    meta_src: object = None
    neuron_ids: object = None
    ids_src: object = "neuron ids"
    image_ids: object = None
    source: object = None

    @property
    def n_neuron(self) -> int:
        arr = self.mean if self.mean is not None else self.trials
        return int(store_shape(arr, (S.NEURON,))[0])


def _read_meta(neurons):
    if neurons is None:
        return None, None
    if isinstance(neurons, (str, Path)):
        return read_neuron_table(neurons), Path(neurons)
    return neurons, "neuron metadata"


def _take_labelled(inp: _Inputs, lds: xr.Dataset, src) -> None:
    """Neuron metadata, neuron ids and image ids of a labelled input (where not given otherwise)."""
    inp.source = src
    if S.NEURON in lds.dims:
        cols = {str(c): np.asarray(lds[c].values) for c in lds.coords
                if lds[c].dims == (S.NEURON,) and c != S.NEURON}
        if inp.meta is None and cols:
            inp.meta, inp.meta_src = pd.DataFrame(cols, index=range(lds.sizes[S.NEURON])), src
    lids = lds[S.NEURON].values if S.NEURON in lds.coords else None
    if inp.neuron_ids is None and lids is not None and np.asarray(lids).dtype.kind in "iu":
        inp.neuron_ids = lids
    if S.IMAGE in lds.coords and lds[S.IMAGE].dtype.kind in "iu":
        inp.image_ids = lds[S.IMAGE].values


def _samples_first(arr, name, ndim, src):
    """A plain samples-first array in the store's order; DataArrays pass (transposed by name later)."""
    if arr is None or isinstance(arr, xr.DataArray):
        return arr
    arr = np.asarray(arr)
    check_numeric(arr, name, ndim, src)
    return arr.T if ndim == 2 else np.transpose(arr, (1, 0, 2))


def _read_responses(responses, trials, resp_src, tri_src, inp: _Inputs) -> None:
    resp = as_labelled(responses, S.MEAN, resp_src)
    tri = as_labelled(trials, S.TRIALS, tri_src)
    mean = resp[S.MEAN] if isinstance(resp, xr.Dataset) and S.MEAN in resp else resp
    tarr = tri[S.TRIALS] if isinstance(tri, xr.Dataset) and S.TRIALS in tri else tri
    if isinstance(resp, xr.Dataset) and tri is None and S.TRIALS in resp:
        tarr = resp[S.TRIALS]
    labelled = [(o, s) for o, s in ((resp, resp_src), (tri, tri_src)) if isinstance(o, xr.Dataset)]
    if isinstance(mean, xr.Dataset) or isinstance(tarr, xr.Dataset):
        lds, src = labelled[0]
        raise SchemaError(f"{src}: no variable 'mean' or 'trials' (found {list(lds.data_vars)})")
    inp.source = resp_src or tri_src
    if labelled:
        _take_labelled(inp, *labelled[0])
    inp.mean = _samples_first(mean, "responses", 2, resp_src)
    inp.trials = _samples_first(tarr, "trials", 3, tri_src)
    if inp.mean is not None and inp.trials is not None:
        ms = store_shape(inp.mean, (S.NEURON, S.IMAGE))
        ts = store_shape(inp.trials, (S.NEURON, S.IMAGE, S.TRIAL))[:2]
        if ms != ts:
            raise SchemaError(f"{resp_src}: responses cover {ms[1]} images x {ms[0]} neurons but {tri_src} trials "
                              f"cover {ts[1]} images x {ts[0]} neurons")


def _constant_meta(inp: _Inputs, consts: dict) -> None:
    """One value for every neuron (``--area`` ...) added to the metadata."""
    if all(v is None for v in consts.values()):
        return
    meta = pd.DataFrame(index=range(inp.n_neuron)) if inp.meta is None else normalise_meta(inp.meta, inp.meta_src)
    for k, v in consts.items():
        if v is None:
            continue
        if k in meta.columns:
            raise SchemaError(f"{inp.meta_src}: column {k!r} is in the metadata and --{k.replace('_', '-')} "
                              f"was given too; keep one")
        if k == "depth_um":
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise SchemaError(f"--depth-um must be a number, got {v!r}") from None
            if not np.isfinite(v) or v < 0:
                raise SchemaError(f"--depth-um {v!r}: the imaging depth must be finite and >= 0 (um below the "
                                  f"pia); leave it out if the depth is unknown")
        meta[k] = v
    inp.meta = meta


def _check_meta(inp: _Inputs, allow_unknown_area: bool) -> None:
    """Ids and metadata checked before the build, so their errors name their own files."""
    n = inp.n_neuron
    if inp.neuron_ids is not None:
        inp.neuron_ids = check_ids(inp.neuron_ids, n, "neuron", inp.ids_src)
    if inp.meta is not None:
        inp.meta, inp.neuron_ids = align_meta(inp.meta, inp.neuron_ids, n, inp.meta_src)
        meta_coords(inp.meta, n, inp.meta_src, allow_unknown_area=allow_unknown_area)


def _stimuli_for(images, rds: xr.Dataset, source, attrs) -> xr.Dataset:
    img, img_src = load_input(images, "images")
    sds = build_stimuli_dataset(img, source=img_src, attrs=attrs)
    if sds.sizes[S.IMAGE] != rds.sizes[S.IMAGE]:
        raise SchemaError(f"{img_src}: {sds.sizes[S.IMAGE]} images but the responses ({source}) cover "
                          f"{rds.sizes[S.IMAGE]} images; they must agree")
    if not np.array_equal(sds[S.IMAGE].values, rds[S.IMAGE].values):
        sds = sds.assign_coords({S.IMAGE: rds[S.IMAGE].values})
    return sds


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
    *,
    allow_unknown_area: bool = False,
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
        in ``neurons``.  Depths must be finite and >= 0, areas known (see ``allow_unknown_area``).
    neuron_ids : str or array (neuron,), optional
        Integer neuron ids (default: the metadata id column, or 0..n-1).
    overwrite : bool
        Replace existing stores.  Without it an existing store raises before anything is written.
    allow_unknown_area : bool
        Keep area names outside :data:`neuroxr.io.builders.KNOWN_AREAS` (e.g. a new area).

    Returns
    -------
    dict
        ``{store name: path}`` of what was written.
    """
    study = Path(study)
    if responses is None and trials is None:
        raise SchemaError("give --responses and/or --trials (nothing to ingest)")
    inp = _Inputs()
    if neuron_ids is not None and isinstance(neuron_ids, (str, Path)):
        inp.ids_src, neuron_ids = parse_source(neuron_ids)[0], read_ids(neuron_ids)
    inp.neuron_ids = neuron_ids
    resp, resp_src = load_input(responses, "responses")
    tri, tri_src = load_input(trials, "trials")
    inp.meta, inp.meta_src = _read_meta(neurons)
    _read_responses(resp, tri, resp_src, tri_src, inp)
    consts = {"area": area, "cre_line": cre_line, "depth_um": depth_um}
    if inp.meta is None and any(v is not None for v in consts.values()):
        inp.meta_src = "--area/--cre-line/--depth-um"
    _constant_meta(inp, consts)
    _check_meta(inp, allow_unknown_area)
    inputs = {k: input_entry(v) for k, v in
              dict(images=images, responses=responses, trials=trials, neurons=neurons).items() if v is not None}
    attrs = store.provenance(consts, inputs)
    rds = build_responses_dataset(mean=inp.mean, trials=inp.trials, neuron_ids=inp.neuron_ids, meta=inp.meta,
                                  image_ids=inp.image_ids, source=inp.source, attrs=attrs,
                                  allow_unknown_area=allow_unknown_area)
    rds.attrs["source"] = "arrays"
    out = {S.RESPONSES_STORE: rds}
    if images is not None:
        out[S.STIMULI_STORE] = _stimuli_for(images, rds, inp.source, dict(attrs))
    check_study(study, out, overwrite)
    return write_study(study, out, overwrite)


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
    inputs = {"rdms": input_entry(rdms)}
    if images is not None:
        inputs["images"] = input_entry(images)
    prov = store.provenance({"sites": names}, inputs)
    ds = build_rdms_dataset(arr, sites=names, source=src, attrs=prov)
    out = {S.RDMS_STORE: ds}
    if images is not None:
        img, img_src = load_input(images, "images")
        sds = build_stimuli_dataset(img, source=img_src, attrs=prov)
        if sds.sizes[S.IMAGE] != ds.sizes[S.IMAGE]:
            raise SchemaError(f"{img_src}: {sds.sizes[S.IMAGE]} images but the RDMs ({src}) cover {ds.sizes[S.IMAGE]}")
        out[S.STIMULI_STORE] = sds
    check_study(study, out, overwrite)
    return write_study(study, out, overwrite)


__all__ = ["ingest_arrays", "ingest_rdms", "check_study", "write_study", "load_input"]
