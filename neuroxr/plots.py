"""Figures of the study (matplotlib, no display needed).

Every function takes the tidy tables of :mod:`neuroxr.stats` and returns a
:class:`matplotlib.figure.Figure` built without pyplot (so it works headless and in threads);
:func:`save_figure` writes it as PNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from . import stats

TRAINED, RANDOM = "#c0392b", "#2e6fba"  # red and blue, as in the study
FAMILY_COLORS = {"cnn": "#4c72b0", "transformer": "#dd8452", "mlp-mixer": "#8172b3", "taskonomy": "#55a868",
                 "ssl": "#937860", "baseline": "#8c8c8c"}
METRIC_LABELS = {"overall": "Overall (mean of regression and RSA max)", "ridge": "Ridge Max (Pearson r)",
                 "srp-ridge": "SRP-Ridge Max (Pearson r)", "pls": "PLS Max (Pearson r)", "rsa": "RSA Max (Pearson r)"}


def _fig(w, h):
    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    return fig


def _label(metric):
    return METRIC_LABELS.get(metric, metric)


def _model_label(row):
    return f"{row.model} ({row.weights})" if row.weights not in ("trained",) else str(row.model)


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white")
    return path


def plot_rankings(rankings: pd.DataFrame, metric: str | None = None, area: str = stats.ALL, *,
                  top: int = 40, weights=None) -> Figure:
    """Horizontal bars of one ranking (best at the top) with 95% bootstrap intervals, colored by family."""
    metric = metric or stats.headline_metric(rankings)
    r = stats.select_ranking(rankings, metric, area, weights).head(top)
    fig = _fig(7.5, max(2.5, 0.24 * len(r) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(r))[::-1]
    colors = [to_rgba(FAMILY_COLORS.get(f, "#333333"), 0.95 if w == "trained" else 0.45)
              for f, w in zip(r.family, r.weights)]
    ax.barh(y, r.score, color=colors)
    ok = r.ci_low.notna().to_numpy()
    if ok.any():
        ax.errorbar(r.score[ok], y[ok], xerr=[(r.score - r.ci_low)[ok], (r.ci_high - r.score)[ok]], fmt="none",
                    ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_yticks(y, [_model_label(row) for row in r.itertuples()], fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel(_label(metric))
    ax.set_title(f"Model ranking: {metric}, area {area}" + ("" if len(r) < top else f" (top {top})"))
    handles = [_patch(FAMILY_COLORS[f], f) for f in FAMILY_COLORS if f in set(r.family)]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="lower right", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _patch(color, label):
    return Patch(facecolor=color, label=label)


def plot_area_heatmap(rankings: pd.DataFrame, metric: str | None = None, *, top: int = 30) -> Figure:
    """Models (rows, ordered by the ``all`` score) by areas (columns in hierarchy order)."""
    metric = metric or stats.pick_depth_metric(rankings)
    r = rankings[rankings.metric == metric].copy()
    r["label"] = [_model_label(x) for x in r.itertuples()]
    order = stats.select_ranking(rankings, metric).head(top)
    labels = [_model_label(x) for x in order.itertuples()]
    areas = [stats.ALL] + stats.order_groups(r.area[r.area != stats.ALL], "area")
    piv = r.pivot_table(index="label", columns="area", values="score").reindex(index=labels, columns=areas)
    fig = _fig(max(6.0, 3.0 + 0.75 * len(areas)), max(2.5, 0.24 * len(labels) + 1.3))
    ax = fig.add_subplot()
    im = ax.imshow(piv.to_numpy(float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(areas)), areas, rotation=30)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(im, ax=ax, label=_label(metric), shrink=0.8)
    ax.set_title(f"{metric} by area")
    return fig


def plot_trained_vs_random(rankings: pd.DataFrame, metric: str | None = None, area: str = stats.ALL) -> Figure:
    """Per architecture: trained (red) and randomly initialised (blue) score with 95% intervals."""
    metric = metric or stats.headline_metric(rankings)
    r = rankings[(rankings.metric == metric) & (rankings.area == area)]
    t = r[r.weights == "trained"].set_index("model")
    u = r[r.weights == "random"].set_index("model")
    models = list(t.index.intersection(u.index))
    models = sorted(models, key=lambda m: -t.loc[m, "score"]) or list(t.index)
    fig = _fig(max(5, 0.38 * len(models) + 2), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(models))
    for df, color, label, dx in ((t, TRAINED, "trained", -0.12), (u, RANDOM, "random", 0.12)):
        have = [m for m in models if m in df.index]
        xs = np.array([x[models.index(m)] for m in have]) + dx
        s = df.loc[have, "score"].to_numpy(float)
        lo, hi = df.loc[have, "ci_low"].to_numpy(float), df.loc[have, "ci_high"].to_numpy(float)
        ax.errorbar(xs, s, yerr=[np.nan_to_num(s - lo), np.nan_to_num(hi - s)], fmt="o", color=color, label=label,
                    ms=5, capsize=2, lw=1)
    for m in models:
        if m in u.index:
            ax.plot([x[models.index(m)] - 0.12, x[models.index(m)] + 0.12], [t.loc[m, "score"], u.loc[m, "score"]],
                    color="#999999", lw=0.7, zorder=0)
    ax.set_xticks(x, models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(_label(metric))
    ax.set_title(f"Trained vs random weights ({metric}, area {area})")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_depth(best_depth: pd.DataFrame, profile: pd.DataFrame | None = None) -> Figure:
    """Left: relative depth of the best layer per area (mean, 95% interval). Right: score against
    relative depth in bins with the lowess trend, trained (red) and random (blue)."""
    fig = _fig(10 if profile is not None and len(profile) else 5, 4)
    ax = fig.add_subplot(1, 2 if profile is not None and len(profile) else 1, 1)
    b = best_depth
    x = np.arange(len(b))
    ax.errorbar(x, b.relative_depth, yerr=[np.nan_to_num(b.relative_depth - b.ci_low),
                                           np.nan_to_num(b.ci_high - b.relative_depth)],
                fmt="o-", color="#333333", capsize=3)
    ax.set_xticks(x, b.area)
    ax.set_ylim(0, 1)
    ax.set_xlabel("area (hierarchy order)")
    ax.set_ylabel("relative depth of the best layer")
    ax.set_title(f"Where in depth ({b.metric.iloc[0] if len(b) else ''})")
    ax.grid(alpha=0.3)
    if profile is not None and len(profile):
        ax2 = fig.add_subplot(1, 2, 2)
        metric = stats.pick_depth_metric(profile)
        p = profile[(profile.metric == metric) & (profile.area == stats.ALL)]
        for w, g in p.groupby("weights"):
            color = TRAINED if w == "trained" else RANDOM if w == "random" else "#555555"
            ax2.scatter(g.bin_center, g.score, s=8, color=color, alpha=0.35)
            g = g.sort_values("bin_center")
            ax2.plot(g.bin_center, g.lowess, color=color, lw=2, label=f"{w} (lowess)")
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("relative depth (100 bins)")
        ax2.set_ylabel(_label(metric).replace(" Max", ""))
        ax2.set_title("Score against relative depth")
        ax2.legend(frameon=False, fontsize=8)
        ax2.grid(alpha=0.3)
    return fig


def plot_taskonomy(summary: pd.DataFrame, metric: str | None = None, by: str = "area") -> Figure:
    """Taskonomy scores: mean per task cluster (bars, 95% intervals) in each area or cre line."""
    if summary.empty:
        return _empty("no Taskonomy models were scored")
    metric = metric or stats.pick_depth_metric(summary)
    s = summary[summary.metric == metric]
    groups = [g for g in ([stats.ALL] + stats.order_groups(s[by][s[by] != stats.ALL], by)) if g in set(s[by])]
    clusters = sorted(s.cluster.unique())
    fig = _fig(max(5, 1.1 * len(groups) + 2), 4)
    ax = fig.add_subplot()
    w = 0.8 / max(1, len(clusters))
    cmap = {"2D": "#4c72b0", "3D": "#55a868", "semantic": "#c44e52", "geometric": "#8172b3"}
    for i, cl in enumerate(clusters):
        c = s[s.cluster == cl].set_index(by).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(clusters) - 1) / 2) * w
        ax.bar(x, c.score, width=w, color=cmap.get(cl, f"C{i}"), label=cl,
               yerr=[np.nan_to_num(c.score - c.ci_low), np.nan_to_num(c.ci_high - c.score)], capsize=2)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=30 if by != "area" else 0, fontsize=8)
    ax.set_ylabel(_label(metric))
    ax.set_title(f"Taskonomy by task cluster and {by.replace('_', ' ')}")
    ax.legend(frameon=False, fontsize=8, title="cluster")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_reliability_sweep(sweep: pd.DataFrame, metric: str | None = None, *, top: int = 8) -> Figure:
    """Score against the split-half reliability threshold (lines with 95% bands), one line per model."""
    metric = metric or stats.headline_metric(sweep)
    s = sweep[sweep.metric == metric].copy()
    s["label"] = [_model_label(x) for x in s.itertuples()]
    last = s[s.threshold == s.threshold.min()].sort_values("score", ascending=False).label.head(top)
    fig = _fig(7.5, 4.2)
    ax = fig.add_subplot()
    for i, lab in enumerate(last):
        g = s[s.label == lab].sort_values("threshold")
        ax.plot(g.threshold, g.score, "o-", ms=3, color=f"C{i}", label=lab)
        ax.fill_between(g.threshold, g.ci_low, g.ci_high, color=f"C{i}", alpha=0.15)
    n = s.groupby("threshold").n_neurons.first()
    ax2 = ax.twinx()
    ax2.plot(n.index, n.values, ":", color="#777777")
    ax2.set_ylabel("neurons kept (dotted)", color="#777777")
    ax.set_xlabel("split-half reliability threshold")
    ax.set_ylabel(_label(metric))
    ax.set_title("Reliability sweep")
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def plot_method_tradeoff(tradeoff: pd.DataFrame) -> Figure:
    """Score against compute time (log) for no reduction, PCA and sparse random projection at each
    size, ridge (filled) and PLS (open)."""
    if tradeoff.empty:
        return _empty("no method trade-off was measured")
    t = tradeoff.copy()
    t.loc[t.reduction == "none", "size"] = 0  # no reduction: one point (all features), whatever the layer
    t = t.groupby(["reduction", "size", "regression"], as_index=False)[["score", "seconds"]].mean()
    fig = _fig(7, 4.4)
    ax = fig.add_subplot()
    colors = {"none": "#333333", "pca": "#4c72b0", "srp": "#dd8452"}
    for (red, reg), g in t.groupby(["reduction", "regression"]):
        g = g.sort_values("size")
        filled = reg == "ridge"
        ax.plot(g.seconds, g.score, "-" if filled else "--", color=colors.get(red, "C5"), lw=1, alpha=0.7)
        ax.scatter(g.seconds, g.score, s=90 if red == "none" else 30 + 6 * np.log2(np.maximum(g["size"].to_numpy(float), 1)),
                   facecolors=colors.get(red, "C5") if filled else "none", edgecolors=colors.get(red, "C5"),
                   label=f"{red} + {reg}")
        for row in g.itertuples():
            if red != "none":
                ax.annotate(str(int(row.size)), (row.seconds, row.score), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("compute time per layer (s, log; mean over the layers measured)")
    ax.set_ylabel("mean Pearson r over neurons")
    ax.set_title("Method trade-off: reduction x regression (labels: components)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def _empty(text):
    fig = _fig(5, 1.5)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig
