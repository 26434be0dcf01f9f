"""The .nxr accessor on the opened scores store, against pandas group-bys."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import neuroxr  # noqa: F401  (registers .nxr)
from neuroxr.mapping import open_scores, score
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
    return open_scores(score.score_study(root))


def _frame(scores, var="ridge_r"):
    df = scores[var].to_dataframe().reset_index()
    return df


def test_one_liner_and_area_means(scores):
    tab = scores.ridge_r.groupby("area").mean().groupby("variant").max()
    df = _frame(scores)
    want = df.groupby(["layer", "variant", "area"]).ridge_r.mean().groupby(["variant", "area"]).max()
    xr.testing.assert_allclose(tab.reset_coords(drop=True), want.to_xarray().transpose(*tab.dims), rtol=1e-6)
    assert set(tab.variant.values) == {"net:trained", "net:random", "pixels:trained"}
    am = scores.ridge_r.nxr.area_means()
    want = df.groupby(["layer", "area"]).ridge_r.mean().to_xarray()
    xr.testing.assert_allclose(am.reset_coords(drop=True), want.transpose(*am.dims).sel(area=am.area, layer=am.layer)
                               .reset_coords(drop=True), rtol=1e-6)


def test_max_over_layers_tells_variants_apart(scores):
    mx = scores.ridge_r.nxr.max_over_layers()
    assert set(mx.dims) == {"variant", "area"}
    df = _frame(scores)
    want = df.groupby(["layer", "variant", "area"]).ridge_r.mean().groupby(["variant", "area"]).max()
    xr.testing.assert_allclose(mx.reset_coords(drop=True), want.to_xarray().transpose(*mx.dims).sel(
        variant=mx.variant, area=mx.area), rtol=1e-6)
    assert float(mx.sel(variant="net:random", area="VISp")) != float(mx.sel(variant="net:trained", area="VISp"))


def test_best_layer_and_relative_depth(scores):
    best = scores.ridge_r.nxr.best_layer()
    df = _frame(scores)
    means = df.groupby(["layer", "variant", "layer_name", "relative_depth", "area"]).ridge_r.mean().reset_index()
    for (v, a), g in means.groupby(["variant", "area"]):
        top = g.loc[g.ridge_r.idxmax()]
        sel = best.sel(variant=v, area=a)
        assert str(sel.best_layer.values) == top.layer_name
        assert str(sel.model.values) == v.split(":")[0] and str(sel.weights.values) == v.split(":")[1]
        assert float(sel.relative_depth) == pytest.approx(top.relative_depth)
        assert float(sel.score) == pytest.approx(top.ridge_r, rel=1e-6)


def test_rsa_labelled_and_table(scores):
    rsa = scores.nxr.rsa_r
    xr.testing.assert_identical(rsa, scores["areas"].rsa_r)
    assert list(rsa.area.values) == ["VISp", "VISl"]
    mx = scores["areas"].rsa_r.nxr.max_over_layers()
    want = scores["areas"].rsa_r.to_dataframe().reset_index()
    got = float(mx.sel(variant="net:trained", area="VISl"))
    w = want[(want.variant == "net:trained") & (want.area == "VISl")].rsa_r.max()
    assert got == pytest.approx(w, rel=1e-6)
    table = scores.nxr.table()
    assert list(table.columns[:7]) == ["model", "weights", "area", "metric", "score", "best_layer", "relative_depth"]
    assert set(table.metric) == {"ridge", "rsa"}
    assert len(table[(table.metric == "rsa")]) == 3 * 2  # (net trained, net random, pixels) x 2 areas
    assert set(zip(table.model, table.weights)) == {("net", "trained"), ("net", "random"), ("pixels", "trained")}


def test_variant_labels():
    from neuroxr.mapping.tree import label_variants

    sha = "ab" * 32
    assert list(label_variants(["a", "a", "b", "c"], ["trained", "random", sha, "mine"])) == \
        ["a:trained", "a:random", "b:" + "ab" * 6, "c:mine"]
