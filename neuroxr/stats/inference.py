"""Statistical comparisons of rankings, as tidy tables.

Every function returns one row per test with the columns of :data:`STAT_COLUMNS`: the test, the
statistic, the p value, the Bonferroni-corrected p, the effect size, n and a 95% interval where
one applies.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from .. import schema as S
from .ranking import rank_models
from .tables import ALL, CI_LEVEL, HIERARCHY, OVERALL, calc_layer_scores, list_metrics, order_groups, regression_metric

STAT_COLUMNS = ["analysis", "test", "metric", "area", "group", "estimate", "statistic", "p",
                "p_bonferroni", "effect_size", "effect_size_name", "n", "ci_low", "ci_high", "note"]
#: tests over fewer models (or model variants) than this are reported as not meaningful
MIN_MODELS = 5
#: the inferential columns blanked on a row over too few models (``estimate`` and ``n`` stay)
_INFERENTIAL = ["statistic", "p", "p_bonferroni", "effect_size", "ci_low", "ci_high"]


def mark_too_few(table: pd.DataFrame, min_models: int = MIN_MODELS) -> pd.DataFrame:
    """Rows over fewer than ``min_models`` models get NaN statistics and a ``note`` saying so.

    The count of models is the row's ``n_models`` where it has one (tests over (model, area)
    pairs), else its ``n``.
    """
    table = table.copy()
    count = table["n"] if "n_models" not in table else table["n_models"].fillna(table["n"])
    few = pd.to_numeric(count, errors="coerce") < min_models
    if few.any():
        table.loc[few, _INFERENTIAL] = np.nan
        table.loc[few, "note"] = [f"fewer than {min_models} models ({int(k)}): not meaningful"
                                  for k in count[few]]
    return table


#: the names the study (Conwell et al. 2021) gives each analysis; ``{group}`` is the row's group
PAPER_NAMES = {
    "trained_vs_random": "Trained vs. randomly initialized weights (paired t-test; Cohen's d for paired samples)",
    "transformer_vs_rest": "Transformers vs. other architectures (t-test; Hedges' g; Bonferroni-corrected)",
    "score_vs_property:n_layers": "Score vs. model depth (number of layers; Spearman's rho)",
    "score_vs_property:params": "Score vs. parameter count (Spearman's rho)",
    "score_vs_property:top1": "Score vs. ImageNet top-1 accuracy (Spearman's rho)",
    "metric_agreement_models": "Agreement of the two metrics across models ({metric}; Spearman's rho, "
                               "bootstrapped 95% CI)",
    "metric_agreement_layers": "Agreement of the two metrics across layers ({metric}; mean Spearman's rho, "
                               "bootstrapped 95% CI)",
    "depth_gradient": "Best layer deeper along the hierarchy VISp -> VISam (Spearman's rho)",
    "taskonomy_clusters": "Taskonomy task clusters differ (Kruskal-Wallis; epsilon squared)",
    "taskonomy_clusters_cre_line": "Taskonomy task clusters differ, per cre line (Kruskal-Wallis)",
    "score_vs_effective_dim": "Score vs. effective dimensionality (Spearman's rho)",
}


def name_paper_statistic(analysis: str, group: str = "", metric: str = "") -> str:
    """The study's name for a statistics row (:data:`PAPER_NAMES`), or ``analysis`` itself."""
    name = PAPER_NAMES.get(f"{analysis}:{group}", PAPER_NAMES.get(str(analysis)))
    return name.format(metric=metric, group=group) if name else str(analysis)


def make_tidy(rows) -> pd.DataFrame:
    """A statistics table of ``rows`` (dicts) with every column of :data:`STAT_COLUMNS` first;
    rows over fewer than :data:`MIN_MODELS` models are marked (:func:`mark_too_few`)."""
    df = pd.DataFrame(rows)
    for c in STAT_COLUMNS:
        if c not in df:
            df[c] = "" if c == "note" else np.nan
    df["note"] = df["note"].fillna("")
    df = mark_too_few(df) if len(df) else df
    df["paper_name"] = [name_paper_statistic(a, g, m) for a, g, m in
                        zip(df["analysis"], df["group"].fillna(""), df["metric"].fillna(""))]
    return df[STAT_COLUMNS + [c for c in df.columns if c not in STAT_COLUMNS]]


def adjust_bonferroni(table: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Fill ``p_bonferroni`` (statsmodels ``multipletests``) over the rows of ``table`` (or each ``by`` group)."""
    table = table.copy()
    table["p_bonferroni"] = np.nan
    groups = [(None, table)] if not by else table.groupby(list(by), dropna=False)
    for _, g in groups:
        ok = g["p"].notna()
        if ok.any():
            table.loc[g.index[ok], "p_bonferroni"] = multipletests(g.loc[ok, "p"].to_numpy(float),
                                                                   method="bonferroni")[1]
    return table


def _areas_in(rankings):
    return list(pd.unique(rankings.area))


def compare_trained_random(rankings: pd.DataFrame, metrics=None, areas=None) -> pd.DataFrame:
    """Paired t-test of trained against randomly initialised variants of the same architectures.

    For each metric and area, pairs are the models with both a ``trained`` and a ``random`` row.
    The effect size is Cohen's d for paired samples, d_z = mean(trained - random) / SD(differences)
    (ddof 1); the interval is the t interval of the mean difference.  ``p_bonferroni`` corrects
    over all (metric, area) tests of the table.
    """
    rows = []
    metrics = metrics or list(pd.unique(rankings.metric))
    for metric in metrics:
        for area in areas or _areas_in(rankings):
            r = rankings[(rankings.metric == metric) & (rankings.area == area)]
            t = r[r.weights == "trained"].set_index("model")["score"]
            u = r[r.weights == "random"].set_index("model")["score"]
            common = t.index.intersection(u.index)
            if len(common) < 2:
                continue
            a, b = t.loc[common].to_numpy(float), u.loc[common].to_numpy(float)
            res = sps.ttest_rel(a, b)
            ci = res.confidence_interval(CI_LEVEL)
            diff = a - b
            rows.append(dict(analysis="trained_vs_random", test="paired t-test", metric=metric, area=area,
                             group="trained - random", estimate=diff.mean(), statistic=res.statistic,
                             p=res.pvalue, effect_size=calc_cohen_dz(a, b),
                             effect_size_name="cohen_dz", n=len(common), ci_low=ci.low, ci_high=ci.high,
                             df=len(common) - 1))
    return adjust_bonferroni(make_tidy(rows))


def _pick_weights(r: pd.DataFrame, weights: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of ``weights`` (``trained`` by default); a study with none of them (random weights
    only) uses its ``random`` rows, and the note says so.  Returns (rows, note)."""
    if weights is None:
        return r, ""
    if (r.weights == weights).any() or weights != "trained" or not (r.weights == "random").any():
        return r[r.weights == weights], ""
    return r[r.weights == "random"], "random weights (no trained models scored)"


def calc_cohen_dz(a, b) -> float:
    """Cohen's d for paired samples, d_z = mean(a - b) / SD(a - b) (SD with ddof 1); NaN when the
    differences are constant (to rounding: SD below 1e-12 of their size).  It equals the paired t
    statistic over sqrt(n)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    sd = diff.std(ddof=1)
    return float(diff.mean() / sd) if sd > 1e-12 * np.abs(diff).max() else np.nan


def calc_hedges_g(a, b) -> float:
    """Hedges' g of ``a`` against ``b``: pooled-SD Cohen's d times 1 - 3 / (4 (n_a + n_b) - 9)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    d = (a.mean() - b.mean()) / sp if sp > 0 else np.nan
    return d * (1 - 3 / (4 * (na + nb) - 9))


def compare_family(rankings: pd.DataFrame, family: str = "transformer", metrics=None, areas=None,
                   weights: str = "trained", equal_var: bool = False) -> pd.DataFrame:
    """t-test of one family (default transformers) against all other non-baseline models.

    Welch's t-test by default (``equal_var=False``; Student's with ``True``), effect size Hedges'
    g (:func:`calc_hedges_g`), interval: the t interval of the difference of means (Welch-Satterthwaite
    df).  Bonferroni over every (metric, area) test of the table.  A study without trained models
    compares its random-weight variants, and the note says so.
    """
    rows = []
    metrics = metrics or list(pd.unique(rankings.metric))
    for metric in metrics:
        for area in areas or _areas_in(rankings):
            r = rankings[(rankings.metric == metric) & (rankings.area == area) & (rankings.family != "baseline")]
            r, note = _pick_weights(r, weights)
            a = r.loc[r.family == family, "score"].to_numpy(float)
            b = r.loc[r.family != family, "score"].to_numpy(float)
            if len(a) < 2 or len(b) < 2:
                continue
            res = sps.ttest_ind(a, b, equal_var=equal_var)
            ci = res.confidence_interval(CI_LEVEL)
            rows.append(dict(analysis=f"{family}_vs_rest", test="Welch t-test" if not equal_var else "Student t-test",
                             metric=metric, area=area, group=f"{family} - rest", estimate=a.mean() - b.mean(),
                             statistic=res.statistic, p=res.pvalue, effect_size=calc_hedges_g(a, b),
                             effect_size_name="hedges_g", n=len(a) + len(b), n_a=len(a), n_b=len(b),
                             ci_low=ci.low, ci_high=ci.high, df=float(res.df), note=note))
    return adjust_bonferroni(make_tidy(rows))


def calc_spearman_row(x, y, **kw) -> dict | None:
    """A statistics row of Spearman's rho between ``x`` and ``y`` (finite pairs) with its Fisher-z
    interval; None with fewer than 3 pairs or a constant side.  ``kw`` fills the other columns."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    res = sps.spearmanr(x, y)
    rho = float(res.statistic)
    lo = hi = np.nan
    if n > 3 and abs(rho) < 1:
        # Fisher z interval with the Bonett-Wright variance 1.06 / (n - 3) for Spearman's rho
        z, se = np.arctanh(rho), np.sqrt(1.06 / (n - 3))
        q = sps.norm.ppf((1 + CI_LEVEL) / 2)
        lo, hi = np.tanh(z - q * se), np.tanh(z + q * se)
    return dict(test="Spearman", estimate=rho, statistic=rho, p=float(res.pvalue), effect_size=rho,
                effect_size_name="spearman_rho", n=n, ci_low=lo, ci_high=hi, **kw)


def correlate_model_properties(rankings: pd.DataFrame, catalog: pd.DataFrame | None = None,
                               properties: Iterable[str] = ("n_layers", "params", "top1"), metrics=None,
                               areas=(ALL,), weights: str = "trained") -> pd.DataFrame:
    """Spearman correlation of each model's score with its depth, parameter count and top-1 accuracy.

    ``n_layers`` is the number of scored layers (the rankings' ``depth`` column); ``params`` and
    ``top1`` come from ``catalog`` (``catalogs/models.csv``: a ``model`` column), where given.
    Bonferroni over all rows.  A study without trained models correlates its random-weight
    variants (noted), leaving out top-1 accuracy (that of the trained weights).
    """
    r, note = _pick_weights(rankings[rankings.family != "baseline"], weights)
    if note:
        properties = [p for p in properties if p != "top1"]
    r = r.rename(columns={"depth": "n_layers"})
    if catalog is not None and "model" in catalog:
        cat = catalog.drop_duplicates("model").set_index("model")
        for p in properties:
            if p != "n_layers" and p in cat:
                r[p] = pd.to_numeric(r["model"].map(cat[p]), errors="coerce")
    rows = []
    for metric in metrics or list(pd.unique(r.metric)):
        for area in areas or _areas_in(r):
            sub = r[(r.metric == metric) & (r.area == area)]
            for p in properties:
                if p not in sub:
                    continue
                row = calc_spearman_row(sub[p], sub["score"], analysis="score_vs_property", metric=metric,
                                        area=area, group=p, note=note)
                if row:
                    rows.append(row)
    return adjust_bonferroni(make_tidy(rows))


def calc_bootstrap_mean_ci(values, n_boot, seed):
    """Percentile bootstrap interval (scipy) of the mean of the finite ``values``; NaNs with fewer than 2."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or not n_boot:
        return np.nan, np.nan
    res = sps.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=CI_LEVEL,
                        method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def calc_bootstrap_spearman_ci(x, y, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of Spearman's rho of the finite pairs (x, y): pairs resampled
    with replacement ``n_boot`` times, rho of each resample (NaN where a side comes out constant,
    ignored); NaNs with fewer than 4 pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 4 or not n_boot:
        return np.nan, np.nan
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rx, ry = sps.rankdata(x[idx], axis=1), sps.rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    rho = rho[np.isfinite(rho)]
    if len(rho) < 2:
        return np.nan, np.nan
    lo, hi = np.percentile(rho, [(1 - CI_LEVEL) / 2 * 100, (1 + CI_LEVEL) / 2 * 100])
    return float(lo), float(hi)


def _layer_agreement(scores, metric_a, metric_b):
    """Per (model variant, area): Spearman over layers of the two metrics' area-mean scores."""
    lt = calc_layer_scores(scores, [metric_a, metric_b])
    piv = lt.pivot_table(index=[S.VARIANT, "area", "layer"], columns="metric", values="score")
    per = []
    for (variant, area), g in piv.groupby(level=[0, 1]):
        if len(g) < 3:
            continue
        rho = sps.spearmanr(g[metric_a], g[metric_b]).statistic
        if np.isfinite(rho):
            per.append((variant, area, rho))
    return pd.DataFrame(per, columns=[S.VARIANT, "area", "rho"])


def compare_metrics(scores: xr.DataTree, rankings: pd.DataFrame | None = None, metric_a: str | None = None,
                    metric_b: str = "rsa", *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Agreement of two metrics (default: the regression metric and RSA).

    Rows: Spearman over models of the two ``all`` scores (one row per weights kind and one for
    all models; interval: bootstrap over models, :func:`calc_bootstrap_spearman_ci`, or Fisher z
    without resamples; ``ci_method`` says which); and per model and area the Spearman over layers of the two area-mean scores,
    averaged over (model, area) pairs with a bootstrapped 95% interval of the mean (row
    ``test == "mean Spearman over layers"``), also per area.
    """
    metrics = list_metrics(scores)
    metric_a = metric_a or regression_metric(metrics)
    if metric_a is None or metric_b not in metrics:
        return make_tidy([])
    rankings = rankings if rankings is not None else rank_models(scores, [metric_a, metric_b], n_boot=0)
    rows = []
    r = rankings[(rankings.area == ALL) & (rankings.family != "baseline")]
    for label, sub in [("all models", r), *[(w, g) for w, g in r.groupby("weights")]]:
        a = sub[sub.metric == metric_a].set_index(S.VARIANT)["score"]
        b = sub[sub.metric == metric_b].set_index(S.VARIANT)["score"]
        common = a.index.intersection(b.index)
        row = calc_spearman_row(a.loc[common], b.loc[common], analysis="metric_agreement_models",
                                metric=f"{metric_a} vs {metric_b}", area=ALL, group=label, ci_method="Fisher z")
        if row and n_boot:
            lo, hi = calc_bootstrap_spearman_ci(a.loc[common], b.loc[common], n_boot, seed)
            if np.isfinite(lo) and np.isfinite(hi):
                row.update(ci_low=lo, ci_high=hi, ci_method="bootstrap over models (percentile)")
        if row:
            rows.append(row)
    per = _layer_agreement(scores, metric_a, metric_b)
    for area, sub in [(ALL, per), *[(a, per[per.area == a]) for a in order_groups(per.area, "area")]]:
        if sub.empty:
            continue
        lo, hi = calc_bootstrap_mean_ci(sub["rho"], n_boot, seed)
        rows.append(dict(analysis="metric_agreement_layers", test="mean Spearman over layers",
                         metric=f"{metric_a} vs {metric_b}", area=area, group="per model",
                         estimate=sub["rho"].mean(), statistic=sub["rho"].mean(), effect_size=sub["rho"].mean(),
                         effect_size_name="mean_spearman_rho", n=len(sub), n_models=sub[S.VARIANT].nunique(),
                         ci_low=lo, ci_high=hi, ci_method="bootstrap over (model, area) pairs (percentile)"))
    return make_tidy(rows)


def correlate_depth(rankings: pd.DataFrame, metrics=None, weights: str | None = "trained") -> pd.DataFrame:
    """Does the best layer get deeper along the hierarchy VISp -> VISam?

    Spearman over (model, area) pairs between the area's position in :data:`HIERARCHY` and the
    best layer's relative depth; baselines left out.  Bonferroni over metrics.
    """
    rows = []
    for metric in metrics or [m for m in pd.unique(rankings.metric) if m != OVERALL]:
        r = rankings[(rankings.metric == metric) & (rankings.area.isin(HIERARCHY)) & (rankings.family != "baseline")]
        if weights is not None and (r.weights == weights).any():
            r = r[r.weights == weights]
        pos = r.area.map({a: i for i, a in enumerate(HIERARCHY)})
        row = calc_spearman_row(pos, r.relative_depth, analysis="depth_gradient", metric=metric, area="hierarchy",
                                group="area order vs best relative depth", n_models=r[S.VARIANT].nunique())
        if row:
            rows.append(row)
    return adjust_bonferroni(make_tidy(rows))
