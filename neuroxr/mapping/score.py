"""Scoring, in layers (as flox does it): this module is the public entry point.

- :mod:`neuroxr.mapping.kernels`: labels-free NumPy kernels (LOO residual operators and scores,
  Pearson, RDMs, RSA, PLS);
- :mod:`neuroxr.mapping.graph`: the Dask graphs built from them (no labels);
- :mod:`neuroxr.mapping.metrics`: the metric registry, each metric declaring its variable,
  target group, needs and graph builder;
- :mod:`neuroxr.mapping.labelled`: :func:`score_layers`, the xarray layer (checks, alignment,
  labels, the scores DataTree of :mod:`neuroxr.mapping.tree`);
- :mod:`neuroxr.mapping.runner`: :func:`score_study` (parts, fingerprints, settings, resume,
  Dask scheduling, the atomic assembly of ``STUDY/scores.zarr``).
"""
from __future__ import annotations

from .labelled import DEFAULT_LAYER_CHUNK, DEFAULT_NEURON_CHUNK, score_layers
from .metrics import DEFAULT_PLS, METRICS, metric_of_variable
from .runner import MODELS_IN_FLIGHT, PARTS_DIR, assemble_scores, compute_scores, count_nan_scores, score_study
from .tree import open_scores

__all__ = [
    "METRICS",
    "metric_of_variable",
    "score_layers",
    "score_study",
    "count_nan_scores",
    "compute_scores",
    "assemble_scores",
    "open_scores",
    "DEFAULT_PLS",
    "DEFAULT_NEURON_CHUNK",
    "DEFAULT_LAYER_CHUNK",
    "PARTS_DIR",
    "MODELS_IN_FLIGHT",
]
