"""The stages that build a study: ingest, select, extract, score.  Each skips what is done."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import NeuroxrError
from ..features.extract import extract_features
from ..io.allen import ingest_allen
from ..io.arrays import ingest_arrays
from ..simulate import simulate_study
from ..io.store import open_dataset
from ..mapping.score import score_study
from ..responses import select_study
from .config import PipelineSettings, given
from .plan import list_done_variants, list_model_variants, resolve_spec

#: [ingest] keys that name files (``FILE[:key]``), resolved against the config's base
INGEST_FILES = ("images", "responses", "trials", "neurons", "neuron_ids")


def run_ingest(settings: PipelineSettings, study: Path, log, force) -> None:
    """Write ``responses.zarr`` and ``stimuli.zarr`` from the [ingest] source, unless they exist."""
    ing = given(settings.ingest)
    src = ing.pop("source", None)
    if (study / S.RESPONSES_STORE).exists() and "ingest" not in force:
        log("ingest: responses.zarr exists, skipped")
        return
    overwrite = "ingest" in force
    if src == "simulate":
        ing.setdefault("seed", settings.study.seed)
        log(f"ingest: simulating an observatory driven by {ing.get('model', 'alexnet')} (random weights)")
        simulate_study(study, overwrite=overwrite, **ing)
    elif src == "arrays":
        for key in INGEST_FILES:
            if key in ing:
                ing[key] = resolve_spec(settings, ing[key])
        log(f"ingest: arrays {ing.get('responses') or ing.get('trials')}")
        ingest_arrays(study, overwrite=overwrite, **ing)
    elif src == "allen":
        cache = settings.path(ing.pop("cache", "allen_cache"))
        log(f"ingest: Allen cache {cache} ({ing.get('session', 'three_session_B')}, {ing.get('response', 'events')})")
        ingest_allen(study, cache, overwrite=overwrite, **ing)
    else:
        raise NeuroxrError(f"{settings.where}: [ingest] source must be allen, arrays or simulate, got {src!r}")


def _usable_criteria(want: dict, ds, log) -> dict:
    """``want`` without the criteria the responses cannot support (each dropped one is logged)."""
    want = dict(want)
    if want["min_reliability"] is not None and S.TRIALS not in ds and "splithalf_r" not in ds.variables:
        log("select: no trials, so no split-half reliability; min_reliability ignored")
        want["min_reliability"] = None
    if want["exclude_running"] and "p_run_mod" not in ds.variables:
        log("select: no p_run_mod; exclude_running ignored")
        want["exclude_running"] = False
    if want["image_selective"] and "p_image" not in ds.variables:
        log("select: no p_image; image_selective ignored")
        want["image_selective"] = False
    return want


def run_select(settings: PipelineSettings, study: Path, log, force) -> None:
    """Select neurons by the [select] criteria, unless the same criteria are already applied."""
    sel = settings.select
    if sel is None:
        return
    ds = open_dataset(study / S.RESPONSES_STORE)
    want = {"min_reliability": sel.min_reliability, "cre_lines": sel.cre_lines,
            "exclude_running": sel.exclude_running, "image_selective": sel.image_selective}
    if "selected" in ds.variables and "select" not in force:
        try:
            have = json.loads(ds["selected"].attrs.get("criteria", "{}"))
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            log(f"select: {int(ds['selected'].sum())} of {ds.sizes[S.NEURON]} neurons already selected, skipped")
            return
    want = _usable_criteria(want, ds, log)
    extra = {k: v for k, v in given(sel).items() if k not in want}
    s = select_study(study, seed=settings.study.seed, **want, **extra)
    log(f"select: {int(np.asarray(s).sum())} of {len(s)} neurons kept ({want})")


def run_extract(settings: PipelineSettings, study: Path, log, force, client, skip=()) -> None:
    """Extract every (model, weights) variant of [extract] that is not extracted yet, but those in
    ``skip`` ((model, weights) pairs whose weights are missing)."""
    ex = settings.extract
    skip = set(skip)
    pairs = [p for p in list_model_variants(settings) if p not in skip]
    if not pairs:
        return
    done = set() if "extract" in force else list_done_variants(study)
    todo = [p for p in pairs if p not in done]
    if not todo:
        log(f"extract: all {len(pairs)} models extracted, skipped")
        return
    seed = ex.seed if ex.seed is not None else settings.study.seed
    (study / S.FEATURES_DIR).mkdir(parents=True, exist_ok=True)  # extract spills beside the stores
    for model, weights in todo:
        t0 = time.perf_counter()
        w = weights if weights in ("trained", "random") else str(settings.path(weights))
        extract_features(study, [model], weights=w, seed=seed, srp=ex.srp, client=client,
                         batch_size=ex.batch_size, overwrite="extract" in force, progress=False)
        log(f"extract: {model} ({weights}) in {time.perf_counter() - t0:.1f} s")


def run_score(settings: PipelineSettings, study: Path, log, force, client) -> None:
    """Score every extracted model by the [score] metrics (finished models are kept)."""
    sc = given(settings.score)
    metrics = sc.pop("metrics")
    log(f"score: {', '.join(metrics)} (finished models are kept)")
    score_study(study, metrics=metrics, client=client, overwrite="score" in force,
                log=lambda m: log(f"score: {m}"), **sc)
