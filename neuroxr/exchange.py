"""Exchange with other toolboxes: rsatoolbox RDMs and BrainIO-style netCDF assemblies.

- :func:`calc_study_rdms`: a study's neural RDMs (one per area from the selected responses, or the
  ingested ``rdms.zarr`` sites) or model RDMs (one per layer, from the stored Gram matrices and
  feature sums), as a labelled DataArray ``(area|site|layer, image, image_j)`` of ``1 - Pearson r``.
- :func:`to_rsatoolbox` / :func:`from_rsatoolbox`: that DataArray as an ``rsatoolbox.rdm.RDMs``
  (RDM descriptors ``area``/``site`` or ``model``, ``layer``, ``variant``, ``weights``, ``layer_id``;
  pattern descriptor ``image``, the image ids) and back.
- :func:`read_rsatoolbox_rdms`: rsatoolbox's own files (``RDMs.save``: hdf5, or pkl with
  ``allow_pickle``), for ``neuroxr ingest rdms``.
- :func:`to_brainio_assembly` / :func:`export_study`: responses as a NeuroidAssembly-style DataArray
  (dims ``presentation`` x ``neuroid``; presentation coords ``stimulus_id``, ``image``,
  ``repetition``; neuroid coords ``neuroid_id``, ``region`` and the other neuron coords) and scores
  as assemblies (``layer`` x ``neuroid`` or ``layer`` x ``region``) in netCDF-4 files, one data
  variable each, with the global attributes ``identifier`` and ``stimulus_set_identifier`` that
  the BrainIO specification requires.  :func:`neuroxr.io.brainio.read_brainio_assembly` reads
  the responses back.

rsatoolbox is imported where it is used (optional dependency).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from . import schema as S
from .errors import MissingDataError, NeuroxrError

#: rsatoolbox's name of neuroxr's ``1 - Pearson r`` (``calc_rdm(method="correlation")``)
RSATOOLBOX_MEASURE = "correlation"
#: rdm descriptors that name the RDMs' dim when read back, first match wins
_RDM_DIMS = (S.LAYER, "area", S.SITE)
#: layer coords carried as rsatoolbox rdm descriptors (``layer_name`` is rsatoolbox's ``layer``)
_LAYER_COORDS = ("model", "layer_name", S.VARIANT, "weights", "depth", "relative_depth", "family")


class ExchangeError(NeuroxrError, ValueError):
    """RDMs or assemblies that cannot be converted: wrong dims, missing descriptors, a foreign file."""


def _rsatoolbox_rdm():
    """``rsatoolbox.rdm``, or a one-line error saying how to install it."""
    try:
        from rsatoolbox import rdm
    except ImportError:
        raise ExchangeError("rsatoolbox is not installed: pip install rsatoolbox (or neuroxr[test])") from None
    return rdm


# --------------------------------------------------------------------------- a study's RDMs
def _neural_rdms(study: Path) -> xr.DataArray:
    from .responses import load_selected_responses
    from .rsa import calc_rdm

    if not (study / S.RESPONSES_STORE).exists():
        if (study / S.RDMS_STORE).exists():
            from .study import open_study

            return open_study(study).rdms[S.RDM].load()
        raise MissingDataError(f"{study}: no {S.RESPONSES_STORE} or {S.RDMS_STORE}; ingest responses or RDMs first")
    ds = load_selected_responses(study)
    mean = ds[S.MEAN].load()
    area = np.asarray(ds["area"].values).astype(str)
    names = [a for a in S.AREAS if a in set(area)] + sorted(set(area) - set(S.AREAS))
    y = np.asarray(mean.transpose(S.NEURON, S.IMAGE).values, dtype=np.float64)
    rdms = np.stack([calc_rdm(y[area == a].T, kind="responses") for a in names])
    ids = mean[S.IMAGE].values
    return xr.DataArray(rdms, dims=("area", S.IMAGE, S.IMAGE_J), name=S.RDM,
                        coords={"area": np.array(names, dtype=str), S.IMAGE: ids, S.IMAGE_J: ids.copy()})


def _model_rdms(study: Path, model: str | None) -> xr.DataArray:
    from .mapping.tree import with_variant
    from .rsa import calc_rdm
    from .study import open_study

    st = open_study(study)
    models = [model] if model else st.feature_models()
    if not models:
        raise MissingDataError(f"{study}/features: no extracted features; run `neuroxr extract` first")
    parts = []
    for m in models:
        ds = st.features(m)
        rdm = calc_rdm(ds["gram"].values, kind="gram", feature_sum=ds["feature_sum"].values,
                       n_features=ds["n_features"].values)
        keep = {k: ds[k] for k in ds.coords if ds[k].dims == (S.LAYER,)}
        parts.append(with_variant(xr.DataArray(rdm, dims=(S.LAYER, S.IMAGE, S.IMAGE_J), name=S.RDM,
                                               coords={S.LAYER: ds[S.LAYER].values, **keep,
                                                       S.IMAGE: ds[S.IMAGE].values,
                                                       S.IMAGE_J: ds[S.IMAGE_J].values})))
    return xr.concat(parts, dim=S.LAYER) if len(parts) > 1 else parts[0]


def calc_study_rdms(study, which: str = "neural", model: str | None = None) -> xr.DataArray:
    """A study's RDMs, ``1 - Pearson r`` between images, as a labelled DataArray.

    Parameters
    ----------
    which : {"neural", "model"}
        ``neural``: one RDM per area from the selected neurons' mean responses (or the ingested
        ``rdms.zarr``, dims ``site``); ``model``: one per layer from ``features/<model>.zarr``
        (every model when ``model`` is None), with the layer coords and ``variant``.

    Returns
    -------
    DataArray (area | site | layer, image, image_j)
    """
    study = Path(study)
    if which == "neural":
        return _neural_rdms(study)
    if which == "model":
        return _model_rdms(study, model)
    raise ExchangeError(f"which must be 'neural' or 'model', got {which!r}")


# --------------------------------------------------------------------------- rsatoolbox
def _plain(values) -> list:
    arr = np.asarray(values)
    return arr.astype(str).tolist() if arr.dtype.kind in "OUS" else arr.tolist()


def to_rsatoolbox(rdms: xr.DataArray, descriptors: dict | None = None):
    """``rsatoolbox.rdm.RDMs`` of labelled RDMs ``(area | site | layer, image, image_j)``.

    RDM descriptors: the name of the first dim with its values (``area``, ``site``; for layers
    ``layer_id`` the stored layer id) and, for layers, ``model``, ``layer`` (the layer name),
    ``variant``, ``weights``, ``depth``, ``relative_depth``, ``family`` where present.  Pattern
    descriptor ``image``: the image ids (and ``stimulus_id`` where the RDMs carry it).  The
    dissimilarity measure is ``correlation`` (rsatoolbox's name for ``1 - r``).
    """
    RDMs = _rsatoolbox_rdm().RDMs

    if rdms.ndim == 2:
        rdms = rdms.expand_dims("rdm")
    if rdms.ndim != 3 or tuple(rdms.dims[1:]) != (S.IMAGE, S.IMAGE_J):
        raise ExchangeError(f"RDMs must be (area|site|layer, image, image_j), got dims {rdms.dims}")
    dim = rdms.dims[0]
    rd = {}
    if dim == S.LAYER:
        rd["layer_id"] = _plain(rdms[S.LAYER].values)
        for c in _LAYER_COORDS:
            if c in rdms.coords and rdms[c].dims == (S.LAYER,):
                rd["layer" if c == "layer_name" else c] = _plain(rdms[c].values)
    else:
        rd[dim] = _plain(rdms[dim].values) if dim in rdms.coords else list(range(rdms.sizes[dim]))
    pd_ = {S.IMAGE: _plain(rdms[S.IMAGE].values) if S.IMAGE in rdms.coords else list(range(rdms.sizes[S.IMAGE]))}
    if "stimulus_id" in rdms.coords and rdms["stimulus_id"].dims == (S.IMAGE,):
        pd_["stimulus_id"] = _plain(rdms["stimulus_id"].values)
    desc = {"source": "neuroxr", **(descriptors or {})}
    return RDMs(np.asarray(rdms.values, dtype=np.float64), dissimilarity_measure=RSATOOLBOX_MEASURE,
                descriptors=desc, rdm_descriptors=rd, pattern_descriptors=pd_)


def from_rsatoolbox(rdms) -> xr.DataArray:
    """Labelled RDMs ``(layer | area | site | rdm, image, image_j)`` from an ``rsatoolbox.rdm.RDMs``.

    The dim is ``layer`` when the RDMs carry ``layer_id`` (as :func:`to_rsatoolbox` writes them),
    else ``area`` or ``site`` when one of those descriptors is there, else ``rdm``; the other
    rdm descriptors become coords along it (``layer`` -> ``layer_name``); the pattern descriptor
    ``image`` (integers) gives the image ids, else images are numbered 0..n-1 (string ids are kept
    as the ``stimulus_id`` coord).
    """
    mats = np.asarray(rdms.get_matrices(), dtype=np.float64)
    rd = {k: np.asarray(v) for k, v in rdms.rdm_descriptors.items() if k != "index"}
    if "layer_id" in rd:
        dim, index = S.LAYER, rd.pop("layer_id")
    else:
        dim = next((d for d in ("area", S.SITE) if d in rd), "rdm")
        index = rd.pop(dim) if dim in rd else np.arange(mats.shape[0])
    coords = {dim: index}
    for k, v in rd.items():
        if len(v) == mats.shape[0]:
            coords["layer_name" if (dim == S.LAYER and k == "layer") else k] = (dim, v)
    pat = rdms.pattern_descriptors
    img = np.asarray(pat.get(S.IMAGE, np.arange(mats.shape[1])))
    if img.dtype.kind in "iu":
        ids = img.astype(np.int64)
    else:
        ids = np.arange(mats.shape[1], dtype=np.int64)
        coords["stimulus_id"] = (S.IMAGE, img.astype(str))
    if "stimulus_id" in pat and "stimulus_id" not in coords:
        coords["stimulus_id"] = (S.IMAGE, np.asarray(pat["stimulus_id"]).astype(str))
    coords[S.IMAGE], coords[S.IMAGE_J] = ids, ids.copy()
    return xr.DataArray(mats, dims=(dim, S.IMAGE, S.IMAGE_J), coords=coords, name=S.RDM)


RSATOOLBOX_SUFFIXES = (".hdf5", ".h5", ".pkl")


def is_rsatoolbox_file(path) -> bool:
    """True for a file rsatoolbox's ``RDMs.save`` wrote: hdf5 with ``dissimilarities`` and
    ``rdm_descriptors`` at its root, or any ``.pkl`` (checked when read)."""
    path = Path(str(path))
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return True
    if suffix not in (".hdf5", ".h5") or not path.is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "dissimilarities" in f and "rdm_descriptors" in f
    except OSError:
        return False


def read_rsatoolbox_rdms(path, *, allow_pickle: bool = False) -> xr.DataArray:
    """Labelled RDMs (:func:`from_rsatoolbox`) of an rsatoolbox file (``RDMs.save``: hdf5 or pkl).

    A ``.pkl`` file is a Python pickle, which runs code when loaded: read only with
    ``allow_pickle`` (``--allow-pickle``), for files you trust; hdf5 files need no such care.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (rsatoolbox RDMs)")
    load_rdm = _rsatoolbox_rdm().load_rdm
    kind = "pkl" if path.suffix.lower() == ".pkl" else "hdf5"
    if kind == "pkl" and not allow_pickle:
        raise ExchangeError(f"{path}: a pickle runs code when it is loaded; pass --allow-pickle if you trust the file, "
                            f"or save the RDMs as hdf5 (rdms.save(path, file_type='hdf5'))")
    try:
        obj = load_rdm(str(path), file_type=kind)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign file is one line naming it
        raise ExchangeError(f"{path}: not an rsatoolbox RDMs file ({type(exc).__name__}: {exc}); write it with "
                            f"rsatoolbox's RDMs.save") from None
    if obj.dissimilarity_measure not in (None, RSATOOLBOX_MEASURE, "1-r", "correlation_distance"):
        import warnings

        warnings.warn(f"{path}: dissimilarity measure {obj.dissimilarity_measure!r}, not neuroxr's 1 - Pearson r; "
                      f"ingested as it is", RuntimeWarning, stacklevel=2)
    return from_rsatoolbox(obj)


def ingest_rsatoolbox_rdms(study, path, *, sites=None, images=None, overwrite: bool = False,
                           allow_pickle: bool = False) -> dict:
    """``neuroxr ingest rdms`` of an rsatoolbox file: the RDMs into ``STUDY/rdms.zarr`` (``rdm``
    (site, image, image_j)), sites from the ``site``/``area`` descriptors (or ``sites``), integer image
    ids kept, string ids as the ``stimulus_id`` coord."""
    from .io import store
    from .io.builders import build_rdms_dataset, build_stimuli_dataset
    from .io.formats import input_entry
    from .io.ingest import check_study, load_input, write_study

    study = Path(study)
    da = read_rsatoolbox_rdms(path, allow_pickle=allow_pickle)
    dim = da.dims[0]
    if isinstance(sites, str):
        sites = [s for s in sites.split(",") if s.strip()]
    names = list(sites) if sites else [str(v) for v in da[dim].values]
    inputs = {"rdms": input_entry(str(path))}
    if images is not None:
        inputs["images"] = input_entry(images)
    prov = store.provenance({"sites": names, "format": "rsatoolbox"}, inputs)
    ds = build_rdms_dataset(da.values, sites=names, image_ids=da[S.IMAGE].values, source=Path(path), attrs=prov)
    if "stimulus_id" in da.coords:
        ds = ds.assign_coords(stimulus_id=(S.IMAGE, da["stimulus_id"].values.astype(str)))
    out = {S.RDMS_STORE: ds}
    if images is not None:
        img, img_src = load_input(images, "images")
        sds = build_stimuli_dataset(img, source=img_src, attrs=prov)
        if sds.sizes[S.IMAGE] != ds.sizes[S.IMAGE]:
            raise ExchangeError(f"{img_src}: {sds.sizes[S.IMAGE]} images but the RDMs ({path}) cover "
                                f"{ds.sizes[S.IMAGE]}")
        out[S.STIMULI_STORE] = sds.assign_coords({S.IMAGE: ds[S.IMAGE].values})
    check_study(study, out, overwrite)
    return write_study(study, out, overwrite)


# --------------------------------------------------------------------------- BrainIO assemblies
def to_brainio_assembly(responses: xr.Dataset) -> xr.DataArray:
    """Responses as a BrainIO NeuroidAssembly-style DataArray (presentation, neuroid).

    One presentation per trial (``trials`` (neuron, image, trial), NaN-padded trials left out),
    or per image when there are no trials (the means).  Presentation coords: ``stimulus_id``
    (the image id as a string, or the stored ``stimulus_id``), ``image``, ``repetition``;
    neuroid coords: ``neuroid_id`` (the neuron id as a string), ``region`` (the area) and the
    other neuron coords.
    """
    have_trials = S.TRIALS in responses
    neuron_coords = {k: responses[k] for k in responses.coords if responses[k].dims == (S.NEURON,)}
    ids = responses[S.IMAGE].values
    stim = (np.asarray(responses["stimulus_id"].values).astype(str) if "stimulus_id" in responses.coords
            else ids.astype(str))
    if have_trials:
        tr = np.asarray(responses[S.TRIALS].transpose(S.IMAGE, S.TRIAL, S.NEURON).values)
        ok = ~np.all(np.isnan(tr), axis=2)  # (image, trial) presented
        img_i, rep = np.nonzero(ok)
        values = tr[img_i, rep]
    else:
        values = np.asarray(responses[S.MEAN].transpose(S.IMAGE, S.NEURON).values)
        img_i, rep = np.arange(len(ids)), np.zeros(len(ids), dtype=np.int64)
    coords = {"stimulus_id": ("presentation", stim[img_i]), S.IMAGE: ("presentation", ids[img_i].astype(np.int64)),
              "repetition": ("presentation", rep.astype(np.int64)),
              "neuroid_id": ("neuroid", responses[S.NEURON].values.astype(str))}
    for k, v in neuron_coords.items():
        coords["region" if k == "area" else k] = ("neuroid", np.asarray(v.values))
    return xr.DataArray(values.astype(np.float32), dims=("presentation", "neuroid"), coords=coords,
                        name="responses")


def _scores_assemblies(study: Path) -> dict:
    """``{variable: DataArray}`` of the scores: (layer, neuroid) at the root, (layer, region) in ``areas``."""
    from .study import open_study

    tree = open_study(study).scores
    out = {}
    root = tree.to_dataset()
    for name, da in root.data_vars.items():
        if da.dims == (S.LAYER, S.NEURON):
            da = da.load().rename({S.NEURON: "neuroid"})
            da = da.assign_coords(neuroid_id=("neuroid", da["neuroid"].values.astype(str)))
            if "area" in da.coords:
                da = da.rename({"area": "region"})
            out[name] = da.drop_vars("neuroid")
    if S.AREAS_GROUP in tree.children:
        for name, da in tree[S.AREAS_GROUP].to_dataset().data_vars.items():
            other = [d for d in da.dims if d != S.LAYER]
            if len(other) == 1 and other[0] in ("area", S.SITE):
                out[name] = da.load().rename({other[0]: "region"})
    return out


def _write_netcdf(obj, path: Path, attrs: dict) -> None:
    """``obj`` (one DataArray) to the netCDF-4 file ``path``: written beside it, then moved into place."""
    ds = obj.to_dataset(name=obj.name or "data")
    ds.attrs = {str(k): str(v) for k, v in attrs.items()}
    for k in list(ds.coords):
        if ds[k].dtype.kind in "OU":
            ds[k] = ds[k].astype(str)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        ds.to_netcdf(tmp, format="NETCDF4", engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_study(study, out, fmt: str = "brainio", *, overwrite: bool = False) -> list[Path]:
    """Export a study's responses and scores (``brainio``: netCDF-4 assemblies) or its RDMs
    (``rsatoolbox``: hdf5 files of ``RDMs.save``) into the directory ``out``.

    brainio: ``<name>.responses.nc`` (presentation, neuroid), ``<name>.scores.<variable>.nc``
    ((layer, neuroid) or (layer, region)), each with global attributes ``identifier`` and
    ``stimulus_set_identifier`` (``neuroxr.<study dir name>``).  rsatoolbox:
    ``neural_rdms.hdf5`` and ``model_rdms.<model>.hdf5`` per extracted model.  Files that exist are
    refused unless ``overwrite``; each is written beside its name and moved into place.
    """
    from .io.store import check_writable

    study, out = Path(study), Path(out)
    if not study.is_dir():
        raise MissingDataError(f"study directory {study} does not exist")
    name = study.resolve().name
    ident = f"neuroxr.{name}"
    files: dict[Path, object] = {}
    if fmt == "brainio":
        attrs = {"identifier": ident, "stimulus_set_identifier": ident, "source": "neuroxr"}
        if (study / S.RESPONSES_STORE).exists():
            from .study import open_study

            files[out / f"{name}.responses.nc"] = to_brainio_assembly(open_study(study).responses)
        if (study / S.SCORES_STORE).exists():
            for var, da in _scores_assemblies(study).items():
                files[out / f"{name}.scores.{var}.nc"] = da.rename(var)
        if not files:
            raise MissingDataError(f"{study}: no {S.RESPONSES_STORE} or {S.SCORES_STORE} to export")
        check_writable(list(files), overwrite)
        out.mkdir(parents=True, exist_ok=True)
        for path, da in files.items():
            _write_netcdf(da, path, {**attrs, "identifier": f"{ident}.{path.name[len(name) + 1:-3]}"})
    elif fmt == "rsatoolbox":
        from .study import open_study

        files[out / "neural_rdms.hdf5"] = to_rsatoolbox(calc_study_rdms(study, "neural"),
                                                        {"study": name, "kind": "neural"})
        for m in open_study(study).feature_models():
            files[out / f"model_rdms.{m}.hdf5"] = to_rsatoolbox(calc_study_rdms(study, "model", m),
                                                                {"study": name, "kind": "model", "model": m})
        check_writable(list(files), overwrite)
        out.mkdir(parents=True, exist_ok=True)
        for path, obj in files.items():
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            try:
                obj.save(str(tmp), file_type="hdf5", overwrite=True)
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
    else:
        raise ExchangeError(f"--format must be brainio or rsatoolbox, got {fmt!r}")
    return list(files)


__all__ = ["ExchangeError", "calc_study_rdms", "export_study", "from_rsatoolbox", "ingest_rsatoolbox_rdms",
           "is_rsatoolbox_file", "read_rsatoolbox_rdms", "to_brainio_assembly", "to_rsatoolbox"]
