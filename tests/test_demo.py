"""The whole chain: pipeline configs, the missing-data check, and a real (reduced) demo run that
must recover the simulated observatory's planted structure."""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from neuroxr import pipeline
from neuroxr.errors import MissingDataError, NeuroxrError

REPO = Path(__file__).resolve().parents[1]


def test_demo_toml_is_the_builtin_demo():
    cfg = tomllib.loads((REPO / "pipelines" / "demo.toml").read_text())
    assert cfg == pipeline.DEMO


def test_conwell2021_config_parses_and_lists_what_is_missing(tmp_path, capsys):
    path = REPO / "pipelines" / "conwell2021.toml"
    cfg = pipeline.read_config(path)
    assert cfg["select"] == {"cre_lines": "excitatory", "exclude_running": True, "image_selective": True,
                             "min_reliability": 0.8, "n_splits": 100}
    assert cfg["score"]["metrics"] == ["srp-ridge", "rsa"] and cfg["extract"]["srp"] == 4096
    assert Path(cfg["_base"]) == REPO
    pairs = pipeline.list_model_variants(pipeline.load_settings(cfg))
    models = {m for m, _ in pairs}
    assert {"alexnet", "resnet18", "pixels", "autoencoding"} <= models
    assert ("alexnet", "trained") in pairs and ("alexnet", "random") in pairs
    assert ("pixels", "random") in pairs and ("pixels", "trained") not in pairs
    missing = pipeline.check_pipeline(path, study=tmp_path / "s")
    allen = [m for m in missing if "Allen" in m]
    assert len(allen) == 1 and "manifest.json" in allen[0] and "neuroxr fetch allen" in allen[0]
    from neuroxr.cli import main

    assert main(["run", str(path), "--study", str(tmp_path / "s"), "--check"]) == 1
    out = capsys.readouterr().out
    assert "missing before this pipeline can run" in out and "manifest.json" in out
    # running it anyway fails before doing anything, with the same list
    with pytest.raises(MissingDataError, match="manifest.json"):
        pipeline.run_pipeline(path, study=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\ndir = 'x'\n[extract\n")
    with pytest.raises(NeuroxrError, match="not valid TOML"):
        pipeline.read_config(bad)
    bad.write_text("[study]\ndir = 'x'\n[scoring]\nmetrics = ['ridge']\n")
    with pytest.raises(NeuroxrError, match="unknown table"):
        pipeline.read_config(bad)
    with pytest.raises(MissingDataError, match="does not exist"):
        pipeline.read_config(tmp_path / "nope.toml")
    cfg = {"study": {"dir": str(tmp_path / "s")}, "ingest": {"source": "arrays", "responses": "missing.npy"}}
    assert any("missing.npy" in m for m in pipeline.check_pipeline(cfg))


def _small_config(tmp_path):
    cfg = copy.deepcopy(pipeline.DEMO_SMALL)
    cfg["study"]["dir"] = str(tmp_path / "demo")
    return cfg


def test_reduced_demo_recovers_planted_structure(tmp_path):
    """A real end-to-end run (simulate -> select -> extract -> score -> rank -> sweep ->
    trade-off -> report) on the reduced demo; the generating model must rank first and the best
    relative depth must rise from VISp to VISam."""
    logs = []
    res = pipeline.run_demo(tmp_path / "demo", size="small", log=logs.append)
    study = tmp_path / "demo"
    planted = res["planted"]
    assert planted["model"] == "alexnet" and planted["weights"] == "random"
    r = pd.read_csv(study / "reports" / "rankings.csv")
    overall = r[(r.metric == "overall") & (r.area == "all")].sort_values("score", ascending=False)
    assert (overall.model.iloc[0], overall.weights.iloc[0]) == ("alexnet", "random")
    # best relative depth per area (ridge, mean over the network models) rises along the areas
    depth = pd.read_csv(study / "reports" / "best_depth.csv").set_index("area")
    order = ["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam"]
    assert depth.loc["VISam", "relative_depth"] > depth.loc["VISp", "relative_depth"]
    rho = st.spearmanr(range(6), depth.loc[order, "relative_depth"]).statistic
    assert rho > 0.5
    # and for the generating model alone, its best layer per area tracks the planted layer
    gen = r[(r.model == "alexnet") & (r.metric == "ridge") & (r.area != "all")].set_index("area")
    planted_depth = [planted["area_layers"][a]["relative_depth"] for a in order]
    assert st.spearmanr(planted_depth, gen.loc[order, "relative_depth"]).statistic > 0.5
    # the report and its figures
    index = study / "reports" / "index.html"
    page = index.read_text()
    for png in ("rankings.png", "depth.png", "reliability_sweep.png", "method_tradeoff.png"):
        assert (study / "reports" / png).exists() and png in page
    assert "Planted structure" in page
    head = json.loads((study / "reports" / "headline.json").read_text())
    assert head["top_model"] == "alexnet"
    sweep = pd.read_csv(study / "reports" / "reliability_sweep.csv")
    assert sorted(sweep.threshold.unique()) == [0.0, 0.5]
    assert (sweep.groupby("threshold").n_neurons.first().diff().dropna() < 0).all()
    trade = pd.read_csv(study / "reports" / "method_tradeoff.csv")
    assert {"none", "pca", "srp"} <= set(trade.reduction) and (trade.seconds > 0).all()
    # rerunning resumes: every stage skips what is done
    logs.clear()
    res2 = pipeline.run_demo(tmp_path / "demo", size="small", log=logs.append)
    text = "\n".join(logs)
    for stage in ("ingest", "select", "extract", "sweep", "tradeoff"):
        assert f"{stage}:" in text and "skipped" in [l for l in logs if l.startswith(f"{stage}:")][0], text
    assert res2["headline"] == res["headline"]


def test_cli_demo_and_run_print_the_report(tmp_path, capsys, monkeypatch):
    """`neuroxr demo` and `neuroxr run` call the same pipeline; a stubbed run checks the wiring."""
    from neuroxr.cli import main

    seen = {}

    def fake_demo(study, client=None, size="full", seed=0, log=None):
        seen["demo"] = (Path(study), size, seed)
        return {"report": Path(study) / "reports" / "index.html", "headline": "top model (overall): x",
                "seconds": 1.0}

    monkeypatch.setattr(pipeline, "run_demo", fake_demo)
    assert main(["demo", "--study", str(tmp_path / "d"), "--size", "small", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert seen["demo"] == (tmp_path / "d", "small", 3)
    assert "index.html" in out and "top model" in out
    from neuroxr.cli import build_parser

    assert build_parser().parse_args(["demo"]).study == "neuroxr-demo"


def test_visp_config_finds_the_shared_recordings(allen_visp_npz):
    """pipelines/visp.toml: paths relative to the repository resolve to the shared data; the
    already-read config (a dict) keeps its base when checked again."""
    cfg = pipeline.read_config(REPO / "pipelines" / "visp.toml")
    images = pipeline.resolve_spec(pipeline.load_settings(cfg), cfg["ingest"]["images"])
    assert images.endswith(":images") and Path(images.rpartition(":")[0]).resolve() == allen_visp_npz.resolve()
    assert pipeline.check_pipeline(cfg, study=REPO / "nonexistent-study") == []
    assert pipeline.read_config(cfg)["_base"] == cfg["_base"]


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    from conftest import locate_allen_visp

    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        locate_allen_visp(tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="NEUROXR_ALLEN_VISP"):
        locate_allen_visp(tmp_path)
    (tmp_path / "allen_visp.npz").write_bytes(b"")
    assert locate_allen_visp(tmp_path) == tmp_path / "allen_visp.npz"


def test_domain_configs_go_to_the_domains_pipeline(monkeypatch, tmp_path):
    path = REPO / "pipelines" / "prasad2022.toml"
    if not path.exists():
        pytest.skip("pipelines/prasad2022.toml not present")
    cfg = pipeline.read_config(path)
    assert pipeline.is_domains_config(cfg) and pipeline.check_pipeline(path) == []
    import neuroxr.domains.pipeline as dom

    seen = {}

    def fake(config, study=None):
        seen["config"], seen["study"] = config, study
        return {"study": study, "report": {"index": tmp_path / "index.html"}}

    monkeypatch.setattr(dom, "run_domains_pipeline", fake)
    res = pipeline.run_pipeline(path, study=tmp_path)
    assert seen["study"] == tmp_path and seen["config"]["pipeline"]["kind"] == "prasad2022"
    assert res["report"] == tmp_path / "index.html"


# ---------------------------------------------------------------------------------- strict configs
def _write(tmp_path, text):
    path = tmp_path / "pipeline.toml"
    path.write_text("[study]\ndir = 'x'\n" + text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[score]\nalhpa = 0.001\n", "[score] unknown key 'alhpa' (did you mean 'alpha'?)"),
    ("[score]\nmetric = ['ridge']\n", "[score] unknown key 'metric' (did you mean 'metrics'?)"),
    ("[extract]\nmodel = 'alexnet'\n", "[extract] unknown key 'model' (did you mean 'models'?)"),
    ("[select]\nmin_reliabilty = 0.5\n", "[select] unknown key 'min_reliabilty' (did you mean 'min_reliability'?)"),
    ("[scoring]\nmetrics = ['ridge']\n", "unknown table [scoring] (did you mean 'score'?)"),
    ("[score]\nmetrics = 'ridge'\n", "[score] metrics must be a list of strings, got str 'ridge'"),
    ("[score]\nmetrics = ['rige']\n", "[score] metrics: unknown value 'rige' (did you mean 'ridge'?)"),
    ("[report]\nn_boot = -5\n", "[report] n_boot must be >= 0, got -5"),
    ("[report]\nn_boot = 1.5\n", "[report] n_boot must be an integer, got float 1.5"),
    ("[study]\n", "Cannot declare"),  # a second [study] table is invalid TOML
    ("[score]\nalpha = 0\n", "[score] alpha must be > 0, got 0"),
    ("[score]\nalpha = inf\n", "[score] alpha must be finite, got inf"),
    ("[select]\nexclude_running = 1\n", "[select] exclude_running must be true or false, got int 1"),
    ("[sweep]\nthresholds = [0.0, 1.5]\n", "[sweep] thresholds must be <= 1, got 1.5"),
    ("[ingest]\nsource = 'arrays'\nn_images = 10\n", "[ingest] key 'n_images' does not apply to source 'arrays'"),
    ("[ingest]\nsource = 'alen'\n", "[ingest] source: unknown value 'alen' (did you mean 'allen'?)"),
])
def test_config_typos_and_bad_values_are_errors(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(NeuroxrError) as info:
        pipeline.load_settings(path)
    assert message in str(info.value) and str(info.value).startswith(str(path)), info.value


def test_config_settings_are_typed(tmp_path):
    path = _write(tmp_path, "[score]\nmetrics = ['ridge']\nalpha = 2\n[report]\nn_boot = 10\n[sweep]\n")
    s = pipeline.load_settings(path)
    assert s.score.metrics == ["ridge"] and s.score.alpha == 2 and s.report.n_boot == 10
    assert s.sweep.thresholds == [round(0.1 * i, 1) for i in range(10)]  # an empty [sweep] runs with defaults
    assert s.select is None and s.tradeoff is None and s.study.dir == "x" and s.base == tmp_path.resolve()
    for name in ("conwell2021", "demo", "visp"):
        pipeline.load_settings(REPO / "pipelines" / f"{name}.toml")


def test_cli_run_with_a_typo_stops_before_any_work(tmp_path, capsys):
    from neuroxr.cli import main

    path = _write(tmp_path, "[score]\nalhpa = 0.001\n")
    assert main(["run", str(path), "--study", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "[score] unknown key 'alhpa' (did you mean 'alpha'?)" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
