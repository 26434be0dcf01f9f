"""Sensorium 2022 static datasets (Willeke et al. 2022): mouse V1 responses to natural images.

Each mouse (one scan) is published as a folder tree, or its zip, in the ``FileTreeDataset``
layout of ``neuralpredictors`` (``static<animal>-<session>-<scan>-GrayImageNet-<hash>``)::

    data/images/<i>.npy          trial i's image, (1, h, w)
    data/responses/<i>.npy       (neuron,) deconvolved activity
    data/behavior/<i>.npy        (3,) pupil dilation, its derivative, running speed
    data/pupil_center/<i>.npy    (2,) x, y
    meta/neurons/unit_ids.npy  area.npy  layer.npy  animal_ids.npy  sessions.npy  scan_idx.npy
                 cell_motor_coordinates.npy (neuron, 3)
    meta/trials/tiers.npy  frame_image_id.npy  trial_idx.npy ...
    meta/statistics/...          (not needed here)

Trials of the chosen tiers are grouped by ``frame_image_id`` (``image_id`` or
``colorframeprojector_image_id`` in other releases): the image axis holds the ids, repeats of an
image become trials (in ``trial_idx`` order), NaN-padded.  Several mice: the image axis is the
ids that every chosen mouse saw in the chosen tiers (the contract's ``mean`` has no missing
values); images only some mice saw are left out with a warning, and none shared is an error.
An image id shown to two mice must have the same pixels (else an error).  Reading and writing
stream over blocks of images (Dask), so memory stays at a few blocks whatever the session size.
"""
from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import InvalidArgumentError, MissingDataError, NeuroxrError

TIERS = ("train", "validation", "test", "final_test")
IMAGE_ID_KEYS = ("frame_image_id", "image_id", "colorframeprojector_image_id")
BEHAVIOR_CHANNELS = ("pupil_dilation", "pupil_dilation_derivative", "running_speed")
PUPIL_AXES = ("x", "y")
RECORDING = "recording"
#: Sensorium / Allen area names -> the contract's (Allen CCF acronyms)
AREA_ALIASES = {"V1": "VISp", "LM": "VISl", "AL": "VISal", "RL": "VISrl", "PM": "VISpm", "AM": "VISam",
                "LI": "VISli", "P": "VISpl", "POR": "VISpor", "A": "VISa"}
#: neuron id = animal * 10**12 + session * 10**9 + scan * 10**6 + unit id (unique across mice, decodable)
ID_FACTORS = (10**12, 10**9, 10**6)


class SensoriumError(NeuroxrError):
    """A Sensorium dataset is missing a file, or its files disagree."""


class SensoriumWarning(UserWarning):
    """Images or trials of a Sensorium dataset were left out."""


def map_area(name) -> str:
    """The contract's name of a visual area (``V1`` -> ``VISp``; ``VISp`` stays; others unchanged)."""
    s = str(name).strip()
    return AREA_ALIASES.get(s.upper(), s)


# --------------------------------------------------------------------------- one dataset (folder or zip)
@dataclass
class SensoriumSource:
    """One mouse dataset: a folder, or a prefix inside a zip file."""

    path: Path
    prefix: str | None = None            # zip: the member prefix ("static.../"); None: a folder
    name: str = ""
    _names: set = field(default_factory=set, repr=False)

    def where(self, rel) -> str:
        return f"{self.path}:{self.prefix}{rel}" if self.prefix is not None else str(self.path / rel)

    def open(self):
        return _Reader(self)


class _Reader:
    """Loads ``.npy`` members of a source; a zip stays open for the reader's life."""

    def __init__(self, src: SensoriumSource):
        self.src = src
        self.zf = zipfile.ZipFile(src.path) if src.prefix is not None else None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        if self.zf is not None:
            self.zf.close()

    def has(self, rel) -> bool:
        if self.zf is not None:
            return self.src.prefix + rel in self.src._names
        return (self.src.path / rel).is_file()

    def load(self, rel, required=True):
        if not self.has(rel):
            if not required:
                return None
            raise MissingDataError(f"{self.src.where(rel)} is missing; the dataset is incomplete (unpack or "
                                   "download it again)")
        try:
            if self.zf is not None:
                arr = np.load(io.BytesIO(self.zf.read(self.src.prefix + rel)), allow_pickle=False)
            else:
                arr = np.load(self.src.path / rel, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise SensoriumError(f"{self.src.where(rel)}: not a readable .npy file ({exc}); the download is probably "
                                 "damaged: get it again") from None
        if arr.dtype.kind in "SU":
            arr = arr.astype(str)
        return arr


_KEY = re.compile(r"static(\d+-\d+-\d+)")


def _dataset_name(label: str, reader: _Reader) -> str:
    m = _KEY.search(label)
    if m:
        return m.group(1)
    try:
        a = reader.load("meta/neurons/animal_ids.npy")[0]
        s = reader.load("meta/neurons/sessions.npy")[0]
        c = reader.load("meta/neurons/scan_idx.npy")[0]
        return f"{int(a)}-{int(s)}-{int(c)}"
    except (NeuroxrError, ValueError, IndexError):
        return label


def find_sources(path) -> list[SensoriumSource]:
    """The mouse datasets at ``path``: a dataset folder, its zip, or a folder of those."""
    p = Path(path).expanduser()
    marker = "meta/trials/tiers.npy"
    out: list[SensoriumSource] = []
    if p.is_file():
        try:
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
        except zipfile.BadZipFile:
            raise SensoriumError(f"{p}: not a zip file (a Sensorium dataset is a folder or its .zip); download it "
                                 "again") from None
        for n in sorted(names):
            if n.endswith(marker):
                prefix = n[: -len(marker)]
                src = SensoriumSource(p, prefix, "", names)
                with src.open() as r:
                    src.name = _dataset_name(prefix.rstrip("/") or p.stem, r)
                out.append(src)
        if not out:
            raise SensoriumError(f"{p}: no {marker} inside; not a Sensorium static dataset zip")
        return out
    if not p.exists():
        raise MissingDataError(f"{p}: no such folder or zip; give a Sensorium dataset (static<animal>-<session>-"
                               "<scan>-... folder or .zip) with --path")
    if (p / marker).is_file():
        src = SensoriumSource(p)
        with src.open() as r:
            src.name = _dataset_name(p.name, r)
        return [src]
    for child in sorted(p.iterdir()):
        folder = child.is_dir() and (child / marker).is_file()
        zipped = child.suffix == ".zip" and child.is_file() and not child.with_suffix("").is_dir()  # unpacked wins
        if folder or zipped:
            out.extend(find_sources(child))
    if not out:
        raise SensoriumError(f"{p}: no Sensorium dataset here (no {marker}, and no dataset folders or zips inside)")
    return out


# --------------------------------------------------------------------------- scan one mouse
@dataclass
class Mouse:
    """One dataset's selected trials and neuron metadata, checked by :func:`scan_mouse`."""

    src: SensoriumSource
    n_neurons: int
    trials: np.ndarray                 # selected trial (file) indices, in trial_idx order
    image_of_trial: np.ndarray         # frame_image_id of each selected trial
    trial_idx: np.ndarray
    meta: dict
    has_behavior: bool
    has_pupil: bool
    index: dict = field(default_factory=dict)   # image id -> trial file indices (set by the ingest)


def _image_ids(r: _Reader, src, n):
    for k in IMAGE_ID_KEYS:
        v = r.load(f"meta/trials/{k}.npy", required=False)
        if v is not None:
            v = np.asarray(v).ravel()
            if len(v) != n:
                raise SensoriumError(f"{src.where(f'meta/trials/{k}.npy')}: {len(v)} entries for {n} trials "
                                     "(meta/trials/tiers.npy)")
            try:
                iv = v.astype(np.float64)
                if not (np.isfinite(iv).all() and (iv == np.round(iv)).all()):
                    raise ValueError
            except ValueError:
                raise SensoriumError(f"{src.where(f'meta/trials/{k}.npy')}: image ids must be integers, got "
                                     f"{v[:3].tolist()}") from None
            return iv.astype(np.int64)
    raise SensoriumError(f"{src.where('meta/trials')}: none of {[k + '.npy' for k in IMAGE_ID_KEYS]}; cannot tell "
                         "which image each trial showed")


def scan_mouse(src: SensoriumSource, tiers) -> Mouse:
    """Read the trial and neuron metadata of one dataset and select the trials of ``tiers`` (None: all)."""
    with src.open() as r:
        tier = np.asarray(r.load("meta/trials/tiers.npy")).astype(str).ravel()
        n = len(tier)
        img = _image_ids(r, src, n)
        tidx = r.load("meta/trials/trial_idx.npy", required=False)
        tidx = np.arange(n) if tidx is None else np.asarray(tidx).ravel().astype(np.int64)
        if len(tidx) != n:
            raise SensoriumError(f"{src.where('meta/trials/trial_idx.npy')}: {len(tidx)} entries for {n} trials")
        units = np.asarray(r.load("meta/neurons/unit_ids.npy")).ravel()
        nn = len(units)
        meta = {"unit_id": units.astype(np.int64)}
        for k, name in (("area", "area"), ("layer", "cortical_layer"), ("animal_ids", "specimen"),
                        ("sessions", "session"), ("scan_idx", "scan_idx")):
            v = r.load(f"meta/neurons/{k}.npy", required=False)
            if v is not None:
                v = np.asarray(v).ravel()
                if len(v) != nn:
                    raise SensoriumError(f"{src.where(f'meta/neurons/{k}.npy')}: {len(v)} entries for {nn} neurons "
                                         "(meta/neurons/unit_ids.npy)")
                meta[name] = v
        xyz = r.load("meta/neurons/cell_motor_coordinates.npy", required=False)
        if xyz is not None:
            xyz = np.asarray(xyz, np.float64).reshape(nn, -1)
            for j, ax in enumerate("xyz"[: xyz.shape[1]]):
                meta[f"motor_{ax}"] = xyz[:, j]
        sel = np.flatnonzero(np.isin(tier, list(tiers))) if tiers is not None else np.arange(n)
        if not len(sel):
            raise SensoriumError(f"{src.where('meta/trials/tiers.npy')}: no trial of tiers {list(tiers)} (tiers "
                                 f"there: {sorted(set(tier.tolist()))}); choose another --tier")
        first = r.load(f"data/responses/{int(sel[0])}.npy")
        if np.asarray(first).size != nn:
            raise SensoriumError(f"{src.where(f'data/responses/{int(sel[0])}.npy')}: {np.asarray(first).size} values "
                                 f"for {nn} neurons (meta/neurons/unit_ids.npy)")
        last = int(sel[-1])
        for d in ("images", "responses"):
            if not r.has(f"data/{d}/{last}.npy"):
                raise MissingDataError(f"{src.where(f'data/{d}/{last}.npy')} is missing ({n} trials in "
                                       "meta/trials/tiers.npy); the dataset is incomplete: unpack or download it again")
        has_b, has_p = r.has(f"data/behavior/{int(sel[0])}.npy"), r.has(f"data/pupil_center/{int(sel[0])}.npy")
    order = sel[np.argsort(tidx[sel], kind="stable")]
    return Mouse(src, nn, order, img[order], tidx[order], meta, has_b, has_p)


def _neuron_ids(mouse: Mouse) -> np.ndarray:
    m = mouse.meta
    n = mouse.n_neurons
    parts = [np.asarray(m.get(k, np.zeros(n)), dtype=np.int64) for k in ("specimen", "session", "scan_idx")]
    u = m["unit_id"]
    if (u < 0).any() or (u >= ID_FACTORS[2]).any() or (parts[1] >= 1000).any() or (parts[2] >= 1000).any():
        raise SensoriumError(f"{mouse.src.where('meta/neurons')}: unit ids {u.min()}..{u.max()} (or session/scan >= "
                             "1000) do not fit the neuron id animal*1e12 + session*1e9 + scan*1e6 + unit")
    return parts[0] * ID_FACTORS[0] + parts[1] * ID_FACTORS[1] + parts[2] * ID_FACTORS[2] + u


# --------------------------------------------------------------------------- streamed blocks
def _trial_table(mouse: Mouse, image_ids, n_trials) -> np.ndarray:
    """(image, trial) trial file index, -1 pad."""
    out = np.full((len(image_ids), n_trials), -1, np.int64)
    for i, img in enumerate(image_ids):
        t = mouse.index.get(int(img), [])
        out[i, : len(t)] = t
    return out


def _responses_block(mouse: Mouse, table: np.ndarray) -> np.ndarray:
    out = np.full((mouse.n_neurons, *table.shape), np.nan, np.float32)
    with mouse.src.open() as r:
        for (i, t), k in np.ndenumerate(table):
            if k >= 0:
                x = np.asarray(r.load(f"data/responses/{k}.npy"), np.float32).ravel()
                if x.size != mouse.n_neurons:
                    raise SensoriumError(f"{mouse.src.where(f'data/responses/{k}.npy')}: {x.size} values for "
                                         f"{mouse.n_neurons} neurons")
                out[:, i, t] = x
    return out


def _image(r: _Reader, src, k, shape=None):
    x = np.asarray(r.load(f"data/images/{k}.npy"))
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2 or (shape is not None and x.shape != shape):
        raise SensoriumError(f"{src.where(f'data/images/{k}.npy')}: image of shape {x.shape}, expected "
                             f"{shape or '(1, h, w)'} (grayscale)")
    return x


def _images_block(mice, image_ids, shape, dtype) -> np.ndarray:
    out = np.empty((len(image_ids), *shape), dtype)
    readers = [m.src.open() for m in mice]
    try:
        for i, img in enumerate(image_ids):
            ref = None
            for m, r in zip(mice, readers):
                x = _image(r, m.src, m.index[int(img)][0], shape)
                if ref is None:
                    ref, out[i] = (m, x), x
                elif not np.array_equal(x, out[i]):
                    raise SensoriumError(
                        f"image id {int(img)} differs between {ref[0].src.where('data/images')} and "
                        f"{m.src.where('data/images')}; these datasets do not share images: ingest them separately")
    finally:
        for r in readers:
            r.__exit__()
    return out


def _per_trial(mouse: Mouse, table, what, width) -> np.ndarray:
    out = np.full((*table.shape, width), np.nan, np.float32)
    with mouse.src.open() as r:
        for (i, t), k in np.ndenumerate(table):
            if k >= 0:
                v = np.asarray(r.load(f"data/{what}/{k}.npy"), np.float32).ravel()
                if v.size != width:
                    raise SensoriumError(f"{mouse.src.where(f'data/{what}/{k}.npy')}: {v.size} values, expected {width}")
                out[i, t] = v
    return out


# --------------------------------------------------------------------------- ingest
def _tiers(tiers):
    if tiers is None or (isinstance(tiers, str) and tiers == "all") or (not isinstance(tiers, str) and "all" in tiers):
        return None
    tiers = (tiers,) if isinstance(tiers, str) else tuple(str(t) for t in tiers)
    if not tiers or any(not t.strip() for t in tiers):
        raise InvalidArgumentError(f"tiers={tiers!r}: name at least one tier ({', '.join(TIERS)}) or 'all'")
    return tiers            # names other than TIERS are allowed: a release may label its tiers otherwise


def _select_mice(sources, mice):
    if mice is None:
        return sources
    want = [str(m) for m in mice]
    out = [s for s in sources if s.name in want or s.name.split("-")[0] in want or s.path.stem in want]
    missing = [w for w in want if not any(w in (s.name, s.name.split("-")[0], s.path.stem) for s in out)]
    if missing:
        raise InvalidArgumentError(f"mouse {missing[0]!r} is not among the datasets given ({[s.name for s in sources]})")
    return out


def ingest_sensorium(study, path, *, tiers=("test",), mice=None, overwrite: bool = False, image_block: int = 128,
                     chunk_neurons: int = 2048, allow_unknown_area: bool = False) -> dict:
    """Ingest Sensorium static datasets into ``STUDY/responses.zarr`` and ``STUDY/stimuli.zarr``.

    Parameters
    ----------
    study : path-like
        Study directory (created if needed).
    path : path-like or list of them
        Dataset folders or zips (one mouse each), or folders holding several.
    tiers : str or tuple of str
        Trials to keep by ``meta/trials/tiers.npy``: ``test`` (default: the repeated images),
        ``validation``, ``train``, ``final_test``, or ``"all"``.
    mice : list of str, optional
        Keep only these datasets (``26872-17-20``, or the animal id ``26872``).

    Returns
    -------
    dict
        ``responses``, ``stimuli`` (paths), ``n_neurons``, ``n_images``, ``n_trials``, ``mice``
        (dataset names), ``images_dropped`` ({mouse: images not shared by all}).

    ``responses.zarr``: ``mean`` (neuron, image), ``trials`` (neuron, image, trial), plus
    ``behavior`` (recording, image, trial, behavior_channel), ``pupil_center`` (recording, image,
    trial, pupil_axis) and ``trial_idx`` (recording, image, trial; -1 pad).  Neuron ids are
    ``animal * 10**12 + session * 10**9 + scan * 10**6 + unit_id``; neuron coords ``area`` (mapped:
    ``V1`` -> ``VISp``), ``cortical_layer`` (``meta/neurons/layer``), ``cre_line`` (``unknown``: not in
    the files), ``depth_um`` (NaN), ``specimen`` (animal id), ``session``, ``scan_idx``, ``unit_id``,
    ``motor_x``/``motor_y``/``motor_z`` (``cell_motor_coordinates``) and ``dataset`` (the row of
    ``recording``).
    """
    import dask
    import dask.array as da
    import pandas as pd
    import xarray as xr

    from . import store
    from .builders import build_responses_dataset
    from .lock import study_lock

    tiers = _tiers(tiers)
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise InvalidArgumentError("no --path given: name at least one Sensorium dataset folder or zip")
    study = Path(study)
    rpath, spath = study / S.RESPONSES_STORE, study / S.STIMULI_STORE
    store.check_writable([rpath, spath], overwrite)
    sources = [s for p in paths for s in find_sources(p)]
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SensoriumError(f"dataset {dup[0]} is given twice ({[str(s.path) for s in sources if s.name == dup[0]]})")
    sources = _select_mice(sources, mice)
    scanned = [scan_mouse(s, tiers) for s in sources]
    image_ids, dropped = _shared_images(scanned)
    for m in scanned:
        for img, tr in zip(m.image_of_trial, m.trials):
            m.index.setdefault(int(img), []).append(int(tr))
    n_trials = max(max(len(m.index[int(i)]) for i in image_ids) for m in scanned)
    with scanned[0].src.open() as r:
        x0 = _image(r, scanned[0].src, scanned[0].index[int(image_ids[0])][0])
    shape, dtype = x0.shape, x0.dtype if x0.dtype.kind in "iuf" else np.float32

    blocks = [image_ids[i:i + image_block] for i in range(0, len(image_ids), image_block)]
    per_mouse, beh, pup, tix = [], [], [], []
    for m in scanned:
        tables = [_trial_table(m, b, n_trials) for b in blocks]
        per_mouse.append(da.concatenate(
            [da.from_delayed(dask.delayed(_responses_block, pure=True)(m, t), shape=(m.n_neurons, *t.shape),
                             dtype=np.float32) for t in tables], axis=1))
        full = np.concatenate(tables, axis=0)
        beh.append(_per_trial(m, full, "behavior", 3) if m.has_behavior else np.full((*full.shape, 3), np.nan, np.float32))
        pup.append(_per_trial(m, full, "pupil_center", 2) if m.has_pupil else np.full((*full.shape, 2), np.nan, np.float32))
        pos = dict(zip(m.trials.tolist(), m.trial_idx.tolist()))
        tix.append(np.asarray([[pos.get(k, -1) for k in row] for row in full.tolist()], dtype=np.int64)
                   .reshape(full.shape))
    # store chunks: a neuron chunk spans at most two mice's blocks of one image block (bounded memory)
    trials = da.concatenate(per_mouse, axis=0).rechunk({0: chunk_neurons, 1: image_block, 2: -1})
    mean = trials.map_blocks(_nanmean, drop_axis=2, dtype=np.float32)
    ids = np.concatenate([_neuron_ids(m) for m in scanned])
    meta = pd.concat([_meta_frame(m) for m in scanned], ignore_index=True)
    settings = {"source": "sensorium", "tiers": "all" if tiers is None else list(tiers),
                "mice": [m.src.name for m in scanned], "images": "shared by every mouse", "n_trials": n_trials}
    inputs = {m.src.name: {"path": str(m.src.path), "member": m.src.prefix or "",
                           "bytes": m.src.path.stat().st_size if m.src.path.is_file() else None} for m in scanned}
    attrs = store.provenance(settings, inputs)
    attrs["source"] = "Sensorium 2022 static datasets " + ", ".join(m.src.name for m in scanned)
    attrs["response"] = "data/responses per trial (as published); trials = repeats of a frame_image_id"
    ds = build_responses_dataset(mean=mean, trials=trials, neuron_ids=ids, meta=meta, image_ids=image_ids,
                                 source=str(rpath), attrs=attrs, allow_unknown_area=allow_unknown_area)
    rec = np.asarray([m.src.name for m in scanned], dtype=str)
    ds = ds.assign_coords({RECORDING: rec, "behavior_channel": list(BEHAVIOR_CHANNELS), "pupil_axis": list(PUPIL_AXES)})
    ds["behavior"] = ((RECORDING, S.IMAGE, S.TRIAL, "behavior_channel"), np.stack(beh))
    ds["pupil_center"] = ((RECORDING, S.IMAGE, S.TRIAL, "pupil_axis"), np.stack(pup))
    ds["trial_idx"] = ((RECORDING, S.IMAGE, S.TRIAL), np.stack(tix))
    ds["behavior"].attrs["description"] = "data/behavior per trial: pupil dilation, its derivative, running speed"
    ds["pupil_center"].attrs["description"] = "data/pupil_center per trial"
    ds["trial_idx"].attrs["description"] = "meta/trials/trial_idx of each trial; -1 where an image had fewer trials"
    pixels = da.concatenate([da.from_delayed(dask.delayed(_images_block, pure=True)(scanned, b, shape, dtype),
                                             shape=(len(b), *shape), dtype=dtype) for b in blocks], axis=0)
    st = xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), pixels)}, coords={S.IMAGE: image_ids},
                    attrs={**store.provenance({"source": "sensorium"}, inputs),
                           "source": f"data/images of {scanned[0].src.name} (first trial of each image id)"})
    S.validate_stimuli(st, source=str(spath))
    store.make_parent(rpath)
    chunks = {S.NEURON: chunk_neurons, S.IMAGE: image_block, S.TRIAL: n_trials, RECORDING: len(rec)}
    with study_lock(study, [S.RESPONSES_STORE, S.STIMULI_STORE]), store.transaction(overwrite=overwrite) as tx:
        tx.write(ds, rpath, chunks=chunks)
        tx.write(st, spath, chunks={S.IMAGE: image_block})
    return {"responses": str(rpath), "stimuli": str(spath), "n_neurons": len(ids),
            "n_images": len(image_ids), "n_trials": int(n_trials), "mice": [m.src.name for m in scanned],
            "images_dropped": dropped}


def _nanmean(x):
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=-1).astype(np.float32)


def _shared_images(scanned):
    sets = [set(np.unique(m.image_of_trial).tolist()) for m in scanned]
    shared = set.intersection(*sets)
    if not shared:
        raise SensoriumError("the chosen mice share no image id in the chosen tiers ("
                             + "; ".join(f"{m.src.name}: {len(s)} images" for m, s in zip(scanned, sets))
                             + "); ingest them into separate studies, or choose a tier they share (--tier test)")
    dropped = {m.src.name: len(s - shared) for m, s in zip(scanned, sets) if len(s - shared)}
    if dropped:
        warnings.warn(f"{len(shared)} image ids are shared by all {len(scanned)} mice; left out (seen by only some): "
                      + ", ".join(f"{k}: {v}" for k, v in dropped.items()), SensoriumWarning, stacklevel=3)
    return np.asarray(sorted(shared), dtype=np.int64), dropped


def _meta_frame(m: Mouse):
    import pandas as pd

    n = m.n_neurons
    d = {k: v for k, v in m.meta.items()}
    d["area"] = np.asarray([map_area(a) for a in d.get("area", np.full(n, "unknown"))], dtype=object)
    if "cortical_layer" in d:
        d["cortical_layer"] = np.asarray([str(v) for v in d["cortical_layer"]], dtype=object)
    for k in ("specimen", "session", "scan_idx"):
        if k in d:
            d[k] = np.asarray(d[k]).astype(np.int64)
    d["cre_line"] = np.full(n, "unknown", dtype=object)
    d["depth_um"] = np.full(n, np.nan)
    d["dataset"] = np.full(n, m.src.name, dtype=object)
    return pd.DataFrame(d)


__all__ = [
    "AREA_ALIASES",
    "BEHAVIOR_CHANNELS",
    "ID_FACTORS",
    "TIERS",
    "SensoriumError",
    "SensoriumWarning",
    "find_sources",
    "ingest_sensorium",
    "map_area",
    "scan_mouse",
]
