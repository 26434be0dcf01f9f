"""The metric registry: declarations, adding a metric with one entry, and scoring that stays lazy."""
from __future__ import annotations

import math

import dask
import dask.threaded
import numpy as np
import pytest
import xarray as xr

from neuroxr import schema as S
from neuroxr.mapping import METRICS, graph, metric_of_variable, open_scores, score
from neuroxr.mapping.metrics import Built, Metric, apply, register_metric
from neuroxr.mapping.runner import MODELS_IN_FLIGHT
from test_score import make_data, make_features, make_responses, sklearn_loo_r, write_study


def test_registry_declares_every_metric():
    assert list(METRICS)[:4] == ["ridge", "rsa", "srp-ridge", "pls"]  # then issue 17's (tests/test_gram_metrics.py)
    assert {m: METRICS[m].variable for m in list(METRICS)[:4]} == {
        "ridge": "ridge_r", "rsa": "rsa_r", "srp-ridge": "srp_ridge_r", "pls": "pls_r"}
    assert METRICS["rsa"].group == "areas" and METRICS["rsa"].dims == ("layer", "area")
    assert all(METRICS[m].group == "/" and METRICS[m].dims == ("layer", "neuron") for m in ("ridge", "srp-ridge", "pls"))
    assert METRICS["srp-ridge"].needs == ("srp",) and not METRICS["rsa"].needs_responses
    assert metric_of_variable("srp_ridge_r") == "srp-ridge" and metric_of_variable("nope") is None


def _build_raw_ridge(inp):
    """A new metric: ridge on the raw (not z-scored) Gram matrix, whatever ``zscore`` says."""
    K = inp.need("gram", "raw-ridge")
    r = apply(graph.ridge_r, K, inp.Y, core=[["image", "image_j"], ["image", "neuron"]], out=[["neuron"]],
              alphas=inp.alphas, backend=inp.backend, solver=inp.solver)
    return Built(neuron={"raw_ridge_r": r})


@pytest.fixture
def raw_ridge():
    metric = register_metric(Metric("raw-ridge", "raw_ridge_r", "neuron", ("layer", "neuron"), needs=("gram",),
                                    build=_build_raw_ridge))
    yield metric
    METRICS.pop("raw-ridge")


def test_adding_a_metric_is_one_entry(raw_ridge, tmp_path):
    Xs, Y = make_data(seed=4)
    tree = score.score_layers(make_features(Xs), make_responses(Y), ("ridge", "raw-ridge")).compute()
    for i, X in enumerate(Xs.values()):
        np.testing.assert_allclose(tree.raw_ridge_r[i].values, sklearn_loo_r(X, Y, 1.0, zscore=False), atol=1e-8)
    assert tree.nxr.metrics == ["ridge", "raw-ridge"]
    # through the study store, and into the accessor's table
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    sc = open_scores(score.score_study(root, metrics=("raw-ridge",)))
    xr.testing.assert_allclose(sc.raw_ridge_r.reset_coords(drop=True),
                               tree.raw_ridge_r.astype(np.float32).reset_coords(drop=True))
    assert set(sc.nxr.table().metric) == {"raw-ridge"}


class _Counting:
    """A scheduler counting the computations that score ridge (the threaded scheduler underneath)."""

    def __init__(self):
        self.scoring = 0

    def __call__(self, dsk, keys, **kwargs):
        keys_of = dsk.__dask_graph__() if hasattr(dsk, "__dask_graph__") else dsk
        names = {k[0] if isinstance(k, tuple) else k for k in keys_of}
        self.scoring += any("nxr-ridge-scores" in str(n) for n in names)
        return dask.threaded.get(dsk, keys, **kwargs)


def test_score_study_computes_models_in_flight_together(tmp_path):
    Xs, Y = make_data(seed=6)
    models = {f"m{i}": make_features(Xs, model=f"m{i}") for i in range(3)}
    root = write_study(tmp_path / "st", models, Y)
    sched = _Counting()
    with dask.config.set(scheduler=sched):
        path = score.score_study(root, metrics=("ridge",))
    assert sched.scoring == math.ceil(len(models) / MODELS_IN_FLIGHT)
    sc = open_scores(path)
    assert all(isinstance(v.data, dask.array.Array) for v in sc.to_dataset().data_vars.values())  # opened lazily
    assert sorted(set(sc.variant.values)) == ["m0:trained", "m1:trained", "m2:trained"]
    np.testing.assert_allclose(sc.ridge_r.sel(layer=S.layer_id("m2", "trained", "l1")).values,
                               sklearn_loo_r(Xs["l1"], Y, 1.0), atol=1e-6)


def test_concat_scores_keeps_both_groups():
    from neuroxr.mapping.tree import concat_scores

    Xs, Y = make_data(seed=7)
    a = score.score_layers(make_features(Xs, model="a"), make_responses(Y)).compute()
    b = score.score_layers(make_features(Xs, model="b", weights="random"), make_responses(Y)).compute()
    both = concat_scores([a, b])
    assert both.sizes["layer"] == 2 * len(Xs) and list(both["areas"].area.values) == ["VISp", "VISl"]
    xr.testing.assert_identical(both["areas"].rsa_r.sel(layer=a.layer.values), a["areas"].rsa_r)
    assert set(both.variant.values) == {"a:trained", "b:random"}
