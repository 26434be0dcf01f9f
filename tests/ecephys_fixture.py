"""A miniature AllenSDK ``EcephysProjectCache`` directory (Visual Coding Neuropixels) with the real layout.

```
ROOT/manifest.json                                   EcephysProjectCache manifest (keys sessions, units, ...)
ROOT/sessions.csv probes.csv channels.csv units.csv  index column ``id``
ROOT/session_<id>/session_<id>.nwb                   NWB 2 (HDF5): /units (ragged spike_times + index),
                                                     /intervals/natural_scenes_presentations,
                                                     /general/extracellular_ephys/electrodes
ROOT/natural_scene_templates/natural_scene_<n>.tiff  uint8 scenes
```

The raw arrays written are returned (``spikes`` per unit, ``onsets``/``frames`` per session) so tests
compute the expected spike counts independently.  Session 7001 has units that fail each quality
filter, one at exactly the thresholds (kept), one out of the brain, one in LGd, one without any
spike during the scenes, and shows scene 4 one time fewer; session 7002 has three good units;
session 7003 is ``functional_connectivity`` (no natural scenes) and has no NWB file.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

N_SCENES = 12
SCENE_SHAPE = (24, 32)
REPEATS = 3

MANIFEST = {"manifest": [
    {"type": "manifest_version", "value": "0.3.0"},
    {"type": "dir", "spec": ".", "key": "BASEDIR"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "sessions.csv", "key": "sessions"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "probes.csv", "key": "probes"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "channels.csv", "key": "channels"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "units.csv", "key": "units"},
    {"parent_key": "BASEDIR", "type": "dir", "spec": "session_%d", "key": "session_data"},
    {"parent_key": "session_data", "type": "file", "spec": "session_%d.nwb", "key": "session_nwb"},
    {"parent_key": "session_data", "type": "file", "spec": "probe_%d_lfp.nwb", "key": "probe_lfp_nwb"},
    {"parent_key": "BASEDIR", "type": "dir", "spec": "natural_scene_templates", "key": "natural_scene_dir"},
    {"parent_key": "natural_scene_dir", "type": "file", "spec": "natural_scene_%d.tiff", "key": "natural_scene"},
]}

# unit id -> (channel, quality, amplitude_cutoff, presence_ratio, isi_violations, kind)
UNITS_7001 = {
    950001: (850001, "good", 0.01, 0.99, 0.0, "spiking"),      # VISp, kept
    950002: (850002, "good", 0.05, 0.97, 0.1, "spiking"),      # VISl, kept
    950003: (850001, "good", 0.2, 0.99, 0.0, "spiking"),       # fails amplitude_cutoff
    950004: (850001, "good", 0.01, 0.90, 0.0, "spiking"),      # fails presence_ratio
    950005: (850002, "good", 0.01, 0.99, 0.6, "spiking"),      # fails isi_violations
    950006: (850001, "noise", 0.01, 0.99, 0.0, "spiking"),     # fails quality
    950007: (850004, "good", 0.01, 0.99, 0.0, "spiking"),      # channel out of the brain
    950008: (850003, "good", 0.01, 0.99, 0.0, "spiking"),      # LGd: outside the default areas
    950009: (850001, "good", 0.01, 0.99, 0.0, "silent"),       # VISp, kept, no spike during scenes
    950010: (850002, "good", 0.1, 0.95, 0.5, "spiking"),       # exactly at the thresholds: kept
    950011: (850001, "good", np.nan, 0.99, 0.0, "spiking"),    # NaN amplitude_cutoff: fails
    950012: (850005, "good", 0.01, 0.99, 0.0, "spiking"),      # VISp channel without valid_data: fails
}
UNITS_7002 = {
    960001: (860001, "good", 0.01, 0.99, 0.0, "spiking"),      # VISal
    960002: (860002, "good", 0.02, 0.99, 0.1, "spiking"),      # VISp
    960003: (860001, "good", 0.03, 0.98, 0.2, "spiking"),      # VISal
}
CHANNELS = {  # id -> (probe, structure acronym, vertical position)
    850001: (810001, "VISp", 2000.0), 850002: (810001, "VISl", 2100.0), 850003: (810001, "LGd", 900.0),
    850004: (810001, None, 3800.0), 850005: (810001, "VISp", 2050.0), 860001: (820001, "VISal", 2200.0), 860002: (820001, "VISp", 2300.0),
}
INVALID_CHANNEL = 850005
KEPT_7001 = [950001, 950002, 950009, 950010]
KEPT_7002 = [960001, 960002, 960003]
SPECIMENS = {7001: 717001, 7002: 717002, 7003: 717003}


def _strings(values):
    return np.asarray([str(v) for v in values], dtype=object)


def _presentations(rng, n_scenes, short_scene=None, t0=100.0):
    frames = np.concatenate([np.repeat(np.arange(n_scenes), REPEATS), [-1] * 4])
    if short_scene is not None:
        frames = np.delete(frames, np.flatnonzero(frames == short_scene)[0])
    frames = rng.permutation(frames)
    onsets = t0 + 0.25 * np.arange(len(frames))
    return onsets, frames


def _spikes(rng, kind, onsets):
    if kind == "silent":   # spikes only long before and after the scenes
        return np.sort(np.concatenate([rng.uniform(0, 50, 40), rng.uniform(onsets[-1] + 5, onsets[-1] + 60, 40)]))
    st = rng.uniform(onsets[0] - 5, onsets[-1] + 5, 600)
    # a spike exactly at an onset (counted) and one exactly at onset + 0.25 of the next (not in that window)
    st = np.concatenate([st, [onsets[3], onsets[5] + 0.25]])
    return np.sort(st)


def write_session_nwb(path: Path, session_id, units: dict, onsets, frames, spikes: dict, *, with_presentations=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["namespace"] = "core"
        f.attrs["neurodata_type"] = "NWBFile"
        f.attrs["nwb_version"] = "2.2.2"
        f.create_dataset("identifier", data=str(session_id), dtype=s)
        f.create_dataset("session_description", data="Data and metadata for an Ecephys session", dtype=s)
        f.create_dataset("general/subject/specimen_name", data=f"Mouse-{session_id}", dtype=s)
        el = f.create_group("general/extracellular_ephys/electrodes")
        el.attrs["neurodata_type"] = "DynamicTable"
        el.attrs["colnames"] = np.asarray(["location", "valid_data", "probe_vertical_position"], dtype=object)
        ch_ids = sorted({units[u][0] for u in units})
        el.create_dataset("id", data=np.asarray(ch_ids, np.int64))
        el.create_dataset("location", data=_strings([CHANNELS[c][1] or "None" for c in ch_ids]), dtype=s)
        el.create_dataset("valid_data", data=np.asarray([c != INVALID_CHANNEL for c in ch_ids]))
        el.create_dataset("probe_vertical_position", data=np.asarray([CHANNELS[c][2] for c in ch_ids]))
        u = f.create_group("units")
        u.attrs["neurodata_type"] = "Units"
        u.attrs["colnames"] = np.asarray(["spike_times", "peak_channel_id", "quality", "amplitude_cutoff",
                                          "presence_ratio", "isi_violations", "firing_rate"], dtype=object)
        ids = list(units)
        u.create_dataset("id", data=np.asarray(ids, np.int64))
        st = np.concatenate([spikes[i] for i in ids])
        u.create_dataset("spike_times", data=st, chunks=True)
        u.create_dataset("spike_times_index", data=np.cumsum([len(spikes[i]) for i in ids]).astype(np.uint64))
        u.create_dataset("peak_channel_id", data=np.asarray([units[i][0] for i in ids], np.int64))
        u.create_dataset("quality", data=_strings([units[i][1] for i in ids]), dtype=s)
        for k, name in ((2, "amplitude_cutoff"), (3, "presence_ratio"), (4, "isi_violations")):
            u.create_dataset(name, data=np.asarray([units[i][k] for i in ids], np.float64))
        u.create_dataset("firing_rate", data=np.asarray([len(spikes[i]) / 200.0 for i in ids]))
        if with_presentations:
            g = f.create_group("intervals/natural_scenes_presentations")
            g.attrs["neurodata_type"] = "TimeIntervals"
            g.attrs["colnames"] = np.asarray(["start_time", "stop_time", "stimulus_name", "frame"], dtype=object)
            order = np.random.default_rng(1).permutation(len(onsets))  # rows not in time order on disk
            g.create_dataset("id", data=np.arange(len(onsets), dtype=np.int64))
            g.create_dataset("start_time", data=onsets[order])
            g.create_dataset("stop_time", data=onsets[order] + 0.25)
            g.create_dataset("frame", data=frames[order].astype(np.float64))
            g.create_dataset("stimulus_name", data=_strings(["natural_scenes"] * len(onsets)), dtype=s)


def make_ecephys_cache(root, *, n_scenes=N_SCENES, seed=0, templates=True):
    """Write the cache; returns ``{"root", "spikes": {unit: times}, "onsets": {sid: .}, "frames": {sid: .},
    "scenes": (n, y, x) uint8}``."""
    import tifffile

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (root / "manifest.json").write_text(json.dumps(MANIFEST, indent=2))
    pd.DataFrame({"id": [7001, 7002, 7003],
                  "session_type": ["brain_observatory_1.1", "brain_observatory_1.1", "functional_connectivity"],
                  "specimen_id": [SPECIMENS[7001], SPECIMENS[7002], SPECIMENS[7003]],
                  "genotype": ["Sst-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt", "wt/wt", "wt/wt"],
                  "age_in_days": [100, 110, 120], "sex": ["M", "F", "M"]}).to_csv(root / "sessions.csv", index=False)
    pd.DataFrame({"id": [810001, 820001], "ecephys_session_id": [7001, 7002], "name": ["probeA", "probeB"]}
                 ).to_csv(root / "probes.csv", index=False)
    pd.DataFrame({"id": list(CHANNELS), "ecephys_probe_id": [v[0] for v in CHANNELS.values()],
                  "probe_vertical_position": [v[2] for v in CHANNELS.values()],
                  "ecephys_structure_acronym": [v[1] for v in CHANNELS.values()],
                  "ecephys_structure_id": [385.0 if v[1] else np.nan for v in CHANNELS.values()]}
                 ).to_csv(root / "channels.csv", index=False)
    rows = []
    for units in (UNITS_7001, UNITS_7002):
        for uid, (ch, q, ac, pr, isi, _) in units.items():
            rows.append({"id": uid, "ecephys_channel_id": ch, "quality": q, "amplitude_cutoff": ac,
                         "presence_ratio": pr, "isi_violations": isi, "snr": 2.0})
    pd.DataFrame(rows).to_csv(root / "units.csv", index=False)
    out = {"root": root, "spikes": {}, "onsets": {}, "frames": {}}
    for sid, units, short in ((7001, UNITS_7001, 4), (7002, UNITS_7002, None)):
        onsets, frames = _presentations(rng, n_scenes, short if short is not None and short < n_scenes else None,
                                        t0=100.0 + 1000 * (sid - 7001))
        spikes = {uid: _spikes(rng, units[uid][5], onsets) for uid in units}
        write_session_nwb(root / f"session_{sid}" / f"session_{sid}.nwb", sid, units, onsets, frames, spikes)
        out["spikes"].update(spikes)
        out["onsets"][sid], out["frames"][sid] = onsets, frames
    scenes = rng.integers(0, 256, (n_scenes, *SCENE_SHAPE), dtype=np.uint8)
    if templates:
        (root / "natural_scene_templates").mkdir(exist_ok=True)
        for n, img in enumerate(scenes):
            tifffile.imwrite(root / "natural_scene_templates" / f"natural_scene_{n}.tiff", img)
    out["scenes"] = scenes
    return out
