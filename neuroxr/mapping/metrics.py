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
    """What a metric's ``build`` gets: one model's features and the (aligned) responses, labelled.

    ``features`` is the features Dataset; ``Y`` the responses DataArray (image, neuron),
    dask-chunked over neurons, with the neuron coords; ``labels`` the neurons' areas (neuron,);
    ``trials`` (neuron, image, trial) or None; ``rdms`` ingested neural RDMs (site, image, image_j)
    or None.
    """

    features: xr.Dataset
    Y: xr.DataArray | None = None
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
        """The features variable ``name`` (layer first), dask-chunked over layers."""
        if name not in self.features:
            raise MissingDataError(f"{self.source}: no variable {name!r} (found {list(self.features.data_vars)}) "
                                   f"needed by {metric}; {how}")
        var = self.features[name]
        var = var.transpose(S.LAYER, *[d for d in (S.IMAGE, S.IMAGE_J, S.COMPONENT) if d in var.dims])
        return var.copy(data=graph.layer_chunked(var.data, self.layer_chunk))


@dataclass
class Built:
    """A metric's lazy, labelled results: ``{name: DataArray}`` for the root and the ``areas`` group."""

    neuron: dict = field(default_factory=dict)
    area: dict = field(default_factory=dict)


def apply(fn, *args, core, out, **kwargs):
    """``xr.apply_ufunc`` on dask arrays as they are (``dask="allowed"``): names to axes, and back."""
    return xr.apply_ufunc(fn, *args, input_core_dims=core, output_core_dims=out, dask="allowed", kwargs=kwargs)


GRAM_DIMS = [S.IMAGE, S.IMAGE_J]
RESP_DIMS = [S.IMAGE, S.NEURON]


def _ridge_vars(name: str, K: xr.DataArray, inp: ScoringInputs) -> dict:
    kw = dict(alphas=inp.alphas, backend=inp.backend, solver=inp.solver)
    if len(inp.alphas) == 1:
        return {name: apply(graph.ridge_r, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]], **kw)}
    r, alpha = apply(graph.ridge_r_alpha, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]] * 2, **kw)
    return {name: r, name.replace("_r", "_alpha"): alpha}


def build_ridge(inp: ScoringInputs) -> Built:
    K = inp.need("gram_z" if inp.zscore else "gram", "ridge")
    return Built(neuron=_ridge_vars(S.RIDGE_R, K, inp))


SRP_HOW = "extract it with `neuroxr extract --srp` (the sparse random projection)"


def build_srp_ridge(inp: ScoringInputs) -> Built:
    srp = inp.need(S.SRP, "srp-ridge", SRP_HOW)
    K = apply(graph.srp_grams, srp, core=[[S.IMAGE, S.COMPONENT]], out=[GRAM_DIMS], zscore=inp.zscore)
    return Built(neuron=_ridge_vars("srp_ridge_r", K, inp))


def build_pls(inp: ScoringInputs) -> Built:
    srp = inp.need(S.SRP, "pls", SRP_HOW)
    o = {**DEFAULT_PLS, **inp.pls_options}
    splits = make_splits(srp.sizes[S.IMAGE], kind=o["kind"], n_splits=o["n_splits"], test_size=o["test_size"],
                         seed=o["seed"])
    r = apply(graph.pls_scores, srp, inp.Y, core=[[S.IMAGE, S.COMPONENT], RESP_DIMS], out=[[S.NEURON]],
              splits=splits, n_components=o["n_components"])
    return Built(neuron={"pls_r": r})


def _areas_used(inp: ScoringInputs) -> list:
    if inp.labels is None:
        raise S.SchemaError(f"{inp.responses_source}: neuron coordinate 'area' is missing; rsa needs it")
    present = set(inp.labels)
    if inp.areas is not None:
        return list(inp.areas)
    return [a for a in S.AREAS if a in present] + sorted(present - set(S.AREAS))


def _compare(model, neural, dim, method):
    return apply(graph.rsa_scores, model, neural, core=[GRAM_DIMS, [dim] + GRAM_DIMS], out=[[dim]], method=method)


def build_rsa(inp: ScoringInputs) -> Built:
    K, fs = inp.need("gram", "rsa"), inp.need("feature_sum", "rsa")
    if "n_features" not in inp.features.coords:
        raise MissingDataError(f"{inp.source}: no layer coordinate 'n_features' needed by rsa")
    model = apply(graph.model_rdms, K, fs, core=[GRAM_DIMS, [S.IMAGE]], out=[GRAM_DIMS],
                  n_features=inp.features["n_features"].values)
    out = Built()
    if inp.Y is not None:
        use = _areas_used(inp)
        area = {S.AREA: np.asarray(use, dtype=str)}
        neural = xr.DataArray(graph.neural_rdms(inp.Y.data, inp.labels, use, inp.responses_source),
                              dims=[S.AREA] + GRAM_DIMS, coords=area)
        out.area[S.RSA_R] = _compare(model, neural, S.AREA, inp.rsa_method)
        if inp.trials is not None:
            out.area["rsa_ceiling"] = xr.DataArray(graph.rdm_ceilings(inp.trials, inp.labels, use, inp.rsa_method),
                                                   dims=[S.AREA], coords=area)
    if inp.rdms is not None:
        sites = inp.rdms.copy(data=da.asarray(inp.rdms.data).rechunk(-1)).drop_vars(GRAM_DIMS, errors="ignore")
        if inp.Y is None:  # ingested RDMs alone: each site takes the place of an area
            sites = sites.rename({S.SITE: S.AREA}).assign_coords({S.AREA: sites[S.SITE].values.astype(str)})
            out.area[S.RSA_R] = _compare(model, sites, S.AREA, inp.rsa_method)
        else:
            out.area["rsa_site_r"] = _compare(model, sites, S.SITE, inp.rsa_method)
    return out


NEURON_DIMS = (S.LAYER, S.NEURON)
AREA_DIMS = (S.LAYER, S.AREA)
register_metric(Metric("ridge", S.RIDGE_R, "neuron", NEURON_DIMS, needs=("gram_z",), build=build_ridge))
register_metric(Metric("rsa", S.RSA_R, "area", AREA_DIMS, needs=("gram", "feature_sum"), needs_responses=False,
                       build=build_rsa))
register_metric(Metric("srp-ridge", "srp_ridge_r", "neuron", NEURON_DIMS, needs=("srp",), build=build_srp_ridge))
register_metric(Metric("pls", "pls_r", "neuron", NEURON_DIMS, needs=("srp",), build=build_pls))


def _build_pls_splits(inp: ScoringInputs) -> Built:
    # the domain study's metric (numpy/sklearn only), imported when it is built
    from ..domains.scoring import build_pls_splits

    return build_pls_splits(inp)


register_metric(Metric("pls-splits", "pls_split_r", "neuron", (S.LAYER, S.NEURON, "split"), needs=("gram_z",),
                       build=_build_pls_splits))
