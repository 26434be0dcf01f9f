"""Allen Brain Observatory (Visual Coding 2-photon) natural scenes: read an AllenSDK cache directly.

An AllenSDK ``BrainObservatoryCache`` directory is read with ``json``, ``h5py`` and ``numpy``
only; AllenSDK itself is not needed (it pins old versions of numpy, pandas and h5py, and we use
a handful of its file layouts, not its code).

- :mod:`~neuroxr.io.allen.cache`: the manifest, ``ophys_experiments.json`` and ``cell_specimens.json``.
- :mod:`~neuroxr.io.allen.nwb`: one experiment's NWB file and events, its trial responses.
- :mod:`~neuroxr.io.allen.ingest`: :func:`ingest_allen`, the study's ``responses.zarr`` and ``stimuli.zarr``.
"""
from __future__ import annotations

from .cache import (
                    DEFAULT_SESSION,
                    MANIFEST_DEFAULTS,
                    AllenCache,
                    AllenCacheError,
                    AllenDataWarning,
                    open_allen_cache,
                    read_cell_metadata,
                    read_experiments,
                    read_manifest,
                    select_experiments,
)
from .ingest import ingest_allen
from .nwb import (
                    RESPONSES,
                    calc_trial_responses,
                    group_trials,
                    read_events_shape,
                    read_natural_scenes,
                    read_session_type,
                    read_stimulus_table,
                    scan_experiment,
                    window_operator,
)

__all__ = [
    "AllenCache", "AllenCacheError", "AllenDataWarning", "open_allen_cache", "read_manifest", "read_experiments",
    "read_cell_metadata", "read_stimulus_table", "read_natural_scenes", "read_session_type", "group_trials",
    "window_operator", "calc_trial_responses", "read_events_shape", "scan_experiment", "select_experiments",
    "ingest_allen", "DEFAULT_SESSION", "MANIFEST_DEFAULTS", "RESPONSES",
]
