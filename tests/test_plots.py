"""Every figure is drawn from synthetic tables, written as PNG, opened again and checked not blank."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuroxr import plots, stats
from test_stats import make_scores, select_neurons


def check_png(path, min_w=300, min_h=150):
    """Open the PNG: size at least ``min_w`` x ``min_h``, not uniform, and with some ink."""
    from matplotlib.image import imread

    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_h and img.shape[1] >= min_w, img.shape
    rgb = img[..., :3]
    assert rgb.std() > 0.02
    non_white = (rgb.min(axis=2) < 0.95).mean()
    assert 0.01 < non_white < 0.95, non_white
    return img


@pytest.fixture(scope="module")
def tables():
    scores = make_scores(seed=3)
    r = stats.rank_models(scores, n_boot=100)
    tasks = pd.DataFrame({"task": ["edge_texture", "class_object", "depth_zbuffer", "segment_semantic"],
                          "cluster": ["2D", "semantic", "3D", "semantic"]})
    rel = scores.splithalf_r.values
    sweep = stats.rank_over_thresholds(lambda m: select_neurons(scores, np.flatnonzero(m)), rel,
                                    thresholds=[0, 0.3, 0.6], n_boot=50)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 200))
    trade = stats.measure_method_tradeoff({"a": X}, X[:, :3] + rng.standard_normal((30, 3)), sizes=(8, 16))
    return dict(scores=scores, rankings=r, tasks=tasks, sweep=sweep, trade=trade)


def test_every_figure_is_a_readable_png(tables, tmp_path):
    r = tables["rankings"]
    summary, _ = stats.summarize_taskonomy(r, tables["tasks"], n_boot=50)
    figs = {
        "rankings": plots.plot_rankings(r),
        "rankings_visp_rsa": plots.plot_rankings(r, "rsa", "VISp"),
        "heatmap": plots.plot_area_heatmap(r),
        "trained_vs_random": plots.plot_trained_vs_random(r),
        "depth": plots.plot_depth(stats.summarize_best_depth(r, n_boot=50), stats.bin_depth_profile(tables["scores"])),
        "taskonomy": plots.plot_taskonomy(summary),
        "sweep": plots.plot_reliability_sweep(tables["sweep"]),
        "tradeoff": plots.plot_method_tradeoff(tables["trade"]),
    }
    for name, fig in figs.items():
        p = plots.save_figure(fig, tmp_path / f"{name}.png")
        check_png(p)


def test_trained_red_random_blue(tables, tmp_path):
    from matplotlib.colors import to_rgb

    fig = plots.plot_trained_vs_random(tables["rankings"], "ridge")
    ax = fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    colors = {lab: to_rgb(h[0].get_color()) for h, lab in zip(handles, labels)}
    assert colors["trained"] == to_rgb(plots.TRAINED) and colors["random"] == to_rgb(plots.RANDOM)
    r, _, b = to_rgb(plots.TRAINED)
    assert r > b  # red
    r, _, b = to_rgb(plots.RANDOM)
    assert b > r  # blue
    img = check_png(plots.save_figure(fig, tmp_path / "tvr.png"))
    rgb = img[..., :3]
    assert ((rgb[..., 0] > 0.6) & (rgb[..., 2] < 0.35)).sum() > 20  # red marks drawn
    assert ((rgb[..., 2] > 0.6) & (rgb[..., 0] < 0.35)).sum() > 20  # blue marks drawn


def test_ranking_bars_follow_scores(tables):
    r = tables["rankings"]
    fig = plots.plot_rankings(r, "ridge", top=5)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches[:5]]
    ref = stats.select_ranking(r, "ridge").score.head(5).to_numpy()
    np.testing.assert_allclose(widths, ref)
    ticks = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
    assert ticks[max(ticks)] == stats.select_ranking(r, "ridge").model.iloc[0]  # best at the top


def test_empty_tables_give_a_message_figure(tmp_path):
    check_png(plots.save_figure(plots.plot_taskonomy(pd.DataFrame()), tmp_path / "e.png"), min_h=100)
