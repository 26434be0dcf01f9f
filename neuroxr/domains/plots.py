"""Figures of the domain study (matplotlib, Agg backend, PNG files).

- :func:`plot_naturalness`: spectral slope distribution per domain, with p = 2 marked;
- :func:`plot_predictivity_by_layer`: score vs layer, one panel per area, one line per domain;
- :func:`plot_naturalness_vs_predictivity`: one panel per layer, x = naturalness, y = score;
- :func:`plot_first_layer_filters`: the 64 conv1 filters of each network as an 8 x 8 RGB grid;
- :func:`plot_norm_distributions`: activation norm distributions per layer and network;
- :func:`plot_distances`: networks' mean per-image activation distance, one heatmap per layer.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "plot_naturalness",
    "plot_predictivity_by_layer",
    "plot_naturalness_vs_predictivity",
    "plot_first_layer_filters",
    "plot_norm_distributions",
    "plot_distances",
    "plot_domain_report",
    "write_domains_index",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    _plt().close(fig)
    return path


def _layer_order(layers):
    return sorted(set(layers), key=lambda l: (len(l), l))


def plot_naturalness(table: pd.DataFrame, slopes: dict | None, path) -> Path:
    """Spectral slopes per domain (violins when per-image slopes are given) and naturalness."""
    plt = _plt()
    doms = list(table["domain"])
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.1 * len(doms), 3.6), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    x = np.arange(len(doms))
    if slopes:
        data = [np.asarray(slopes[d])[np.isfinite(slopes[d])] for d in doms]
        ok = [i for i, v in enumerate(data) if len(v) > 1]
        if ok:
            parts = ax.violinplot([data[i] for i in ok], positions=x[ok], showmedians=False, showextrema=False)
            for b in parts["bodies"]:
                b.set_alpha(0.3)
    ax.errorbar(x, table["p_mean"], yerr=table["p_sd"], fmt="o", color="k", capsize=3, label="mean ± sd")
    ax.axhline(2.0, ls="--", color="tab:green", lw=1, label="natural images (p = 2)")
    ax.set_xticks(x, doms, rotation=30, ha="right")
    ax.set_ylabel("spectral slope p (power ∝ 1/f^p)")
    ax.set_title("Power spectrum slope")
    ax.legend(fontsize=8, loc="best")
    ax = axes[1]
    ax.bar(x, table["naturalness"], color="tab:blue")
    ax.set_xticks(x, doms, rotation=30, ha="right")
    ax.set_ylabel("naturalness  −log|p̄ − 2|")
    ax.set_title("Naturalness")
    fig.tight_layout()
    return _save(fig, path)


def plot_predictivity_by_layer(summary: pd.DataFrame, path) -> Path:
    """Mean score ± sem over splits vs layer, one panel per area, one line per network."""
    plt = _plt()
    areas = list(dict.fromkeys(summary["area"]))
    layers = _layer_order(summary["layer"])
    n = len(areas)
    ncol = min(3, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False, sharey=True)
    for ax, area in zip(axes.ravel(), areas):
        df = summary[summary["area"] == area]
        for model, d in df.groupby("model", sort=False):
            d = d.set_index("layer").reindex(layers)
            ax.errorbar(np.arange(len(layers)), d["mean"], yerr=d["sem"], marker="o", capsize=2, label=model)
        ax.set_xticks(np.arange(len(layers)), layers)
        ax.set_title(area)
        ax.axhline(0, color="0.7", lw=0.8)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    metric = summary["metric"].iloc[0] if "metric" in summary and len(summary) else "score"
    for ax in axes[:, 0]:
        ax.set_ylabel(metric.replace("_", " "))
    axes.ravel()[0].legend(fontsize=7, title="trained on", title_fontsize=7)
    fig.suptitle("Neural predictivity by layer (mean ± sem over splits)")
    fig.tight_layout()
    return _save(fig, path)


def plot_naturalness_vs_predictivity(summary: pd.DataFrame, path) -> Path:
    """One panel per layer: x = the training domain's naturalness, y = mean score, per area."""
    plt = _plt()
    layers = _layer_order(summary["layer"])
    fig, axes = plt.subplots(1, len(layers), figsize=(3.0 * len(layers), 3.2), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    areas = list(dict.fromkeys(summary["area"]))
    for ax, layer in zip(axes[0], layers):
        df = summary[summary["layer"] == layer]
        for i, area in enumerate(areas):
            d = df[df["area"] == area].sort_values("naturalness")
            ax.errorbar(d["naturalness"], d["mean"], yerr=d["sem"], marker="o", ms=4, capsize=2,
                        color=colors[i % len(colors)], label=area, lw=1)
        for _, r in df.drop_duplicates("model").iterrows():
            ax.annotate(str(r["model"]), (r["naturalness"], df.loc[df["model"] == r["model"], "mean"].max()),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=6, color="0.3")
        ax.set_title(layer)
        ax.set_xlabel("naturalness −log|p̄ − 2|")
    axes[0, 0].set_ylabel(summary["metric"].iloc[0].replace("_", " ") if len(summary) else "score")
    axes[0, -1].legend(fontsize=7, title="area", title_fontsize=7)
    fig.suptitle("Naturalness of the training domain vs neural predictivity")
    fig.tight_layout()
    return _save(fig, path)


def _filter_grid(w: np.ndarray, ncol: int = 8, pad: int = 1) -> np.ndarray:
    """(filter, 3, h, w) -> an RGB mosaic, each filter scaled to 0..1 on its own."""
    n, c, h, wd = w.shape
    nrow = int(np.ceil(n / ncol))
    grid = np.ones((nrow * (h + pad) + pad, ncol * (wd + pad) + pad, 3))
    for i in range(n):
        f = np.transpose(w[i], (1, 2, 0))
        if c == 1:
            f = np.repeat(f, 3, axis=2)
        lo, hi = f.min(), f.max()
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (wd + pad): pad + q * (wd + pad) + wd] = f
    return grid


def plot_first_layer_filters(filters: dict, path) -> Path:
    """The conv1 filters (64, 3, 11, 11) of every network as an 8 x 8 RGB grid, side by side."""
    plt = _plt()
    n = len(filters)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax, (label, w) in zip(axes.ravel(), filters.items()):
        ax.imshow(_filter_grid(np.asarray(w)), interpolation="nearest")
        ax.set_title(str(label), fontsize=9)
        ax.set_axis_off()
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle("First-layer (conv1) filters, each scaled to its own range")
    fig.tight_layout()
    return _save(fig, path)


def plot_norm_distributions(norms: pd.DataFrame, path) -> Path:
    """Violin plots of per-image activation L2 norms, one panel per layer, one violin per network."""
    plt = _plt()
    layers = _layer_order(norms["layer"])
    models = list(dict.fromkeys(norms["model"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(max(2.4, 0.7 * len(models) + 1.2) * len(layers), 3.4),
                             squeeze=False)
    for ax, layer in zip(axes[0], layers):
        data = [norms.loc[(norms["layer"] == layer) & (norms["model"] == m), "norm"].to_numpy() for m in models]
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(np.arange(1, len(models) + 1), models, rotation=30, ha="right", fontsize=7)
        ax.set_title(layer)
    axes[0, 0].set_ylabel("activation L2 norm per image")
    fig.suptitle("Activation norm distributions")
    fig.tight_layout()
    return _save(fig, path)


def plot_distances(distances: pd.DataFrame, path) -> Path:
    """Mean per-image Euclidean distance between networks, one heatmap per layer."""
    plt = _plt()
    layers = _layer_order(distances["layer"])
    models = list(dict.fromkeys(list(distances["model_a"]) + list(distances["model_b"])))
    fig, axes = plt.subplots(1, len(layers), figsize=(2.8 * len(layers) + 0.5, 2.9), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        m = np.zeros((len(models), len(models)))
        for r in distances[distances["layer"] == layer].itertuples():
            i, j = models.index(r.model_a), models.index(r.model_b)
            m[i, j] = m[j, i] = r.mean
        im = ax.imshow(m, cmap="viridis")
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), models, fontsize=7)
        ax.set_title(layer)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("Mean per-image activation distance between networks")
    fig.tight_layout()
    return _save(fig, path)


def plot_domain_report(out, *, summary=None, norms=None, filters=None, distances=None, svm=None) -> dict:
    """Write every figure that has its data to ``out``; returns name -> path."""
    out = Path(out)
    files = {}
    if summary is not None and len(summary):
        files["fig_predictivity_by_layer"] = plot_predictivity_by_layer(summary, out / "predictivity_by_layer.png")
        if "naturalness" in summary and summary["naturalness"].notna().any():
            files["fig_naturalness_vs_predictivity"] = plot_naturalness_vs_predictivity(
                summary[summary["naturalness"].notna()], out / "naturalness_vs_predictivity.png")
    if filters:
        files["fig_first_layer_filters"] = plot_first_layer_filters(filters, out / "first_layer_filters.png")
    if norms is not None and len(norms):
        files["fig_norm_distributions"] = plot_norm_distributions(norms, out / "norm_distributions.png")
    if distances is not None and len(distances):
        files["fig_distances"] = plot_distances(distances, out / "distances.png")
    return files


def write_domains_index(out, files: dict, summary=None, svm=None, mannwhitney=None, networks=None,
                        table1=None) -> Path:
    """``out/index.html``: the figures, the key tables and links to every CSV."""
    out = Path(out)
    parts = ["<!doctype html><meta charset='utf-8'><title>neuroxr: image domains</title>",
             "<style>body{font-family:sans-serif;max-width:1400px;margin:1em auto}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}</style>",
             "<h1>Image domains and neural predictivity</h1>"]
    if table1 is not None and len(table1):
        parts += ["<h2>Table 1: domains, naturalness and PLS predictivity per recording</h2>",
                  table1.to_html(index=False, float_format=lambda v: f"{v:.3f}")]
    if networks is not None and len(networks):
        parts += ["<h2>Networks</h2>", networks.to_html(index=False, float_format=lambda v: f"{v:.4g}")]
    figures = [("fig_naturalness", "Naturalness of the domains"),
               ("fig_predictivity_by_layer", "Predictivity by layer"),
               ("fig_naturalness_vs_predictivity", "Naturalness vs predictivity"),
               ("fig_first_layer_filters", "First-layer filters"),
               ("fig_norm_distributions", "Activation norms"),
               ("fig_distances", "Activation distances")]
    known = {k for k, _ in figures}
    for key in files:
        if str(key).startswith("fig_") and key not in known:
            what = "Activation norms" if "norm" in key else "Activation distances" if "distance" in key else key
            figures.append((key, f"{what}: {key.rsplit('_', 1)[-1]}"))
    for key, title in figures:
        if key in files and Path(files[key]).exists():
            rel = Path(files[key]).name if Path(files[key]).parent == out else Path(files[key]).as_posix()
            parts += [f"<h2>{html.escape(title)}</h2>", f"<img src='{html.escape(rel)}' alt='{html.escape(title)}'>"]
    if svm is not None and len(svm):
        parts += ["<h2>Which network produced the activation? (linear SVM, CV)</h2>",
                  svm[svm["fold"] == "mean"].to_html(index=False, float_format=lambda v: f"{v:.3f}")]
    if summary is not None and len(summary):
        parts += ["<h2>Predictivity (mean over splits)</h2>",
                  summary.to_html(index=False, float_format=lambda v: f"{v:.3f}")]
    if mannwhitney is not None and len(mannwhitney):
        parts += ["<h2>Mann-Whitney U between domains</h2>",
                  mannwhitney.to_html(index=False, float_format=lambda v: f"{v:.3g}")]
    links = [f"<li><a href='{html.escape(Path(p).name)}'>{html.escape(Path(p).name)}</a></li>"
             for k, p in files.items() if str(p).endswith((".csv", ".json"))]
    parts += ["<h2>Tables</h2><ul>", *links, "</ul>"]
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
