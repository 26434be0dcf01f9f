"""Verdicts a scientist can trust: no "top model" without one beating zero and the baselines beyond
its interval, no statistics over fewer than 5 models, runs that skip missing weights and say so,
and rankings that refuse scores older than their features."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from neuroxr import schema as S
from neuroxr import stats
from neuroxr.mapping.tree import replace_scores
from test_stats import make_scores

REPO = Path(__file__).resolve().parents[1]
NO_VERDICT = "no model scores above zero and the best baseline beyond its 95% interval"


def _rankings(rows) -> pd.DataFrame:
    """A headline ranking (metric overall, area all) of (model, weights, family, score, ci_low, ci_high)."""
    df = pd.DataFrame(rows, columns=["model", "weights", "family", "score", "ci_low", "ci_high"])
    return df.assign(metric="overall", area="all", variant=df.model + ":" + df.weights)


# --------------------------------------------------------------------------------------------
# the verdict on synthetic rankings
# --------------------------------------------------------------------------------------------
def test_no_model_beyond_zero_is_said_plainly():
    r = _rankings([("alexnet", "random", "cnn", 0.012, -0.01, 0.03), ("resnet18", "random", "cnn", 0.004, -0.02, 0.02),
                   ("pixels", "random", "baseline", 0.008, -0.01, 0.02)])
    v = stats.judge_ranking(r)
    assert v["supported"] is False and v["n_beating"] == 0 and v["n_models"] == 2
    assert v["text"].startswith(NO_VERDICT)
    assert "top model" not in v["text"] and "pixels 0.008" in v["text"]
    assert v["best_model"] == "alexnet"


def test_above_zero_but_not_above_the_best_baseline_is_no_verdict():
    # alexnet's interval is above zero but reaches below the best baseline's score (0.25)
    r = _rankings([("alexnet", "trained", "cnn", 0.30, 0.20, 0.40), ("gabor", "random", "baseline", 0.25, 0.2, 0.3),
                   ("pixels", "random", "baseline", 0.10, 0.05, 0.15)])
    v = stats.judge_ranking(r)
    assert v["supported"] is False and v["reference"] == pytest.approx(0.25) and v["baseline"] == "gabor"
    assert v["text"].startswith(NO_VERDICT)


def test_a_model_beyond_zero_and_baselines_is_named():
    r = _rankings([("resnet18", "trained", "cnn", 0.40, 0.33, 0.47), ("alexnet", "trained", "cnn", 0.35, 0.20, 0.50),
                   ("pixels", "random", "baseline", 0.25, 0.2, 0.3), ("vit", "random", "transformer", 0.1, 0.0, 0.2)])
    v = stats.judge_ranking(r)
    assert v["supported"] is True and v["n_beating"] == 1
    assert v["best_model"] == "resnet18" and v["best_ci"] == [0.33, 0.47]
    assert v["text"].startswith("top model (overall): resnet18 (trained), score 0.400, 95% CI 0.330..0.470")
    assert "1 of 3 models above zero and the best baseline" in v["text"]


def test_without_baselines_the_reference_is_zero_and_without_intervals_no_verdict():
    r = _rankings([("alexnet", "trained", "cnn", 0.2, 0.1, 0.3)])
    v = stats.judge_ranking(r)
    assert v["supported"] is True and v["reference"] == 0 and v["baseline"] is None
    assert "above zero beyond" in v["text"]
    v0 = stats.judge_ranking(_rankings([("alexnet", "trained", "cnn", 0.2, np.nan, np.nan)]))
    assert v0["supported"] is None and "no verdict" in v0["text"]


def test_headline_without_intervals_falls_back_to_a_metric_with_them():
    # one area: the overall row has no interval (it would resample one area), ridge's has the neuron one
    r = pd.concat([_rankings([("alexnet", "random", "cnn", 0.02, np.nan, np.nan)]),
                   _rankings([("alexnet", "random", "cnn", 0.01, -0.02, 0.04)]).assign(metric="ridge")])
    v = stats.judge_ranking(r)
    assert v["metric"] == "ridge" and v["supported"] is False
    assert v["text"] == ("no model scores above zero beyond its 95% interval (ridge); highest: alexnet (random) "
                         "0.010, 95% CI -0.020..0.040")


# --------------------------------------------------------------------------------------------
# statistics over fewer than 5 models
# --------------------------------------------------------------------------------------------
def _props(n):
    rng = np.random.default_rng(n)
    models = [f"m{i}" for i in range(n)]
    r = pd.DataFrame({"model": models, "weights": "trained", "family": "cnn", "metric": "overall", "area": "all",
                      "score": rng.normal(size=n), "depth": np.arange(n) + 3})
    return r


def test_spearman_over_three_models_is_not_meaningful():
    r = _props(3)
    r["score"] = [0.1, 0.2, 0.3]  # rho = 1 and scipy's p = 0: what the table must not report
    assert sps.spearmanr(r.depth, r.score).pvalue == 0
    t = stats.correlate_model_properties(r, None, properties=("n_layers",))
    assert len(t) == 1
    row = t.iloc[0]
    assert np.isnan(row.statistic) and np.isnan(row.p) and np.isnan(row.p_bonferroni) and np.isnan(row.ci_low)
    assert row.n == 3 and row.note == "fewer than 5 models (3): not meaningful"


def test_spearman_over_six_models_matches_scipy_and_has_no_note():
    r = _props(6)
    t = stats.correlate_model_properties(r, None, properties=("n_layers",))
    ref = sps.spearmanr(r.depth, r.score)
    assert t.statistic.iloc[0] == pytest.approx(ref.statistic) and t.p.iloc[0] == pytest.approx(ref.pvalue)
    assert t.note.iloc[0] == ""


def test_trained_vs_random_over_four_architectures_is_not_meaningful():
    rows = [(f"m{i}", w, "cnn", s, np.nan, np.nan) for i in range(4) for w, s in (("trained", 0.3 + i / 10),
                                                                                 ("random", 0.1 + i / 20))]
    t = stats.compare_trained_random(_rankings(rows))
    assert len(t) == 1 and np.isnan(t.statistic.iloc[0]) and "fewer than 5 models (4)" in t.note.iloc[0]
    assert t.estimate.iloc[0] == pytest.approx(np.mean([0.2 + i / 20 for i in range(4)]))


# --------------------------------------------------------------------------------------------
# the report and `rank` on a study where nothing beats zero
# --------------------------------------------------------------------------------------------
def _null_scores():
    """make_scores with scores of mean 0 in every area (signs alternate over neurons and areas, sizes
    vary by layer): no maximum over layers is above zero, and no interval clears it."""
    import xarray as xr

    tree = make_scores(seed=3, n_neurons=60)
    rng = np.random.default_rng(1)
    root = tree.to_dataset(inherit=False)
    n_layers = root.sizes["layer"]
    sign = np.where(np.arange(root.sizes["neuron"]) // 6 % 2 == 0, 1.0, -1.0)  # 6 areas, cycled
    root["ridge_r"] = root.ridge_r.copy(data=rng.uniform(0.01, 0.05, (n_layers, 1)) * sign)
    areas = tree["areas"].to_dataset(inherit=False)
    area_sign = np.where(np.arange(areas.sizes["area"]) % 2 == 0, 1.0, -1.0)
    areas["rsa_r"] = areas.rsa_r.copy(data=rng.uniform(0.01, 0.05, (n_layers, 1)) * area_sign)
    return xr.DataTree.from_dict({"/": root, "areas": areas})


@pytest.fixture(scope="module")
def null_study(tmp_path_factory):
    d = tmp_path_factory.mktemp("null")
    replace_scores(_null_scores(), d / S.SCORES_STORE)
    return d


def test_report_and_rank_say_no_model_beats_zero(null_study, capsys):
    from neuroxr.cli import main
    from neuroxr.report import write_report

    index = write_report(null_study, n_boot=200)
    page = index.read_text()
    head = json.loads((index.parent / "headline.json").read_text())
    assert head["supported"] is False and head["verdict"].startswith(NO_VERDICT)
    assert NO_VERDICT in page and "top model" not in page
    assert main(["rank", str(null_study), "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert f"verdict: {NO_VERDICT}" in out and "top model" not in out
    # the baseline's weights are not printed as "random"
    line = next(ln for ln in out.splitlines() if " pixels " in f" {ln} ")
    assert "random" not in line


def test_report_shows_the_note_of_a_statistic_over_too_few_models(tmp_path):
    from neuroxr.report import write_report

    models = [("alexnet", "cnn", 6, 0.5), ("resnet18", "cnn", 7, 0.55), ("vgg11", "cnn", 8, 0.45),
              ("pixels", "baseline", 1, 0.1)]
    replace_scores(make_scores(seed=2, n_neurons=60, models=models), tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=50)
    st = pd.read_csv(index.parent / "statistics.csv", keep_default_na=False)
    few = st[st.analysis == "trained_vs_random"]
    assert len(few) and (few.statistic == "").all() and few.note.str.startswith("fewer than 5 models (3)").all()
    assert "fewer than 5 models (3): not meaningful" in index.read_text()


def test_report_labels_checkpoints_by_12_hex_and_baselines_without_weights(tmp_path):
    from neuroxr.report import format_ranking_table

    sha = "ab" * 32
    r = _rankings([("alexnet", sha, "cnn", 0.3, 0.2, 0.4), ("pixels", "random", "baseline", 0.1, 0.0, 0.2)])
    r["rank"] = [1, 2]
    t = format_ranking_table(r)
    assert t.weights.tolist() == [sha[:12], ""]


# --------------------------------------------------------------------------------------------
# the pipeline without some trained weights, and stale scores
# --------------------------------------------------------------------------------------------
def _offline_env(tmp: Path) -> dict:
    for d in ("torch", "hf"):
        (tmp / d).mkdir(exist_ok=True)
    return {"TORCH_HOME": str(tmp / "torch"), "HF_HOME": str(tmp / "hf"), "HF_HUB_CACHE": str(tmp / "hf" / "hub"),
            "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp)}


CONFIG = """
[study]
dir = "study"
seed = 0
[ingest]
source = "simulate"
n_images = 40
neurons_per_area = 10
n_trials = 6
image_size = 32
[extract]
models = ["alexnet"]
weights = ["trained"]
baselines = ["pixels", "gabor"]
[score]
metrics = ["ridge", "rsa"]
[tradeoff]
model = "alexnet"
weights = "trained"
n_layers = 1
sizes = [16]
[report]
n_boot = 50
"""


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory):
    """A pipeline asking for alexnet's trained weights, which are in no cache (offline)."""
    tmp = tmp_path_factory.mktemp("noweights")
    (tmp / "run.toml").write_text(CONFIG)
    mp = pytest.MonkeyPatch()
    for k, v in _offline_env(tmp).items():
        mp.setenv(k, v)
    from neuroxr.pipeline import run_pipeline

    logs = []
    try:
        res = run_pipeline(tmp / "run.toml", log=logs.append)
    finally:
        mp.undo()
    return tmp, res, logs


def test_run_skips_missing_weights_and_lists_them(skipped_run):
    tmp, res, logs = skipped_run
    study = tmp / "study"
    assert [(x["model"], x["weights"]) for x in res["not_run"]] == [("alexnet", "trained")]
    assert "trained weights" in res["not_run"][0]["reason"]
    assert "not run (1): alexnet (trained)" in res["headline"]
    assert any(m.startswith("not run: alexnet (trained)") for m in logs)
    assert "tradeoff: skipped (alexnet (trained) weights are missing)" in logs
    assert sorted(p.name for p in (study / "features").glob("*.zarr")) == ["gabor.zarr", "pixels.zarr"]
    page = res["report"].read_text()
    assert "<h2>Not run</h2>" in page and "<b>alexnet</b> (trained)" in page
    rank = pd.read_csv(res["rankings"])
    assert set(rank.model) == {"pixels", "gabor"}
    # only baselines: the verdict says so instead of naming a top model
    assert res["headline_data"]["supported"] is False and "top model" not in res["headline"]


def test_strict_refuses_to_start(skipped_run, monkeypatch, capsys):
    from neuroxr.cli import main
    from neuroxr.errors import MissingDataError
    from neuroxr.pipeline import run_pipeline

    tmp, _, _ = skipped_run
    for k, v in _offline_env(tmp).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(MissingDataError, match="alexnet \\(torchvision\\) trained weights"):
        run_pipeline(tmp / "run.toml", study=tmp / "strict", strict=True, log=lambda m: None)
    assert not (tmp / "strict" / "features").exists()
    assert main(["run", str(tmp / "run.toml"), "--study", str(tmp / "strict"), "--strict"]) == 2
    assert "cannot run; missing" in capsys.readouterr().err


def test_rank_and_report_refuse_scores_older_than_their_features(skipped_run, tmp_path, capsys):
    from neuroxr.cli import main
    from neuroxr.info import StaleScoresError, find_stale_scores
    from neuroxr.mapping.guard import fingerprint_store
    from neuroxr.mapping import open_scores
    from neuroxr.report import write_rankings, write_report

    src, _, _ = skipped_run
    study = tmp_path / "study"
    shutil.copytree(src / "study", study)
    # the fingerprints scoring recorded are those of the features stores as they are
    inputs = json.loads(open_scores(study / S.SCORES_STORE).attrs["inputs"])
    assert set(inputs) == {"pixels", "gabor"}
    for model, fp in inputs.items():
        assert fingerprint_store(study / "features" / f"{model}.zarr") == fp
    assert find_stale_scores(study) == {}
    write_rankings(study, n_boot=0)
    # gabor extracted again, the same: same content, so its scores stay current (content, not times)
    assert main(["extract", str(study), "--model", "gabor", "--overwrite"]) == 0
    assert find_stale_scores(study) == {}
    # gabor extracted again with other content (a projection added): its scores are stale
    assert main(["extract", str(study), "--model", "gabor", "--srp", "16", "--overwrite"]) == 0
    capsys.readouterr()
    assert list(find_stale_scores(study)) == ["gabor"]
    with pytest.raises(StaleScoresError, match=r"scores of gabor are older than its features"):
        write_report(study, n_boot=0)
    assert main(["rank", str(study), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scores of gabor" in err[0] and f"run `neuroxr score {study}` first" in err[0]
    assert main(["score", str(study), "--no-progress"]) == 0
    assert find_stale_scores(study) == {}
    assert main(["rank", str(study), "--n-boot", "0"]) == 0


# --------------------------------------------------------------------------------------------
# the shared VISp recordings: every score is about 0
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_visp_study_verdict_says_no_model_beats_zero(allen_visp_npz, tmp_path):
    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "pipelines" / "visp.toml", repo / "pipelines" / "visp.toml")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "allen_visp").symlink_to(allen_visp_npz.parent)
    env = dict(os.environ, **_offline_env(tmp_path), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "neuroxr", "run", "pipelines/visp.toml"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    assert NO_VERDICT in run.stdout and "top model" not in run.stdout
    page = (repo / "studies" / "visp" / "reports" / "index.html").read_text()
    assert NO_VERDICT in page and "top model" not in page
    assert not (repo / "studies" / "visp" / "reports" / "area_heatmap.png").exists()  # one area
    st = pd.read_csv(repo / "studies" / "visp" / "reports" / "statistics.csv", keep_default_na=False)
    assert (st.note.str.startswith("fewer than 5 models") == (st.statistic == "")).all()


def test_areas_in_hierarchy_order_whatever_the_stored_order(tmp_path):
    """Stored alphabetically (VISal, VISam, VISl, VISp, VISpm, VISrl), reported as VISp, VISl, VISal,
    VISpm, VISrl, VISam."""
    import xarray as xr

    from neuroxr.report import compute_analyses

    tree = make_scores(seed=4, n_neurons=60)
    root = tree.to_dataset(inherit=False)
    root = root.isel(neuron=np.argsort(root.area.values, kind="stable"))
    areas = tree["areas"].to_dataset(inherit=False)
    areas = areas.isel(area=np.argsort(areas.area.values))
    assert list(pd.unique(root.area.values)) == sorted(S.AREAS) == list(areas.area.values)
    replace_scores(xr.DataTree.from_dict({"/": root, "areas": areas}), tmp_path / S.SCORES_STORE)
    t = compute_analyses(tmp_path, n_boot=20)
    for metric in ("ridge", "rsa"):
        r = t["rankings"][(t["rankings"].metric == metric) & (t["rankings"].area != "all")]
        assert list(pd.unique(r.area)) == list(S.AREAS)
    assert list(t["best_depth"].area) == list(S.AREAS)


def test_one_area_study_has_no_single_point_panels(tmp_path):
    from neuroxr import plots
    from neuroxr.report import write_report

    tree = make_scores(seed=6, n_neurons=30)
    root = tree.to_dataset(inherit=False).assign_coords(area=("neuron", np.full(30, "VISp")))
    replace_scores(xr_tree({"/": root}), tmp_path / S.SCORES_STORE)
    index = write_report(tmp_path, n_boot=20)
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert "area_heatmap.png" not in pngs and "depth.png" in pngs
    best = pd.read_csv(index.parent / "best_depth.csv")
    prof = pd.read_csv(index.parent / "depth_profile.csv")
    assert list(best.area) == ["VISp"]
    assert len(plots.plot_depth(best, prof).axes) == 1  # the profile alone, no one-point panel
    assert "Left: " not in index.read_text()


def xr_tree(groups):
    import xarray as xr

    return xr.DataTree.from_dict(groups)
