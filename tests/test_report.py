"""rank/report on a synthetic study: files written, contract columns, figures readable, CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_plots import check_png
from test_stats import make_scores

from neuroxr import schema as S
from neuroxr import stats
from neuroxr.mapping.tree import replace_scores


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    replace_scores(make_scores(seed=5), d / S.SCORES_STORE)
    return d


def test_write_rankings_csv(study):
    from neuroxr.report import write_rankings

    p = write_rankings(study, n_boot=50)
    assert p == study / "reports" / "rankings.csv"
    df = pd.read_csv(p)
    assert list(df.columns[:7]) == list(S.RANKINGS_COLUMNS)
    # same numbers as ranking the in-memory dataset
    ref = stats.rank_models(make_scores(seed=5), n_boot=0)
    m = df.merge(ref, on=["model", "weights", "area", "metric"], suffixes=("", "_ref"))
    assert len(m) == len(ref) == len(df)
    np.testing.assert_allclose(m.score, m.score_ref, rtol=1e-5)
    assert (m.best_layer.fillna("") == m.best_layer_ref.fillna("")).all()


def test_write_report(study):
    from neuroxr.report import write_report

    # a reliability sweep and a trade-off table written by the pipeline are picked up
    pd.DataFrame({"threshold": [0, 0.5, 0, 0.5], "n_neurons": [10, 5, 10, 5], "model": ["a", "a", "b", "b"],
                  "weights": "trained", "metric": "ridge", "area": "all", "score": [0.3, 0.4, 0.2, 0.25],
                  "ci_low": [0.2, 0.3, 0.1, 0.2], "ci_high": [0.4, 0.5, 0.3, 0.3]}).to_csv(
        study / "reports" / "reliability_sweep.csv", index=False)
    index = write_report(study, n_boot=50)
    assert index == study / "reports" / "index.html"
    page = index.read_text()
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert {"rankings.png", "area_heatmap.png", "trained_vs_random.png", "depth.png", "taskonomy.png",
            "reliability_sweep.png"} <= set(pngs)
    for name in pngs:
        assert f'src="{name}"' in page
        check_png(index.parent / name)
    for csv in ("rankings.csv", "statistics.csv", "best_depth.csv", "depth_profile.csv", "taskonomy.csv",
                "rankings_cre_line.csv"):
        assert (index.parent / csv).exists() and f"{csv}" in page
    st = pd.read_csv(index.parent / "statistics.csv")
    assert {"trained_vs_random", "transformer_vs_rest", "metric_agreement_models", "depth_gradient",
            "taskonomy_clusters"} <= set(st.analysis)
    assert {"test", "statistic", "p", "effect_size", "n", "ci_low", "ci_high", "p_bonferroni"} <= set(st.columns)
    head = json.loads((index.parent / "headline.json").read_text())
    assert head["metric"] == "overall"
    # resnet18 was planted best (quality 0.55)
    assert head["top_model"] == "resnet18" and head["top_weights"] == "trained"
    assert head["best_relative_depth"]["VISam"] > head["best_relative_depth"]["VISp"]


def test_cli_rank_and_report(study, capsys):
    from neuroxr.cli import main

    assert main(["rank", str(study), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "rankings.csv" in out and "resnet18" in out
    assert main(["report", str(study), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "index.html" in out and "top model" in out


def test_cli_missing_scores_is_a_clear_error(tmp_path, capsys):
    from neuroxr.cli import main

    assert main(["rank", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "scores.zarr" in err and "neuroxr score" in err


# ---------------------------------------------------------------------------------- CLI details
def _subparsers(parser):
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_cli_help_prints_percent_once_and_every_option_has_help(capsys):
    from neuroxr.cli import build_parser, main

    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    out = capsys.readouterr().out
    assert "95%%" not in out and "95% intervals" in out
    subs = _subparsers(build_parser())
    for name in ("rank", "report", "run", "demo", "score", "verify"):
        missing = [a.dest for a in subs[name]._actions if not a.help]
        assert not missing, (name, missing)


@pytest.mark.parametrize("argv, message", [
    (["rank", "S", "--n-boot", "-5"], "must be >= 0, got -5"),
    (["report", "S", "--seed", "x"], "expected an integer, got 'x'"),
    (["score", "S", "--layer-chunk", "0"], "must be >= 1, got 0"),
    (["score", "S", "--alphas", "1,x"], "takes comma-separated numbers"),
])
def test_cli_bad_counts_are_usage_errors(argv, message, capsys):
    from neuroxr.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err


def test_counts_are_pluralised():
    from neuroxr.features.progress import plural

    assert [plural(n, "layer") for n in (0, 1, 2)] == ["0 layers", "1 layer", "2 layers"]


def test_cli_stops_quietly_when_stdout_is_closed():
    """`neuroxr models | head -0`: the reader is gone before the table is written; no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "neuroxr", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the child (still importing) writes a byte
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert "Traceback" not in err and "Error" not in err
