"""The analyses that rescore a study: the reliability threshold curve and the method trade-off."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from .. import stats
from ..errors import MissingDataError
from ..features.extract import iter_layer_activations
from ..features.zoo import load_model
from ..io.store import open_dataset
from ..mapping.score import score_layers
from ..mapping.tree import concat_scores
from ..responses import load_selected_responses, select_neurons
from ..study import open_study
from .config import PipelineSettings, given, score_alphas

SWEEP_CSV = "reliability_sweep.csv"
TRADEOFF_CSV = "method_tradeoff.csv"


def _open_features(study, models=None) -> list[xr.Dataset]:
    """The features stores of ``models`` (None: every store), loaded into memory."""
    out = []
    d = Path(study) / S.FEATURES_DIR
    for p in sorted(d.glob("*.zarr")):
        if p.name.startswith("."):
            continue
        ds = open_dataset(p, chunks={})
        if models is None or str(np.asarray(ds["model"].values)[0]) in models:
            out.append(ds.load())
    return out


def _base_responses(st, select):
    """Trial means of the neurons passing every [select] criterion except reliability, with
    ``splithalf_r`` kept, in memory."""
    resp = st.responses
    base = np.asarray(select_neurons(resp, None, select.get("cre_lines"), bool(select.get("exclude_running")),
                                     bool(select.get("image_selective"))).values, bool)
    resp = resp.isel({S.NEURON: np.flatnonzero(base)})
    if "selected" in resp.variables:
        resp = resp.drop_vars("selected")
    resp = resp.drop_vars([v for v in resp.data_vars if v != S.MEAN])
    resp[S.MEAN] = resp[S.MEAN].load()
    return resp


def rescore_by_reliability(study, models=None, thresholds=stats.RELIABILITY_THRESHOLDS, *,
                           metrics=("ridge", "rsa"), alpha: float = 1.0, select: dict | None = None,
                           n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Scores of ``models`` as the split-half reliability threshold rises, rescored at each threshold.

    The neurons are those passing the other selection criteria (``select``: cre lines, running,
    image selectivity); at each threshold the features of every model are scored against the
    neurons with ``splithalf_r >= threshold`` by :func:`neuroxr.mapping.score.score_layers`.
    Areas left with fewer than 3 neurons at a threshold are dropped there (an RDM needs them).

    Returns
    -------
    DataFrame
        See :func:`neuroxr.stats.rank_over_thresholds`.
    """
    st = open_study(study)
    if "splithalf_r" not in st.responses.variables:
        raise MissingDataError(f"{st.store(S.RESPONSES_STORE)}: no splithalf_r; the sweep needs trials "
                               "(run `neuroxr select` on a study with trials)")
    resp = _base_responses(st, dict(select or {}))
    feats = _open_features(study, set(models) if models else None)
    if not feats:
        raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: none of the sweep models {models} is extracted")
    rel = np.asarray(resp["splithalf_r"].values, float)
    areas = stats.to_strings(resp[S.AREA].values)

    def scores_at(mask):
        mask = mask.copy()
        for a in np.unique(areas):
            if (mask & (areas == a)).sum() < 3:
                mask &= areas != a
        sub = resp.isel({S.NEURON: np.flatnonzero(mask)})
        return concat_scores([score_layers(f, sub, tuple(metrics), alpha=alpha).compute() for f in feats])

    return stats.rank_over_thresholds(scores_at, rel, thresholds, n_boot=n_boot, seed=seed, min_neurons=3)


def calc_method_tradeoff(study, model: str = "alexnet", weights: str = "random", *, n_layers: int = 2,
                         sizes=(64, 256, 1024, 4096), regressions=("ridge", "pls"), seed: int = 0,
                         alpha: float = 1.0) -> pd.DataFrame:
    """Measure score against compute time (no reduction, PCA, SRP; ridge, PLS) on ``n_layers``
    evenly spaced layers of ``model``, against the study's selected neurons.

    Returns
    -------
    DataFrame
        See :func:`neuroxr.stats.measure_method_tradeoff` (plus ``model``).
    """
    st = open_study(study)
    pixels = st.stimuli[S.PIXELS]
    resp = load_selected_responses(study)
    Y = np.asarray(resp[S.MEAN].sel({S.IMAGE: pixels[S.IMAGE].values}).transpose(S.IMAGE, S.NEURON).values, float)
    loaded = load_model(model, weights=weights, seed=seed)
    acts = [(n, a) for n, _, a in iter_layer_activations(loaded, np.asarray(pixels.values))]
    pick = np.unique(np.round(np.linspace(0, len(acts) - 1, n_layers + 2)[1:-1]).astype(int))
    feats = {acts[i][0]: acts[i][1] for i in pick}
    del acts
    t = stats.measure_method_tradeoff(feats, Y, sizes=sizes, regressions=regressions, alpha=alpha, seed=seed)
    t.insert(0, "model", model)
    return t


def run_sweep(settings: PipelineSettings, study: Path, log, force, n_boot, seed) -> None:
    """[sweep]: ``reports/reliability_sweep.csv`` unless it exists; skipped without trials."""
    out = study / S.REPORTS_DIR / SWEEP_CSV
    if out.exists() and "sweep" not in force:
        log("sweep: reliability_sweep.csv exists, skipped")
        return
    sw = settings.sweep
    try:
        df = rescore_by_reliability(study, sw.models, sw.thresholds, metrics=list(settings.score.metrics),
                                    alpha=score_alphas(settings.score),
                                    select=given(settings.select) if settings.select else None,
                                    n_boot=n_boot, seed=seed)
    except MissingDataError as exc:
        log(f"sweep: skipped ({exc})")
        return
    df.to_csv(out, index=False, float_format="%.6g")
    log(f"sweep: {out}")


def run_tradeoff(settings: PipelineSettings, study: Path, log, force, skip=()) -> None:
    """[tradeoff]: ``reports/method_tradeoff.csv`` unless it exists (timings of this machine);
    skipped when its (model, weights) is in ``skip`` (weights missing)."""
    out = study / S.REPORTS_DIR / TRADEOFF_CSV
    if out.exists() and "tradeoff" not in force:
        log("tradeoff: method_tradeoff.csv exists, skipped")
        return
    tr = settings.tradeoff
    if (tr.model, tr.weights) in set(skip):
        log(f"tradeoff: skipped ({tr.model} ({tr.weights}) weights are missing)")
        return
    seed = settings.extract.seed if settings.extract.seed is not None else 0
    df = calc_method_tradeoff(study, tr.model, tr.weights, n_layers=tr.n_layers, sizes=tr.sizes,
                              regressions=tr.regressions, seed=seed,
                              alpha=1.0 if settings.score.alpha is None else settings.score.alpha)
    df.to_csv(out, index=False, float_format="%.6g")
    log(f"tradeoff: {out} (timings on this machine)")
