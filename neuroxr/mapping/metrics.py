"""The metric registry: every score a study can compute, declared once.

A :class:`Metric` names the command-line metric, the variable it writes, where that variable
lives in ``scores.zarr`` (``target="neuron"``: the root group, dims (layer, neuron);
``target="area"``: the ``areas`` group, dims (layer, area)), which features-store variables it
reads, and how its lazy graph is built (``build``, see :mod:`neuroxr.mapping.graph`).

Adding a metric is one new :class:`Metric` passed to :func:`register_metric` (and its test).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .. import schema as S
from ..errors import NeuroxrError

__all__ = ["Metric", "METRICS", "register_metric", "get_metric", "check_metrics", "metric_of_variable",
           "TARGET_GROUPS"]

#: target kind -> group of scores.zarr
TARGET_GROUPS = {"neuron": "/", "area": "areas"}


@dataclass(frozen=True)
class Metric:
    """One registered score.

    Attributes
    ----------
    name : str
        The metric's name (``--metrics``, ``rankings.csv``'s ``metric``).
    variable : str
        The variable written to ``scores.zarr``.
    target : {"neuron", "area"}
        What is scored: each neuron (root group) or each area's population (``areas`` group).
    dims : tuple of str
        Dims of ``variable``.
    needs : tuple of str
        Features-store variables read (``gram_z``/``gram``, ``feature_sum``, ``srp``).
    needs_responses : bool
        Whether the metric needs responses (RSA can score ingested RDMs alone).
    build : callable, optional
        ``build(inputs: ScoringInputs) -> {group: {name: (dims, dask array)}}`` (the lazy graph).
    """

    name: str
    variable: str
    target: str
    dims: tuple
    needs: tuple = ()
    needs_responses: bool = True
    build: Callable | None = field(default=None, compare=False, repr=False)

    @property
    def group(self) -> str:
        return TARGET_GROUPS[self.target]


#: metric name -> :class:`Metric`, in the order scores are reported
METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS` (replacing one of the same name)."""
    if metric.target not in TARGET_GROUPS:
        raise NeuroxrError(f"metric {metric.name!r}: target {metric.target!r} is not one of {sorted(TARGET_GROUPS)}")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise NeuroxrError(f"unknown metric {name!r}; choose from {list(METRICS)}")
    return METRICS[name]


def check_metrics(metrics) -> tuple:
    """Unique metric names in order, each a key of :data:`METRICS`."""
    metrics = tuple(dict.fromkeys(metrics))
    for m in metrics:
        get_metric(m)
    return metrics


def metric_of_variable(variable: str) -> str | None:
    """The metric name writing ``variable`` (``"ridge_r"`` -> ``"ridge"``), or None."""
    for m in METRICS.values():
        if m.variable == variable:
            return m.name
    return None


NEURON_DIMS = (S.LAYER, S.NEURON)
AREA_DIMS = (S.LAYER, S.AREA)

register_metric(Metric("ridge", S.RIDGE_R, "neuron", NEURON_DIMS, needs=("gram_z",)))
register_metric(Metric("rsa", S.RSA_R, "area", AREA_DIMS, needs=("gram", "feature_sum"), needs_responses=False))
register_metric(Metric("srp-ridge", "srp_ridge_r", "neuron", NEURON_DIMS, needs=("srp",)))
register_metric(Metric("pls", "pls_r", "neuron", NEURON_DIMS, needs=("srp",)))
