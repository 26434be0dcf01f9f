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
from .mapping.tree import label_weights

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
    """``alexnet`` (trained), ``alexnet (random)``, ``alexnet (3f2a9c1b04de)`` (a checkpoint's sha256,
    12 hex digits); a baseline by its name alone."""
    if row.weights == "trained" or getattr(row, "family", None) == stats.BASELINE:
        return str(row.model)
    return f"{row.model} ({label_weights(row.weights)})"


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white")
    return path


def _reference_lines(ax, r: pd.DataFrame, ceiling: float = np.nan, *, vertical: bool = True) -> None:
    """Zero, the best baseline's score (dashed grey) and the noise ceiling (dotted black) on ``ax``."""
    line = ax.axvline if vertical else ax.axhline
    line(0, color="black", lw=0.6)
    base = r[r.family == stats.BASELINE]
    if len(base):
        best = base.loc[base.score.idxmax()]
        line(float(best.score), color=FAMILY_COLORS["baseline"], lw=0.9, ls="--",
             label=f"best baseline ({best.model})")
    if np.isfinite(ceiling):
        line(ceiling, color="black", lw=0.9, ls=":", label=f"noise ceiling ({ceiling:.2f})")


def plot_rankings(rankings: pd.DataFrame, metric: str | None = None, area: str = stats.ALL, *,
                  top: int = 40, weights=None, ceiling: float = np.nan) -> Figure:
    """Horizontal bars of one ranking (best at the top) with 95% bootstrap intervals, colored by family,
    against zero, the best baseline and the noise ceiling (when known)."""
    metric = metric or stats.headline_metric(rankings)
    r = stats.select_ranking(rankings, metric, area, weights).head(top)
    fig = _fig(7.5, max(2.5, 0.24 * len(r) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(r))[::-1]
    colors = [to_rgba(FAMILY_COLORS.get(f, "#333333"), 0.95 if w == "trained" else 0.45)
              for f, w in zip(r.family, r.weights)]
    ax.barh(y, r.score, color=colors)
    ok = r.ci_low.notna().to_numpy()
    if ok.any():  # the interval as it is (a bootstrapped max over layers may lie above the observed max)
        ax.hlines(y[ok], r.ci_low[ok], r.ci_high[ok], color="black", lw=0.8)
        ax.plot(np.r_[r.ci_low[ok], r.ci_high[ok]], np.r_[y[ok], y[ok]], "|", color="black", ms=5)
    ax.set_yticks(y, [_model_label(row) for row in r.itertuples()], fontsize=8)
    _reference_lines(ax, stats.select_ranking(rankings, metric, area), ceiling)
    ax.set_xlabel(_label(metric))
    ax.set_title(f"Model ranking: {metric}, area {area}" + ("" if len(r) < top else f" (top {top})"))
    handles = [_patch(FAMILY_COLORS[f], f) for f in FAMILY_COLORS if f in set(r.family)]
    handles += [h for h in ax.get_lines() if not h.get_label().startswith("_")]
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


def plot_trained_vs_random(rankings: pd.DataFrame, metric=None, area: str = stats.ALL, *,
                           ceilings: pd.DataFrame | None = None) -> Figure:
    """The study's Figure 1: per architecture, trained (red) and randomly initialised (blue) scores
    with 95% intervals, one panel per metric (default: the regression metric and RSA), each
    against zero, the best baseline and the noise ceiling (when known)."""
    if metric is None:
        have = set(rankings.metric)
        metrics = [m for m in (stats.regression_metric(list(have)), "rsa") if m in have] or [
            stats.headline_metric(rankings)]
    else:
        metrics = [metric] if isinstance(metric, str) else list(metric)
    n_models = rankings.loc[rankings.weights == "trained", "model"].nunique()
    fig = _fig(max(5, 0.38 * n_models + 2) * len(metrics), 4.4)
    for i, m in enumerate(metrics):
        _trained_vs_random_panel(fig.add_subplot(1, len(metrics), i + 1), rankings, m, area,
                                 stats.get_ceiling(ceilings, m, area))
    return fig


def _trained_vs_random_panel(ax, rankings, metric, area, ceiling) -> None:
    r = rankings[(rankings.metric == metric) & (rankings.area == area)]
    t = r[r.weights == "trained"].set_index("model")
    u = r[r.weights == "random"].set_index("model")
    models = list(t.index.intersection(u.index))
    models = sorted(models, key=lambda m: -t.loc[m, "score"]) or list(t.index)
    x = np.arange(len(models))
    for df, color, label, dx in ((t, TRAINED, "trained", -0.12), (u, RANDOM, "random", 0.12)):
        have = [m for m in models if m in df.index]
        xs = np.array([x[models.index(m)] for m in have]) + dx
        s = df.loc[have, "score"].to_numpy(float)
        lo, hi = df.loc[have, "ci_low"].to_numpy(float), df.loc[have, "ci_high"].to_numpy(float)
        ax.plot(xs, s, "o", color=color, label=label, ms=5)
        ax.vlines(xs, lo, hi, color=color, lw=1)  # NaN ends draw nothing; no end is clipped to the point
    for m in models:
        if m in u.index:
            ax.plot([x[models.index(m)] - 0.12, x[models.index(m)] + 0.12], [t.loc[m, "score"], u.loc[m, "score"]],
                    color="#999999", lw=0.7, zorder=0)
    _reference_lines(ax, r, ceiling, vertical=False)
    ax.set_xticks(x, models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(_label(metric))
    ax.set_title(f"Trained vs random weights ({metric}, area {area})")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_depth(best_depth: pd.DataFrame, profile: pd.DataFrame | None = None) -> Figure:
    """Left: relative depth of the best layer per area (mean, 95% interval; left out with one area,
    where it would be a single point). Right: score against relative depth in bins with the lowess
    trend, trained (red) and random (blue)."""
    has_profile = profile is not None and len(profile)
    if has_profile and best_depth.area.nunique() < 2:
        fig = _fig(5, 4)
        _plot_depth_profile(fig.add_subplot(), profile)
        return fig
    fig = _fig(10 if has_profile else 5, 4)
    ax = fig.add_subplot(1, 2 if has_profile else 1, 1)
    b = best_depth
    x = np.arange(len(b))
    ax.plot(x, b.relative_depth, "o-", color="#333333")
    ok = (b.ci_low.notna() & b.ci_high.notna()).to_numpy()
    ax.vlines(x[ok], b.ci_low[ok], b.ci_high[ok], color="#333333", lw=1.2)  # areas without an interval: none drawn
    ax.set_xticks(x, b.area)
    ax.set_ylim(0, 1)
    ax.set_xlabel("area (hierarchy order)")
    ax.set_ylabel("relative depth of the best layer")
    ax.set_title(f"Where in depth ({b.metric.iloc[0] if len(b) else ''})")
    ax.grid(alpha=0.3)
    if has_profile:
        _plot_depth_profile(fig.add_subplot(1, 2, 2), profile)
    return fig


def _plot_depth_profile(ax2, profile: pd.DataFrame) -> None:
    """Score against relative depth in bins with the lowess trend, on ``ax2``."""
    metric = stats.pick_depth_metric(profile)
    p = profile[(profile.metric == metric) & (profile.area == stats.ALL)]
    for w, g in p.groupby("weights"):
        color = TRAINED if w == "trained" else RANDOM if w == "random" else "#555555"
        ax2.scatter(g.bin_center, g.score, s=8, color=color, alpha=0.35)
        g = g.sort_values("bin_center")
        ax2.plot(g.bin_center, g.lowess, color=color, lw=2, label=f"{label_weights(w)} (lowess)")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("relative depth (100 bins)")
    ax2.set_ylabel(_label(metric).replace(" Max", ""))
    ax2.set_title("Score against relative depth")
    ax2.legend(frameon=False, fontsize=8)
    ax2.grid(alpha=0.3)


def plot_depth_profiles(profile: pd.DataFrame, metric: str | None = None) -> Figure:
    """Score against relative depth in each area (one panel per area, hierarchy order): bin means
    and the lowess trend, trained (red) and random (blue); from
    :func:`neuroxr.stats.bin_depth_profile` with ``by_area=True``."""
    if profile.empty:
        return _empty("no depth profile")
    metric = metric or stats.pick_depth_metric(profile)
    p = profile[profile.metric == metric]
    areas = stats.order_groups(p.area[p.area != stats.ALL], "area")
    cols = min(3, len(areas))
    rows = int(np.ceil(len(areas) / cols))
    fig = _fig(3.4 * cols, 2.8 * rows)
    for i, a in enumerate(areas):
        ax = fig.add_subplot(rows, cols, i + 1)
        for w, g in p[p.area == a].groupby("weights"):
            color = TRAINED if w == "trained" else RANDOM if w == "random" else "#555555"
            g = g.sort_values("bin_center")
            ax.scatter(g.bin_center, g.score, s=5, color=color, alpha=0.3)
            ax.plot(g.bin_center, g.lowess, color=color, lw=1.8, label=label_weights(w))
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlim(0, 1)
        ax.set_title(a, fontsize=9)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel(_label(metric).replace(" Max", ""), fontsize=8)
        if i >= len(areas) - cols:
            ax.set_xlabel("relative depth", fontsize=8)
        if i == 0:
            ax.legend(frameon=False, fontsize=7)
    return fig


def plot_taskonomy(summary: pd.DataFrame, metric: str | None = None, by: str = "area",
                   tasks: pd.DataFrame | None = None) -> Figure:
    """The study's Figure 2: Taskonomy scores by task cluster in each area (or cre line): the
    cluster means (bars, 95% intervals) and, given ``tasks`` (rows of the rankings of family
    ``taskonomy`` with a ``cluster`` column), each task's score as a point on its cluster's bar.
    With a single group the ``all`` column (the same numbers) is left out."""
    if summary.empty:
        return _empty("no Taskonomy models were scored")
    metric = metric or stats.pick_depth_metric(summary)
    s = summary[summary.metric == metric]
    named = stats.order_groups(s[by][s[by] != stats.ALL], by)
    groups = [g for g in (([stats.ALL] if len(named) > 1 else []) + named) if g in set(s[by])]
    clusters = sorted(s.cluster.unique())
    fig = _fig(max(5, 1.1 * len(groups) + 2), 4)
    ax = fig.add_subplot()
    w = 0.8 / max(1, len(clusters))
    cmap = {"2D": "#4c72b0", "3D": "#55a868", "semantic": "#c44e52", "geometric": "#8172b3"}
    for i, cl in enumerate(clusters):
        c = s[s.cluster == cl].set_index(by).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(clusters) - 1) / 2) * w
        ax.bar(x, c.score, width=w, color=cmap.get(cl, f"C{i}"), label=cl, alpha=0.75)
        ok = (c.ci_low.notna() & c.ci_high.notna()).to_numpy()
        ax.vlines(x[ok], c.ci_low[ok], c.ci_high[ok], color="black", lw=1)
        if tasks is not None and len(tasks):
            tk = tasks[(tasks.metric == metric) & (tasks.cluster == cl)]
            for j, g in enumerate(groups):
                v = tk.loc[tk[by] == g, "score"].to_numpy(float)
                ax.scatter(np.full(len(v), x[j]), v, s=9, color="black", zorder=3)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=30 if by != "area" else 0, fontsize=8)
    ax.set_ylabel(_label(metric))
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(f"Taskonomy tasks by cluster and {by.replace('_', ' ')}" + (" (points: tasks)" if tasks is not None else ""))
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


def plot_effective_dim(table: pd.DataFrame) -> Figure:
    """Each layer's score (mean over areas) against its effective dimensionality (log), trained
    (red), random (blue), baselines (grey)."""
    if table.empty:
        return _empty("no effective dimensionality in scores.zarr")
    fig = _fig(6, 4.2)
    ax = fig.add_subplot()
    for w, g in table.groupby("weights"):
        base = g.family == stats.BASELINE
        color = TRAINED if w == "trained" else RANDOM if w == "random" else "#555555"
        ax.scatter(g.effective_dim[~base], g.score[~base], s=10, color=color, alpha=0.6,
                   label=f"{label_weights(w)} layers")
        if base.any():
            ax.scatter(g.effective_dim[base], g.score[base], s=30, marker="s", color=FAMILY_COLORS["baseline"],
                       label="baselines")
    if (table.effective_dim > 0).all():
        ax.set_xscale("log")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("effective dimensionality of the layer")
    ax.set_ylabel(_label(str(table.metric.iloc[0])).replace(" Max", "") + ", mean over areas")
    ax.set_title("Score against effective dimensionality")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _empty(text):
    fig = _fig(5, 1.5)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig
