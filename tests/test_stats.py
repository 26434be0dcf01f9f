"""Rankings and statistics, each checked against an independent computation (numpy, scipy, statsmodels)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as st

from neuroxr import schema as S
from neuroxr import stats

AREAS = ("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")
CRE = ("Cux2-CreERT2", "Rorb-IRES2-Cre", "Rbp4-Cre_KL100")


def make_scores(seed=0, n_neurons=120, models=None, rsa=True, srp=False, peak=None) -> xr.DataTree:
    """A scores.zarr-like DataTree with planted structure (``ridge_r`` at the root, ``rsa_r`` in ``areas``).

    Each model's layer score follows a bump over relative depth peaking at ``peak[area]``
    (rising along the hierarchy) and scaled by the model's quality; random weights score lower.
    """
    rng = np.random.default_rng(seed)
    models = models or [
        ("alexnet", "cnn", 8, 0.50), ("resnet18", "cnn", 10, 0.55), ("vgg11", "cnn", 11, 0.45),
        ("vit_tiny", "transformer", 12, 0.30), ("deit_tiny", "transformer", 12, 0.32),
        ("mixer_s", "mlp-mixer", 8, 0.35), ("taskonomy_edge_texture", "taskonomy", 6, 0.40),
        ("taskonomy_class_object", "taskonomy", 6, 0.30), ("taskonomy_depth_zbuffer", "taskonomy", 6, 0.25),
        ("taskonomy_segment_semantic", "taskonomy", 6, 0.28), ("pixels", "baseline", 1, 0.10),
    ]
    peak = peak or {a: 0.2 + 0.12 * i for i, a in enumerate(AREAS)}
    area = np.array([AREAS[i % len(AREAS)] for i in range(n_neurons)])
    cre = np.array([CRE[i % len(CRE)] for i in range(n_neurons)])
    layer_rows, ridge, rsa_rows = [], [], []
    for model, family, n_layers, quality in models:
        for weights in (["trained"] if family in ("baseline", "taskonomy") else ["trained", "random"]):
            q = quality * (1.0 if weights == "trained" else 0.5)
            for d in range(n_layers):
                rel = d / max(1, n_layers - 1)
                layer_rows.append(dict(layer=S.layer_id(model, weights, f"l{d}"), model=model, weights=weights,
                                       family=family, layer_name=f"l{d}", depth=d, relative_depth=rel))
                bump = np.array([np.exp(-((rel - peak[a]) ** 2) / 0.05) for a in area])
                ridge.append(q * (0.3 + 0.7 * bump) + rng.normal(0, 0.05, n_neurons))
                rsa_rows.append([q * (0.2 + 0.8 * np.exp(-((rel - peak[a]) ** 2) / 0.05)) + rng.normal(0, 0.02)
                                 for a in AREAS])
    meta = pd.DataFrame(layer_rows)
    # fixed-width numpy strings, as the stores hold them
    coords = {"layer": np.asarray(meta.layer, dtype=str),
              **{c: ("layer", np.asarray(meta[c], dtype=str if pd.api.types.is_string_dtype(meta[c]) else None))
                 for c in meta if c != "layer"},
              "neuron": np.arange(n_neurons), "area": ("neuron", area), "cre_line": ("neuron", cre),
              "depth_um": ("neuron", rng.uniform(150, 400, n_neurons)),
              "splithalf_r": ("neuron", rng.uniform(0, 1, n_neurons))}
    coords["variant"] = ("layer", np.array([f"{m}:{w}" for m, w in zip(meta.model, meta.weights)]))
    ds = xr.Dataset({"ridge_r": (("layer", "neuron"), np.array(ridge))}, coords=coords)
    if srp:
        ds["srp_ridge_r"] = ds["ridge_r"] + 0.01
    groups = {"/": ds}
    if rsa:  # the scores.zarr layout: area-level scores in `areas`, `area` an index of names
        layer = {c: ds[c].variable for c in ds.coords if ds[c].dims == ("layer",)}
        groups["areas"] = xr.Dataset({"rsa_r": (("layer", "area"), np.array(rsa_rows))},
                                     coords={**layer, "area": np.array(AREAS)})
    return xr.DataTree.from_dict(groups)


def select_neurons(tree: xr.DataTree, idx) -> xr.DataTree:
    """``tree`` with the root group's neurons ``idx`` (the ``areas`` group as it is)."""
    groups = {"/": tree.to_dataset(inherit=False).isel(neuron=idx)}
    if "areas" in tree.children:
        groups["areas"] = tree["areas"].to_dataset(inherit=False)
    return xr.DataTree.from_dict(groups)


@pytest.fixture(scope="module")
def scores():
    return make_scores()


@pytest.fixture(scope="module")
def rankings(scores):
    return stats.rank_models(scores, n_boot=200, seed=1)


def test_rankings_contract_and_max_over_layers(scores, rankings):
    assert list(rankings.columns[:7]) == list(S.RANKINGS_COLUMNS)
    assert set(rankings.metric) == {"ridge", "rsa", "overall"}
    # independent: per (model, weights, area) area-mean over neurons with pandas, then max over layers
    df = scores.ridge_r.to_dataframe().reset_index()
    m = df.groupby(["model", "weights", "layer_name", "area"]).ridge_r.mean().reset_index()
    best = m.loc[m.groupby(["model", "weights", "area"]).ridge_r.idxmax()].set_index(["model", "weights", "area"])
    got = rankings[(rankings.metric == "ridge") & (rankings.area != "all")].set_index(["model", "weights", "area"])
    assert len(got) == len(best)
    np.testing.assert_allclose(got.score, best.loc[got.index, "ridge_r"], rtol=1e-12)
    assert (got.best_layer == best.loc[got.index, "layer_name"]).all()
    # `all`: max over layers of the mean over areas
    allm = m.groupby(["model", "weights", "layer_name"]).ridge_r.mean().groupby(["model", "weights"]).max()
    g_all = rankings[(rankings.metric == "ridge") & (rankings.area == "all")].set_index(["model", "weights"])
    np.testing.assert_allclose(g_all.score, allm.loc[g_all.index], rtol=1e-12)
    # overall = mean of the ridge and rsa `all` scores
    r_all = scores["areas"].rsa_r.to_dataframe().reset_index().groupby(["model", "weights", "layer_name"]).rsa_r.mean()
    r_all = r_all.groupby(["model", "weights"]).max()
    ov = rankings[rankings.metric == "overall"].set_index(["model", "weights"])
    np.testing.assert_allclose(ov.score, (allm.loc[ov.index] + r_all.loc[ov.index]) / 2, rtol=1e-12)
    # ranks: 1 is the best score within each (metric, area)
    top = rankings[rankings["rank"] == 1].groupby(["metric", "area"]).score.max()
    assert (top == rankings.groupby(["metric", "area"]).score.max().loc[top.index]).all()


def test_bootstrap_intervals_bracket_and_match_manual(scores, rankings):
    r = rankings.dropna(subset=["ci_low"])
    assert len(r) > 0
    assert (r.ci_low <= r.ci_high).all()
    # the `all` interval is the percentile interval over area resamples: recompute by hand for one model
    row = rankings[(rankings.metric == "rsa") & (rankings.area == "all") & (rankings.model == "alexnet")
                   & (rankings.weights == "trained")].iloc[0]
    areas = scores["areas"]
    sub = areas.rsa_r.where((areas.model == "alexnet") & (areas.weights == "trained"), drop=True)
    assert list(sub.area.values) == list(AREAS)
    sub = sub.sortby("depth").values  # (layer, area)
    idx = np.random.default_rng(1).integers(0, 6, size=(200, 6))
    samples = np.array([sub[:, i].mean(1).max() for i in idx])
    np.testing.assert_allclose([row.ci_low, row.ci_high], np.percentile(samples, [2.5, 97.5]), rtol=1e-12)


def test_rank_by_cre_line_and_srp(rng):
    ds = make_scores(srp=True)
    r = stats.rank_models(ds, by="cre_line", n_boot=0)
    assert set(r.cre_line) == set(CRE) | {"all"}
    assert set(r.metric) == {"ridge", "srp-ridge"}  # rsa is per area only; no overall by cre line
    r2 = stats.rank_models(ds, metrics=["srp-ridge", "rsa"], n_boot=0)
    assert set(r2.metric) == {"srp-ridge", "rsa", "overall"}
    with pytest.raises(Exception, match="pls_r"):
        stats.rank_models(ds, metrics=["pls"])


def test_trained_vs_random_matches_scipy(rankings):
    t = stats.compare_trained_random(rankings, metrics=["ridge", "rsa"], areas=["all", "VISp"])
    assert len(t) == 4
    for _, row in t.iterrows():
        r = rankings[(rankings.metric == row.metric) & (rankings.area == row.area)]
        a = r[r.weights == "trained"].set_index("model").score
        b = r[r.weights == "random"].set_index("model").score
        common = sorted(set(a.index) & set(b.index))
        d = a.loc[common].values - b.loc[common].values
        ref = st.ttest_rel(a.loc[common], b.loc[common])
        assert row.n == len(common) == 6
        np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-10)
        np.testing.assert_allclose(row.effect_size, d.mean() / np.std(d, ddof=1), rtol=1e-10)
        half = st.t.ppf(0.975, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d))
        np.testing.assert_allclose([row.ci_low, row.ci_high], [d.mean() - half, d.mean() + half], rtol=1e-10)
        np.testing.assert_allclose(row.p_bonferroni, min(1, row.p * 4), rtol=1e-10)
    assert (t.effect_size > 0).all()  # trained beats random in the synthetic data


def test_transformers_vs_rest_matches_scipy_and_hedges(rankings):
    t = stats.compare_family(rankings, "transformer", metrics=["overall"], areas=["all"])
    assert len(t) == 1
    row = t.iloc[0]
    r = rankings[(rankings.metric == "overall") & (rankings.area == "all") & (rankings.weights == "trained")
                 & (rankings.family != "baseline")]
    a, b = r[r.family == "transformer"].score.values, r[r.family != "transformer"].score.values
    ref = st.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-10)
    # Hedges' g by its textbook definition
    n1, n2 = len(a), len(b)
    sp = np.sqrt(((n1 - 1) * np.var(a, ddof=1) + (n2 - 1) * np.var(b, ddof=1)) / (n1 + n2 - 2))
    g = (a.mean() - b.mean()) / sp * (1 - 3 / (4 * (n1 + n2) - 9))
    np.testing.assert_allclose(row.effect_size, g, rtol=1e-10)
    assert row.effect_size < 0  # transformers were planted worse
    s = stats.compare_family(rankings, "transformer", metrics=["overall"], areas=["all"], equal_var=True)
    np.testing.assert_allclose(s.iloc[0].p, st.ttest_ind(a, b).pvalue, rtol=1e-10)


def test_model_properties_spearman_and_bonferroni(rankings):
    cat = pd.DataFrame({"model": ["alexnet", "resnet18", "vgg11", "vit_tiny", "deit_tiny", "mixer_s"],
                        "params": [61e6, 11.7e6, 132e6, 5.7e6, 5.7e6, 18e6],
                        "top1": [56.5, 69.8, 69.0, 75.5, 72.2, np.nan]})
    t = stats.correlate_model_properties(rankings, cat, metrics=["ridge", "rsa"])
    assert set(t.group) == {"n_layers", "params", "top1"}
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(t.p_bonferroni, multipletests(t.p, method="bonferroni")[1])
    row = t[(t.group == "params") & (t.metric == "ridge")].iloc[0]
    r = rankings[(rankings.metric == "ridge") & (rankings.area == "all") & (rankings.weights == "trained")
                 & rankings.model.isin(cat.model)].set_index("model")
    ref = st.spearmanr(r.score, cat.set_index("model").params.loc[r.index])
    np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-10)
    top = t[(t.group == "top1") & (t.metric == "ridge")].iloc[0]
    assert top.n == 5  # the NaN top-1 is left out
    assert top.ci_low <= top.statistic <= top.ci_high


def test_metric_agreement(scores, rankings):
    t = stats.compare_metrics(scores, rankings, n_boot=300)
    models = t[(t.analysis == "metric_agreement_models") & (t.group == "all models")].iloc[0]
    r = rankings[(rankings.area == "all") & (rankings.family != "baseline")]
    a = r[r.metric == "ridge"].set_index(["model", "weights"]).score
    b = r[r.metric == "rsa"].set_index(["model", "weights"]).score
    ref = st.spearmanr(a, b.loc[a.index])
    np.testing.assert_allclose([models.statistic, models.p], [ref.statistic, ref.pvalue], rtol=1e-10)
    # per model and area over layers, averaged: recompute with pandas + scipy
    df = scores.ridge_r.to_dataframe().reset_index()
    ridge = df.groupby(["model", "weights", "area", "depth"]).ridge_r.mean()
    rsa = scores["areas"].rsa_r.to_dataframe().reset_index()
    rsa = rsa.set_index(["model", "weights", "area", "depth"]).rsa_r
    j = pd.concat([ridge, rsa.loc[ridge.index]], axis=1)
    rhos = [st.spearmanr(g.ridge_r, g.rsa_r).statistic for _, g in j.groupby(level=[0, 1, 2]) if len(g) >= 3]
    layers = t[(t.analysis == "metric_agreement_layers") & (t.area == "all")].iloc[0]
    np.testing.assert_allclose(layers.estimate, np.mean(rhos), rtol=1e-10)
    assert layers.n == len(rhos)
    assert layers.ci_low < layers.estimate < layers.ci_high
    assert layers.estimate > 0.5  # both metrics follow the same planted bump


def test_depth_gradient_recovered(rankings):
    d = stats.summarize_best_depth(rankings, "ridge", n_boot=200)
    assert list(d.area) == list(AREAS)
    assert d.relative_depth.iloc[-1] > d.relative_depth.iloc[0]
    # mean per area, independently
    r = rankings[(rankings.metric == "ridge") & (rankings.area == "VISam") & (rankings.weights == "trained")
                 & (rankings.family != "baseline")]
    np.testing.assert_allclose(d.set_index("area").loc["VISam", "relative_depth"], r.relative_depth.mean())
    g = stats.correlate_depth(rankings, metrics=["ridge"])
    row = g.iloc[0]
    sub = rankings[(rankings.metric == "ridge") & (rankings.area != "all") & (rankings.weights == "trained")
                   & (rankings.family != "baseline")]
    ref = st.spearmanr(sub.area.map({a: i for i, a in enumerate(AREAS)}), sub.relative_depth)
    np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-10)
    assert row.statistic > 0.5


def test_depth_profile_bins_and_lowess(scores):
    from statsmodels.nonparametric.smoothers_lowess import lowess

    prof = stats.bin_depth_profile(scores, ["ridge"], n_bins=100, frac=0.4)
    tr = prof[prof.weights == "trained"]
    assert tr.bin.between(0, 99).all() and tr.bin.is_unique
    # independent: layer means over areas, then np.histogram-style bins
    lt = scores.ridge_r.groupby("area").mean().mean("area").to_dataframe(name="s").reset_index()
    lt = lt[(lt.family != "baseline") & (lt.weights == "trained")]
    b = np.minimum((lt.relative_depth.values * 100).astype(int), 99)
    ref = lt.groupby(b).s.mean()
    np.testing.assert_allclose(tr.set_index("bin").score.loc[ref.index], ref, rtol=1e-10)
    np.testing.assert_allclose(tr.lowess, lowess(tr.score, tr.bin_center, frac=0.4, return_sorted=False),
                               rtol=1e-10)


def test_taskonomy_clusters(rankings):
    tasks = pd.DataFrame({"task": ["edge_texture", "class_object", "depth_zbuffer", "segment_semantic"],
                          "cluster": ["2D", "semantic", "3D", "semantic"]})
    summary, tests = stats.summarize_taskonomy(rankings, tasks, n_boot=100)
    s = summary[(summary.metric == "ridge") & (summary.area == "VISp")].set_index("cluster")
    r = rankings[(rankings.metric == "ridge") & (rankings.area == "VISp")].set_index("model")
    np.testing.assert_allclose(s.loc["semantic", "score"],
                               r.loc[["taskonomy_class_object", "taskonomy_segment_semantic"], "score"].mean())
    assert s.loc["2D", "n"] == 1
    row = tests[(tests.metric == "ridge") & (tests.area == "VISp")].iloc[0]
    ref = st.kruskal(r.loc[["taskonomy_edge_texture"], "score"], r.loc[["taskonomy_depth_zbuffer"], "score"],
                     r.loc[["taskonomy_class_object", "taskonomy_segment_semantic"], "score"])
    np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-10)
    assert row.group == "best: 2D"


def test_reliability_sweep_filters_neurons(scores):
    rel = scores.splithalf_r.values

    def scores_at(mask):
        return select_neurons(scores, np.flatnonzero(mask))

    sw = stats.rank_over_thresholds(scores_at, rel, thresholds=[0.0, 0.5, 0.9], n_boot=50)
    n = sw.groupby("threshold").n_neurons.first()
    assert list(n) == [int((rel >= t).sum()) for t in (0.0, 0.5, 0.9)]
    row = sw[(sw.threshold == 0.5) & (sw.metric == "ridge") & (sw.model == "alexnet") & (sw.weights == "trained")]
    sub = select_neurons(scores, np.flatnonzero(rel >= 0.5))
    sub = sub.ridge_r.where((sub.model == "alexnet") & (sub.weights == "trained"), drop=True)
    ref = sub.groupby("area").mean().mean("area").max()
    np.testing.assert_allclose(row.score.iloc[0], float(ref), rtol=1e-12)
    with pytest.raises(Exception, match="threshold"):
        stats.rank_over_thresholds(scores_at, rel, thresholds=[2.0])


def test_method_tradeoff_against_sklearn(rng):
    from sklearn.linear_model import Ridge

    X = rng.standard_normal((40, 300))
    Y = X[:, :5] @ rng.standard_normal((5, 4)) + rng.standard_normal((40, 4))
    t = stats.measure_method_tradeoff({"l0": X}, Y, sizes=(16, 32), regressions=("ridge", "pls"))
    assert set(t.reduction) == {"none", "pca", "srp"}
    assert (t.seconds > 0).all()
    assert set(t[t.reduction == "pca"]["size"]) == {16, 32}
    # the `none` ridge score is the leave-one-out Pearson r of sklearn's Ridge on z-scored features,
    # refitted by brute force
    Z = (X - X.mean(0)) / X.std(0)
    pred = np.array([Ridge(alpha=1.0).fit(np.delete(Z, i, 0), np.delete(Y, i, 0)).predict(Z[i:i + 1])[0]
                     for i in range(len(Z))])
    r = [st.pearsonr(pred[:, j], Y[:, j]).statistic for j in range(Y.shape[1])]
    got = t[(t.reduction == "none") & (t.regression == "ridge")].score.iloc[0]
    np.testing.assert_allclose(got, np.mean(r), rtol=1e-8)
    # PLS: 5-fold held-out Pearson r of sklearn's PLSRegression(10 components), same folds
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.model_selection import KFold

    rs = []
    for tr, te in KFold(5, shuffle=True, random_state=0).split(X):
        pred = PLSRegression(n_components=10).fit(X[tr], Y[tr]).predict(X[te])
        rs.append([st.pearsonr(pred[:, j], Y[te, j]).statistic for j in range(Y.shape[1])])
    got = t[(t.reduction == "none") & (t.regression == "pls")].score.iloc[0]
    np.testing.assert_allclose(got, np.mean(rs), rtol=1e-6)
    # SRP at 32 components: same projection as sklearn's seeded SparseRandomProjection, then ridge
    from sklearn.random_projection import SparseRandomProjection

    P = SparseRandomProjection(32, random_state=0).fit_transform(X)
    P = (P - P.mean(0)) / P.std(0)
    pred = np.array([Ridge(alpha=1.0).fit(np.delete(P, i, 0), np.delete(Y, i, 0)).predict(P[i:i + 1])[0]
                     for i in range(len(P))])
    r = [st.pearsonr(pred[:, j], Y[:, j]).statistic for j in range(Y.shape[1])]
    got = t[(t.reduction == "srp") & (t["size"] == 32) & (t.regression == "ridge")].score.iloc[0]
    np.testing.assert_allclose(got, np.mean(r), rtol=1e-8)


def test_per_area_interval_matches_scipy_bootstrap_over_neurons():
    """Per-area regression rows: percentile bootstrap over the area's neurons of the max over
    layers of the neuron mean; compared with scipy.stats.bootstrap (other random draws, so to
    Monte Carlo precision)."""
    ds = make_scores(seed=7, n_neurons=240, rsa=False,
                     models=[("alexnet", "cnn", 8, 0.5)])
    ds = ds.sel(layer=ds.weights == "trained")
    r = stats.rank_models(ds, n_boot=4000, seed=0)
    row = r[(r.area == "VISam") & (r.metric == "ridge")].iloc[0]
    block = ds.ridge_r.where(ds.area == "VISam", drop=True).sortby("depth").values.T  # (neuron, layer)
    # resample neurons (rows) by index: scipy resamples the index vector
    ref = st.bootstrap((np.arange(len(block)),), lambda i: block[i].mean(axis=0).max(), n_resamples=4000,
                       vectorized=False, method="percentile", random_state=np.random.default_rng(1))
    width = row.ci_high - row.ci_low
    assert width > 0
    np.testing.assert_allclose([row.ci_low, row.ci_high],
                               [ref.confidence_interval.low, ref.confidence_interval.high], atol=0.1 * width)
    # the Fisher-z interval of the Spearman rows (Bonett & Wright variance 1.06 / (n - 3))
    cat = pd.DataFrame({"model": ["alexnet"], "params": [1.0]})
    assert stats.correlate_model_properties(r, cat).empty  # one model: nothing to correlate


def test_spearman_interval_formula(rankings):
    t = stats.correlate_model_properties(rankings, None, properties=("n_layers",), metrics=["ridge"])
    row = t.iloc[0]
    z, se = np.arctanh(row.statistic), np.sqrt(1.06 / (row.n - 3))
    np.testing.assert_allclose([row.ci_low, row.ci_high], np.tanh([z - 1.959964 * se, z + 1.959964 * se]),
                               rtol=1e-5)


def test_single_area_all_row_takes_the_neuron_interval():
    ds = make_scores(seed=2, n_neurons=60, rsa=False, models=[("alexnet", "cnn", 5, 0.5), ("vgg", "cnn", 5, 0.3)])
    ds = ds.isel(neuron=np.flatnonzero(ds.area.values == "VISp"))
    r = stats.rank_models(ds, n_boot=300, seed=0)
    for _, g in r.groupby(["model", "weights"]):
        a, v = g[g.area == "all"].iloc[0], g[g.area == "VISp"].iloc[0]
        assert a.score == v.score and a.n == 1
        assert a.ci_low < a.ci_high  # not the degenerate interval of resampling one area
