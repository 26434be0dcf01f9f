"""Allen Brain Observatory (Visual Coding 2-photon) natural scenes: read an AllenSDK cache directly.

An AllenSDK ``BrainObservatoryCache`` directory is read with ``json``, ``h5py`` and ``numpy``
only; AllenSDK itself is not needed (it pins old versions of numpy, pandas and h5py, and we use
a handful of its file layouts, not its code).

- :mod:`~neuroxr.io.allen.cache`: the manifest, ``ophys_experiments.json`` and ``cell_specimens.json``.
- :mod:`~neuroxr.io.allen.nwb`: one experiment's NWB file and events, its trial responses.
- :mod:`~neuroxr.io.allen.ingest`: :func:`ingest_allen`, the study's ``responses.zarr`` and ``stimuli.zarr``.

Visual Coding Neuropixels (an AllenSDK ``EcephysProjectCache``, NWB 2 session files):

- :mod:`~neuroxr.io.allen.ecephys`: :func:`ingest_neuropixels`, natural-scenes spike counts per unit.
- :mod:`~neuroxr.io.allen.ecephys_fetch`: :func:`~neuroxr.io.allen.ecephys_fetch.fetch_neuropixels`.
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
from .ecephys import QUALITY_DEFAULTS, ingest_neuropixels, open_ecephys_cache
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
                    "DEFAULT_SESSION",
                    "MANIFEST_DEFAULTS",
                    "QUALITY_DEFAULTS",
                    "RESPONSES",
                    "AllenCache",
                    "AllenCacheError",
                    "AllenDataWarning",
                    "calc_trial_responses",
                    "group_trials",
                    "ingest_allen",
                    "ingest_neuropixels",
                    "open_allen_cache",
                    "open_ecephys_cache",
                    "read_cell_metadata",
                    "read_events_shape",
                    "read_experiments",
                    "read_manifest",
                    "read_natural_scenes",
                    "read_session_type",
                    "read_stimulus_table",
                    "scan_experiment",
                    "select_experiments",
                    "window_operator",
]
