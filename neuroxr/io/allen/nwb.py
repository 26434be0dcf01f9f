"""One Allen natural-scenes experiment: its NWB file (h5py) and events ``.npz``, trial responses.

Per trial, the response of a cell is the sum of its events over the presentation window
(``response="events"``, the default, as in the study) or its mean dF/F over the window
(``response="dff"``).  The window of a presentation is the half-open acquisition-frame range
``[start, end)`` of ``stimulus/presentation/natural_scenes_stimulus/frame_duration`` (the
``start``/``end`` columns of AllenSDK's ``get_stimulus_table("natural_scenes")``).  The blank
(frame -1) is not an image.  Trials are grouped per image in presentation order and NaN-padded
to the largest count (50 in the released data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy import sparse

from ...errors import InvalidArgumentError
from ...schema import SchemaError
from ..npy import iter_npz_rows, read_npz_shape
from .cache import DEFAULT_SESSION, AllenCache, AllenCacheError, require_downloaded, warn

NATURAL_SCENES = "natural_scenes"
PIPELINE = "processing/brain_observatory_pipeline"
NS_PRESENTATION = "stimulus/presentation/natural_scenes_stimulus"
NS_TEMPLATE = "stimulus/templates/natural_scenes_image_stack/data"
DFF_DATA = f"{PIPELINE}/DfOverF/imaging_plane_1/data"
CELL_IDS = f"{PIPELINE}/ImageSegmentation/cell_specimen_ids"
EVENTS_KEY = "ev"
RESPONSES = ("events", "dff")


# --------------------------------------------------------------------------- one NWB file
def _h5(path):
    path = require_downloaded(Path(path), "NWB file")
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


def read_stimulus_table(nwb_path) -> pd.DataFrame:
    """The natural-scenes stimulus table: columns ``frame`` (-1 = blank), ``start``, ``end``.

    ``start`` and ``end`` are acquisition-frame indices (``frame_duration`` columns), sorted by
    ``start`` as AllenSDK sorts them.
    """
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
    start = np.asarray(start, np.int64)
    end = np.asarray(end, np.int64)
    ok = (start >= 0) & (end <= n_frames) & (end > start)
    lens = np.where(ok, end - start, 0)
    cols = np.repeat(np.arange(len(start)), lens)
    rows = np.concatenate([np.arange(s, e) for s, e, k in zip(start, end, ok) if k]) if lens.sum() else np.zeros(0, np.int64)
    vals = np.ones(len(rows)) if response == "events" else np.repeat(1.0 / np.maximum(lens, 1), lens)
    return sparse.csc_matrix((vals, (rows, cols)), shape=(n_frames, len(start))), ok


def _events_error(exc, path) -> AllenCacheError:
    return AllenCacheError(f"{exc}; delete {path} and rerun `neuroxr fetch allen`")


def iter_event_rows(path, key=EVENTS_KEY, block=64):
    """Yield ``(row0, rows)`` blocks of the events array without loading it whole."""
    try:
        yield from iter_npz_rows(path, key, block)
    except SchemaError as exc:
        raise _events_error(exc, path) from None


def read_events_shape(events_path, key=EVENTS_KEY) -> tuple:
    """Shape of the events array (reads only the zip directory and the .npy header)."""
    try:
        return read_npz_shape(events_path, key)
    except SchemaError as exc:
        raise _events_error(exc, events_path) from None


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
        raise InvalidArgumentError(f"response={response!r}: use one of {RESPONSES}")
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
    return ids, _responses_from_blocks(iter_event_rows(events_path, block=block), shape, ids, start, end, index,
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


# --------------------------------------------------------------------------- scan
@dataclass
class Experiment:
    """One experiment's files and sizes, checked by :func:`scan_experiment`; ``keep``: cells kept."""

    id: int
    nwb: Path
    events: Path | None
    cell_ids: np.ndarray
    n_trials: int
    n_images: int
    template_shape: tuple
    keep: np.ndarray | None = None


def scan_experiment(cache: AllenCache, experiment_id: int, response="events", session=DEFAULT_SESSION) -> Experiment:
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
        shape = read_events_shape(require_downloaded(events, "events", hint=", or use --response dff"))
    if len(shape) != 2 or shape[0] != len(ids):
        raise AllenCacheError(f"{events or nwb}: traces have shape {tuple(shape)}, expected ({len(ids)}, frames) "
                              f"to match {CELL_IDS}")
    if end.max(initial=0) > shape[1]:
        warn(f"experiment {experiment_id}: {int((end > shape[1]).sum())} presentations end after the last "
              f"recorded frame ({shape[1]}) of {events or nwb}; their trials are NaN")
    counts = np.bincount(frames[frames >= 0], minlength=n_images)
    return Experiment(int(experiment_id), nwb, events, ids, int(counts.max(initial=0)), n_images, tshape)


__all__ = ["read_session_type", "read_stimulus_table", "read_natural_scenes", "group_trials", "window_operator",
           "iter_event_rows", "read_events_shape", "calc_trial_responses", "scan_experiment", "Experiment",
           "RESPONSES", "NATURAL_SCENES", "NS_TEMPLATE", "EVENTS_KEY"]
