"""``ingest_allen``: the natural-scenes sessions of an Allen cache into a study's stores."""
from __future__ import annotations

import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ... import schema as S
from ...errors import InvalidArgumentError, MissingDataError, NeuroxrError
from .. import store
from ..builders import build_responses_dataset
from ..lock import study_lock
from .cache import (
    DEFAULT_SESSION,
    AllenCache,
    AllenCacheError,
    open_allen_cache,
    read_cell_metadata,
    read_experiments,
    select_experiments,
    warn,
)
from .nwb import NS_TEMPLATE, RESPONSES, Experiment, calc_trial_responses, read_natural_scenes, scan_experiment

_NEURON_COLUMNS = ("area", "cre_line", "depth_um", "container", "experiment", "p_run_mod", "p_image")


def _experiment_task(exp: Experiment, response, n_images, n_trials, block):
    try:
        _, tr = calc_trial_responses(exp.nwb, exp.events, response, n_images=n_images, n_trials=n_trials, block=block)
    except NeuroxrError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt chunks found only while reading
        raise AllenCacheError(f"experiment {exp.id} ({exp.nwb}, {exp.events}): reading failed ({type(exc).__name__}: "
                              f"{exc}); nothing was written. Re-download it with `neuroxr fetch allen` or leave its "
                              "container out with --containers") from None
    return tr if exp.keep is None else tr[exp.keep]


def _missing(v):
    return v is None or (isinstance(v, float) and np.isnan(v))


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


# --------------------------------------------------------------------------- steps
def _scan_all(ac: AllenCache, sel: pd.DataFrame, response, session):
    """``(scanned [(experiment, record)], skipped {id: why})`` of the selected experiments."""
    scanned, skipped, absent = [], {}, []
    for eid, rec in sel.iterrows():
        nwb = ac.nwb_path(eid)
        if not nwb.exists() and not nwb.with_name(nwb.name + ".part").exists():
            absent.append(int(eid))            # not fetched (a subset was downloaded): one summary warning
            skipped[int(eid)] = f"{nwb} is not downloaded"
            continue
        try:
            scanned.append((scan_experiment(ac, eid, response, session), rec))
        except (NeuroxrError, FileNotFoundError) as exc:
            skipped[int(eid)] = str(exc)
            warn(f"experiment {eid} skipped: {exc}")
    if absent and scanned:
        warn(f"{len(absent)} of the {len(sel)} selected {session} experiments are not in {ac.root} "
             f"(e.g. {absent[:5]}); they were left out. Download them with `neuroxr fetch allen {ac.root}` "
             "or narrow the selection with --containers/--areas/--cre-lines")
    if not scanned:
        raise AllenCacheError(f"{ac.root}: none of the {len(sel)} selected {session} experiments could be read "
                              f"(first problem: {next(iter(skipped.values()))}); nothing was written")
    first = scanned[0][0]
    for exp, rec in list(scanned):
        if exp.n_images != first.n_images or exp.template_shape != first.template_shape:
            skipped[exp.id] = f"image stack {exp.template_shape} differs from {first.template_shape}"
            warn(f"experiment {exp.id} skipped: {exp.nwb}: natural-scenes stack has shape {exp.template_shape}, "
                 f"the first experiment's has {first.template_shape}")
            scanned.remove((exp, rec))
    return scanned, skipped


def _keep_new_cells(exp: Experiment, seen: set) -> np.ndarray:
    ids = exp.cell_ids
    fresh = np.array([(c >= 0) and (c not in seen) for c in ids], bool)
    seen.update(int(c) for c in ids[fresh])
    if not fresh.all():
        warn(f"experiment {exp.id}: {int((~fresh).sum())} cells already ingested from another experiment "
             "(duplicate cell_specimen_id) or with a negative id were left out")
    exp.keep = None if fresh.all() else np.flatnonzero(fresh)
    return ids[fresh]


def _neuron_table(scanned, cells, ac: AllenCache):
    """``(neuron ids, metadata table)``: ``cell_specimens.json``, completed from the experiment record."""
    cols = {k: [] for k in ("neuron", *_NEURON_COLUMNS)}
    seen: set = set()
    for exp, rec in scanned:
        ids = _keep_new_cells(exp, seen)
        c = cells.reindex(ids) if cells is not None else None
        known = np.isin(ids, np.asarray(cells.index)) if cells is not None else np.zeros(len(ids), bool)
        if (~known).any():
            miss = ids[~known]
            warn(f"experiment {exp.id}: {len(miss)} cells have no record in {ac.path('CELL_SPECIMENS')} "
                 f"(e.g. {miss[:3].tolist()}); they keep the experiment's area, Cre line and depth, "
                 "p_run_mod and p_image are NaN")
        n, nan = len(ids), np.full(len(ids), np.nan)
        d = nan if c is None else c.depth_um.to_numpy(float)
        cols["neuron"].append(ids)
        cols["area"].append(_fill_str(None if c is None else c.area, rec.area, n))
        cols["cre_line"].append(_fill_str(None if c is None else c.cre_line, rec.cre_line, n))
        cols["depth_um"].append(np.where(np.isfinite(d), d, np.nan if _missing(rec.depth_um) else float(rec.depth_um)))
        cols["container"].append(np.full(n, -1 if _missing(rec.container) else int(rec.container), np.int64))
        cols["experiment"].append(np.full(n, exp.id, np.int64))
        cols["p_run_mod"].append(nan if c is None else c.p_run_mod.to_numpy(float))
        cols["p_image"].append(nan if c is None else c.p_image.to_numpy(float))
    meta = {k: np.concatenate(v) for k, v in cols.items()}
    table = pd.DataFrame({k: meta[k] for k in _NEURON_COLUMNS})
    table["area"] = table["area"].astype(str)
    table["cre_line"] = table["cre_line"].astype(str)
    return meta["neuron"].astype(np.int64), table


def _lazy_trials(scanned, response, n_images, n_trials, block, chunk_neurons):
    """``(mean, trials)`` as dask arrays: one task per experiment, rechunked by neuron."""
    n_by_exp = [len(e.cell_ids) if e.keep is None else len(e.keep) for e, _ in scanned]
    parts = [da.from_delayed(dask.delayed(_experiment_task, pure=True)(e, response, n_images, n_trials, block),
                             shape=(n, n_images, n_trials), dtype=np.float32)
             for (e, _), n in zip(scanned, n_by_exp) if n]
    trials = da.concatenate(parts, axis=0).rechunk({0: chunk_neurons, 1: -1, 2: -1})
    return trials.map_blocks(_nanmean_trials, drop_axis=2, dtype=np.float32), trials


def _responses_attrs(ac: AllenCache, scanned, skipped, settings: dict) -> dict:
    inputs = {"cache": str(ac.root),
              "experiments": {str(e.id): {"nwb": ac.relpath(e.nwb), "nwb_bytes": e.nwb.stat().st_size,
                                          **({"events": ac.relpath(e.events), "events_bytes": e.events.stat().st_size}
                                             if e.events else {})} for e, _ in scanned},
              "skipped": {str(k): v for k, v in skipped.items()}}
    attrs = store.provenance(settings, inputs)
    attrs["source"] = (f"Allen Brain Observatory Visual Coding 2p, natural scenes ({settings['session']}), "
                       f"cache {ac.root}")
    attrs["response"] = ("sum of events over each presentation window" if settings["response"] == "events"
                         else "mean dF/F over each presentation window")
    return attrs


def _stimuli(ac: AllenCache, exp: Experiment, session, n_images, source) -> xr.Dataset:
    pixels = read_natural_scenes(exp.nwb)
    st = xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), pixels)}, coords={S.IMAGE: np.arange(n_images, dtype=np.int64)},
                    attrs={**store.provenance({"source": "allen_brain_observatory", "session": session},
                                              {"nwb": ac.relpath(exp.nwb)}),
                           "source": f"{NS_TEMPLATE} of {exp.nwb.name}"})
    S.validate_stimuli(st, source=source)
    return st


def _select(ac: AllenCache, session, areas, cre_lines, containers, include_failed):
    sel = select_experiments(ac, session, areas, cre_lines, containers, include_failed)
    if sel.empty:
        exps = read_experiments(ac)
        raise AllenCacheError(
            f"{ac.path('EXPERIMENTS')}: no {session} experiment matches (areas={areas}, cre_lines={cre_lines}, "
            f"containers={containers}); session types there: {sorted(map(str, exps.session_type.dropna().unique()))}")
    try:
        cells = read_cell_metadata(ac)
    except MissingDataError as exc:
        warn(f"{exc}; using experiment-level metadata (p_run_mod and p_image are NaN)")
        cells = None
    return sel, cells


def ingest_allen(study, cache, response: str = "events", session: str = DEFAULT_SESSION, areas=None,
                 cre_lines=None, containers=None, overwrite: bool = False, *, include_failed: bool = False,
                 chunk_neurons: int = 1024, block: int = 64, allow_unknown_area: bool = False):
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
        Replace existing stores (as one transaction; the old ones stay until the new ones are complete).
    allow_unknown_area : bool
        Keep area names outside :data:`neuroxr.io.builders.KNOWN_AREAS`.

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
    if response not in RESPONSES:
        raise InvalidArgumentError(f"response={response!r}: use one of {RESPONSES}")
    study = Path(study)
    rpath, spath = study / S.RESPONSES_STORE, study / S.STIMULI_STORE
    store.check_writable([rpath, spath], overwrite)
    ac = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    sel, cells = _select(ac, session, areas, cre_lines, containers, include_failed)
    scanned, skipped = _scan_all(ac, sel, response, session)
    n_images = scanned[0][0].n_images
    n_trials = max(e.n_trials for e, _ in scanned)
    ids, table = _neuron_table(scanned, cells, ac)
    mean, trials = _lazy_trials(scanned, response, n_images, n_trials, block, chunk_neurons)
    settings = {"source": "allen_brain_observatory", "response": response, "session": session,
                "areas": areas, "cre_lines": cre_lines, "containers": containers, "include_failed": include_failed,
                "window": "[start, end) of natural_scenes frame_duration", "n_trials": n_trials}
    ds = build_responses_dataset(mean=mean, trials=trials, neuron_ids=ids, meta=table,
                                 image_ids=np.arange(n_images, dtype=np.int64), source=str(rpath),
                                 attrs=_responses_attrs(ac, scanned, skipped, settings),
                                 allow_unknown_area=allow_unknown_area)
    store.make_parent(rpath)
    with study_lock(study, [S.RESPONSES_STORE, S.STIMULI_STORE]), store.transaction(overwrite=overwrite) as tx:
        tx.write(ds, rpath, chunks={S.NEURON: chunk_neurons, S.IMAGE: n_images, S.TRIAL: n_trials})
        tx.write(_stimuli(ac, scanned[0][0], session, n_images, spath), spath)
    return store.open_dataset(rpath)


__all__ = ["ingest_allen"]
