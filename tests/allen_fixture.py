"""A miniature AllenSDK ``BrainObservatoryCache`` directory with the real layout.

Importable by tests and benchmarks::

    from allen_fixture import make_allen_cache, make_large_allen_cache

The layout follows what ``BrainObservatoryCache(manifest_file=ROOT/"manifest.json")``
writes and reads (manifest version 1.3):

```
ROOT/manifest.json                       {"manifest": [{"type": "manifest_version", ...}, ...]}
ROOT/experiment_containers.json          raw RMA records (ExperimentContainer)
ROOT/ophys_experiments.json              raw RMA records (OphysExperiment): id, stimulus_name,
                                         experiment_container_id, imaging_depth,
                                         targeted_structure{acronym}, specimen{donor{transgenic_lines}}
ROOT/cell_specimens.json                 ApiCamCellMetric records: cell_specimen_id, area, tld1_name,
                                         imaging_depth, experiment_container_id, p_ns, p_run_mod_ns, ...
ROOT/ophys_experiment_data/<id>.nwb      NWB 1.x (HDF5)
ROOT/ophys_experiment_events/<id>_events.npz   key "ev": (cell, frame) event magnitudes
```

NWB groups written (as in the released files): ``general/session_type``,
``general/session_id``, ``general/experiment_container_id``, ``general/subject/genotype``,
``general/optophysiology/imaging_plane_1/{imaging depth,location}``,
``stimulus/presentation/natural_scenes_stimulus/{data,frame_duration,timestamps,num_samples}``,
``stimulus/templates/natural_scenes_image_stack/data`` (uint8, image x y x x),
``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/{data,timestamps}``,
``processing/brain_observatory_pipeline/ImageSegmentation/{cell_specimen_ids,roi_ids}``,
``processing/brain_observatory_pipeline/Fluorescence/imaging_plane_1/timestamps``.
Session A experiments get ``drifting_gratings_stimulus`` instead of natural scenes.

The default cache: four experiments in three areas (VISp, VISl, VISal), three of session
``three_session_B`` and one ``three_session_A`` (same container as the first VISp one); one cell of
experiment 501000002 has no record in ``cell_specimens.json``; experiment 501000003 misses two
presentations of image 5 (so image 5 has 48 trials there).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

N_IMAGES = 118
FRAMES_PER_TRIAL = 7          # 250 ms at ~30 Hz
PIPELINE = "processing/brain_observatory_pipeline"

MANIFEST = {
    "manifest": [
        {"type": "manifest_version", "value": "1.3"},
        {"type": "dir", "spec": ".", "key": "BASEDIR"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "experiment_containers.json", "key": "EXPERIMENT_CONTAINERS"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiments.json", "key": "EXPERIMENTS"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_data/%d.nwb", "key": "EXPERIMENT_DATA"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_analysis/%d_%s_analysis.h5", "key": "ANALYSIS_DATA"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_events/%d_events.npz", "key": "EVENTS_DATA"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "cell_specimens.json", "key": "CELL_SPECIMENS"},
        {"parent_key": "BASEDIR", "type": "file", "spec": "stimulus_mappings.json", "key": "STIMULUS_MAPPINGS"},
        {"parent_key": "BASEDIR", "type": "file",
         "spec": "ophys_eye_gaze_mapping/%d_eyetracking_dlc_to_screen_mapping.h5", "key": "EYE_GAZE_DATA"},
    ]
}

CRE_GENOTYPE = {
    "Cux2-CreERT2": "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)",
    "Rorb-IRES2-Cre": "Rorb-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
    "Sst-IRES-Cre": "Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt",
    "Rbp4-Cre_KL100": "Rbp4-Cre_KL100/wt;Ai93(TITL-GCaMP6f)/wt",
}


@dataclass
class ExperimentSpec:
    """One ophys experiment of the fixture."""

    id: int
    container: int
    area: str
    cre_line: str
    depth: int
    n_cells: int = 8
    session_type: str = "three_session_B"
    first_cell_id: int = 0            # 0: derived from the experiment id
    drop: dict = field(default_factory=dict)   # {image: n presentations to drop}
    no_metadata_cells: int = 0        # how many of its cells are absent from cell_specimens.json


def default_experiments() -> list[ExperimentSpec]:
    return [
        ExperimentSpec(501000001, 511000001, "VISp", "Cux2-CreERT2", 175, n_cells=10),
        ExperimentSpec(501000002, 511000002, "VISl", "Rorb-IRES2-Cre", 275, n_cells=8, no_metadata_cells=1),
        ExperimentSpec(501000003, 511000003, "VISal", "Sst-IRES-Cre", 375, n_cells=6, drop={5: 2}),
        ExperimentSpec(501000004, 511000001, "VISp", "Cux2-CreERT2", 175, n_cells=9, session_type="three_session_A"),
    ]


def cell_ids_of(spec: ExperimentSpec) -> np.ndarray:
    base = spec.first_cell_id or (600_000_000 + (spec.container % 100_000) * 1000)
    if spec.session_type != "three_session_B":      # other sessions of a container reuse most ids
        base += 0
    return np.arange(base, base + spec.n_cells, dtype=np.int64)


def stimulus_table(rng, n_trials=50, drop=None, n_blank=50, frames_per_trial=FRAMES_PER_TRIAL, lead=30):
    """Presentation order (frame index, -1 = blank) and [start, end) acquisition frames.

    Scenes follow each other without gaps, as in the released natural-scenes epochs; the table
    is split into three epochs separated by 300 frames, as in session B.
    """
    frames = np.concatenate([np.repeat(np.arange(N_IMAGES), n_trials), np.full(n_blank, -1)])
    for img, k in (drop or {}).items():
        idx = np.flatnonzero(frames == img)[:k]
        frames = np.delete(frames, idx)
    frames = rng.permutation(frames)
    n = len(frames)
    start = lead + np.arange(n) * frames_per_trial
    start = start + 300 * (np.arange(n) * 3 // n)           # three epochs
    end = start + frames_per_trial
    n_frames = int(end[-1] + lead)
    return frames.astype(np.int32), start, end, n_frames


def _scalar_str(g, name, value):
    g.create_dataset(name, data=np.bytes_(value))


def write_nwb(path, spec: ExperimentSpec, rng, *, image_stack, n_trials=50, events_dtype="f8",
              with_dff=True, events_path=None, chunk_rows=None):
    """Write one NWB 1.x file (and its events .npz when ``events_path``); returns (cell ids, table)."""
    ids = cell_ids_of(spec)
    frames, start, end, n_frames = stimulus_table(rng, n_trials=n_trials, drop=spec.drop)
    t = np.arange(n_frames) / 30.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "NWB-1.0.4_beta"
        f.create_dataset("nwb_version", data=np.bytes_("NWB-1.0.4_beta"))
        f.create_dataset("identifier", data=np.bytes_(f"Allen Brain Observatory: {spec.id}"))
        f.create_dataset("session_start_time", data=np.bytes_("Thu Feb 11 09:45:14 2016"))
        g = f.create_group("general")
        _scalar_str(g, "session_type", spec.session_type)
        _scalar_str(g, "session_id", str(spec.id))
        _scalar_str(g, "experiment_container_id", str(spec.container))
        _scalar_str(g, "specimen_name", f"{spec.cre_line};Ai93-{spec.id % 1000}")
        g.create_dataset("generated_by", data=np.array([b"OphysNWB", b"3.0"]))
        _scalar_str(g.create_group("subject"), "genotype", CRE_GENOTYPE.get(spec.cre_line, spec.cre_line + "/wt"))
        ip = g.create_group("optophysiology/imaging_plane_1")
        _scalar_str(ip, "imaging depth", f"{spec.depth} microns")
        _scalar_str(ip, "location", f"area: {spec.area}; depth: {spec.depth} microns")
        stim = f.create_group("stimulus")
        pres = stim.create_group("presentation")
        templ = stim.create_group("templates")
        if spec.session_type == "three_session_B":
            ts = templ.create_group("natural_scenes_image_stack")
            ts.create_dataset("data", data=image_stack, dtype="u1")
            ts.attrs["neurodata_type"] = "TimeSeries"
            ns = pres.create_group("natural_scenes_stimulus")
            ns.attrs["neurodata_type"] = "TimeSeries"
            ns.attrs["ancestry"] = np.array([b"TimeSeries", b"IndexSeries"])
            ns.create_dataset("data", data=frames)                          # int32 frame index
            ns.create_dataset("frame_duration", data=np.stack([start, end], 1).astype("f8"))
            ns.create_dataset("timestamps", data=t[start])
            ns.create_dataset("num_samples", data=np.int64(len(frames)))
            ns["indexed_timeseries"] = h5py.SoftLink("/stimulus/templates/natural_scenes_image_stack")
            sp = pres.create_group("spontaneous_stimulus")
            sp.create_dataset("data", data=np.array([1.0, -1.0]))
            sp.create_dataset("frame_duration", data=np.array([[0.0, 10.0], [10.0, 20.0]]))
        else:
            dg = pres.create_group("drifting_gratings_stimulus")
            dg.create_dataset("data", data=rng.uniform(0, 360, (40, 3)))
            dg.create_dataset("features", data=np.array([b"temporal_frequency", b"orientation", b"blank_sweep"]))
            dg.create_dataset("frame_duration", data=np.stack([start[:40], end[:40]], 1).astype("f8"))
        proc = f.create_group(PIPELINE)
        seg = proc.create_group("ImageSegmentation")
        seg.create_dataset("cell_specimen_ids", data=ids.astype(np.int32))
        seg.create_dataset("roi_ids", data=np.array([str(i).encode() for i in range(len(ids))]))
        proc.create_group("Fluorescence/imaging_plane_1").create_dataset("timestamps", data=t)
        run = proc.create_group("BehavioralTimeSeries/running_speed")
        run.create_dataset("timestamps", data=t)
        run.create_dataset("data", data=np.abs(rng.normal(0, 3, n_frames)).astype("f4"))
        dff_g = proc.create_group("DfOverF/imaging_plane_1")
        dff_g.create_dataset("timestamps", data=t)
        if with_dff:
            rows = chunk_rows or len(ids)
            d = dff_g.create_dataset("data", shape=(len(ids), n_frames), dtype="f4",
                                     chunks=(min(len(ids), 16), min(n_frames, 4096)), compression="gzip")
            for i0 in range(0, len(ids), rows):
                d[i0:i0 + rows] = _signal(rng, min(rows, len(ids) - i0), n_frames, frames, start, end, "dff")
    if events_path is not None:
        write_events(events_path, rng, len(ids), n_frames, frames, start, end, dtype=events_dtype,
                     chunk_rows=chunk_rows)
    return ids, (frames, start, end, n_frames)


def _signal(rng, n_cells, n_frames, frames, start, end, kind):
    """Image-tuned activity: each cell has a preferred response per image plus noise."""
    tuning = rng.gamma(0.6, 1.0, (n_cells, N_IMAGES + 1)).astype("f4")   # last column: blank
    amp = tuning[:, frames] * (rng.random((n_cells, len(frames))) < 0.7)  # (cell, presentation)
    if kind == "dff":
        x = rng.normal(0, 0.05, (n_cells, n_frames)).astype("f4")
        lens = end - start
        which = np.repeat(np.arange(len(frames)), lens)
        at = np.concatenate([np.arange(s, e) for s, e in zip(start, end)])
        x[:, at] += 0.3 * amp[:, which]
    else:
        x = np.zeros((n_cells, n_frames), "f4")
        spont = rng.random((n_cells, n_frames)) < 0.005
        x[spont] = rng.exponential(0.1, int(spont.sum()))
        x[:, start + 1] += amp * rng.exponential(1.0, amp.shape).astype("f4")
    return x


def write_events(path, rng, n_cells, n_frames, frames, start, end, *, dtype="f8", chunk_rows=None):
    """``np.savez_compressed``-compatible ``ev`` array, written row block by row block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = chunk_rows or n_cells
    if rows >= n_cells:
        np.savez_compressed(path, ev=_signal(rng, n_cells, n_frames, frames, start, end, "events").astype(dtype))
        return
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=1) as zf:
        with zf.open("ev.npy", "w", force_zip64=True) as fh:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                      "shape": (n_cells, n_frames)}
            np.lib.format.write_array_header_1_0(fh, header)
            for i0 in range(0, n_cells, rows):
                blk = _signal(rng, min(rows, n_cells - i0), n_frames, frames, start, end, "events")
                fh.write(np.ascontiguousarray(blk.astype(dtype)).tobytes())


def experiment_record(spec: ExperimentSpec) -> dict:
    """A raw ``ophys_experiments.json`` record (as the RMA query returns it)."""
    return {
        "id": spec.id,
        "imaging_depth": spec.depth,
        "experiment_container_id": spec.container,
        "stimulus_name": spec.session_type,
        "targeted_structure": {"acronym": spec.area, "id": 385, "name": f"{spec.area} (fixture)"},
        "experiment_container": {"id": spec.container, "failed": False},
        "date_of_acquisition": "2016-02-11T09:45:14Z",
        "fail_eye_tracking": True,
        "specimen": {
            "name": f"{spec.cre_line};Ai93-{spec.id % 1000}",
            "donor": {
                "external_donor_name": str(200000 + spec.container % 1000),
                "date_of_birth": "2015-12-01T00:00:00Z",
                "transgenic_lines": [
                    {"name": spec.cre_line, "transgenic_line_type_name": "driver"},
                    {"name": "Camk2a-tTA", "transgenic_line_type_name": "driver"},
                    {"name": "Ai93(TITL-GCaMP6f)", "transgenic_line_type_name": "reporter"},
                ],
            },
        },
        "well_known_files": [],
    }


def container_record(spec: ExperimentSpec, exp_ids) -> dict:
    rec = experiment_record(spec)
    return {"id": spec.container, "imaging_depth": spec.depth, "targeted_structure": rec["targeted_structure"],
            "specimen": rec["specimen"], "failed": False,
            "ophys_experiments": [{"id": int(i)} for i in exp_ids]}


def cell_records(spec: ExperimentSpec, ids, rng) -> list[dict]:
    """``cell_specimens.json`` (ApiCamCellMetric) records of one session-B experiment."""
    out = []
    for cid in ids[: len(ids) - spec.no_metadata_cells]:
        out.append({
            "cell_specimen_id": int(cid), "experiment_container_id": spec.container, "area": spec.area,
            "tld1_name": spec.cre_line, "tld1_id": 177839004, "tld2_name": "Camk2a-tTA",
            "tlr1_name": "Ai93(TITL-GCaMP6f)", "imaging_depth": spec.depth, "specimen_id": spec.id - 1000,
            "donor_full_genotype": CRE_GENOTYPE.get(spec.cre_line, spec.cre_line),
            "failed_experiment_container": False, "all_stim": True,
            "p_ns": float(rng.uniform(0, 0.2)), "p_run_mod_ns": float(rng.uniform(0, 1)),
            "pref_image_ns": float(rng.integers(0, N_IMAGES)), "reliability_ns": float(rng.uniform(0, 0.3)),
            "p_sg": None, "osi_dg": None, "p_dg": None,
        })
    return out


def write_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def make_allen_cache(root, experiments=None, seed=0, *, n_trials=50, image_shape=(16, 20),
                     events_dtype="f8", with_dff=True, chunk_rows=None, progress=False):
    """Write a miniature ``BrainObservatoryCache`` directory under ``root``; returns its Path.

    Parameters
    ----------
    experiments : list of ExperimentSpec, optional
        Default: :func:`default_experiments` (3 areas, a session-A experiment, a cell without metadata).
    n_trials : int
        Presentations per image (50 in the released data).
    image_shape : (int, int)
        Template size (918 x 1174 in the released data; small here).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    experiments = list(experiments) if experiments is not None else default_experiments()
    stack = rng.integers(0, 256, (N_IMAGES, *image_shape)).astype("u1")
    write_json(root / "manifest.json", MANIFEST)
    exps, cells, by_container = [], [], {}
    it = experiments
    if progress:
        from tqdm import tqdm

        it = tqdm(experiments, desc="simulated cache", unit="exp")
    for spec in it:
        ids, _ = write_nwb(root / "ophys_experiment_data" / f"{spec.id}.nwb", spec, rng, image_stack=stack,
                           n_trials=n_trials, events_dtype=events_dtype, with_dff=with_dff, chunk_rows=chunk_rows,
                           events_path=root / "ophys_experiment_events" / f"{spec.id}_events.npz")
        exps.append(experiment_record(spec))
        by_container.setdefault(spec.container, (spec, []))[1].append(spec.id)
        if spec.session_type == "three_session_B":
            cells.extend(cell_records(spec, ids, rng))
    write_json(root / "ophys_experiments.json", exps)
    write_json(root / "cell_specimens.json", cells)
    write_json(root / "experiment_containers.json",
               [container_record(s, e) for s, e in by_container.values()])
    return root


def large_experiments(n_neurons=60_000, n_experiments=30, areas=("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")):
    """Specs of a simulated cache of ``n_neurons`` cells spread over ``n_experiments`` session-B experiments."""
    per = np.full(n_experiments, n_neurons // n_experiments)
    per[: n_neurons - per.sum()] += 1
    cres = list(CRE_GENOTYPE)
    return [ExperimentSpec(700_000_000 + i, 710_000_000 + i, areas[i % len(areas)], cres[i % len(cres)],
                           175 + 100 * (i % 4), n_cells=int(per[i]), first_cell_id=800_000_000 + 10_000 * i)
            for i in range(n_experiments)]


def make_large_allen_cache(root, n_neurons=60_000, n_experiments=30, seed=0, *, with_dff=False, progress=True):
    """The benchmark's simulated cache: real layout, fewer and larger experiments.

    Events are float32 and written row block by row block (the generator never holds a whole
    experiment); dF/F is left out unless ``with_dff`` (the default ``events`` ingest does not read it).
    """
    return make_allen_cache(root, large_experiments(n_neurons, n_experiments), seed, image_shape=(32, 40),
                            events_dtype="f4", with_dff=with_dff, chunk_rows=250, progress=progress)
