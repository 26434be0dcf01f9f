"""Running a whole pipeline, and the built-in demo."""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

from .. import schema as S
from ..domains import pipeline as domains_pipeline
from ..errors import MissingDataError, NeuroxrError
from ..planner import log_pipeline_plan
from ..report import (
    NOT_RUN_JSON,
    format_headline,
    read_planted,
    write_rankings,
    write_report,
)
from .analyses import run_sweep, run_tradeoff
from .config import is_domains_config, load_settings, read_config
from .plan import check_settings, split_missing
from .stages import run_extract, run_ingest, run_score, run_select

#: the built-in demo (``pipelines/demo.toml`` holds the same settings; a test checks they agree)
DEMO = {
    "study": {"dir": "neuroxr-demo", "seed": 0, "kind": "conwell2021"},
    "ingest": {"source": "simulate", "model": "alexnet", "weights_seed": 0, "n_images": 118,
               "neurons_per_area": 150, "n_trials": 20, "image_size": 64},
    "select": {"min_reliability": 0.3},
    "extract": {"models": ["alexnet", "resnet18", "mobilenet_v3_small"],
                "weights": ["random"], "baselines": ["pixels", "gabor", "gist", "rff"], "seed": 0},
    "score": {"metrics": ["ridge", "rsa"]},  # ridge: the paper's alpha = 1 in its units
    "sweep": {"thresholds": [0.0, 0.2, 0.4, 0.6, 0.8], "models": ["alexnet", "resnet18", "pixels"]},
    "tradeoff": {"model": "alexnet", "weights": "random", "n_layers": 2, "sizes": [32, 64, 100, 256, 1024]},
    "report": {"n_boot": 500, "seed": 0},
}
#: the reduced demo of the tests: fewer neurons and models, same chain
DEMO_SMALL = {
    **copy.deepcopy(DEMO),
    "ingest": {**DEMO["ingest"], "n_images": 64, "neurons_per_area": 40, "n_trials": 12},
    "select": {"min_reliability": 0.2},
    "extract": {"models": ["alexnet"], "weights": ["random"], "baselines": ["pixels", "gabor"], "seed": 0},
    "sweep": {"thresholds": [0.0, 0.5], "models": ["alexnet"]},
    "tradeoff": {"model": "alexnet", "weights": "random", "n_layers": 1, "sizes": [16, 48]},
    "report": {"n_boot": 100, "seed": 0},
}


def _log_default(msg):
    print(f"neuroxr: {msg}", file=sys.stderr, flush=True)


def _study_dir(settings, study=None) -> Path:
    if study is not None:
        return Path(study)
    if not settings.study.dir:
        raise NeuroxrError(f"{settings.where}: no [study] dir; give one or pass --study DIR")
    return settings.path(settings.study.dir)


def check_pipeline(config, study=None) -> list[str]:
    """Everything a config needs that is not here: data files, weights, packages.

    Returns
    -------
    list of str
        One line per missing item, saying what it is, where it was looked for and how to get
        it; empty when the pipeline can run.
    """
    cfg = read_config(config)
    if is_domains_config(cfg):
        return []
    settings = load_settings(cfg)
    return check_settings(settings, _study_dir(settings, study))


def _run_domains(cfg, study) -> dict:
    cfg.pop("_config", None)
    res = domains_pipeline.run_domains_pipeline(cfg, study)
    rep = res.get("report")
    return {**res, "report": rep.get("index", rep) if isinstance(rep, dict) else rep, "headline": ""}


def _plan_run(settings, study, strict, log) -> list[dict]:
    """The variants to skip for missing weights (see :func:`split_missing`), written to
    ``reports/not_run.json``; raise when input data are missing, or anything is with ``strict``."""
    blocking, weights = split_missing(settings, study)
    if blocking or (strict and weights):
        missing = blocking + [w["reason"] for w in weights]
        raise MissingDataError("this pipeline cannot run; missing:\n  - " + "\n  - ".join(missing))
    for w in weights:
        log(f"not run: {w['model']} ({w['weights']}): {w['reason']}")
    (study / S.REPORTS_DIR).mkdir(parents=True, exist_ok=True)
    (study / S.REPORTS_DIR / NOT_RUN_JSON).write_text(json.dumps(weights, indent=1))
    return weights


def run_pipeline(config, study=None, client=None, *, force=(), log=None, strict: bool = False) -> dict:
    """Run a pipeline config: ingest -> select -> extract -> score -> rank -> (sweep, tradeoff) -> report.

    Parameters
    ----------
    config : path-like or dict
        A TOML file (``pipelines/conwell2021.toml``) or the same content as a dict.
    study : path-like, optional
        Study directory (default: ``[study] dir`` of the config).
    client : distributed.Client, optional
        Where extraction and scoring run (default: this process).
    force : sequence of str
        Stages to redo even when their output exists.
    log : callable, optional
        Progress messages (default: stderr).
    strict : bool
        Refuse to start when any trained weights are missing (default: run without those model
        variants, listing them as not run in the summary and the report).

    Returns
    -------
    dict
        ``study``, ``report`` (path of index.html), ``rankings`` (path), ``headline`` (text),
        ``not_run`` (dicts ``model, weights, reason``), ``seconds`` per stage.
    """
    log = log or _log_default
    cfg = read_config(config)
    if is_domains_config(cfg):
        return _run_domains(cfg, study)
    settings = load_settings(cfg)
    study = _study_dir(settings, study)
    force = set(force or ())
    not_run = _plan_run(settings, study, strict, log)
    seconds = {}

    def stage(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        seconds[name] = time.perf_counter() - t0
        return out

    skip = [(w["model"], w["weights"]) for w in not_run]
    planned = log_pipeline_plan(settings, study, skip, log)  # the plan of the extraction, before it starts
    stage("ingest", run_ingest, settings, study, log, force)
    if not planned:
        log_pipeline_plan(settings, study, skip, log)
    stage("select", run_select, settings, study, log, force)
    late = stage("extract", run_extract, settings, study, log, force, client, skip)
    if late:  # weights found missing only while loading (e.g. a cache that went away)
        if strict:
            raise MissingDataError("missing weights (--strict):\n  - " + "\n  - ".join(w["reason"] for w in late))
        not_run = not_run + late
        skip += [(w["model"], w["weights"]) for w in late]
        (study / S.REPORTS_DIR / NOT_RUN_JSON).write_text(json.dumps(not_run, indent=1))
    stage("score", run_score, settings, study, log, force, client)
    n_boot = settings.report.n_boot
    bseed = settings.report.seed if settings.report.seed is not None else settings.study.seed
    rankings = stage("rank", write_rankings, study, None, n_boot=n_boot, seed=bseed)
    log(f"rank: {rankings}")
    if settings.sweep is not None:
        stage("sweep", run_sweep, settings, study, log, force, n_boot, bseed)
    if settings.tradeoff is not None:
        stage("tradeoff", run_tradeoff, settings, study, log, force, skip)
    index = stage("report", write_report, study, n_boot=n_boot, seed=bseed)
    headline = json.loads((index.parent / "headline.json").read_text())
    return {"study": study, "report": index, "rankings": rankings, "headline": format_headline(headline),
            "headline_data": headline, "not_run": not_run, "seconds": seconds}


def run_demo(study="neuroxr-demo", client=None, *, size: str = "full", seed: int = 0, log=None) -> dict:
    """The whole study on the built-in simulated observatory (see :data:`DEMO`).

    ``size="small"`` is the reduced demo of the tests (:data:`DEMO_SMALL`).  Returns the dict of
    :func:`run_pipeline` plus ``seconds`` (total) and ``planted`` (the simulation's ground truth).
    """
    cfg = copy.deepcopy(DEMO if size == "full" else DEMO_SMALL)
    cfg["study"]["seed"] = seed
    cfg["ingest"]["seed"] = seed
    t0 = time.perf_counter()
    res = run_pipeline(cfg, study=Path(study), client=client, log=log)
    res["stage_seconds"] = res["seconds"]
    res["seconds"] = time.perf_counter() - t0
    res["planted"] = read_planted(study)
    if res["planted"]:
        p = res["planted"]
        res["headline"] += (f"\nplanted: generating model {p['model']} ({p['weights']}); driving layer relative depth "
                            + ", ".join(f"{a} {p['area_layers'][a]['relative_depth']:.2f}" for a in S.AREAS
                                       if a in p["area_layers"]))
    return res
