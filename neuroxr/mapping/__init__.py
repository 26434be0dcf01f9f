"""Mapping model features to neural responses: ridge, PLS, RSA scores, and the scores store.

- :mod:`~neuroxr.mapping.metrics`: the metric registry (:data:`METRICS`).
- :mod:`~neuroxr.mapping.tree`: the labelled scores model (``scores.zarr`` as a DataTree).
- :mod:`~neuroxr.mapping.score`: scoring one model's layers or a whole study.
"""
from .metrics import METRICS, metric_of_variable
from .tree import open_scores

__all__ = ["METRICS", "metric_of_variable", "open_scores"]
