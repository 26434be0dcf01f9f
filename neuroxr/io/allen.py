"""Allen Brain Observatory (Visual Coding 2-photon) natural scenes: read an AllenSDK cache directly.

An AllenSDK ``BrainObservatoryCache`` directory is read with ``json``, ``h5py`` and ``numpy``
only; AllenSDK itself is not needed (it pins old versions of numpy, pandas and h5py, and we use
a handful of its file layouts, not its code).

Cache layout (``manifest.json``, version 1.3, paths relative to the manifest's directory)::

    manifest.json
    ophys_experiments.json                  OphysExperiment records (id, stimulus_name, ...)
    cell_specimens.json                     ApiCamCellMetric records (cell_specimen_id, area, tld1_name, ...)
    ophys_experiment_data/<id>.nwb          NWB 1.x: stimulus table, image stack, dF/F, cell ids
    ophys_experiment_events/<id>_events.npz ``ev`` (cell, frame): detected event magnitudes

Per trial, the response of a cell is the sum of its events over the presentation window
(``response="events"``, the default, as in the study) or its mean dF/F over the window
(``response="dff"``).  The window of a presentation is the half-open acquisition-frame range
``[start, end)`` of ``stimulus/presentation/natural_scenes_stimulus/frame_duration`` (the
``start``/``end`` columns of AllenSDK's ``get_stimulus_table("natural_scenes")``).  The blank
(frame -1) is not an image.  Trials are grouped per image in presentation order and NaN-padded
to the largest count (50 in the released data).
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError, StoreExistsError

NATURAL_SCENES = "natural_scenes"
DEFAULT_SESSION = "three_session_B"
PIPELINE = "processing/brain_observatory_pipeline"
NS_PRESENTATION = "stimulus/presentation/natural_scenes_stimulus"
NS_TEMPLATE = "stimulus/templates/natural_scenes_image_stack/data"
DFF_DATA = f"{PIPELINE}/DfOverF/imaging_plane_1/data"
CELL_IDS = f"{PIPELINE}/ImageSegmentation/cell_specimen_ids"
EVENTS_KEY = "ev"
RESPONSES = ("events", "dff")

#: manifest keys -> default specs (``BrainObservatoryCache.build_manifest``, version 1.3)
MANIFEST_DEFAULTS = {
    "EXPERIMENT_CONTAINERS": "experiment_containers.json",
    "EXPERIMENTS": "ophys_experiments.json",
    "CELL_SPECIMENS": "cell_specimens.json",
    "EXPERIMENT_DATA": "ophys_experiment_data/%d.nwb",
    "EVENTS_DATA": "ophys_experiment_events/%d_events.npz",
}
MANIFEST_VERSION = "1.3"


class AllenCacheError(NeuroxrError):
    """A file of the Allen cache is missing, truncated or lacks what the reader needs."""


class AllenDataWarning(UserWarning):
    """An experiment or cell of the Allen cache was skipped or completed from other metadata."""


def _warn(msg):
    warnings.warn(msg, AllenDataWarning, stacklevel=3)


# --------------------------------------------------------------------------- the cache directory
@dataclass(frozen=True)
class AllenCache:
    """Paths of an AllenSDK ``BrainObservatoryCache`` directory, resolved from its manifest."""

    root: Path
    paths: dict = field(default_factory=dict)

    def path(self, key, *args) -> Path:
        spec = self.paths.get(key, str(self.root / MANIFEST_DEFAULTS[key]))
        return Path(spec % args if args else spec)

    def nwb_path(self, experiment_id) -> Path:
        return self.path("EXPERIMENT_DATA", int(experiment_id))

    def events_path(self, experiment_id) -> Path:
        return self.path("EVENTS_DATA", int(experiment_id))

    def relpath(self, p) -> str:
        try:
            return str(Path(p).relative_to(self.root))
        except ValueError:
            return str(p)


def read_manifest(path) -> dict:
    """Resolve the file keys of an AllenSDK ``manifest.json`` to absolute path specs.

    ``dir`` entries with a relative spec are relative to the manifest's directory (as AllenSDK's
    ``Cache`` resolves them); ``file`` entries join their ``parent_key`` directory.  Keys the
    reader needs but the manifest lacks (older manifests have no ``EVENTS_DATA``) get the
    version-1.3 defaults.
    """
    path = Path(path)
    try:
        with open(path) as f:
            config = json.load(f)
        entries = config["manifest"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AllenCacheError(f"{path}: not an AllenSDK manifest ({exc}); delete it and rerun "
                              "`neuroxr fetch allen` (it writes a fresh one)") from None
    base = path.parent.resolve()
    resolved: dict = {}
    for e in entries:
        if not isinstance(e, dict) or "key" not in e or "spec" not in e:
            continue
        spec = str(e["spec"])
        parent = e.get("parent_key")
        if parent and parent in resolved:
            p = os.path.join(resolved[parent], *spec.split("/"))
        elif spec.startswith("/"):
            p = spec
        else:
            p = os.path.join(str(base), *spec.split("/"))
        resolved[e["key"]] = os.path.normpath(p)
    for k, spec in MANIFEST_DEFAULTS.items():
        resolved.setdefault(k, os.path.join(resolved.get("BASEDIR", str(base)), *spec.split("/")))
    return resolved


def open_allen_cache(cache) -> AllenCache:
    """Find the manifest of an AllenSDK Brain Observatory cache.

    ``cache`` may be the ``manifest.json`` itself, the directory holding it, or a parent with
    ``brain_observatory/manifest.json`` (where ``BrainObservatoryCache()`` puts it by default).
    A directory without a manifest but with ``ophys_experiments.json`` is read with the default
    layout.
    """
    p = Path(cache).expanduser()
    if p.is_file() and p.suffix == ".json":
        return AllenCache(p.parent.resolve(), read_manifest(p))
    for cand in (p / "manifest.json", p / "brain_observatory" / "manifest.json"):
        if cand.is_file():
            return AllenCache(cand.parent.resolve(), read_manifest(cand))
    if (p / MANIFEST_DEFAULTS["EXPERIMENTS"]).is_file():
        return AllenCache(p.resolve(), {k: str(p.resolve() / v) for k, v in MANIFEST_DEFAULTS.items()})
    raise MissingDataError(
        f"{p}: no AllenSDK cache here (no manifest.json, brain_observatory/manifest.json or "
        f"ophys_experiments.json); download one with `neuroxr fetch allen {p}`"
    )


def _read_json(path, what, keep=None):
    """Records of a cache JSON file; with ``keep``, objects keep only those keys (the full
    ``cell_specimens.json`` has ~100 metrics per cell: this keeps memory to what is used)."""
    path = Path(path)
    if not path.exists():
        part = path.with_name(path.name + ".part")
        hint = " (a partial download is there: rerun `neuroxr fetch allen` to finish it)" if part.exists() else ""
        raise MissingDataError(f"{path} ({what}) does not exist{hint}; run `neuroxr fetch allen {path.parent}`")
    try:
        hook = None if keep is None else (lambda pairs: {k: v for k, v in pairs if k in keep or k == "msg"})
        with open(path) as f:
            obj = json.load(f, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise AllenCacheError(f"{path} ({what}) is not valid JSON ({exc}); the download is probably "
                              "truncated: delete it and rerun `neuroxr fetch allen`") from None
    if isinstance(obj, dict) and "msg" in obj:          # raw RMA response envelope
        obj = obj["msg"]
    if not isinstance(obj, list):
        raise AllenCacheError(f"{path} ({what}) holds a {type(obj).__name__}, expected a list of records")
    return obj


# --------------------------------------------------------------------------- metadata records
def _acronym(v):
    if isinstance(v, dict):
        return v.get("acronym")
    return v


def _cre_from_specimen(rec):
    """First driver line with 'Cre' in its name (AllenSDK's ``find_specimen_cre_line``)."""
    try:
        for tl in rec["specimen"]["donor"]["transgenic_lines"]:
            if tl.get("transgenic_line_type_name") == "driver" and "Cre" in tl.get("name", ""):
                return tl["name"]
    except (KeyError, TypeError):
        pass
    return None


def _num(v, kind=float):
    try:
        return kind(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def read_experiments(cache) -> "pandas.DataFrame":  # noqa: F821
    """One row per ophys experiment of ``ophys_experiments.json``.

    Returns
    -------
    DataFrame
        Index ``id``; columns ``container``, ``session_type``, ``area``, ``cre_line``,
        ``depth_um``, ``failed``.  Reads the raw RMA records the cache stores (``stimulus_name``,
        ``targeted_structure.acronym``, ``specimen.donor.transgenic_lines``) and the simplified
        ones AllenSDK returns (``session_type``, ``targeted_structure``, ``cre_line``).  Records
        without an ``id`` are skipped with a warning.
    """
    import pandas as pd

    cache = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    path = cache.path("EXPERIMENTS")
    rows = []
    for i, r in enumerate(_read_json(path, "ophys experiments")):
        if not isinstance(r, dict) or _num(r.get("id"), int) is None:
            _warn(f"{path}: record {i} has no 'id'; skipped")
            continue
        failed = bool(r.get("failed", False)) or bool((r.get("experiment_container") or {}).get("failed", False))
        rows.append({
            "id": int(r["id"]),
            "container": _num(r.get("experiment_container_id"), int),
            "session_type": r.get("stimulus_name", r.get("session_type")),
            "area": _acronym(r.get("targeted_structure")),
            "cre_line": r.get("cre_line") or _cre_from_specimen(r),
            "depth_um": _num(r.get("imaging_depth")),
            "failed": failed,
        })
    df = pd.DataFrame(rows, columns=["id", "container", "session_type", "area", "cre_line", "depth_um", "failed"])
    return df.set_index("id")


def read_cell_metadata(cache) -> "pandas.DataFrame":  # noqa: F821
    """Cell metadata of ``cell_specimens.json``, one row per ``cell_specimen_id``.

    Returns
    -------
    DataFrame
        Index ``cell_specimen_id``; columns ``container`` (``experiment_container_id``),
        ``area``, ``cre_line`` (``tld1_name``), ``depth_um`` (``imaging_depth``), ``p_run_mod``
        (``p_run_mod_ns``), ``p_image`` (``p_ns``), ``failed`` (``failed_experiment_container``).
        Missing fields are NaN/None; records without ``cell_specimen_id`` are skipped with a warning.
    """
    import pandas as pd

    cache = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    path = cache.path("CELL_SPECIMENS")
    cols = ["cell_specimen_id", "container", "area", "cre_line", "depth_um", "p_run_mod", "p_image", "failed"]
    rows, bad = [], 0
    fields = {"cell_specimen_id", "experiment_container_id", "area", "tld1_name", "imaging_depth", "p_run_mod_ns",
              "p_ns", "failed_experiment_container"}
    for r in _read_json(path, "cell specimens", keep=fields):
        cid = _num(r.get("cell_specimen_id"), int) if isinstance(r, dict) else None
        if cid is None:
            bad += 1
            continue
        rows.append((cid, _num(r.get("experiment_container_id"), int), r.get("area"), r.get("tld1_name"),
                     _num(r.get("imaging_depth")), _num(r.get("p_run_mod_ns")), _num(r.get("p_ns")),
                     bool(r.get("failed_experiment_container", False))))
    if bad:
        _warn(f"{path}: {bad} records without 'cell_specimen_id' skipped")
    df = pd.DataFrame(rows, columns=cols)
    df = df[~df.cell_specimen_id.duplicated(keep="first")]
    for c in ("depth_um", "p_run_mod", "p_image"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df.set_index("cell_specimen_id")


# --------------------------------------------------------------------------- one NWB file
def _h5(path):
    import h5py

    path = Path(path)
    if not path.exists():
        part = path.with_name(path.name + ".part")
        hint = "a partial download is there; " if part.exists() else ""
        raise MissingDataError(f"{path} is not downloaded ({hint}run `neuroxr fetch allen` to get it)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise AllenCacheError(f"{path} is not a readable HDF5/NWB file ({exc}); it is probably truncated: "
                              "delete it and rerun `neuroxr fetch allen`") from None


def _dataset(f, name, path):
    try:
        obj = f[name]
    except KeyError:
        raise AllenCacheError(f"{path}: NWB dataset {name!r} is missing; the file is not a natural-scenes "
                              "session or is corrupt (re-download it with `neuroxr fetch allen`)") from None
    except Exception as exc:  # corrupt object headers
        raise AllenCacheError(f"{path}: NWB object {name!r} cannot be read ({exc}); re-download the file") from None
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise AllenCacheError(f"{path}: NWB object {name!r} is a group, expected a dataset")
    return obj


def read_session_type(nwb_path) -> str | None:
    """``general/session_type`` of an NWB file (None when absent)."""
    with _h5(nwb_path) as f:
        if "general/session_type" not in f:
            return None
        v = f["general/session_type"][()]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_stimulus_table(nwb_path) -> "pandas.DataFrame":  # noqa: F821
    """The natural-scenes stimulus table: columns ``frame`` (-1 = blank), ``start``, ``end``.

    ``start`` and ``end`` are acquisition-frame indices (``frame_duration`` columns), sorted by
    ``start`` as AllenSDK sorts them.
    """
    import pandas as pd

    with _h5(nwb_path) as f:
        frames, start, end = _read_table(f, nwb_path)
    df = pd.DataFrame({"frame": frames, "start": start, "end": end})
    return df.sort_values(["start", "end"], kind="stable").reset_index(drop=True)


def _read_table(f, path):
    data = np.asarray(_dataset(f, f"{NS_PRESENTATION}/data", path)[()])
    dur = np.asarray(_dataset(f, f"{NS_PRESENTATION}/frame_duration", path)[()])
    data = data.reshape(len(data), -1)[:, 0] if data.ndim > 1 else data
    if dur.ndim != 2 or dur.shape[1] != 2 or dur.shape[0] != data.shape[0]:
        raise AllenCacheError(f"{path}: {NS_PRESENTATION}/frame_duration has shape {dur.shape}, expected "
                              f"({data.shape[0]}, 2) (start and end frame of each presentation)")
    if not (np.all(np.isfinite(dur)) and np.all(np.isfinite(data.astype(float)))):
        raise AllenCacheError(f"{path}: {NS_PRESENTATION} has non-finite frames or times; re-download the file")
    order = np.lexsort((dur[:, 1], dur[:, 0]))
    return data[order].astype(np.int64), dur[order, 0].astype(np.int64), dur[order, 1].astype(np.int64)


def read_natural_scenes(nwb_path) -> np.ndarray:
    """The natural-scenes template stack, ``(image, y, x)`` uint8, image i = stimulus frame i."""
    with _h5(nwb_path) as f:
        return np.asarray(_dataset(f, NS_TEMPLATE, nwb_path)[()])


def group_trials(frames, n_images: int, n_trials: int | None = None) -> np.ndarray:
    """Presentation indices per image, ``(image, trial)``, -1 where an image had fewer trials.

    ``frames`` are the stimulus frames in presentation order; the blank (-1) is left out.
    """
    frames = np.asarray(frames)
    counts = np.bincount(frames[frames >= 0], minlength=n_images)
    n_trials = int(counts.max()) if n_trials is None else int(n_trials)
    out = np.full((n_images, n_trials), -1, np.int64)
    for img in range(n_images):
        idx = np.flatnonzero(frames == img)[:n_trials]
        out[img, : len(idx)] = idx
    return out


def window_operator(start, end, n_frames: int, response: str = "events"):
    """Sparse ``(frame, presentation)`` matrix W: ``traces (cell, frame) @ W`` gives the responses.

    ``events``: W[t, p] = 1 for ``start_p <= t < end_p`` (sum); ``dff``: 1 / (end_p - start_p)
    (mean).  Presentations whose window leaves ``[0, n_frames)`` or is empty get an all-zero
    column; the caller marks them NaN.
    """
    from scipy import sparse

    start = np.asarray(start, np.int64)
    end = np.asarray(end, np.int64)
    ok = (start >= 0) & (end <= n_frames) & (end > start)
    lens = np.where(ok, end - start, 0)
    cols = np.repeat(np.arange(len(start)), lens)
    rows = np.concatenate([np.arange(s, e) for s, e, k in zip(start, end, ok) if k]) if lens.sum() else np.zeros(0, np.int64)
    vals = np.ones(len(rows)) if response == "events" else np.repeat(1.0 / np.maximum(lens, 1), lens)
    return sparse.csc_matrix((vals, (rows, cols)), shape=(n_frames, len(start))), ok


def _npz_rows(path, key=EVENTS_KEY, block=64):
    """Yield ``(row0, rows)`` blocks of a 2-D array stored in an ``.npz`` without loading it whole."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AllenCacheError(f"{path}: not a readable .npz ({exc}); it is probably truncated: delete it and "
                              "rerun `neuroxr fetch allen`") from None
    with zf:
        name = key + ".npy"
        if name not in zf.namelist():
            raise AllenCacheError(f"{path}: no array {key!r} (found {[n[:-4] for n in zf.namelist()]})")
        with zf.open(name) as fh:
            shape, fortran, dtype = _npy_header(fh, path)
            if fortran or len(shape) != 2 or dtype.hasobject:
                arr = np.load(path, allow_pickle=False)[key]
                for i0 in range(0, arr.shape[0], block):
                    yield i0, np.asarray(arr[i0:i0 + block])
                return
            n, t = shape
            for i0 in range(0, n, block):
                k = min(block, n - i0)
                buf = fh.read(k * t * dtype.itemsize)
                if len(buf) != k * t * dtype.itemsize:
                    raise AllenCacheError(f"{path}: array {key!r} ends early at row {i0} of {n}; re-download it")
                yield i0, np.frombuffer(buf, dtype=dtype).reshape(k, t)


def _npy_header(fh, path):
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        return np.lib.format.read_array_header_2_0(fh)
    except ValueError as exc:
        raise AllenCacheError(f"{path}: not a numpy array file ({exc})") from None


def read_events_shape(events_path, key=EVENTS_KEY) -> tuple:
    """Shape of the events array (reads only the zip directory and the .npy header)."""
    try:
        with zipfile.ZipFile(events_path) as zf, zf.open(key + ".npy") as fh:
            return tuple(_npy_header(fh, events_path)[0])
    except KeyError:
        raise AllenCacheError(f"{events_path}: no array {key!r}; re-download it") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise AllenCacheError(f"{events_path}: not a readable .npz ({exc}); it is probably truncated: "
                              "delete it and rerun `neuroxr fetch allen`") from None


def calc_trial_responses(nwb_path, events_path=None, response: str = "events", *, n_images: int | None = None,
                         n_trials: int | None = None, block: int = 64) -> tuple:
    """Trial responses of every cell of one experiment.

    Parameters
    ----------
    nwb_path, events_path : path-like
        The experiment's NWB file and (for ``response="events"``) its events ``.npz``.
    response : {"events", "dff"}
        Sum of events, or mean dF/F, over each presentation window ``[start, end)``.
    n_images, n_trials : int, optional
        Size of the image and trial axes (default: template size, largest trial count).

    Returns
    -------
    cell_ids : ndarray (neuron,) int64
    trials : ndarray (neuron, image, trial) float32, NaN where an image had fewer trials
    """
    if response not in RESPONSES:
        raise ValueError(f"response={response!r}: use one of {RESPONSES}")
    with _h5(nwb_path) as f:
        frames, start, end = _read_table(f, nwb_path)
        ids = np.asarray(_dataset(f, CELL_IDS, nwb_path)[()]).astype(np.int64).ravel()
        if n_images is None:
            n_images = int(_dataset(f, NS_TEMPLATE, nwb_path).shape[0])
        index = group_trials(frames, n_images, n_trials)
        if response == "dff":
            d = _dataset(f, DFF_DATA, nwb_path)
            out = _responses_from_blocks(
                ((i0, d[i0:i0 + block]) for i0 in range(0, d.shape[0], block)), d.shape, ids, start, end,
                index, response, nwb_path)
            return ids, out
    shape = read_events_shape(events_path)
    return ids, _responses_from_blocks(_npz_rows(events_path, block=block), shape, ids, start, end, index,
                                       response, events_path)


def _responses_from_blocks(blocks, shape, ids, start, end, index, response, path):
    if len(shape) != 2 or shape[0] != len(ids):
        raise AllenCacheError(f"{path}: traces have shape {tuple(shape)}, expected ({len(ids)} cells, frames) "
                              f"to match {CELL_IDS}")
    W, ok = window_operator(start, end, int(shape[1]), response)
    valid = np.where(index >= 0, ok[np.maximum(index, 0)], False)
    out = np.empty((len(ids), *index.shape), np.float32)
    for i0, x in blocks:
        r = np.asarray(W.T @ np.asarray(x, np.float64).T).T          # (cell, presentation)
        out[i0:i0 + len(x)] = np.where(valid, r[:, np.maximum(index, 0)], np.nan)
    return out


# --------------------------------------------------------------------------- scan and ingest
@dataclass
class _Experiment:
    id: int
    nwb: Path
    events: Path | None
    cell_ids: np.ndarray
    n_trials: int
    n_images: int
    template_shape: tuple
    keep: np.ndarray | None = None


def scan_experiment(cache: AllenCache, experiment_id: int, response="events", session=DEFAULT_SESSION) -> _Experiment:
    """Check one experiment's files without reading its traces; raise :class:`AllenCacheError`
    (or :class:`MissingDataError`) naming the file and what is wrong."""
    nwb = cache.nwb_path(experiment_id)
    events = cache.events_path(experiment_id) if response == "events" else None
    with _h5(nwb) as f:
        st = f.get("general/session_type")
        if st is not None:
            st = st[()]
            st = st.decode() if isinstance(st, bytes) else str(st)
            if st != session:
                raise AllenCacheError(f"{nwb}: session type is {st!r}, not {session!r}")
        if NS_PRESENTATION not in f:
            raise AllenCacheError(f"{nwb}: no {NS_PRESENTATION} group (not a natural-scenes session, or corrupt)")
        frames, start, end = _read_table(f, nwb)
        tmpl = _dataset(f, NS_TEMPLATE, nwb)
        ids = np.asarray(_dataset(f, CELL_IDS, nwb)[()]).astype(np.int64).ravel()
        n_images = int(tmpl.shape[0])
        if frames.max(initial=-1) >= n_images or frames.min(initial=0) < -1:
            raise AllenCacheError(f"{nwb}: stimulus frames range {frames.min()}..{frames.max()}, but the image "
                                  f"stack has {n_images} images")
        if response == "dff":
            d = _dataset(f, DFF_DATA, nwb)
            shape = d.shape
            try:
                if d.size:
                    d[-1, -1]            # the last chunk is readable: the file is not truncated
            except Exception as exc:
                raise AllenCacheError(f"{nwb}: {DFF_DATA} cannot be read ({exc}); re-download the file") from None
        tshape = tuple(tmpl.shape)
    if response == "events":
        if not events.exists():
            part = events.with_name(events.name + ".part")
            raise MissingDataError(f"{events} is not downloaded ({'partial download present; ' if part.exists() else ''}"
                                   "run `neuroxr fetch allen`, or use --response dff)")
        shape = read_events_shape(events)
    if len(shape) != 2 or shape[0] != len(ids):
        raise AllenCacheError(f"{events or nwb}: traces have shape {tuple(shape)}, expected ({len(ids)}, frames) "
                              f"to match {CELL_IDS}")
    if end.max(initial=0) > shape[1]:
        _warn(f"experiment {experiment_id}: {int((end > shape[1]).sum())} presentations end after the last "
              f"recorded frame ({shape[1]}) of {events or nwb}; their trials are NaN")
    counts = np.bincount(frames[frames >= 0], minlength=n_images)
    return _Experiment(int(experiment_id), nwb, events, ids, int(counts.max(initial=0)), n_images, tshape)


def _match_cre(cre, wanted):
    if cre is None:
        return False
    for w in wanted:
        wl = w.lower()
        if wl == "excitatory" and S.is_excitatory(cre):
            return True
        if wl == "inhibitory" and not S.is_excitatory(cre):
            return True
        c = str(cre).lower()
        if c == wl or c.split("-")[0] == wl.split("-")[0] and "-" not in wl:
            return True
    return False


def select_experiments(cache, session=DEFAULT_SESSION, areas=None, cre_lines=None, containers=None,
                       include_failed=False) -> "pandas.DataFrame":  # noqa: F821
    """Rows of :func:`read_experiments` of ``session`` passing the area/cre/container filters."""
    exps = read_experiments(cache)
    sel = exps[exps.session_type == session]
    if not include_failed:
        sel = sel[~sel.failed.astype(bool)]
    if containers is not None:
        sel = sel[sel.container.isin([int(c) for c in containers])]
    if areas is not None:
        sel = sel[sel.area.isin(list(areas))]
    if cre_lines is not None:
        sel = sel[[_match_cre(c, cre_lines) for c in sel.cre_line]]
    return sel


def _experiment_task(exp: _Experiment, response, n_images, n_trials, block):
    try:
        _, tr = calc_trial_responses(exp.nwb, exp.events, response, n_images=n_images, n_trials=n_trials, block=block)
    except NeuroxrError:
        raise
    except Exception as exc:  # corrupt chunks found only while reading
        raise AllenCacheError(f"experiment {exp.id} ({exp.nwb}, {exp.events}): reading failed ({type(exc).__name__}: "
                              f"{exc}); nothing was written. Re-download it with `neuroxr fetch allen` or leave its "
                              "container out with --containers") from None
    return tr if exp.keep is None else tr[exp.keep]


def _isin(values, index):
    return np.isin(np.asarray(values), np.asarray(index))


def _missing(v):
    return v is None or (isinstance(v, float) and np.isnan(v))


def _float(v):
    return np.nan if _missing(v) else float(v)


def _int(v, default):
    return default if _missing(v) else int(v)


def _fill_str(series, fallback, n):
    fb = "unknown" if _missing(fallback) or fallback == "" else str(fallback)
    if series is None:
        return np.full(n, fb, dtype=object)
    vals = series.to_numpy(object)
    return np.array([fb if _missing(v) or v == "" else str(v) for v in vals], dtype=object)


def _nanmean_trials(x):
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=-1).astype(np.float32)


def _build_responses(mean, trials, ids, table, n_images, attrs, source):
    """The responses Dataset, through :func:`neuroxr.io.arrays.build_responses_dataset` when it exists."""
    try:
        from .arrays import build_responses_dataset
    except ImportError:  # pragma: no cover - arrays.py is another module of the package
        build_responses_dataset = None
    if build_responses_dataset is not None:
        return build_responses_dataset(mean=mean, trials=trials, neuron_ids=ids, meta=table,
                                       image_ids=np.arange(n_images, dtype=np.int64), source=str(source), attrs=attrs)
    import xarray as xr  # pragma: no cover

    depth = table["depth_um"].to_numpy(float)
    coords = {S.NEURON: ids, S.IMAGE: np.arange(n_images, dtype=np.int64),
              S.TRIAL: np.arange(trials.shape[2], dtype=np.int64),
              "cortical_layer": (S.NEURON, np.asarray([S.cortical_layer(d, c) for d, c in
                                                       zip(depth, table["cre_line"])], dtype=str))}
    for c in table.columns:
        coords[c] = (S.NEURON, table[c].to_numpy())
    ds = xr.Dataset({S.MEAN: ((S.NEURON, S.IMAGE), mean), S.TRIALS: ((S.NEURON, S.IMAGE, S.TRIAL), trials)},
                    coords=coords, attrs=attrs)
    S.validate_responses(ds, source=source)
    return ds


def ingest_allen(study, cache, response: str = "events", session: str = DEFAULT_SESSION, areas=None,
                 cre_lines=None, containers=None, overwrite: bool = False, *, include_failed: bool = False,
                 chunk_neurons: int = 1024, block: int = 64):
    """Ingest the natural-scenes sessions of an AllenSDK cache into ``STUDY/responses.zarr`` and
    ``STUDY/stimuli.zarr``.

    Parameters
    ----------
    study : path-like
        Study directory (created if needed).
    cache : path-like
        AllenSDK ``BrainObservatoryCache`` directory (or its ``manifest.json``).
    response : {"events", "dff"}
        Per trial, the sum of events or the mean dF/F over the presentation window.
    session : str
        Session type holding the natural scenes (``three_session_B``).
    areas, cre_lines, containers : list, optional
        Keep experiments in these areas (``VISp`` ...), Cre lines (full names, driver names such as
        ``Cux2``, or ``excitatory``/``inhibitory``) and experiment containers.
    overwrite : bool
        Replace existing stores (atomically; the old ones stay until the new ones are complete).

    Returns
    -------
    Dataset
        ``responses.zarr`` opened lazily: ``mean`` (neuron, image), ``trials`` (neuron, image, trial),
        neuron coords ``area``, ``cre_line``, ``depth_um``, ``cortical_layer``, ``container``,
        ``experiment``, ``p_run_mod``, ``p_image``.

    Experiments whose files are missing, truncated, of another session type or lack an NWB group
    are skipped with an :class:`AllenDataWarning` naming them; cells without a
    ``cell_specimens.json`` record keep the experiment's area, Cre line and depth (NaN p-values)
    with a warning.  Each experiment is read by one Dask task, and the trials are written chunk by
    chunk, so memory stays at a few experiments whatever the number of neurons.
    """
    import dask
    import dask.array as da
    import xarray as xr

    from .store import provenance, write_dataset

    if response not in RESPONSES:
        raise ValueError(f"response={response!r}: use one of {RESPONSES}")
    study = Path(study)
    rpath, spath = study / S.RESPONSES_STORE, study / S.STIMULI_STORE
    for p in (rpath, spath):
        if p.exists() and not overwrite:
            raise StoreExistsError(f"{p} already exists; pass --overwrite (overwrite=True) to replace it")
    ac = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    sel = select_experiments(ac, session, areas, cre_lines, containers, include_failed)
    if sel.empty:
        exps = read_experiments(ac)
        raise AllenCacheError(
            f"{ac.path('EXPERIMENTS')}: no {session} experiment matches (areas={areas}, cre_lines={cre_lines}, "
            f"containers={containers}); session types there: {sorted(map(str, exps.session_type.dropna().unique()))}")
    try:
        cells = read_cell_metadata(ac)
    except MissingDataError as exc:
        _warn(f"{exc}; using experiment-level metadata (p_run_mod and p_image are NaN)")
        cells = None

    scanned, skipped, absent = [], {}, []
    for eid, rec in sel.iterrows():
        nwb = ac.nwb_path(eid)
        if not nwb.exists() and not nwb.with_name(nwb.name + ".part").exists():
            absent.append(int(eid))            # not fetched (a subset was downloaded): one summary warning
            skipped[int(eid)] = f"{nwb} is not downloaded"
            continue
        try:
            exp = scan_experiment(ac, eid, response, session)
        except (NeuroxrError, FileNotFoundError) as exc:
            skipped[int(eid)] = str(exc)
            _warn(f"experiment {eid} skipped: {exc}")
            continue
        scanned.append((exp, rec))
    if absent and scanned:
        _warn(f"{len(absent)} of the {len(sel)} selected {session} experiments are not in {ac.root} "
              f"(e.g. {absent[:5]}); they were left out. Download them with `neuroxr fetch allen {ac.root}` "
              "or narrow the selection with --containers/--areas/--cre-lines")
    if not scanned:
        raise AllenCacheError(f"{ac.root}: none of the {len(sel)} selected {session} experiments could be read "
                              f"(first problem: {next(iter(skipped.values()))}); nothing was written")
    n_images = scanned[0][0].n_images
    tshape = scanned[0][0].template_shape
    for exp, _ in list(scanned):
        if exp.n_images != n_images or exp.template_shape != tshape:
            skipped[exp.id] = f"image stack {exp.template_shape} differs from {tshape}"
            _warn(f"experiment {exp.id} skipped: {exp.nwb}: natural-scenes stack has shape {exp.template_shape}, "
                  f"the first experiment's has {tshape}")
            scanned.remove((exp, _))
    n_trials = max(e.n_trials for e, _ in scanned)

    # neuron metadata: cell_specimens.json, completed from the experiment record
    cols = {k: [] for k in ("neuron", "area", "cre_line", "depth_um", "container", "experiment", "p_run_mod", "p_image")}
    seen: set = set()
    for exp, rec in scanned:
        ids = exp.cell_ids
        fresh = np.array([(c >= 0) and (c not in seen) for c in ids], bool)
        seen.update(int(c) for c in ids[fresh])
        if not fresh.all():
            _warn(f"experiment {exp.id}: {int((~fresh).sum())} cells already ingested from another experiment "
                  "(duplicate cell_specimen_id) or with a negative id were left out")
        exp.keep = None if fresh.all() else np.flatnonzero(fresh)
        ids = ids[fresh]
        if cells is not None:
            c = cells.reindex(ids)
            known = _isin(ids, cells.index)
        else:
            c, known = None, np.zeros(len(ids), bool)
        if (~known).any():
            miss = ids[~known]
            _warn(f"experiment {exp.id}: {len(miss)} cells have no record in {ac.path('CELL_SPECIMENS')} "
                  f"(e.g. {miss[:3].tolist()}); they keep the experiment's area, Cre line and depth, "
                  "p_run_mod and p_image are NaN")
        n = len(ids)
        cols["neuron"].append(ids)
        cols["area"].append(_fill_str(None if c is None else c.area, rec.area, n))
        cols["cre_line"].append(_fill_str(None if c is None else c.cre_line, rec.cre_line, n))
        d = np.full(n, np.nan) if c is None else c.depth_um.to_numpy(float)
        cols["depth_um"].append(np.where(np.isfinite(d), d, _float(rec.depth_um)))
        cols["container"].append(np.full(n, _int(rec.container, -1), np.int64))
        cols["experiment"].append(np.full(n, exp.id, np.int64))
        cols["p_run_mod"].append(np.full(n, np.nan) if c is None else c.p_run_mod.to_numpy(float))
        cols["p_image"].append(np.full(n, np.nan) if c is None else c.p_image.to_numpy(float))
    meta = {k: np.concatenate(v) for k, v in cols.items()}
    n_by_exp = [len(e.cell_ids) if e.keep is None else len(e.keep) for e, _ in scanned]
    parts = [da.from_delayed(dask.delayed(_experiment_task, pure=True)(e, response, n_images, n_trials, block),
                             shape=(n, n_images, n_trials), dtype=np.float32)
             for (e, _), n in zip(scanned, n_by_exp) if n]
    trials = da.concatenate(parts, axis=0).rechunk({0: chunk_neurons, 1: -1, 2: -1})
    mean = trials.map_blocks(_nanmean_trials, drop_axis=2, dtype=np.float32)

    import pandas as pd

    table = pd.DataFrame({k: meta[k] for k in ("area", "cre_line", "depth_um", "container", "experiment",
                                               "p_run_mod", "p_image")})
    table["area"] = table["area"].astype(str)
    table["cre_line"] = table["cre_line"].astype(str)
    settings = {"source": "allen_brain_observatory", "response": response, "session": session,
                "areas": areas, "cre_lines": cre_lines, "containers": containers, "include_failed": include_failed,
                "window": "[start, end) of natural_scenes frame_duration", "n_trials": n_trials}
    inputs = {"cache": str(ac.root),
              "experiments": {str(e.id): {"nwb": ac.relpath(e.nwb), "nwb_bytes": e.nwb.stat().st_size,
                                          **({"events": ac.relpath(e.events), "events_bytes": e.events.stat().st_size}
                                             if e.events else {})} for e, _ in scanned},
              "skipped": {str(k): v for k, v in skipped.items()}}
    attrs = provenance(settings, inputs)
    attrs["source"] = f"Allen Brain Observatory Visual Coding 2p, natural scenes ({session}), cache {ac.root}"
    attrs["response"] = ("sum of events over each presentation window" if response == "events"
                         else "mean dF/F over each presentation window")
    ds = _build_responses(mean, trials, meta["neuron"].astype(np.int64), table, n_images, attrs, rpath)
    write_dataset(ds, rpath, overwrite=overwrite,
                  chunks={S.NEURON: chunk_neurons, S.IMAGE: n_images, S.TRIAL: n_trials})

    pixels = read_natural_scenes(scanned[0][0].nwb)
    st = xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), pixels)}, coords={S.IMAGE: np.arange(n_images, dtype=np.int64)},
                    attrs={**provenance({"source": "allen_brain_observatory", "session": session},
                                        {"nwb": ac.relpath(scanned[0][0].nwb)}),
                           "source": f"{NS_TEMPLATE} of {scanned[0][0].nwb.name}"})
    S.validate_stimuli(st, source=spath)
    write_dataset(st, spath, overwrite=overwrite)
    from .store import open_dataset

    return open_dataset(rpath)


__all__ = [
    "AllenCache", "AllenCacheError", "AllenDataWarning", "open_allen_cache", "read_manifest", "read_experiments",
    "read_cell_metadata", "read_stimulus_table", "read_natural_scenes", "read_session_type", "group_trials",
    "window_operator", "calc_trial_responses", "scan_experiment", "select_experiments", "ingest_allen",
]
