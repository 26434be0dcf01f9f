"""Allen Brain Observatory Visual Coding Neuropixels: natural-scenes spike counts from an AllenSDK
``EcephysProjectCache`` directory, read with ``h5py``, ``pandas`` and ``tifffile`` (no AllenSDK, no pynwb).

Cache layout (``EcephysProjectCache.add_manifest_paths``; the public bucket
``s3://allen-brain-observatory/visual-coding-neuropixels/ecephys-cache/`` holds the same tree)::

    manifest.json
    sessions.csv  probes.csv  channels.csv  units.csv        metadata tables (index column ``id``)
    session_<id>/session_<id>.nwb                             NWB 2 session file
    natural_scene_templates/natural_scene_<n>.tiff            the 118 scenes (n = stimulus frame)

Per natural-scenes presentation (``intervals/natural_scenes_presentations``: ``start_time``,
``frame``; frame -1 is the blank and is not an image), the response of a unit is its spike count
in ``[start_time + window[0], start_time + window[1])`` (seconds; default 0-250 ms), from the
ragged ``units/spike_times`` column (``units/spike_times_index`` holds each unit's end offset).
Presentations are grouped per image in time order (trials), NaN-padded to the largest count.

Units are filtered as AllenSDK's ``EcephysProjectCache.get_units`` / ``EcephysSession.units`` do
by default (:data:`QUALITY_DEFAULTS`): ``amplitude_cutoff <= 0.1``, ``presence_ratio >= 0.95``,
``isi_violations <= 0.5`` (a NaN metric fails, as in pandas), ``quality == "good"`` on a channel
with ``valid_data`` (AllenSDK's ``filter_by_validity``) and a peak channel inside the brain (a
structure acronym).  The area is the peak channel's
``ecephys_structure_acronym`` of ``channels.csv`` (the NWB electrodes' ``location`` where the
channel is not in the table).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ... import schema as S
from ...errors import InvalidArgumentError, MissingDataError, NeuroxrError
from .cache import AllenCacheError, read_manifest, warn

#: manifest keys -> specs (``EcephysProjectCache.add_manifest_paths``), relative to the manifest's directory
ECEPHYS_MANIFEST_DEFAULTS = {
    "sessions": "sessions.csv",
    "probes": "probes.csv",
    "channels": "channels.csv",
    "units": "units.csv",
    "session_data": "session_%d",
    "session_nwb": "session_%d/session_%d.nwb",
    "natural_scene_dir": "natural_scene_templates",
    "natural_scene": "natural_scene_templates/natural_scene_%d.tiff",
}
#: session type with the natural scenes (``functional_connectivity`` sessions have none)
NATURAL_SCENES_SESSION = "brain_observatory_1.1"
N_SCENES = 118
PRESENTATIONS = "intervals/natural_scenes_presentations"
UNITS = "units"
ELECTRODES = "general/extracellular_ephys/electrodes"
DEFAULT_WINDOW = (0.0, 0.25)

#: AllenSDK's default unit filters (``allensdk.brain_observatory.ecephys.UNIT_FILTER_DEFAULTS``,
#: ``filter_by_validity`` and ``filter_out_of_brain_units``); ``None`` for a key: not applied
QUALITY_DEFAULTS = {
    "amplitude_cutoff_maximum": 0.1,
    "presence_ratio_minimum": 0.95,
    "isi_violations_maximum": 0.5,
    "quality": "good",
    "in_brain": True,
}
_METRICS = ("amplitude_cutoff", "presence_ratio", "isi_violations", "firing_rate", "snr")


# --------------------------------------------------------------------------- the cache directory
@dataclass(frozen=True)
class EcephysCache:
    """Paths of an AllenSDK ``EcephysProjectCache`` directory, resolved from its manifest."""

    root: Path
    paths: dict = field(default_factory=dict)

    def path(self, key, *args) -> Path:
        spec = self.paths.get(key) or os.path.join(str(self.root), *ECEPHYS_MANIFEST_DEFAULTS[key].split("/"))
        n = spec.count("%d")
        return Path(spec % ((int(args[0]),) * n) if n else spec)

    def nwb_path(self, session_id) -> Path:
        return self.path("session_nwb", session_id)

    def scene_path(self, number) -> Path:
        return self.path("natural_scene", number)

    def relpath(self, p) -> str:
        try:
            return str(Path(p).relative_to(self.root))
        except ValueError:
            return str(p)


def open_ecephys_cache(cache) -> EcephysCache:
    """The ``EcephysProjectCache`` at ``cache`` (its directory or ``manifest.json``).

    A directory without a manifest but with ``sessions.csv`` is read with the default layout.
    """
    if isinstance(cache, EcephysCache):
        return cache
    p = Path(cache).expanduser()
    if p.is_file() and p.suffix == ".json":
        man = p
    else:
        man = p / "manifest.json"
    if man.is_file():
        resolved = read_manifest(man)
        keep = {k: v for k, v in resolved.items() if k in ECEPHYS_MANIFEST_DEFAULTS}
        if "session_nwb" in keep or "sessions" in keep:
            return EcephysCache(man.parent.resolve(), keep)
        if not (man.parent / "sessions.csv").is_file():
            raise AllenCacheError(f"{man}: an AllenSDK manifest without the EcephysProjectCache keys (sessions, "
                                  "session_nwb); is this a 2-photon cache? Use `neuroxr ingest allen` for those, or "
                                  f"download a Neuropixels cache with `neuroxr fetch allen-neuropixels {man.parent}`")
        return EcephysCache(man.parent.resolve(), {})
    if (p / "sessions.csv").is_file():
        return EcephysCache(p.resolve(), {})
    raise MissingDataError(f"{p}: no EcephysProjectCache here (no manifest.json or sessions.csv); download one with "
                           f"`neuroxr fetch allen-neuropixels {p}`")


def _read_csv(path: Path, what: str, required=("id",)) -> pd.DataFrame:
    if not path.is_file():
        partial = " (a partial download is there)" if path.with_name(path.name + ".part").exists() else ""
        raise MissingDataError(f"{path} ({what}) is not downloaded{partial}; run `neuroxr fetch allen-neuropixels "
                               f"{path.parent}` to get it")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AllenCacheError(f"{path} ({what}) is not a readable CSV ({exc}); delete it and rerun "
                              "`neuroxr fetch allen-neuropixels`") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AllenCacheError(f"{path} ({what}) has no column {missing[0]!r} (columns: {list(df.columns)[:12]}); "
                              "delete it and rerun `neuroxr fetch allen-neuropixels`")
    return df.drop_duplicates("id").set_index("id")


def read_sessions(cache) -> pd.DataFrame:
    """``sessions.csv``: index ``id``; ``session_type``, ``specimen_id``, ``genotype`` (as cached)."""
    ec = open_ecephys_cache(cache)
    return _read_csv(ec.path("sessions"), "ecephys sessions", ("id", "session_type"))


def read_channels(cache) -> pd.DataFrame | None:
    """``channels.csv`` (index ``id``), or None when it is not in the cache."""
    ec = open_ecephys_cache(cache)
    p = ec.path("channels")
    return _read_csv(p, "ecephys channels") if p.exists() else None


def read_units_table(cache) -> pd.DataFrame | None:
    """``units.csv`` (index ``id``), or None when it is not in the cache."""
    ec = open_ecephys_cache(cache)
    p = ec.path("units")
    return _read_csv(p, "ecephys units") if p.exists() else None


# --------------------------------------------------------------------------- one NWB 2 session file
def _h5(path: Path):
    import h5py

    if not path.is_file():
        partial = " (a partial download is there)" if path.with_name(path.name + ".part").exists() else ""
        raise MissingDataError(f"{path} (session NWB file) is not downloaded{partial}; run `neuroxr fetch "
                               f"allen-neuropixels {path.parent.parent} --session {path.stem.split('_')[-1]}`")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise AllenCacheError(f"{path} is not a readable HDF5/NWB file ({exc}); it is probably truncated: delete it "
                              "and rerun `neuroxr fetch allen-neuropixels`") from None


def _col(f, group, name, path, required=True):
    key = f"{group}/{name}"
    if key not in f:
        if required:
            raise AllenCacheError(f"{path}: NWB dataset {key!r} is missing; the file is not a Neuropixels session "
                                  "file or is corrupt (re-download it with `neuroxr fetch allen-neuropixels`)")
        return None
    try:
        v = f[key][()]
    except Exception as exc:  # noqa: BLE001 - corrupt chunks
        raise AllenCacheError(f"{path}: NWB dataset {key!r} cannot be read ({exc}); re-download the file") from None
    if v.dtype.kind in "OS":
        v = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in np.ravel(v)], dtype=object)
    return np.asarray(v)


def read_presentations(nwb_path) -> pd.DataFrame:
    """Natural-scenes presentations of a session NWB: ``start_time``, ``stop_time``, ``frame`` (-1 blank),
    sorted by ``start_time`` (AllenSDK's ``get_stimulus_presentations`` order)."""
    path = Path(nwb_path)
    with _h5(path) as f:
        if PRESENTATIONS not in f:
            raise AllenCacheError(f"{path}: no {PRESENTATIONS} table; not a {NATURAL_SCENES_SESSION} session "
                                  "(functional_connectivity sessions show no natural scenes)")
        start = _col(f, PRESENTATIONS, "start_time", path).astype(np.float64)
        stop = _col(f, PRESENTATIONS, "stop_time", path, required=False)
        frame = _col(f, PRESENTATIONS, "frame", path)
    try:
        frame = np.asarray([float(x) for x in frame]) if frame.dtype == object else frame.astype(np.float64)
    except ValueError:
        raise AllenCacheError(f"{path}: {PRESENTATIONS}/frame holds non-numeric values (e.g. {frame[:3].tolist()})"
                              ) from None
    if len(frame) != len(start):
        raise AllenCacheError(f"{path}: {PRESENTATIONS} has {len(start)} start times but {len(frame)} frames")
    if not (np.isfinite(start).all() and np.isfinite(frame).all()) or (frame != np.round(frame)).any():
        raise AllenCacheError(f"{path}: {PRESENTATIONS} has non-finite start times or non-integer frames; "
                              "re-download the file")
    df = pd.DataFrame({"start_time": start, "stop_time": stop.astype(float) if stop is not None else np.nan,
                       "frame": frame.astype(np.int64)})
    return df.sort_values("start_time", kind="stable").reset_index(drop=True)


def read_nwb_units(nwb_path) -> pd.DataFrame:
    """The units table of a session NWB without the spikes: index ``id``; ``peak_channel_id``,
    quality metrics, ``quality``, and ``row`` (position in the ragged columns)."""
    path = Path(nwb_path)
    with _h5(path) as f:
        ids = _col(f, UNITS, "id", path).astype(np.int64)
        cols = {"row": np.arange(len(ids))}
        for name in ("peak_channel_id", "quality", *_METRICS):
            v = _col(f, UNITS, name, path, required=False)
            if v is not None:
                if len(v) != len(ids):
                    raise AllenCacheError(f"{path}: {UNITS}/{name} has {len(v)} rows for {len(ids)} units")
                cols[name] = v
        index = _col(f, UNITS, "spike_times_index", path).astype(np.int64)
        n_spikes = f[f"{UNITS}/spike_times"].shape[0] if f"{UNITS}/spike_times" in f else None
    if n_spikes is None:
        raise AllenCacheError(f"{path}: NWB dataset '{UNITS}/spike_times' is missing; re-download the file")
    if len(index) != len(ids) or (np.diff(index) < 0).any() or (len(index) and index[-1] > n_spikes):
        raise AllenCacheError(f"{path}: {UNITS}/spike_times_index ({len(index)} offsets, last "
                              f"{index[-1] if len(index) else None}) does not fit {len(ids)} units and {n_spikes} "
                              "spike times; re-download the file")
    df = pd.DataFrame(cols, index=pd.Index(ids, name="id"))
    df["spike_start"] = np.concatenate([[0], index[:-1]]) if len(index) else np.zeros(0, np.int64)
    df["spike_end"] = index
    return df


def read_electrodes(nwb_path) -> pd.DataFrame:
    """Electrodes of a session NWB, by channel id: ``location`` (structure acronym) and ``valid_data``."""
    path = Path(nwb_path)
    with _h5(path) as f:
        if ELECTRODES not in f:
            return pd.DataFrame({"location": pd.Series(dtype=object), "valid_data": pd.Series(dtype=bool)})
        ids = _col(f, ELECTRODES, "id", path).astype(np.int64)
        loc = _col(f, ELECTRODES, "location", path, required=False)
        valid = _col(f, ELECTRODES, "valid_data", path, required=False)
    return pd.DataFrame({"location": loc if loc is not None else np.full(len(ids), None, object),
                         "valid_data": valid.astype(bool) if valid is not None else np.ones(len(ids), bool)},
                        index=ids)


def count_spikes(spike_times, onsets, window=DEFAULT_WINDOW) -> np.ndarray:
    """Spike counts in ``[onset + window[0], onset + window[1])`` of each onset (sorted spike times)."""
    st = np.sort(np.asarray(spike_times, np.float64))
    on = np.asarray(onsets, np.float64)
    lo = np.searchsorted(st, on + window[0], side="left")
    hi = np.searchsorted(st, on + window[1], side="left")
    return (hi - lo).astype(np.float32)


def _acronym_ok(v) -> bool:
    return isinstance(v, str) and v.strip() not in ("", "None", "nan")


def filter_units(units: pd.DataFrame, quality: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Units passing the quality filters, and how many failed each (a unit counts for every one it fails).

    ``units`` needs ``amplitude_cutoff``, ``presence_ratio``, ``isi_violations`` (NaN fails a filter,
    as AllenSDK's pandas comparisons do), optionally ``quality``, and ``area`` for ``in_brain``.
    """
    q = dict(QUALITY_DEFAULTS if quality is None else {**QUALITY_DEFAULTS, **quality})
    unknown = set(q) - set(QUALITY_DEFAULTS)
    if unknown:
        raise InvalidArgumentError(f"quality filter {min(unknown)!r} is unknown; use {list(QUALITY_DEFAULTS)}")
    n = len(units)
    fails = {}

    def metric(name):
        if name not in units:
            return np.full(n, np.nan)
        return pd.to_numeric(units[name], errors="coerce").to_numpy(float)

    with np.errstate(invalid="ignore"):
        if q["amplitude_cutoff_maximum"] is not None:
            fails["amplitude_cutoff"] = ~(metric("amplitude_cutoff") <= q["amplitude_cutoff_maximum"])
        if q["presence_ratio_minimum"] is not None:
            fails["presence_ratio"] = ~(metric("presence_ratio") >= q["presence_ratio_minimum"])
        if q["isi_violations_maximum"] is not None:
            fails["isi_violations"] = ~(metric("isi_violations") <= q["isi_violations_maximum"])
    if q["quality"] is not None and "quality" in units:
        fails["quality"] = units["quality"].astype(str).to_numpy() != str(q["quality"])
    if q["quality"] is not None and "valid_channel" in units:     # filter_by_validity: channels too
        fails["invalid_channel"] = ~units["valid_channel"].to_numpy(bool)
    if q["in_brain"]:
        fails["out_of_brain"] = ~np.asarray([_acronym_ok(a) for a in units.get("area", pd.Series([None] * n))], bool)
    bad = np.zeros(n, bool)
    for v in fails.values():
        bad |= v
    return units[~bad], {k: int(v.sum()) for k, v in fails.items()}


# --------------------------------------------------------------------------- scan
@dataclass
class NeuropixelsSession:
    """One session's file, kept units and presentations, checked by :func:`scan_session`."""

    id: int
    nwb: Path
    units: pd.DataFrame
    onsets: np.ndarray
    frames: np.ndarray
    n_trials: int
    failed: dict
    n_units: int


def _genotype(rec) -> str:
    for k in ("genotype", "full_genotype"):
        v = rec.get(k) if hasattr(rec, "get") else None
        if isinstance(v, str) and v:
            return v
    return "unknown"


def scan_session(ec: EcephysCache, session_id: int, channels, units_csv, quality, areas) -> NeuropixelsSession:
    """Read one session's units (without spikes) and presentations; filter the units."""
    nwb = ec.nwb_path(session_id)
    pres = read_presentations(nwb)
    units = read_nwb_units(nwb)
    if units_csv is not None:            # the cache's table where it has the unit (AllenSDK filters that one)
        shared = units.index.intersection(units_csv.index)
        for c in ("ecephys_channel_id", "quality", *_METRICS):
            if c in units_csv:
                src = units_csv.loc[shared, c]
                tgt = "peak_channel_id" if c == "ecephys_channel_id" else c
                if tgt not in units:
                    units[tgt] = np.nan if c != "quality" else None
                units[tgt] = units[tgt].astype(object)
                units.loc[shared, tgt] = src.to_numpy(object)
    if "peak_channel_id" not in units:
        raise AllenCacheError(f"{nwb}: {UNITS}/peak_channel_id is missing and units.csv does not list these units; "
                              "re-download the file")
    chan = pd.to_numeric(units["peak_channel_id"], errors="coerce").to_numpy(float)
    area = np.full(len(units), None, dtype=object)
    if channels is not None and "ecephys_structure_acronym" in channels:
        acr = channels["ecephys_structure_acronym"]
        known = np.isin(chan, channels.index.to_numpy(float))
        area[known] = acr.reindex(chan[known].astype(np.int64)).to_numpy(object)
    electrodes = read_electrodes(nwb)
    on_file = np.isin(chan, electrodes.index.to_numpy(float))
    fill = on_file & np.asarray([not _acronym_ok(a) for a in area])
    area[fill] = electrodes["location"].reindex(chan[fill].astype(np.int64)).to_numpy(object)
    units["area"] = area
    valid = np.ones(len(units), bool)          # AllenSDK drops units of channels without valid_data
    valid[on_file] = electrodes["valid_data"].reindex(chan[on_file].astype(np.int64)).to_numpy(bool)
    units["valid_channel"] = valid
    units["channel"] = np.where(np.isfinite(chan), chan, -1).astype(np.int64)
    if channels is not None:
        for c in ("ecephys_probe_id", "probe_vertical_position"):
            if c in channels:
                ok = np.isin(chan, channels.index.to_numpy(float))
                v = np.full(len(units), np.nan)
                v[ok] = pd.to_numeric(channels[c], errors="coerce").reindex(chan[ok].astype(np.int64)).to_numpy(float)
                units["probe" if c == "ecephys_probe_id" else c] = v
    n_units = len(units)
    kept, failed = filter_units(units, quality)
    if areas is not None:
        in_area = kept["area"].isin(list(areas)).to_numpy()
        failed["area"] = int((~in_area).sum())
        kept = kept[in_area]
    frames = pres["frame"].to_numpy()
    counts = np.bincount(frames[frames >= 0]) if (frames >= 0).any() else np.zeros(1, np.int64)
    return NeuropixelsSession(int(session_id), nwb, kept, pres["start_time"].to_numpy(), frames,
                              int(counts.max()), failed, n_units)


def calc_spike_counts(session: NeuropixelsSession, n_images: int, n_trials: int, window=DEFAULT_WINDOW,
                      block: int = 64) -> np.ndarray:
    """Spike counts of the session's kept units, ``(neuron, image, trial)`` float32, NaN-padded.

    The ragged ``spike_times`` are read for ``block`` units at a time (one contiguous slice)."""
    from .nwb import group_trials

    index = group_trials(session.frames, n_images, n_trials)          # (image, trial) presentation, -1 pad
    valid = index >= 0
    out = np.full((len(session.units), n_images, n_trials), np.nan, np.float32)
    starts = session.units["spike_start"].to_numpy(np.int64)
    ends = session.units["spike_end"].to_numpy(np.int64)
    order = np.argsort(starts, kind="stable")
    with _h5(session.nwb) as f:
        st = f[f"{UNITS}/spike_times"]
        for b0 in range(0, len(order), block):
            rows = order[b0:b0 + block]
            lo, hi = int(starts[rows].min()), int(ends[rows].max())
            try:
                chunk = np.asarray(st[lo:hi], np.float64)
            except Exception as exc:  # noqa: BLE001 - corrupt chunks
                raise AllenCacheError(f"{session.nwb}: {UNITS}/spike_times cannot be read ({exc}); re-download "
                                      "the file") from None
            for r in rows:
                c = count_spikes(chunk[starts[r] - lo:ends[r] - lo], session.onsets, window)
                out[r][valid] = c[index[valid]]
    return out


# --------------------------------------------------------------------------- stimuli
def read_scene_templates(ec: EcephysCache, n_images: int) -> np.ndarray:
    """The natural scene templates ``natural_scene_<n>.tiff``, n = 0..n_images-1, as ``(image, y, x)``."""
    import tifffile

    stack = []
    for n in range(n_images):
        p = ec.scene_path(n)
        if not p.is_file():
            raise MissingDataError(f"{p} (natural scene template {n}) is not downloaded; run `neuroxr fetch "
                                   f"allen-neuropixels {ec.root}` (it fetches the templates), or pass "
                                   "--scenes-from-2p with a 2-photon cache holding the same scenes")
        try:
            img = tifffile.imread(p)
        except Exception as exc:  # noqa: BLE001 - any unreadable TIFF
            raise AllenCacheError(f"{p}: not a readable TIFF ({exc}); delete it and rerun `neuroxr fetch "
                                  "allen-neuropixels`") from None
        if img.ndim == 3 and img.shape[-1] in (3, 4):
            img = img[..., 0]
        if img.ndim != 2 or (stack and img.shape != stack[0].shape):
            raise AllenCacheError(f"{p}: scene of shape {img.shape}, expected {stack[0].shape if stack else '(y, x)'}")
        stack.append(img)
    return np.stack(stack)


def read_2p_scenes(cache2p) -> tuple[np.ndarray, str]:
    """The 2-photon natural-scenes stack (``stimulus/templates/natural_scenes_image_stack``) of the first
    ``three_session_B`` experiment of a BrainObservatoryCache, and the file it came from."""
    from .cache import open_allen_cache, select_experiments
    from .nwb import read_natural_scenes

    ac = open_allen_cache(cache2p)
    for eid in select_experiments(ac, include_failed=True).index:
        p = ac.nwb_path(eid)
        if p.is_file():
            return read_natural_scenes(p), str(p)
    raise MissingDataError(f"{ac.root}: no downloaded three_session_B NWB file to take the natural scenes from")


# --------------------------------------------------------------------------- ingest
def _session_task(session, n_images, n_trials, window, block, image_ids):
    try:
        return calc_spike_counts(session, n_images, n_trials, window, block)[:, image_ids]
    except NeuroxrError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files found only while reading
        raise AllenCacheError(f"session {session.id} ({session.nwb}): reading failed ({type(exc).__name__}: {exc}); "
                              "nothing was written. Re-download it or leave it out with --session") from None


def _check_window(window):
    try:
        w0, w1 = (float(w) for w in window)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"window={window!r}: give two numbers (seconds after onset), e.g. 0,0.25") from None
    if not (np.isfinite(w0) and np.isfinite(w1) and w1 > w0):
        raise InvalidArgumentError(f"window={window!r}: the end must be after the start (seconds after onset)")
    return w0, w1


def _select_sessions(ec, sessions_df, sessions):
    if sessions is not None:
        want = [int(s) for s in sessions]
        absent = [s for s in want if s not in sessions_df.index]
        if absent:
            raise AllenCacheError(f"{ec.path('sessions')}: no session {absent[0]} (sessions there: "
                                  f"{sessions_df.index[:8].tolist()} ...)")
        return sessions_df.loc[want]
    sel = sessions_df[sessions_df["session_type"] == NATURAL_SCENES_SESSION]
    sel = sel[[ec.nwb_path(i).is_file() for i in sel.index]]
    if sel.empty:
        raise MissingDataError(f"{ec.root}: no {NATURAL_SCENES_SESSION} session NWB file is downloaded; run "
                               f"`neuroxr fetch allen-neuropixels {ec.root} --session ID`")
    return sel


def ingest_neuropixels(study, cache_dir, *, window=DEFAULT_WINDOW, areas=None, quality=QUALITY_DEFAULTS,
                       sessions=None, scenes_from_2p=None, overwrite: bool = False, chunk_neurons: int = 1024,
                       block: int = 64) -> dict:
    """Ingest the natural-scenes spike counts of a Neuropixels ``EcephysProjectCache`` into
    ``STUDY/responses.zarr`` and ``STUDY/stimuli.zarr``.

    Parameters
    ----------
    study : path-like
        Study directory (created if needed).
    cache_dir : path-like
        ``EcephysProjectCache`` directory (or its ``manifest.json``).
    window : (float, float)
        Counting window in seconds after each onset, half-open ``[start, end)``.
    areas : list of str or "all", optional
        Keep units whose peak channel is in these structures; default the six visual areas of the
        contract (``VISp``, ``VISl``, ``VISal``, ``VISpm``, ``VISrl``, ``VISam``); ``"all"``: every
        structure (names outside the known areas are then kept).
    quality : dict or None
        Unit filters (:data:`QUALITY_DEFAULTS`, AllenSDK's); override keys, or set one to None to
        skip it.  ``None``: all of AllenSDK's defaults.
    sessions : list of int, optional
        Session ids; default every downloaded ``brain_observatory_1.1`` session.
    scenes_from_2p : path-like, optional
        A 2-photon BrainObservatoryCache whose natural-scenes stack is used as the stimuli (the same
        118 scenes); when the TIFF templates are also there both are compared and must be equal.

    Returns
    -------
    dict
        ``responses``, ``stimuli`` (paths), ``n_neurons``, ``n_images``, ``n_trials``, ``sessions``,
        ``units_failed`` ({filter: count}), ``window``.

    Responses are spike counts ``(neuron, image, trial)`` float32 (NaN where a scene had fewer
    presentations); neuron = the unit id, coords ``area``, ``cre_line`` (``unknown``: units are not
    Cre-identified), ``depth_um`` (NaN: not measured), ``specimen``, ``session``, ``genotype``,
    ``probe``, ``channel``, ``probe_vertical_position`` and the quality metrics.
    """
    import dask
    import dask.array as da
    import xarray as xr

    from .. import store
    from ..builders import build_responses_dataset
    from ..lock import study_lock
    from .ingest import _nanmean_trials

    window = _check_window(window)
    all_areas = isinstance(areas, str) and areas.lower() == "all"
    areas = None if all_areas else (list(S.AREAS) if areas is None else [areas] if isinstance(areas, str) else list(areas))
    study = Path(study)
    rpath, spath = study / S.RESPONSES_STORE, study / S.STIMULI_STORE
    store.check_writable([rpath, spath], overwrite)
    ec = open_ecephys_cache(cache_dir)
    sessions_df = read_sessions(ec)
    sel = _select_sessions(ec, sessions_df, sessions)
    channels, units_csv = read_channels(ec), read_units_table(ec)
    scanned, failed = [], {}
    for sid in sel.index:
        s = scan_session(ec, sid, channels, units_csv, quality, areas)
        for k, v in s.failed.items():
            failed[k] = failed.get(k, 0) + v
        if len(s.units):
            scanned.append(s)
        else:
            warn(f"session {sid}: none of its {s.n_units} units passes the filters (failed: {s.failed}); left out")
    if not scanned:
        raise AllenCacheError(f"{ec.root}: no unit of sessions {sel.index.tolist()} passes the quality and area "
                              f"filters (areas={areas}; failed: {failed}); nothing was written")
    frame_max = max(int(s.frames.max(initial=-1)) for s in scanned)
    pixels, source = _stimuli_pixels(ec, scenes_from_2p, frame_max)
    n_images = pixels.shape[0]
    image_ids = _shown_images(scanned, n_images)
    if len(image_ids) < n_images:
        warn(f"{n_images - len(image_ids)} of the {n_images} scenes of {source} are never presented in sessions "
             f"{[s.id for s in scanned]}; the study keeps the {len(image_ids)} presented ones")
        pixels = pixels[image_ids]
    n_trials = max(s.n_trials for s in scanned)
    ids = np.concatenate([s.units.index.to_numpy(np.int64) for s in scanned])
    meta = _unit_meta(scanned, sel)
    parts = [da.from_delayed(dask.delayed(_session_task, pure=True)(s, n_images, n_trials, window, block, image_ids),
                             shape=(len(s.units), len(image_ids), n_trials), dtype=np.float32) for s in scanned]
    trials = da.concatenate(parts, axis=0).rechunk({0: chunk_neurons, 1: -1, 2: -1})
    mean = trials.map_blocks(_nanmean_trials, drop_axis=2, dtype=np.float32)
    settings = {"source": "allen_brain_observatory_neuropixels", "window_s": list(window),
                "areas": "all" if all_areas else areas, "quality": {**QUALITY_DEFAULTS, **(quality or {})},
                "sessions": [int(s.id) for s in scanned], "n_trials": n_trials}
    inputs = {"cache": str(ec.root), "sessions": {str(s.id): {"nwb": ec.relpath(s.nwb), "nwb_bytes": s.nwb.stat().st_size}
                                                  for s in scanned}, "stimuli": source}
    attrs = store.provenance(settings, inputs)
    attrs["source"] = f"Allen Brain Observatory Visual Coding Neuropixels, natural scenes, cache {ec.root}"
    attrs["response"] = (f"spike count in [onset + {window[0]:g} s, onset + {window[1]:g} s) of each natural-scenes "
                         "presentation")
    ds = build_responses_dataset(mean=mean, trials=trials, neuron_ids=ids, meta=meta,
                                 image_ids=image_ids, source=str(rpath), attrs=attrs,
                                 allow_unknown_area=all_areas or areas != list(S.AREAS))
    st = xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), pixels)}, coords={S.IMAGE: image_ids},
                    attrs={**store.provenance({"source": "allen_brain_observatory_neuropixels"}, {"templates": source}),
                           "source": source})
    S.validate_stimuli(st, source=str(spath))
    store.make_parent(rpath)
    with study_lock(study, [S.RESPONSES_STORE, S.STIMULI_STORE]), store.transaction(overwrite=overwrite) as tx:
        tx.write(ds, rpath, chunks={S.NEURON: chunk_neurons, S.IMAGE: len(image_ids), S.TRIAL: n_trials})
        tx.write(st, spath)
    return {"responses": str(rpath), "stimuli": str(spath), "n_neurons": len(ids), "n_images": len(image_ids),
            "n_trials": int(n_trials), "sessions": [int(s.id) for s in scanned], "units_failed": failed,
            "window": window}


def _shown_images(scanned, n_images) -> np.ndarray:
    """Frames presented in the sessions; every session must show each of them."""
    shown = [set(np.unique(s.frames[s.frames >= 0]).tolist()) for s in scanned]
    union = set().union(*shown)
    for s, sh in zip(scanned, shown):
        lacking = sorted(union - sh)
        if lacking:
            raise AllenCacheError(f"{s.nwb}: session {s.id} never presents scenes {lacking[:8]} that other sessions "
                                  "show, so its units would have no response to them; leave it out (--session) "
                                  "or ingest it alone")
    return np.asarray(sorted(i for i in union if i < n_images), dtype=np.int64)


def _stimuli_pixels(ec: EcephysCache, scenes_from_2p, frame_max: int):
    have_tiff = ec.scene_path(0).is_file()
    n = max(frame_max + 1, 1)
    if scenes_from_2p is None or have_tiff:
        if not have_tiff:
            read_scene_templates(ec, n)          # raises the missing-file message
        found = 0
        while ec.scene_path(found).is_file():
            found += 1
        if found < n:
            raise MissingDataError(f"{ec.scene_path(found)} is not downloaded but presentations show frames up to "
                                   f"{frame_max}; rerun `neuroxr fetch allen-neuropixels {ec.root}`")
        pixels = read_scene_templates(ec, found)
        source = f"{ec.relpath(ec.path('natural_scene_dir'))}/natural_scene_<n>.tiff"
    if scenes_from_2p is not None:
        stack, src2 = read_2p_scenes(scenes_from_2p)
        if have_tiff and (stack.shape != pixels.shape or not np.array_equal(stack, pixels)):
            raise AllenCacheError(f"{src2}: the 2-photon natural scenes {stack.shape} differ from the templates in "
                                  f"{ec.path('natural_scene_dir')} {pixels.shape}; leave out --scenes-from-2p")
        if stack.shape[0] < n:
            raise AllenCacheError(f"{src2}: {stack.shape[0]} scenes, but presentations show frames up to {frame_max}")
        pixels, source = stack, (source + f" (equal to {src2})" if have_tiff else src2)
    return pixels, source


def _unit_meta(scanned, sessions_df) -> pd.DataFrame:
    rows = []
    for s in scanned:
        rec = sessions_df.loc[s.id]
        spec = rec.get("specimen_id", np.nan)
        u = s.units
        n = len(u)
        d = {"area": u["area"].astype(str).to_numpy(), "cre_line": np.full(n, "unknown"),
             "depth_um": np.full(n, np.nan),
             "specimen": np.full(n, int(spec) if pd.notna(spec) else -1, np.int64),
             "session": np.full(n, s.id, np.int64),
             "genotype": np.full(n, _genotype(rec), dtype=object),
             "probe": np.nan_to_num(pd.to_numeric(u.get("probe", pd.Series(np.nan, index=u.index)),
                                                  errors="coerce").to_numpy(float), nan=-1).astype(np.int64),
             "channel": u["channel"].to_numpy(np.int64),
             "probe_vertical_position": pd.to_numeric(u.get("probe_vertical_position",
                                                            pd.Series(np.nan, index=u.index)),
                                                      errors="coerce").to_numpy(float)}
        for m in _METRICS:
            d[m] = pd.to_numeric(u[m], errors="coerce").to_numpy(float) if m in u else np.full(n, np.nan)
        rows.append(pd.DataFrame(d))
    return pd.concat(rows, ignore_index=True)


__all__ = [
    "DEFAULT_WINDOW",
    "ECEPHYS_MANIFEST_DEFAULTS",
    "NATURAL_SCENES_SESSION",
    "N_SCENES",
    "QUALITY_DEFAULTS",
    "EcephysCache",
    "calc_spike_counts",
    "count_spikes",
    "filter_units",
    "ingest_neuropixels",
    "open_ecephys_cache",
    "read_2p_scenes",
    "read_channels",
    "read_electrodes",
    "read_nwb_units",
    "read_presentations",
    "read_scene_templates",
    "read_sessions",
    "read_units_table",
    "scan_session",
]
