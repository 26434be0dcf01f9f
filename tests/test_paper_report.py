"""The report in the study's terms (Conwell et al. 2021): its statistics under the study's names and
checked against scipy/statsmodels/numpy, noise ceilings, Figure 1 and 2, intervals kept when a layer
is NaN, the effective-dimensionality hook, and the whole chain from the command line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sps
from scipy.special import gammaln
from statsmodels.stats.multitest import multipletests
from test_stats import AREAS, make_scores

from neuroxr import schema as S
from neuroxr import stats
from neuroxr.mapping.tree import replace_scores

REPO = Path(__file__).resolve().parents[1]


def _tree(root: xr.Dataset, areas: xr.Dataset | None = None) -> xr.DataTree:
    return xr.DataTree.from_dict({"/": root, **({"areas": areas} if areas is not None else {})})


# --------------------------------------------------------------------------------------------
# effect sizes: the formulas, against independent numpy
# --------------------------------------------------------------------------------------------
def test_cohen_dz_is_mean_difference_over_sd_and_t_over_sqrt_n():
    """Cohen's d for paired samples: d_z = mean(a - b) / SD(a - b), SD with ddof 1; equivalently the
    paired t statistic (scipy) over sqrt(n)."""
    rng = np.random.default_rng(3)
    a = rng.normal(0.4, 0.1, 12)
    b = a - rng.normal(0.1, 0.05, 12)
    diff = a - b
    by_hand = diff.mean() / np.sqrt(((diff - diff.mean()) ** 2).sum() / (len(diff) - 1))
    assert stats.calc_cohen_dz(a, b) == pytest.approx(by_hand, rel=1e-12)
    assert stats.calc_cohen_dz(a, b) == pytest.approx(sps.ttest_rel(a, b).statistic / np.sqrt(12), rel=1e-12)
    assert np.isnan(stats.calc_cohen_dz(a, a - 0.1))  # constant differences: no SD


def test_hedges_g_is_pooled_cohen_d_with_the_small_sample_correction():
    """Hedges' g = J * (mean_a - mean_b) / s_pooled, s_pooled^2 = ((n_a-1) s_a^2 + (n_b-1) s_b^2) / (n_a+n_b-2),
    J = 1 - 3 / (4 (n_a + n_b) - 9); J approximates the exact Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.3, 0.05, 7), rng.normal(0.25, 0.08, 11)
    na, nb = len(a), len(b)
    ssa, ssb = ((a - a.mean()) ** 2).sum(), ((b - b.mean()) ** 2).sum()
    d = (a.mean() - b.mean()) / np.sqrt((ssa + ssb) / (na + nb - 2))
    g = stats.calc_hedges_g(a, b)
    assert g == pytest.approx(d * (1 - 3 / (4 * (na + nb) - 9)), rel=1e-12)
    df = na + nb - 2
    exact = np.exp(gammaln(df / 2) - gammaln((df - 1) / 2)) / np.sqrt(df / 2)
    assert g == pytest.approx(d * exact, rel=2e-3)


# --------------------------------------------------------------------------------------------
# the statistics table: the study's names; random-only studies say so
# --------------------------------------------------------------------------------------------
def test_every_statistic_carries_the_papers_name(tmp_path):
    from neuroxr.report import compute_analyses, summarize_paper_statistics

    replace_scores(make_scores(seed=1, n_neurons=60), tmp_path / S.SCORES_STORE)
    t = compute_analyses(tmp_path, n_boot=30)
    st = t["statistics"]
    assert st.paper_name.notna().all() and (st.paper_name != st.analysis).all()
    names = dict(zip(st.analysis, st.paper_name))
    assert "Cohen's d" in names["trained_vs_random"] and "paired t-test" in names["trained_vs_random"]
    assert "Hedges' g" in names["transformer_vs_rest"] and "Bonferroni" in names["transformer_vs_rest"]
    props = st[st.analysis == "score_vs_property"]
    assert {"Score vs. model depth (number of layers; Spearman's rho)"} == set(props[props.group == "n_layers"].paper_name)
    assert "ridge vs rsa" in names["metric_agreement_layers"] and "bootstrapped" in names["metric_agreement_layers"]
    quoted = summarize_paper_statistics(st)
    assert set(quoted.paper_name) >= {names[a] for a in ("trained_vs_random", "transformer_vs_rest",
                                                         "metric_agreement_models", "metric_agreement_layers")}
    assert set(quoted.area) <= {"all", "hierarchy"} and len(quoted) < len(st)


def test_random_only_study_compares_random_variants_and_says_so():
    tree = make_scores(seed=2, n_neurons=60)
    tree = tree.sel(layer=tree.weights == "random")  # every architecture, random weights only
    r = stats.rank_models(tree, n_boot=0)
    t = stats.compare_family(r, "transformer", metrics=["ridge"], areas=["all"])
    assert len(t) == 1 and t.note.iloc[0] == "random weights (no trained models scored)"
    sub = r[(r.metric == "ridge") & (r.area == "all") & (r.family != "baseline")]
    a, b = sub[sub.family == "transformer"].score, sub[sub.family != "transformer"].score
    ref = sps.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose([t.statistic.iloc[0], t.p.iloc[0]], [ref.statistic, ref.pvalue], rtol=1e-10)
    cat = pd.DataFrame({"model": sub.model, "params": np.arange(len(sub)) + 1.0, "top1": np.arange(len(sub))})
    p = stats.correlate_model_properties(r, cat, metrics=["ridge"])
    assert set(p.group) == {"n_layers", "params"}  # top-1 belongs to trained weights: left out
    assert (p.note == "random weights (no trained models scored)").all()


# --------------------------------------------------------------------------------------------
# intervals when a layer is NaN; ceilings
# --------------------------------------------------------------------------------------------
def test_per_area_intervals_kept_when_one_layer_is_nan(tmp_path):
    from neuroxr.report import rank_keeping_intervals

    tree = make_scores(seed=7, n_neurons=240, rsa=False, models=[("alexnet", "cnn", 8, 0.5), ("pixels", "baseline", 1, 0.1)])
    root = tree.to_dataset(inherit=False)
    nan_layer = S.layer_id("alexnet", "trained", "l3")
    root["ridge_r"].loc[{"layer": nan_layer}] = np.nan  # a layer scored NaN (nan_layers = "skip")
    tree = _tree(root)
    plain = stats.rank_models(tree, n_boot=2000, seed=0)
    kept = rank_keeping_intervals(tree, n_boot=2000, seed=0)
    per = (plain.area != "all") & (plain.model == "alexnet") & (plain.weights == "trained")
    assert plain.loc[per, "ci_low"].isna().all()  # what rank_models alone gives
    assert kept.loc[per, "ci_low"].notna().all()
    pd.testing.assert_frame_equal(kept.drop(columns=["ci_low", "ci_high"]), plain.drop(columns=["ci_low", "ci_high"]))
    # the interval: percentile bootstrap over the area's neurons of the max over the finite layers
    # of the neuron mean (scipy.stats.bootstrap; other draws, so to Monte Carlo precision)
    row = kept[per & (kept.area == "VISam")].iloc[0]
    sel = root.sel(layer=(root.weights == "trained") & (root.model == "alexnet") & (root.layer != nan_layer))
    block = sel.ridge_r.where(sel.area == "VISam", drop=True).sortby("depth").values.T
    ref = sps.bootstrap((np.arange(len(block)),), lambda i: block[i].mean(axis=0).max(), n_resamples=2000,
                        vectorized=False, method="percentile", random_state=np.random.default_rng(1))
    width = row.ci_high - row.ci_low
    np.testing.assert_allclose([row.ci_low, row.ci_high], [ref.confidence_interval.low,
                                                           ref.confidence_interval.high], atol=0.15 * width)
    assert row.depth == 8  # the model still has its 8 layers


def test_ceilings_are_the_mean_reliability_and_the_rdm_ceiling():
    tree = make_scores(seed=3, n_neurons=60)
    areas = tree["areas"].to_dataset(inherit=False)
    rng = np.random.default_rng(0)
    areas["rsa_ceiling"] = ("area", rng.uniform(0.3, 0.9, len(AREAS)))
    tree = _tree(tree.to_dataset(inherit=False), areas)
    c = stats.summarize_ceilings(tree).set_index(["metric", "area"]).ceiling
    root = tree.to_dataset()
    rel, area = root.splithalf_r.values, root.area.values
    for a in AREAS:
        assert c["ridge", a] == pytest.approx(rel[area == a].mean())
    assert c["ridge", "all"] == pytest.approx(np.mean([rel[area == a].mean() for a in AREAS]))
    ceil = dict(zip(areas.area.values, areas.rsa_ceiling.values))
    assert [c["rsa", a] for a in AREAS] == pytest.approx([ceil[a] for a in AREAS])
    assert c["rsa", "all"] == pytest.approx(np.mean(list(ceil.values())))
    assert c["overall", "all"] == pytest.approx((c["ridge", "all"] + c["rsa", "all"]) / 2)


def test_report_shows_each_score_against_zero_baseline_and_ceiling(tmp_path):
    import json

    from neuroxr import plots
    from neuroxr.report import write_report

    tree = make_scores(seed=3, n_neurons=60)
    areas = tree["areas"].to_dataset(inherit=False)
    areas["rsa_ceiling"] = ("area", np.linspace(0.4, 0.9, len(AREAS)))
    tree = _tree(tree.to_dataset(inherit=False), areas)
    replace_scores(tree, tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=20)
    head = json.loads((index.parent / "headline.json").read_text())
    root = tree.to_dataset()
    rel, area = root.splithalf_r.values, root.area.values
    want = (np.mean([rel[area == a].mean() for a in AREAS]) + np.mean(np.linspace(0.4, 0.9, 6))) / 2
    assert head["metric"] == "overall" and head["ceiling"] == pytest.approx(want)
    assert f"noise ceiling (overall): {want:.3f}" in index.read_text()
    r = pd.read_csv(index.parent / "rankings.csv")
    fig = plots.plot_rankings(r, "rsa", ceiling=float(np.mean(np.linspace(0.4, 0.9, 6))))
    lines = {ln.get_label(): ln.get_xdata()[0] for ln in fig.axes[0].get_lines()}
    assert lines["noise ceiling (0.65)"] == pytest.approx(0.65)
    base = r[(r.metric == "rsa") & (r.area == "all") & (r.family == "baseline")].score.max()
    assert lines["best baseline (pixels)"] == pytest.approx(base)
    assert 0 in [ln.get_xdata()[0] for ln in fig.axes[0].get_lines()]


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def test_figure_1_has_both_metrics_against_zero_baseline_and_ceiling():
    from neuroxr import plots

    tree = make_scores(seed=1, n_neurons=60)
    r = stats.rank_models(tree, n_boot=20)
    ceilings = stats.summarize_ceilings(tree)
    fig = plots.plot_trained_vs_random(r, ceilings=ceilings)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Trained vs random weights (ridge, area all)",
                                              "Trained vs random weights (rsa, area all)"]
    labels = [ln.get_label() for ln in axes[0].get_lines()]
    assert "best baseline (pixels)" in labels
    assert any(lab.startswith("noise ceiling (") for lab in labels)
    ys = [ln.get_ydata()[0] for ln in axes[0].get_lines() if ln.get_label() == "best baseline (pixels)"]
    base = r[(r.metric == "ridge") & (r.area == "all") & (r.model == "pixels")].score.iloc[0]
    assert ys == [pytest.approx(base)]


def test_figure_2_single_area_has_no_all_column_and_shows_tasks():
    from neuroxr import plots

    summary = pd.DataFrame({"metric": "ridge", "area": ["all", "all", "VISp", "VISp"],
                            "cluster": ["2D", "3D", "2D", "3D"], "score": [0.2, 0.3, 0.2, 0.3],
                            "ci_low": [0.1, np.nan, 0.1, np.nan], "ci_high": [0.3, np.nan, 0.3, np.nan], "n": 2})
    tasks = pd.DataFrame({"metric": "ridge", "area": "VISp", "cluster": ["2D", "2D", "3D", "3D"],
                          "score": [0.15, 0.25, 0.28, 0.32]})
    fig = plots.plot_taskonomy(summary, tasks=tasks)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["VISp"]
    pts = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets())
                          and c.get_offsets().shape[0] == 2 and hasattr(c, "get_sizes") and c.get_sizes()[0] == 9])
    assert sorted(pts) == sorted(tasks.score)


# --------------------------------------------------------------------------------------------
# effective dimensionality (scored by another module when present)
# --------------------------------------------------------------------------------------------
def test_effective_dim_panel_and_spearman_when_scores_have_it(tmp_path):
    from neuroxr.report import write_report

    tree = make_scores(seed=4, n_neurons=60)
    root = tree.to_dataset(inherit=False)
    rng = np.random.default_rng(1)
    root["effective_dim"] = ("layer", rng.uniform(1, 50, root.sizes["layer"]))
    replace_scores(_tree(root, tree["areas"].to_dataset(inherit=False)), tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=20)
    assert (index.parent / "effective_dim.png").exists() and "Effective dimensionality" in index.read_text()
    st = pd.read_csv(index.parent / "statistics.csv")
    row = st[(st.analysis == "score_vs_effective_dim") & (st.group == "all layers")].iloc[0]
    # independent: the layer's ridge mean over areas (areas weighted equally), baselines left out
    df = root.ridge_r.to_dataframe().reset_index()
    df = df[df.family != "baseline"]
    per = df.groupby(["layer", "area"]).ridge_r.mean().groupby("layer").mean()
    ed = root.effective_dim.to_series().loc[per.index]
    ref = sps.spearmanr(ed, per)
    # statistics.csv holds 6 significant digits
    assert row.statistic == pytest.approx(ref.statistic, rel=1e-5) and row.p == pytest.approx(ref.pvalue, rel=1e-5)
    assert row.paper_name == "Score vs. effective dimensionality (Spearman's rho)"


def test_no_effective_dim_no_panel(tmp_path):
    from neuroxr.report import write_report

    replace_scores(make_scores(seed=4, n_neurons=60), tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=0)
    assert not (index.parent / "effective_dim.png").exists()
    assert "score_vs_effective_dim" not in pd.read_csv(index.parent / "statistics.csv").analysis.tolist()


# --------------------------------------------------------------------------------------------
# the whole chain from the command line
# --------------------------------------------------------------------------------------------
MODELS = ["alexnet", "squeezenet1_1", "mnasnet0_5", "vit_tiny_patch16_224", "levit_128s"]


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory):
    from neuroxr.cli import main

    study = tmp_path_factory.mktemp("cli") / "study"
    assert main(["simulate", str(study), "--n-images", "24", "--neurons-per-area", "6", "--n-trials", "4",
                 "--image-size", "16"]) == 0
    args = [a for m in [*MODELS, "pixels"] for a in ("--model", m)]
    assert main(["extract", str(study), *args, "--weights", "random"]) == 0
    assert main(["score", str(study), "--no-progress"]) == 0
    assert main(["report", str(study), "--n-boot", "100"]) == 0
    return study


def test_cli_report_writes_the_figures_and_tables(cli_study):
    rep = cli_study / "reports"
    for name in ("index.html", "rankings.png", "area_heatmap.png", "depth.png", "depth_profile_areas.png",
                 "statistics.csv",
                 "paper_statistics.csv", "ceilings.csv", "rankings.csv"):
        assert (rep / name).exists(), name
    page = (rep / "index.html").read_text()
    assert "Statistics the paper quotes" in page and "Transformers vs. other architectures" in page
    r = pd.read_csv(rep / "rankings.csv")
    assert set(r.model) == {*MODELS, "pixels"}
    # levit_128s has layers scored NaN for every neuron: its per-area intervals are still there
    lev = r[(r.model == "levit_128s") & (r.metric == "ridge") & (r.area != "all")]
    assert len(lev) == 6 and lev.ci_low.notna().all()
    assert list(pd.unique(r.loc[r.area != "all", "area"])) == list(S.AREAS)  # hierarchy order
    # the RDM ceiling (trials are simulated) as scores.zarr holds it
    c = pd.read_csv(rep / "ceilings.csv").set_index(["metric", "area"]).ceiling
    ceil = xr.open_zarr(cli_study / "scores.zarr", group="areas").rsa_ceiling
    assert c["rsa", "all"] == pytest.approx(float(ceil.mean()), rel=1e-6)


def test_cli_statistics_equal_scipy_on_the_rankings_table(cli_study):
    rep = cli_study / "reports"
    r = pd.read_csv(rep / "rankings.csv")
    st = pd.read_csv(rep / "statistics.csv", keep_default_na=False, na_values=[""])
    nets = r[r.family != "baseline"]
    assert (nets.weights == "random").all()
    # transformers vs the rest: Welch's t (scipy), Hedges' g (numpy), Bonferroni (statsmodels)
    fam = st[st.analysis == "transformer_vs_rest"]
    assert set(fam.note) == {"random weights (no trained models scored)"}
    for row in fam.itertuples():
        sub = nets[(nets.metric == row.metric) & (nets.area == row.area)]
        a = sub[sub.family == "transformer"].score.to_numpy()
        b = sub[sub.family != "transformer"].score.to_numpy()
        ref = sps.ttest_ind(a, b, equal_var=False)
        assert (len(a), len(b)) == (2, 3)
        # both CSVs hold 6 significant digits: the tests from the table agree to about 1e-5
        np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-4)
        sp = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
        g = (a.mean() - b.mean()) / sp * (1 - 3 / (4 * (len(a) + len(b)) - 9))
        np.testing.assert_allclose(row.effect_size, g, rtol=1e-4)
    np.testing.assert_allclose(fam.p_bonferroni, multipletests(fam.p, method="bonferroni")[1], rtol=1e-5)
    # Spearman of the score with depth (number of layers) and parameters (catalogs/models.csv)
    cat = pd.read_csv(REPO / "catalogs" / "models.csv", comment="#").set_index("model")
    props = st[st.analysis == "score_vs_property"]
    assert set(props.group) == {"n_layers", "params"}
    for row in props.itertuples():
        sub = nets[(nets.metric == row.metric) & (nets.area == "all")].set_index("model")
        x = sub.depth if row.group == "n_layers" else cat.loc[sub.index, "params"]
        ref = sps.spearmanr(x, sub.score)
        np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-5)
    np.testing.assert_allclose(props.p_bonferroni, multipletests(props.p, method="bonferroni")[1], rtol=1e-5)
    # agreement of ridge and RSA across models
    agree = st[(st.analysis == "metric_agreement_models") & (st.group == "all models")].iloc[0]
    a = nets[(nets.metric == "ridge") & (nets.area == "all")].set_index("model").score
    b = nets[(nets.metric == "rsa") & (nets.area == "all")].set_index("model").score.loc[a.index]
    ref = sps.spearmanr(a, b)
    np.testing.assert_allclose([agree.statistic, agree.p], [ref.statistic, ref.pvalue], rtol=1e-5)
    # the best layer deeper along the hierarchy
    for row in st[st.analysis == "depth_gradient"].itertuples():
        sub = nets[(nets.metric == row.metric) & nets.area.isin(S.AREAS)]
        ref = sps.spearmanr(sub.area.map({a: i for i, a in enumerate(S.AREAS)}), sub.relative_depth)
        np.testing.assert_allclose([row.statistic, row.p], [ref.statistic, ref.pvalue], rtol=1e-5)
    # the quoted table is the same numbers under the study's names
    quoted = pd.read_csv(rep / "paper_statistics.csv")
    q = quoted[quoted.paper_name.str.startswith("Transformers vs.")]
    np.testing.assert_allclose(np.sort(q.statistic), np.sort(fam[fam.area == "all"].statistic), rtol=1e-6)
    assert set(q.area) == {"all"} and len(q) == 3  # overall, ridge, rsa


def test_taskonomy_tables_in_hierarchy_order():
    from neuroxr.catalogs import read_catalog

    r = stats.rank_models(make_scores(seed=1, n_neurons=60), n_boot=0)
    summary, tests = stats.summarize_taskonomy(r, read_catalog("taskonomy"), n_boot=0)
    for df in (summary, tests):
        for _, g in df.groupby("metric", sort=False):
            assert list(pd.unique(g.area)) == ["all", *AREAS]


def test_metric_agreement_across_models_has_a_bootstrapped_interval(rng):
    """The interval of Spearman's rho across models: percentile bootstrap over models, compared with
    scipy.stats.bootstrap (paired resamples; other draws, so to Monte Carlo precision)."""
    x = rng.normal(size=30)
    y = x + rng.normal(scale=1.0, size=30)
    lo, hi = stats.calc_bootstrap_spearman_ci(x, y, 4000, seed=0)
    ref = sps.bootstrap((x, y), lambda a, b: sps.spearmanr(a, b).statistic, paired=True, vectorized=False,
                        n_resamples=4000, method="percentile", random_state=np.random.default_rng(1))
    width = hi - lo
    np.testing.assert_allclose([lo, hi], [ref.confidence_interval.low, ref.confidence_interval.high],
                               atol=0.08 * width)
    assert lo < sps.spearmanr(x, y).statistic < hi
    assert np.isnan(stats.calc_bootstrap_spearman_ci(x[:3], y[:3], 100)).all()
    tree = make_scores(seed=1, n_neurons=60)
    r = stats.rank_models(tree, n_boot=0)
    t = stats.compare_metrics(tree, r, n_boot=500, seed=0)
    row = t[(t.analysis == "metric_agreement_models") & (t.group == "all models")].iloc[0]
    assert row.ci_method == "bootstrap over models (percentile)"
    sub = r[(r.area == "all") & (r.family != "baseline")]
    a = sub[sub.metric == "ridge"].set_index("variant").score
    b = sub[sub.metric == "rsa"].set_index("variant").score.loc[a.index]
    assert (row.ci_low, row.ci_high) == stats.calc_bootstrap_spearman_ci(a, b, 500, seed=0)
    assert row.ci_low <= row.statistic <= row.ci_high


def test_one_area_study_draws_no_per_area_small_multiples(tmp_path):
    from neuroxr.report import write_report

    tree = make_scores(seed=6, n_neurons=30)
    root = tree.to_dataset(inherit=False).assign_coords(area=("neuron", np.full(30, "VISp")))
    replace_scores(_tree(root), tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=20)
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert "depth_profile_areas.png" not in pngs and "area_heatmap.png" not in pngs
    assert {"rankings.png", "trained_vs_random.png", "depth.png", "taskonomy.png"} <= pngs
    tk = pd.read_csv(index.parent / "taskonomy.csv")
    assert set(tk.area) == {"all", "VISp"}  # the table keeps both; the figure draws VISp alone


def test_one_area_all_row_keeps_its_interval_when_one_layer_is_nan():
    from neuroxr.report import rank_keeping_intervals

    tree = make_scores(seed=8, n_neurons=40, rsa=False, models=[("alexnet", "cnn", 6, 0.5)])
    root = tree.to_dataset(inherit=False).assign_coords(area=("neuron", np.full(40, "VISp")))
    root["ridge_r"].loc[{"layer": S.layer_id("alexnet", "random", "l2")}] = np.nan
    kept = rank_keeping_intervals(_tree(root), n_boot=200, seed=0)
    rows = kept[(kept.model == "alexnet") & (kept.weights == "random")]
    assert set(rows.area) == {"all", "VISp"} and rows.ci_low.notna().all()
    a, v = rows[rows.area == "all"].iloc[0], rows[rows.area == "VISp"].iloc[0]
    assert a.score == pytest.approx(v.score) and a.ci_low < a.ci_high
    # the same statistic (the one area's neuron bootstrap), other draws: the intervals nearly agree
    width = v.ci_high - v.ci_low
    np.testing.assert_allclose([a.ci_low, a.ci_high], [v.ci_low, v.ci_high], atol=0.3 * width)
