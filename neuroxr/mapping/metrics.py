"""The metric registry: every score a study can compute, declared once.

A :class:`Metric` names the command-line metric, the variable it writes, where that variable
lives in ``scores.zarr`` (``target="neuron"``: the root group, dims (layer, neuron);
``target="area"``: the ``areas`` group, dims (layer, area); ``target="layer"``: the ``layers``
group, dims (layer,), properties of a layer needing no responses), which features-store variables it
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
from . import graph, ridge_graph
from .feature_ridge import (
    MEMORY_BUDGET,
    calc_route_costs,
    choose_ridge_route,
    log_route,
)
from .pls import make_splits
from .resample import DEFAULT_RESAMPLE, draw_image_permutations, draw_image_resamples
from .ridge import alpha_unit

__all__ = ["Metric", "METRICS", "ScoringInputs", "Built", "register_metric", "get_metric", "check_metrics",
           "metric_of_variable", "TARGET_GROUPS", "DEFAULT_PLS"]

DEFAULT_PLS = {"kind": "kfold", "n_splits": 5, "n_components": 25, "seed": 0, "test_size": 0.5}

#: target kind -> group of scores.zarr
TARGET_GROUPS = {"neuron": "/", "area": "areas", "layer": "layers"}


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
    ranked : bool
        Whether ``variable`` is a score where higher is better, ranked by ``neuroxr rank`` (False
        for p-values and properties of a layer such as ``effective_dim``).
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
    ranked: bool = True

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
    or None; ``resample`` the permutation, bootstrap and ceiling settings
    (:data:`neuroxr.mapping.resample.DEFAULT_RESAMPLE`).
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
    resample: dict = field(default_factory=lambda: dict(DEFAULT_RESAMPLE))

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
    """A metric's lazy, labelled results: ``{name: DataArray}`` for the root, the ``areas`` and the ``layers`` group."""

    neuron: dict = field(default_factory=dict)
    area: dict = field(default_factory=dict)
    layer: dict = field(default_factory=dict)


def apply(fn, *args, core, out, **kwargs):
    """``xr.apply_ufunc`` on dask arrays as they are (``dask="allowed"``): names to axes, and back."""
    return xr.apply_ufunc(fn, *args, input_core_dims=core, output_core_dims=out, dask="allowed", kwargs=kwargs)


GRAM_DIMS = [S.IMAGE, S.IMAGE_J]
RESP_DIMS = [S.IMAGE, S.NEURON]


def _ridge_vars(name: str, K: xr.DataArray | None, inp: ScoringInputs, *, exact: bool = True,
                X: xr.DataArray | None = None) -> dict:
    """Scores (and chosen/applied penalties) of the leave-one-out ridge on ``K`` or on the features ``X``.

    ``exact`` (the ``ridge`` metric): penalties in the paper's units
    (:class:`~neuroxr.mapping.ridge.PaperAlphas`, the default) are scaled per layer to the Gram
    matrix's trace and the score is mean-free; ``ridge_alpha`` then always holds the penalty
    applied.  Otherwise (``srp-ridge``, or plain penalties) the penalty is as given and the
    score the paper's Pearson r.  ``X`` (layer, image, component): the feature-space route,
    used where :func:`~neuroxr.mapping.feature_ridge.choose_ridge_route` finds it cheaper.
    """
    paper = exact and alpha_unit(inp.alphas) == "paper"
    scaled = paper and inp.zscore  # raw features: the projection keeps squared norms, no rescaling
    want_alpha = paper or len(inp.alphas) > 1
    alpha_name = name[:-2] + "_alpha" if name.endswith("_r") else name + "_alpha"  # srp_ridge_r -> srp_ridge_alpha
    if not paper and X is None:  # the penalty as given, the paper's score: the Gram graph as it was
        if len(inp.alphas) == 1:
            return {name: apply(graph.ridge_r, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]], **_kw_of(inp))}
        r, alpha = apply(graph.ridge_r_alpha, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]] * 2,
                         **_kw_of(inp))
        return {name: r, alpha_name: alpha}
    if X is not None:
        fn = ridge_graph.ridge_scores_features
        r, alpha = apply(fn, X, inp.Y, core=[[S.IMAGE, S.COMPONENT], RESP_DIMS], out=[[S.NEURON]] * 2,
                         alphas=tuple(inp.alphas), zscore=inp.zscore, paper=scaled, mean_free=paper, want_alpha=True)
    else:
        r, alpha = apply(ridge_graph.ridge_scores_gram, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]] * 2,
                         alphas=tuple(inp.alphas), backend=inp.backend, solver=inp.solver, paper=scaled,
                         mean_free=paper, want_alpha=True)
    r.attrs.update(score="mean-free" if paper else "pearson", alpha_unit="paper" if paper else "penalty")
    return {name: r, alpha_name: alpha} if want_alpha else {name: r}


def _kw_of(inp: ScoringInputs) -> dict:
    return {"alphas": tuple(inp.alphas), "backend": inp.backend, "solver": inp.solver}


def _bounded(var: xr.DataArray, route: str, costs: dict, layer_chunk: int) -> xr.DataArray:
    """``var`` with at most as many layers per task as fit :data:`~neuroxr.mapping.feature_ridge.MEMORY_BUDGET`."""
    per_task = max(1, min(int(layer_chunk), int(MEMORY_BUDGET // max(costs[route]["bytes"], 1.0))))
    if per_task >= int(layer_chunk):
        return var
    return var.copy(data=var.data.rechunk({0: per_task}))


def build_ridge(inp: ScoringInputs) -> Built:
    name = "gram_z" if inp.zscore else "gram"
    how = "re-extract the features with `neuroxr extract`"
    if name not in inp.features and S.SRP in inp.features:
        how = ("this store keeps no n x n Gram matrix (as for many images); score the projection exactly with "
               "`--metric srp-ridge` (its feature-space route needs no n x n matrix), or re-extract with the Gram")
    K = inp.need(name, "ridge", how)
    n, N = K.sizes[S.IMAGE], inp.Y.sizes[S.NEURON]
    p = int(np.max(inp.features["n_features"].values)) if "n_features" in inp.features.coords else n
    # the store holds only the n x n Gram matrices: that is the route (the feature route needs the
    # features themselves, which extraction keeps only as the projection, `srp`)
    costs = calc_route_costs(n, p, N, len(inp.alphas), gram_given=True)
    log_route("ridge", "gram", n, p, N, len(inp.alphas), costs, "the store holds the Gram matrices, not the features")
    return Built(neuron=_ridge_vars(S.RIDGE_R, _bounded(K, "gram", costs, inp.layer_chunk), inp))


SRP_HOW = "extract it with `neuroxr extract --srp` (the sparse random projection)"


def build_srp_ridge(inp: ScoringInputs) -> Built:
    srp = inp.need(S.SRP, "srp-ridge", SRP_HOW)
    n, c, N = srp.sizes[S.IMAGE], srp.sizes[S.COMPONENT], inp.Y.sizes[S.NEURON]
    route = choose_ridge_route(n, c, N, len(inp.alphas), what="srp-ridge")
    srp = _bounded(srp, route, calc_route_costs(n, c, N, len(inp.alphas)), inp.layer_chunk)
    if route == "features":
        return Built(neuron=_ridge_vars("srp_ridge_r", None, inp, exact=False, X=srp))
    K = apply(graph.srp_grams, srp, core=[[S.IMAGE, S.COMPONENT]], out=[GRAM_DIMS], zscore=inp.zscore)
    return Built(neuron=_ridge_vars("srp_ridge_r", K, inp, exact=False))


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


# --- issue 17: one Gram, every comparison ------------------------------------------------------
LAYER_DIMS = (S.LAYER,)


def _area_coords(inp: ScoringInputs, metric: str) -> tuple[list, dict]:
    if inp.Y is None:
        raise MissingDataError(f"{metric} needs responses (neuron, image); ingest them (`neuroxr ingest`)")
    use = _areas_used(inp)
    return use, {S.AREA: np.asarray(use, dtype=str)}


def _response_grams(inp: ScoringInputs, use, area) -> xr.DataArray:
    """``Y_a Y_a^T`` (area, image, image_j) of each area's neurons (uncentred; the kernels centre)."""
    return xr.DataArray(graph.area_grams(inp.Y.data, inp.labels, use, inp.responses_source),
                        dims=[S.AREA] + GRAM_DIMS, coords=area)


def _build_cka(inp: ScoringInputs, debiased: bool, name: str, metric: str) -> Built:
    K = inp.need("gram", metric)  # raw features: see neuroxr.mapping.cka for why not gram_z
    use, area = _area_coords(inp, metric)
    L = _response_grams(inp, use, area)
    return Built(area={name: apply(graph.cka_scores, K, L, core=[GRAM_DIMS, [S.AREA] + GRAM_DIMS], out=[[S.AREA]],
                                   debiased=debiased)})


def build_cka(inp: ScoringInputs) -> Built:
    """Linear CKA (Kornblith et al. 2019) of each layer's raw Gram with each area's response Gram."""
    return _build_cka(inp, False, "cka", "cka")


def build_cka_debiased(inp: ScoringInputs) -> Built:
    """Debiased linear CKA (unbiased HSIC, Song et al. 2012)."""
    return _build_cka(inp, True, "cka_debiased", "cka-debiased")


def build_effdim(inp: ScoringInputs) -> Built:
    """Participation ratio of the centred raw Gram's eigenvalues, per layer (no responses needed)."""
    K = inp.need("gram", "effdim")
    return Built(layer={"effective_dim": apply(graph.effective_dims, K, core=[GRAM_DIMS], out=[[]])})


register_metric(Metric("cka", "cka", "area", AREA_DIMS, needs=("gram",), build=build_cka))
register_metric(Metric("cka-debiased", "cka_debiased", "area", AREA_DIMS, needs=("gram",), build=build_cka_debiased))
register_metric(Metric("effdim", "effective_dim", "layer", LAYER_DIMS, needs=("gram",), needs_responses=False,
                       build=build_effdim, ranked=False))


def build_versa(inp: ScoringInputs) -> Built:
    """Encoding RSA ("veRSA", Conwell et al.): the RDM of each area's leave-one-out ridge predictions
    (the ``ridge`` metric's ridge: ``gram_z``, the same alphas) against the area's neural RDM."""
    K = inp.need("gram_z" if inp.zscore else "gram", "versa")
    use, area = _area_coords(inp, "versa")
    neural = graph.neural_rdms(inp.Y.data, inp.labels, use, inp.responses_source)
    r = xr.DataArray(graph.versa_scores(K.data, inp.Y.data, inp.labels, use, neural, inp.alphas, inp.rsa_method,
                                        backend=inp.backend, solver=inp.solver),
                     dims=[S.LAYER, S.AREA], coords={S.LAYER: K[S.LAYER].values, **area})
    return Built(area={"versa_r": r})


register_metric(Metric("versa", "versa_r", "area", AREA_DIMS, needs=("gram_z",), build=build_versa))


# --- ceilings and normalised scores ---------------------------------------------------------------
def _need_trials(inp: ScoringInputs, metric: str):
    if inp.trials is None:
        raise MissingDataError(f"{inp.responses_source}: no variable 'trials' (neuron, image, trial), needed by "
                               f"{metric} (split-half noise ceilings); ingest the responses with their trials")
    return inp.trials


def _ceiling_boots(inp: ScoringInputs, n_images: int):
    o = inp.resample
    return draw_image_resamples(n_images, o["ceiling_boot"], o["seed"])


def build_ridge_norm(inp: ScoringInputs) -> Built:
    """``ridge_r`` as a fraction of each neuron's ceiling ``sqrt(rho)`` (rho: Spearman-Brown split-half
    reliability), with the ceiling and its bootstrap interval (neuron,)."""
    trials = _need_trials(inp, "ridge-norm")
    K = inp.need("gram_z" if inp.zscore else "gram", "ridge-norm")
    r = _ridge_vars(S.RIDGE_R, K, inp)[S.RIDGE_R]
    o = inp.resample
    c = graph.neuron_ceilings(trials, inp.Y.data.chunks[1], o["n_splits"], o["seed"],
                              _ceiling_boots(inp, inp.Y.sizes[S.IMAGE]))
    coords = {S.NEURON: inp.Y[S.NEURON].values}
    ceil = {f"ridge_r_ceiling{sfx}": xr.DataArray(c[i], dims=[S.NEURON], coords=coords)
            for i, sfx in enumerate(("", "_low", "_high"))}
    return Built(neuron={"ridge_r_norm": r / ceil["ridge_r_ceiling"], **ceil})


def build_rsa_norm(inp: ScoringInputs) -> Built:
    """``rsa_r`` as a fraction of each area's RDM ceiling (square root of the split-half RDM reliability)."""
    trials = _need_trials(inp, "rsa-norm")
    use, area = _area_coords(inp, "rsa-norm")
    r = build_rsa(inp).area[S.RSA_R]  # the rsa metric's graph (the same keys)
    o = inp.resample
    c = graph.area_ceilings(trials, inp.labels, use, inp.rsa_method, o["n_splits"], o["seed"],
                            _ceiling_boots(inp, inp.Y.sizes[S.IMAGE]))
    ceil = {f"rsa_r_ceiling{sfx}": xr.DataArray(c[i], dims=[S.AREA], coords=area)
            for i, sfx in enumerate(("", "_low", "_high"))}
    return Built(area={"rsa_r_norm": r / ceil["rsa_r_ceiling"], **ceil})


register_metric(Metric("ridge-norm", "ridge_r_norm", "neuron", NEURON_DIMS, needs=("gram_z",), build=build_ridge_norm))
register_metric(Metric("rsa-norm", "rsa_r_norm", "area", AREA_DIMS, needs=("gram", "feature_sum"),
                       build=build_rsa_norm))


# --- permutation tests and bootstrap intervals on the n x n matrices ---------------------------------
def _resampled(inp: ScoringInputs, kind: str, name: str, model: xr.DataArray, targets: xr.DataArray) -> Built:
    o = inp.resample
    n = model.sizes[S.IMAGE]
    perms = draw_image_permutations(n, o["n_perm"], o["seed"])
    boots = draw_image_resamples(n, o["n_boot"], o["seed"])
    out = graph.permutation_scores(kind, model.data, targets.data, perms, boots, inp.rsa_method)
    coords = {S.LAYER: model[S.LAYER].values, S.AREA: targets[S.AREA].values}
    names = (f"{name}_p", f"{name}_p_fwer", f"{name}_ci_low", f"{name}_ci_high")
    return Built(area={k: xr.DataArray(v, dims=[S.LAYER, S.AREA], coords=coords) for k, v in zip(names, out)})


def build_rsa_perm(inp: ScoringInputs) -> Built:
    """Permutation p-values (uncorrected and max-statistic over the model's layers) and bootstrap
    intervals of ``rsa_r``, from the model and neural RDMs alone."""
    K, fs = inp.need("gram", "rsa-perm"), inp.need("feature_sum", "rsa-perm")
    if "n_features" not in inp.features.coords:
        raise MissingDataError(f"{inp.source}: no layer coordinate 'n_features' needed by rsa-perm")
    use, area = _area_coords(inp, "rsa-perm")
    model = apply(graph.model_rdms, K, fs, core=[GRAM_DIMS, [S.IMAGE]], out=[GRAM_DIMS],
                  n_features=inp.features["n_features"].values)
    neural = xr.DataArray(graph.neural_rdms(inp.Y.data, inp.labels, use, inp.responses_source),
                          dims=[S.AREA] + GRAM_DIMS, coords=area)
    return _resampled(inp, "rsa", "rsa", model.transpose(S.LAYER, *GRAM_DIMS), neural)


def build_cka_perm(inp: ScoringInputs) -> Built:
    """Permutation p-values and bootstrap intervals of ``cka``, from the raw and response Grams alone."""
    K = inp.need("gram", "cka-perm")
    use, area = _area_coords(inp, "cka-perm")
    return _resampled(inp, "cka", "cka", K, _response_grams(inp, use, area))


register_metric(Metric("rsa-perm", "rsa_p", "area", AREA_DIMS, needs=("gram", "feature_sum"), build=build_rsa_perm,
                       ranked=False))
register_metric(Metric("cka-perm", "cka_p", "area", AREA_DIMS, needs=("gram",), build=build_cka_perm, ranked=False))

#: metrics whose results depend on :attr:`ScoringInputs.resample` (recorded in the scores' settings)
RESAMPLING_METRICS = ("ridge-norm", "rsa-norm", "rsa-perm", "cka-perm")


def build_ridge_perm(inp: ScoringInputs) -> Built:
    """Permutation p-values (uncorrected and max-statistic over the model's layers) of each neuron's ``ridge_r``."""
    K = inp.need("gram_z" if inp.zscore else "gram", "ridge-perm")
    perms = draw_image_permutations(K.sizes[S.IMAGE], inp.resample["n_perm"], inp.resample["seed"])
    p, p_fwer = apply(graph.ridge_permutation, K, inp.Y, core=[GRAM_DIMS, RESP_DIMS], out=[[S.NEURON]] * 2,
                      perms=perms, alphas=inp.alphas, backend=inp.backend, solver=inp.solver)
    return Built(neuron={"ridge_p": p, "ridge_p_fwer": p_fwer})


register_metric(Metric("ridge-perm", "ridge_p", "neuron", NEURON_DIMS, needs=("gram_z",), build=build_ridge_perm,
                       ranked=False))
RESAMPLING_METRICS = (*RESAMPLING_METRICS, "ridge-perm")
