"""The .nxr accessor on the opened scores store, against pandas group-bys."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import neuroxr  # noqa: F401  (registers .nxr)
from neuroxr.io import store
from neuroxr.mapping import score
from test_score import make_data, make_features, write_study


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    Xs, Y = make_data(seed=11, N=16, ps=(6, 20, 50, 9))
    rng = np.random.default_rng(2)
    Xr = {k: rng.standard_normal(X.shape) for k, X in Xs.items()}
    Xb = {"pix": rng.standard_normal((Y.shape[0], 30))}
    root = write_study(tmp_path_factory.mktemp("acc") / "st",
                       {"net": make_features(Xs, model="net"), "net_random": make_features(Xr, model="net", weights="random"),
                        "pixels": make_features(Xb, model="pixels", family="baseline")}, Y)
    return store.open_dataset(score.score_study(root))


def _frame(scores, var="ridge_r"):
    df = scores[var].to_dataframe().reset_index()
    return df


def test_one_liner_and_area_means(scores):
    tab = scores.ridge_r.groupby("area").mean().groupby("model").max()
    df = _frame(scores)
    want = df.groupby(["layer", "model", "area"]).ridge_r.mean().groupby(["model", "area"]).max()
    for (m, a), v in want.items():
        assert float(tab.sel(model=m, area=a)) == pytest.approx(v, rel=1e-6)
    am = scores.ridge_r.nxr.area_means()
    lay = scores.layer.values[2]
    assert float(am.sel(layer=lay, area="VISl")) == pytest.approx(
        df[(df.layer == lay) & (df.area == "VISl")].ridge_r.mean(), rel=1e-6)


def test_max_over_layers_tells_weights_apart(scores):
    mx = scores.ridge_r.nxr.max_over_layers()
    assert set(mx.dims) == {"model", "weights", "area"}
    df = _frame(scores)
    want = df.groupby(["layer", "model", "weights", "area"]).ridge_r.mean().groupby(["model", "weights", "area"]).max()
    for (m, w, a), v in want.items():
        assert float(mx.sel(model=m, weights=w, area=a)) == pytest.approx(v, rel=1e-6)
    assert np.isnan(float(mx.sel(model="pixels", weights="random", area="VISp")))


def test_best_layer_and_relative_depth(scores):
    best = scores.ridge_r.nxr.best_layer()
    df = _frame(scores)
    means = df.groupby(["layer", "model", "weights", "layer_name", "relative_depth", "area"]).ridge_r.mean().reset_index()
    for (m, w, a), g in means.groupby(["model", "weights", "area"]):
        top = g.loc[g.ridge_r.idxmax()]
        sel = best.sel(model=m, weights=w, area=a)
        assert str(sel.best_layer.values) == top.layer_name
        assert float(sel.relative_depth) == pytest.approx(top.relative_depth)
        assert float(sel.score) == pytest.approx(top.ridge_r, rel=1e-6)


def test_rsa_labelled_and_table(scores):
    rsa = scores.nxr.rsa_r
    assert list(rsa.area.values) == list(scores.area_name.values)
    assert float(rsa.sel(area="VISp").isel(layer=0)) == float(scores.rsa_r.isel(layer=0, area=0))
    mx = scores.rsa_r.nxr.max_over_layers()
    want = scores.rsa_r.to_dataframe().reset_index()
    want["area_label"] = np.asarray(scores.area_name.values)[want.area.values]
    got = float(mx.sel(model="net", weights="trained", area="VISl"))
    w = want[(want.model == "net") & (want.weights == "trained") & (want.area_label == "VISl")].rsa_r.max()
    assert got == pytest.approx(w, rel=1e-6)
    table = scores.nxr.table()
    assert list(table.columns[:7]) == ["model", "weights", "area", "metric", "score", "best_layer", "relative_depth"]
    assert set(table.metric) == {"ridge", "rsa"}
    assert len(table[(table.metric == "rsa")]) == 3 * 2  # (net trained, net random, pixels) x 2 areas
