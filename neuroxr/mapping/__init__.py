"""Mapping model features to neural responses: ridge, PLS, RSA scores, and the scores store.

- :mod:`~neuroxr.mapping.metrics`: the metric registry (:data:`METRICS`, :func:`metric_of_variable`).
- :mod:`~neuroxr.mapping.tree`: the labelled scores model (``scores.zarr`` as a DataTree, :func:`open_scores`).
- :mod:`~neuroxr.mapping.score`: scoring one model's layers or a whole study.

Submodules are imported on first use (the kernels import without the Dask graph).
"""
import importlib

_LAZY = {"METRICS": "metrics", "metric_of_variable": "metrics", "open_scores": "tree"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
