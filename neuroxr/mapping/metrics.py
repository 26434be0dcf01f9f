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

import dask.array as da
import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from . import graph
from .pls import make_splits

__all__ = ["Metric", "METRICS", "ScoringInputs", "Built", "register_metric", "get_metric", "check_metrics",
           "metric_of_variable", "TARGET_GROUPS", "DEFAULT_PLS"]

DEFAULT_PLS = {"kind": "kfold", "n_splits": 5, "n_components": 25, "seed": 0, "test_size": 0.5}

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


@dataclass
class ScoringInputs:
    """What a metric's ``build`` gets: one model's features and the (aligned) responses.

    ``features`` is the features Dataset (layer chunks of ``layer_chunk``); ``Y`` the dask
    responses (image, neuron) chunked over neurons, ``labels`` the neurons' areas, ``trials``
    (neuron, image, trial) or None; ``rdms`` ingested neural RDMs (site, image, image_j) or None.
    """

    features: xr.Dataset
    Y: da.Array | None = None
    labels: np.ndarray | None = None
    trials: object = None
    rdms: xr.DataArray | None = None
    alphas: tuple = (1.0,)
    zscore: bool = True
    backend: str = "numpy"
    solver: str = "eigen"
    layer_chunk: int = 8
    areas: list | None = None
    rsa_method: str = "pearson"
    pls_options: dict = field(default_factory=lambda: dict(DEFAULT_PLS))
    source: str = "features"
    responses_source: str = "responses"

    def need(self, name: str, metric: str, how: str = "re-extract the features with `neuroxr extract`"):
        """The features variable ``name`` as a dask array chunked over layers (layer first)."""
        if name not in self.features:
            raise MissingDataError(f"{self.source}: no variable {name!r} (found {list(self.features.data_vars)}) "
                                   f"needed by {metric}; {how}")
        var = self.features[name]
        order = [S.LAYER] + [d for d in (S.IMAGE, S.IMAGE_J, S.COMPONENT) if d in var.dims]
        return graph.layer_chunked(var.transpose(*order).data, self.layer_chunk)


@dataclass
class Built:
    """A metric's lazy results: ``{name: (dims, dask)}`` per group and the area-group coords."""

    neuron: dict = field(default_factory=dict)
    area: dict = field(default_factory=dict)
    area_coords: dict = field(default_factory=dict)


def _ridge_vars(name: str, K, inp: ScoringInputs) -> dict:
    r, idx = graph.ridge_scores(K, inp.Y, inp.alphas, inp.backend, inp.solver)
    out = {name: (NEURON_DIMS, r)}
    if idx is not None:
        out[name.replace("_r", "_alpha")] = (NEURON_DIMS, graph.alphas_of(idx, inp.alphas))
    return out


def build_ridge(inp: ScoringInputs) -> Built:
    K = inp.need("gram_z" if inp.zscore else "gram", "ridge")
    return Built(neuron=_ridge_vars(S.RIDGE_R, K, inp))


SRP_HOW = "extract it with `neuroxr extract --srp` (the sparse random projection)"


def build_srp_ridge(inp: ScoringInputs) -> Built:
    K = graph.srp_grams(inp.need(S.SRP, "srp-ridge", SRP_HOW), inp.zscore)
    return Built(neuron=_ridge_vars("srp_ridge_r", K, inp))


def build_pls(inp: ScoringInputs) -> Built:
    srp = inp.need(S.SRP, "pls", SRP_HOW)
    o = {**DEFAULT_PLS, **inp.pls_options}
    splits = make_splits(srp.shape[1], kind=o["kind"], n_splits=o["n_splits"], test_size=o["test_size"], seed=o["seed"])
    return Built(neuron={"pls_r": (NEURON_DIMS, graph.pls_scores(srp, inp.Y, splits, o["n_components"]))})


def _site_rdms(inp: ScoringInputs):
    r = inp.rdms.transpose(S.SITE, S.IMAGE, S.IMAGE_J)
    images = inp.features[S.IMAGE].values
    r = r.sel({S.IMAGE: images, **({S.IMAGE_J: images} if S.IMAGE_J in r.coords else {})})
    rd = r.data if isinstance(r.data, da.Array) else da.from_array(np.asarray(r.values))
    return np.asarray(r[S.SITE].values), rd.rechunk(-1)


def build_rsa(inp: ScoringInputs) -> Built:
    K, fs = inp.need("gram", "rsa"), inp.need("feature_sum", "rsa")
    if "n_features" not in inp.features.coords:
        raise MissingDataError(f"{inp.source}: no layer coordinate 'n_features' needed by rsa")
    model = graph.model_rdms(K, fs, inp.features["n_features"].values)
    out = Built()
    if inp.Y is not None:
        if inp.labels is None:
            raise S.SchemaError(f"{inp.responses_source}: neuron coordinate 'area' is missing; rsa needs it")
        present = set(inp.labels)
        use = list(inp.areas) if inp.areas is not None else \
            [a for a in S.AREAS if a in present] + sorted(present - set(S.AREAS))
        neural = graph.neural_rdms(inp.Y, inp.labels, use, inp.responses_source)
        out.area[S.RSA_R] = (AREA_DIMS, graph.rsa_scores(model, neural, inp.rsa_method))
        out.area_coords[S.AREA] = np.asarray(use, dtype=str)
        if inp.trials is not None:
            out.area["rsa_ceiling"] = ((S.AREA,), graph.rdm_ceilings(inp.trials, inp.labels, use, inp.rsa_method))
    if inp.rdms is not None:
        sites, rd = _site_rdms(inp)
        if inp.Y is None:  # ingested RDMs alone: each site takes the place of an area
            out.area[S.RSA_R] = (AREA_DIMS, graph.rsa_scores(model, rd, inp.rsa_method))
            out.area_coords[S.AREA] = np.asarray([str(s) for s in sites], dtype=str)
        else:
            out.area["rsa_site_r"] = ((S.LAYER, S.SITE), graph.rsa_scores(model, rd, inp.rsa_method))
            out.area_coords[S.SITE] = sites
    return out


NEURON_DIMS = (S.LAYER, S.NEURON)
AREA_DIMS = (S.LAYER, S.AREA)
register_metric(Metric("ridge", S.RIDGE_R, "neuron", NEURON_DIMS, needs=("gram_z",), build=build_ridge))
register_metric(Metric("rsa", S.RSA_R, "area", AREA_DIMS, needs=("gram", "feature_sum"), needs_responses=False,
                       build=build_rsa))
register_metric(Metric("srp-ridge", "srp_ridge_r", "neuron", NEURON_DIMS, needs=("srp",), build=build_srp_ridge))
register_metric(Metric("pls", "pls_r", "neuron", NEURON_DIMS, needs=("srp",), build=build_pls))
