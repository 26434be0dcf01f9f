"""The study's report: ``STUDY/reports/index.html`` with its figures (PNG) and tables (CSV) beside it.

:func:`write_rankings` writes ``reports/rankings.csv`` (the contract table);
:func:`write_report` computes every analysis of :mod:`neuroxr.stats` from ``scores.zarr``,
draws the figures of :mod:`neuroxr.plots` and writes one self-contained HTML page linking them.
Tables that need more than the scores (the reliability sweep and the method trade-off, which
rescore) are written by :mod:`neuroxr.pipeline` into ``reports/`` and picked up when present.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots, stats
from . import schema as S
from .catalogs import read_catalog
from .features.progress import plural
from .info import check_scores_current
from .mapping.tree import label_weights
from .study import open_study

RELIABILITY_CSV = "reliability_sweep.csv"
TRADEOFF_CSV = "method_tradeoff.csv"
#: the (model, weights) variants a pipeline run skipped and why, written by :mod:`neuroxr.pipeline`
NOT_RUN_JSON = "not_run.json"


def _reports(study) -> Path:
    d = Path(study) / S.REPORTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return path


def write_rankings(study, metrics=None, *, n_boot: int = 1000, seed: int = 0) -> Path:
    """Rank the study's models and write ``STUDY/reports/rankings.csv``.

    Columns: ``model, weights, area, metric, score, best_layer, relative_depth`` (contract), then
    ``family, depth, ci_low, ci_high, n, rank`` (see :func:`neuroxr.stats.rank_models`; intervals
    kept when a layer is NaN, see :func:`rank_keeping_intervals`).
    """
    st = open_study(study)
    check_scores_current(study)
    rankings = rank_keeping_intervals(st.scores, metrics, n_boot=n_boot, seed=seed)
    out = _reports(study)
    return _write_csv(rankings, out / S.RANKINGS_CSV)


def _read_catalog(name):
    try:
        return read_catalog(name)
    except Exception:  # catalogs are optional for the report
        return None


def read_planted(study) -> dict | None:
    """The structure planted by the simulated observatory, if the study is simulated.

    ``simulate_study`` records it as JSON in the ``simulation`` attribute of ``responses.zarr``
    and ``stimuli.zarr`` (read from whichever still has it).
    """
    st = open_study(study)
    for name in (S.RESPONSES_STORE, S.STIMULI_STORE):
        if not st.has(name):
            continue
        try:
            attrs = dict((st.responses if name == S.RESPONSES_STORE else st.stimuli).attrs)
        except Exception:
            continue
        if "simulation" in attrs:
            sim = attrs["simulation"]
            return json.loads(sim) if isinstance(sim, str) else dict(sim)
    return None


def _planted_html(planted: dict, rankings: pd.DataFrame, best_depth: pd.DataFrame) -> str:
    e = html.escape
    al = planted.get("area_layers", {})
    rec = dict(zip(best_depth.area, best_depth.relative_depth)) if len(best_depth) else {}
    gen = rankings[(rankings.model == planted.get("model")) & (rankings.weights == planted.get("weights", "random"))]
    gen_best = {}
    if len(gen):
        m = stats.pick_depth_metric(rankings)
        g = gen[(gen.metric == m) & (gen.area != stats.ALL)]
        gen_best = dict(zip(g.area, g.relative_depth))
    metric = stats.headline_metric(rankings)
    top = stats.select_ranking(rankings, metric)
    pos = top.index[(top.model == planted.get("model")) & (top.weights == planted.get("weights", "random"))]
    rank = int(pos[0]) + 1 if len(pos) else None
    rows = "".join(
        f"<tr><td>{e(a)}</td><td>{e(str(al[a].get('layer_name')))}</td><td>{al[a].get('relative_depth', np.nan):.2f}</td>"
        f"<td>{gen_best.get(a, np.nan):.2f}</td><td>{rec.get(a, np.nan):.2f}</td></tr>"
        for a in [x for x in stats.HIERARCHY if x in al] + [x for x in al if x not in stats.HIERARCHY])
    return (f"<h2>Planted structure (simulated observatory)</h2><p>The responses were generated from the layers of "
            f"<b>{e(str(planted.get('model')))}</b> ({e(str(planted.get('weights')))} weights, seed "
            f"{e(str(planted.get('weights_seed')))}); it ranks <b>{rank if rank else 'n/a'}</b> of {len(top)} by "
            f"{e(metric)}.</p><table class='tbl'><tr><th>area</th><th>driving layer</th><th>planted relative depth</th>"
            f"<th>generating model's best layer</th><th>best layer, mean over models</th></tr>{rows}</table>")


def read_not_run(study) -> list[dict]:
    """The variants a pipeline run skipped (``reports/not_run.json``: model, weights, reason), or []."""
    path = Path(study) / S.REPORTS_DIR / NOT_RUN_JSON
    return json.loads(path.read_text()) if path.exists() else []


def summarize_headline(rankings: pd.DataFrame, best_depth: pd.DataFrame | None = None,
                       not_run: list | None = None, ceilings: pd.DataFrame | None = None) -> dict:
    """The verdict of the headline ranking (:func:`neuroxr.stats.judge_ranking`: ``top_*`` name
    the highest-scoring model, ``supported`` says whether it beats zero and the baselines beyond
    its interval), the noise ceiling of its metric (``ceiling``, NaN when unknown), the best
    relative depth per area and what was not run."""
    verdict = stats.judge_ranking(rankings)
    ceiling = stats.get_ceiling(ceilings, verdict["metric"])
    out = {"metric": verdict["metric"], "top_model": verdict["best_model"], "top_weights": verdict["best_weights"],
           "top_score": verdict["best_score"], "top_ci": verdict["best_ci"], "supported": verdict["supported"],
           "verdict": verdict["text"], "not_run": list(not_run or []),
           "ceiling": ceiling if np.isfinite(ceiling) else None}
    if best_depth is not None and len(best_depth):
        out["depth_metric"] = str(best_depth.metric.iloc[0])
        out["best_relative_depth"] = {str(a): float(d) for a, d in zip(best_depth.area, best_depth.relative_depth)}
    return out


def format_headline(h: dict) -> str:
    """A few lines of text for the terminal: the verdict, the best depth per area, what was not run."""
    s = h["verdict"]
    if h.get("ceiling") is not None:
        s += f"; noise ceiling ({h['metric']}): {h['ceiling']:.3f}"
    if "best_relative_depth" in h:
        s += "\nbest relative depth per area (" + h["depth_metric"] + "): " + ", ".join(
            f"{a} {d:.2f}" for a, d in h["best_relative_depth"].items())
    if h.get("not_run"):
        s += f"\nnot run ({len(h['not_run'])}): " + "; ".join(
            f"{x['model']} ({x['weights']}): {x['reason']}" for x in h["not_run"])
    return s


def _empty_layer_tree(scores):
    """``scores`` without the layers whose neuron-level scores are NaN for every neuron, or None
    when there are none (see :func:`rank_keeping_intervals`)."""
    import xarray as xr

    from .mapping import METRICS

    root = scores.to_dataset(inherit=False) if isinstance(scores, xr.DataTree) else scores
    names = [METRICS[m].variable for m in stats.list_metrics(scores) if METRICS[m].target == "neuron"]
    names = [v for v in names if v in root.data_vars and S.LAYER in root[v].dims]
    if not names:
        return None
    empty = np.zeros(root.sizes[S.LAYER], bool)
    for v in names:
        empty |= ~np.asarray(np.isfinite(root[v].transpose(S.LAYER, ...).values).reshape(root.sizes[S.LAYER], -1)
                             .any(axis=1))
    if not empty.any() or empty.all():
        return None
    keep = root[S.LAYER].values[~empty]
    if not isinstance(scores, xr.DataTree):
        return root.sel({S.LAYER: keep})
    groups = {}
    for path, node in scores.subtree_with_keys:
        ds = node.to_dataset(inherit=False)
        if S.LAYER in ds.indexes:
            ds = ds.sel({S.LAYER: [k for k in keep if k in set(ds[S.LAYER].values.tolist())]})
        elif S.LAYER in ds.dims:  # no index of its own: aligned with the root's layers
            ds = ds.isel({S.LAYER: np.flatnonzero(~empty)})
        groups["/" if path == "." else path] = ds
    return xr.DataTree.from_dict(groups)


def rank_keeping_intervals(scores, metrics=None, *, n_boot: int = 1000, seed: int = 0, by: str = "area"):
    """:func:`neuroxr.stats.rank_models`, with the per-group intervals of the neuron-level metrics
    kept when a layer of a model is NaN for every neuron (a layer scored NaN by
    ``nan_layers = "skip"``): :func:`~neuroxr.stats.rank_models` resamples only the neurons finite in
    every layer of the model, so one such layer leaves none and the interval NaN.  Those intervals
    are taken from a ranking without the empty layers (which can never be the best layer, so the
    scores, best layers and depths are those of the full ranking)."""
    from .mapping import METRICS

    rankings = stats.rank_models(scores, metrics, n_boot=n_boot, seed=seed, by=by)
    trimmed = _empty_layer_tree(scores) if n_boot else None
    if trimmed is None:
        return rankings
    other = stats.rank_models(trimmed, metrics, n_boot=n_boot, seed=seed, by=by)
    neuron_metrics = [m for m in METRICS if METRICS[m].target == "neuron"]
    key = [S.VARIANT, "metric", by]
    # per-group rows, and the ``all`` row of a one-group study (it takes its group's neuron interval)
    fix = rankings.metric.isin(neuron_metrics) & rankings.ci_low.isna()
    if fix.any():
        ci = other.set_index(key)[["ci_low", "ci_high"]]
        idx = pd.MultiIndex.from_frame(rankings.loc[fix, key])
        rankings.loc[fix, ["ci_low", "ci_high"]] = ci.reindex(idx).to_numpy()
    return rankings


def _study_splithalf(st):
    """``splithalf_r`` (neuron,) of the study's responses when it has one (a Series by neuron id), else None."""
    try:
        resp = st.responses
    except Exception:  # noqa: BLE001 - the ceiling is optional; a study without responses has none
        return None
    if "splithalf_r" not in resp.variables:
        return None
    return resp["splithalf_r"].to_series()


def _find_variable(scores, name):
    """The variable ``name`` in any group of ``scores`` (DataTree or Dataset), or None."""
    import xarray as xr

    if not isinstance(scores, xr.DataTree):
        return scores[name] if name in scores.data_vars else None
    for _, node in scores.subtree_with_keys:
        if name in node.data_vars:
            return node.to_dataset()[name]
    return None


def calc_effective_dim_table(scores, metric: str | None = None) -> pd.DataFrame:
    """Each layer's effective dimensionality (``effective_dim`` (layer,) of ``scores.zarr``) beside
    its score (``metric``, mean over areas; default the depth metric): ``layer, model, weights,
    family, variant, relative_depth, effective_dim, metric, score``; empty without ``effective_dim``."""
    var = _find_variable(scores, "effective_dim")
    cols = ["layer", "model", "weights", "family", "variant", "relative_depth", "effective_dim", "metric", "score"]
    if var is None or var.dims != (S.LAYER,):
        return pd.DataFrame(columns=cols)
    metric = metric or stats.regression_metric(stats.list_metrics(scores)) or "rsa"
    lt = stats.calc_layer_scores(scores, [metric])
    lt = (lt.groupby("layer", sort=False).agg(model=("model", "first"), weights=("weights", "first"),
                                              family=("family", "first"), variant=("variant", "first"),
                                              relative_depth=("relative_depth", "first"),
                                              score=("score", "mean")).reset_index())
    ed = pd.Series(np.asarray(var.values, float), index=stats.to_strings(var[S.LAYER].values))
    lt["effective_dim"] = ed.reindex(lt.layer).to_numpy()
    lt["metric"] = metric
    return lt[cols]


def correlate_effective_dim(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman over layers (baselines left out) of the score with the effective dimensionality,
    per weights kind and for all layers; rows of :func:`neuroxr.stats.make_tidy`."""
    t = table[table.family != stats.BASELINE]
    rows = []
    for label, g in [("all layers", t), *[(f"{w} layers", g) for w, g in t.groupby("weights")]]:
        row = stats.calc_spearman_row(g.effective_dim, g.score, analysis="score_vs_effective_dim",
                                      metric=str(t.metric.iloc[0]) if len(t) else "", area=stats.ALL, group=label,
                                      n_models=g.variant.nunique())
        if row:
            rows.append(row)
    return stats.make_tidy(rows)


def compute_analyses(study, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Every table of the report as DataFrames (keys are the CSV names without ``.csv``)."""
    st = open_study(study)
    check_scores_current(study)
    scores = st.scores
    metrics = stats.list_metrics(scores)
    t = {}
    t["rankings"] = rankings = rank_keeping_intervals(scores, metrics, n_boot=n_boot, seed=seed)
    neuron_metrics = [m for m in metrics if m != "rsa"]
    try:
        stats.neuron_groups(scores, "cre_line")
        has_cre = bool(neuron_metrics)
    except Exception:
        has_cre = False
    if has_cre:
        t["rankings_cre_line"] = rank_keeping_intervals(scores, neuron_metrics, n_boot=n_boot, seed=seed,
                                                        by="cre_line")
    models_cat = _read_catalog("models")
    tests = [stats.compare_trained_random(rankings),
             stats.compare_family(rankings, "transformer"),
             stats.correlate_model_properties(rankings, models_cat),
             stats.compare_metrics(scores, rankings, n_boot=n_boot, seed=seed),
             stats.correlate_depth(rankings)]
    tests = [x for x in tests if len(x)]
    t["best_depth"] = stats.summarize_best_depth(rankings, n_boot=n_boot, seed=seed)
    t["depth_profile"] = stats.bin_depth_profile(scores)
    if rankings.loc[rankings.area != stats.ALL, "area"].nunique() > 1:  # one area: the profile above is it
        t["depth_profile_areas"] = stats.bin_depth_profile(scores, by_area=True)
    tasks = _read_catalog("taskonomy")
    if tasks is not None and (rankings.family == "taskonomy").any():
        t["taskonomy"], tt = stats.summarize_taskonomy(rankings, tasks, n_boot=n_boot, seed=seed)
        t["taskonomy_tasks"] = stats.label_task_clusters(rankings, tasks)
        tests.append(tt)
        if has_cre:
            t["taskonomy_cre_line"], tc = stats.summarize_taskonomy(t["rankings_cre_line"], tasks, by="cre_line",
                                                                    n_boot=n_boot, seed=seed)
            tests.append(tc.assign(analysis="taskonomy_clusters_cre_line"))
    ed = calc_effective_dim_table(scores)
    if len(ed):  # effective dimensionality (layer,) scored beside the metrics: its own panel and test
        t["effective_dim"] = ed
        tests.append(correlate_effective_dim(ed))
        try:
            from .stats import dimensionality
        except ImportError:
            dimensionality = None
        if dimensionality is not None and hasattr(dimensionality, "dimensionality_table"):
            t["dimensionality"] = dimensionality.dimensionality_table(scores)
    t["ceilings"] = stats.summarize_ceilings(scores, _study_splithalf(st))
    t["statistics"] = pd.concat([x for x in tests if len(x)], ignore_index=True) if tests else stats.make_tidy([])
    reports = Path(st.path) / S.REPORTS_DIR
    for name in (RELIABILITY_CSV, TRADEOFF_CSV):
        if (reports / name).exists():
            t[name[:-4]] = pd.read_csv(reports / name)
    return t


def _figures(t: dict, metric: str) -> dict:
    """The report's figures; the ranking is drawn by ``metric`` (the verdict's).  Panels that would
    hold a single point (one area) are left out."""
    r = t["rankings"]
    ceilings = t.get("ceilings")
    figs = {"rankings": plots.plot_rankings(r, metric, ceiling=stats.get_ceiling(ceilings, metric))}
    if r.loc[r.area != stats.ALL, "area"].nunique() > 1:  # one area: the heatmap would be one column
        figs["area_heatmap"] = plots.plot_area_heatmap(r)
    if {"trained", "random"} <= set(r.weights):
        figs["trained_vs_random"] = plots.plot_trained_vs_random(r, ceilings=ceilings)
    if len(t["best_depth"]):
        figs["depth"] = plots.plot_depth(t["best_depth"], t["depth_profile"])
    if "depth_profile_areas" in t and len(t["depth_profile_areas"]):
        figs["depth_profile_areas"] = plots.plot_depth_profiles(t["depth_profile_areas"])
    if "taskonomy" in t and len(t["taskonomy"]):
        figs["taskonomy"] = plots.plot_taskonomy(t["taskonomy"], tasks=t.get("taskonomy_tasks"))
    if "taskonomy_cre_line" in t and len(t["taskonomy_cre_line"]):
        figs["taskonomy_cre_line"] = plots.plot_taskonomy(t["taskonomy_cre_line"], by="cre_line")
    if "reliability_sweep" in t and len(t["reliability_sweep"]):
        figs["reliability_sweep"] = plots.plot_reliability_sweep(t["reliability_sweep"])
    if "method_tradeoff" in t and len(t["method_tradeoff"]):
        figs["method_tradeoff"] = plots.plot_method_tradeoff(t["method_tradeoff"])
    if "effective_dim" in t and len(t["effective_dim"]):
        figs["effective_dim"] = plots.plot_effective_dim(t["effective_dim"])
    return figs


_CAPTIONS = {
    "rankings": "Models ranked by the headline score (area <code>all</code>: maximum over layers of the mean "
                "over areas; <code>overall</code>: mean of the regression and RSA maxima) with bootstrapped 95% "
                "intervals across areas. Faded bars: random weights. Solid line: zero; dashed: the best "
                "baseline; dotted: the noise ceiling (split-half reliability, Spearman-Brown corrected; "
                "drawn where the study has one).",
    "effective_dim": "Each layer's score (mean over areas) against its effective dimensionality.",
    "depth_profile_areas": "Depth profiles per area (hierarchy order): layer scores against relative depth, mean "
                           "in 100 bins, lowess trend; trained red, random blue; baselines left out.",
    "area_heatmap": "Score per model (rows, best first) and visual area (columns in hierarchy order).",
    "trained_vs_random": "Figure 1 of the study: each architecture trained (red) and randomly initialised (blue), "
                         "95% intervals, for both metrics; solid line: zero, dashed: the best baseline, dotted: "
                         "the noise ceiling.",
    "depth": "Left: relative depth of each model's best layer per area (mean over the network models, trained ones "
             "when there are any; baselines left out; bootstrapped 95% interval). Right: layer scores against relative depth, mean in 100 bins, lowess trend.",
    "taskonomy": "Figure 2 of the study: Taskonomy encoders grouped by task cluster, per area (bars: cluster mean "
                 "with bootstrapped 95% interval; points: the tasks).",
    "taskonomy_cre_line": "Taskonomy encoders grouped by task cluster, per cre line.",
    "reliability_sweep": "Scores as neurons below a split-half reliability threshold are dropped (rescored at "
                         "each threshold); bands: bootstrapped 95% intervals across areas.",
    "method_tradeoff": "Mean leave-one-out Pearson r against compute time for no reduction, PCA and sparse random "
                       "projection at several sizes, with ridge and PLS, measured by neuroxr on this machine.",
}


def format_ranking_table(rankings: pd.DataFrame, metric: str | None = None,
                         ceilings: pd.DataFrame | None = None) -> pd.DataFrame:
    """The headline ranking as the report and ``neuroxr rank`` print it: checkpoint weights by the
    first 12 hex digits of their sha256, no weights for baselines (they have none to vary); with
    ``ceilings`` (:func:`neuroxr.stats.summarize_ceilings`) a column ``of_ceiling``, score / ceiling."""
    metric = metric or stats.headline_metric(rankings)
    top = stats.select_ranking(rankings, metric)
    top = top[["rank", "model", "weights", "family", "score", "ci_low", "ci_high"]].copy()
    top["weights"] = ["" if f == stats.BASELINE else label_weights(w) for w, f in zip(top.weights, top.family)]
    ceiling = stats.get_ceiling(ceilings, metric)
    if np.isfinite(ceiling) and ceiling > 0:
        top["of_ceiling"] = top.score / ceiling
    return top


#: the analyses of the study's text, in the order it quotes them
PAPER_ANALYSES = ("trained_vs_random", "transformer_vs_rest", "score_vs_property", "metric_agreement_models",
                  "metric_agreement_layers", "depth_gradient", "taskonomy_clusters", "score_vs_effective_dim")


def summarize_paper_statistics(statistics: pd.DataFrame) -> pd.DataFrame:
    """The rows of the statistics table that the study quotes (area ``all`` or the hierarchy, plus
    each weights kind's metric agreement), named as the study names them (``paper_name``), with
    ``metric, area, group, estimate, statistic, p, p_bonferroni, effect_size, effect_size_name, n,
    ci_low, ci_high, note``."""
    s = statistics[statistics.analysis.isin(PAPER_ANALYSES) & statistics.area.isin([stats.ALL, "hierarchy"])]
    order = {a: i for i, a in enumerate(PAPER_ANALYSES)}
    s = s.assign(_o=s.analysis.map(order)).sort_values("_o", kind="stable")
    cols = ["paper_name", "metric", "area", "group", "estimate", "statistic", "p", "p_bonferroni", "effect_size",
            "effect_size_name", "n", "ci_low", "ci_high", "note"]
    if "ci_method" in s:
        cols.insert(-1, "ci_method")
    return s[cols].reset_index(drop=True)


def _table_html(df: pd.DataFrame, max_rows: int = 25) -> str:
    show = df.head(max_rows)
    with pd.option_context("display.float_format", "{:.4g}".format):
        h = show.to_html(index=False, border=0, classes="tbl", na_rep="", float_format="{:.4g}".format)
    if len(df) > max_rows:
        h += f"<p class='more'>{len(df) - max_rows} more rows in the CSV.</p>"
    return h


def write_report(study, *, n_boot: int = 1000, seed: int = 0, title: str | None = None) -> Path:
    """Write ``STUDY/reports/index.html`` with every figure (PNG) and table (CSV) beside it.

    Parameters
    ----------
    study : path-like
        Study directory holding ``scores.zarr``.
    n_boot : int
        Bootstrap resamples for the 95% intervals.
    seed : int
        Bootstrap seed (the report is reproducible).

    Returns
    -------
    Path of ``index.html``.
    """
    st = open_study(study)
    out = _reports(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = compute_analyses(study, n_boot=n_boot, seed=seed)
    for name, df in t.items():
        if name not in ("reliability_sweep", "method_tradeoff"):
            _write_csv(df, out / f"{name}.csv")
    if len(t["statistics"]):
        _write_csv(summarize_paper_statistics(t["statistics"]), out / "paper_statistics.csv")
    headline = summarize_headline(t["rankings"], t["best_depth"], read_not_run(study), t.get("ceilings"))
    figs = _figures(t, headline["metric"])
    for name, fig in figs.items():
        plots.save_figure(fig, out / f"{name}.png")
    (out / "headline.json").write_text(json.dumps(headline, indent=2))
    planted = read_planted(study)
    page = _render(st, t, figs, headline, planted, title)
    tmp = out / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out / "index.html")
    return out / "index.html"


def _render(st, t, figs, headline, planted, title):
    e = html.escape
    scores = st.scores
    n_layers = scores.sizes.get(S.LAYER, 0)
    n_neurons = scores.sizes.get(S.NEURON, 0)
    r = t["rankings"]
    n_models = r[S.VARIANT].nunique()
    title = title or f"neuroxr report: {Path(st.path).resolve().name}"
    parts = [f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}}
h1{{font-size:1.6em}} h2{{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}}
figure{{margin:1em 0}} figure img{{max-width:100%;border:1px solid #eee}} figcaption{{color:#555;font-size:.9em}}
table.tbl{{border-collapse:collapse;font-size:.82em;margin:.5em 0}} table.tbl td,table.tbl th{{padding:2px 8px;
border-bottom:1px solid #eee;text-align:right}} table.tbl th{{background:#f6f6f6}}
.headline{{background:#f3f7fb;border-left:4px solid #2e6fba;padding:.6em 1em}} .more{{color:#777;font-size:.85em}}
code{{background:#f4f4f4;padding:0 3px}}
</style></head><body>
<h1>{e(title)}</h1>
<p>{plural(n_models, 'model')} ({plural(n_layers, 'layer')}) scored against {plural(n_neurons, 'neuron')}; metrics: {e(', '.join(stats.list_metrics(scores)))}.
Generated {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} by neuroxr.</p>
<div class="headline"><b>Headline.</b> {e(format_headline(headline)).replace(chr(10), '<br>')}</div>
"""]
    if headline.get("not_run"):
        items = "".join(f"<li><b>{e(x['model'])}</b> ({e(x['weights'])}): {e(x['reason'])}</li>"
                        for x in headline["not_run"])
        parts.append(f"<h2>Not run</h2><p>These model variants were skipped (rerun the pipeline once their "
                     f"weights are in place):</p><ul class='not-run'>{items}</ul>")
    if planted:
        parts.append(_planted_html(planted, r, t["best_depth"]))
    order = ["rankings", "area_heatmap", "trained_vs_random", "depth", "depth_profile_areas", "taskonomy",
             "taskonomy_cre_line",
             "reliability_sweep", "method_tradeoff", "effective_dim"]
    heads = {"rankings": "Rankings", "depth": "Where in depth", "taskonomy": "Taskonomy (Figure 2)",
             "reliability_sweep": "Reliability sweep", "method_tradeoff": "Method trade-off",
             "trained_vs_random": "Trained vs random weights (Figure 1)",
             "effective_dim": "Effective dimensionality"}
    for name in order:
        if name not in figs:
            continue
        if name in heads:
            parts.append(f"<h2>{heads[name]}</h2>")
        caption = _CAPTIONS.get(name, "")
        if name == "depth" and t["best_depth"].area.nunique() < 2:  # one area: only the profile is drawn
            caption = caption[caption.index("Right: ") + len("Right: "):]
            caption = caption[0].upper() + caption[1:]
        parts.append(f'<figure><img src="{name}.png" alt="{name}"><figcaption>{caption}'
                     f'</figcaption></figure>')
        if name == "rankings":
            parts.append(_table_html(format_ranking_table(r, headline["metric"], t.get("ceilings")), 15))
            if len(t.get("ceilings", ())):
                parts.append("<p>Noise ceilings (<a href='ceilings.csv'>ceilings.csv</a>):</p>"
                             + _table_html(t["ceilings"], 40))
            else:
                parts.append("<p class='more'>No noise ceiling: the study has no split-half reliabilities "
                             "(trials) or RDM ceilings.</p>")
        if name == "depth":
            parts.append(_table_html(t["best_depth"]))
    stat = t["statistics"]
    if len(stat):
        parts.append("<h2>Statistics the paper quotes</h2>" + _table_html(summarize_paper_statistics(stat), 40))
        parts.append("<h2>Statistics</h2><p>Tidy table (test, statistic, p, Bonferroni-corrected p within each "
                     "family of tests, effect size, n, 95% interval); full table in <a href='statistics.csv'>"
                     "statistics.csv</a>.</p>")
        cols = ["paper_name", "analysis", "test", "metric", "area", "group", "statistic", "p", "p_bonferroni",
                "effect_size", "effect_size_name", "n", "ci_low", "ci_high", "note"]
        parts.append(_table_html(stat[cols], 60))
    parts.append("<h2>Tables</h2><ul>")
    for name in sorted(t):
        parts.append(f"<li><a href='{name}.csv'>{name}.csv</a> ({len(t[name])} rows)</li>")
    parts.append("</ul></body></html>")
    return "\n".join(parts)
