"""Whole studies from one TOML file: ingest -> select -> extract -> score -> rank -> report.

A pipeline config (``pipelines/*.toml``, read with :mod:`tomllib` as plain data) has one table per
stage; every stage skips what is already done, so rerunning resumes after a crash or adds what
the config gained (a model, a metric)::

    [study]
    dir = "studies/visp"          # the study directory (relative paths: see `base`)
    base = ".."                   # relative paths are relative to this, itself relative to the config
    seed = 0
    kind = "conwell2021"          # or "prasad2022": the image-domain study (neuroxr.domains)

    [ingest]                      # source = "allen" | "arrays" | "simulate"; other keys go to the
    source = "arrays"             # ingest function (neuroxr.io.allen.ingest_allen, ...arrays.ingest_arrays,
    images = "data.npz:images"    # ...simulate.simulate_study)

    [select]                      # neuroxr.responses.select_study keyword arguments
    min_reliability = 0.8

    [extract]
    models = ["alexnet", "resnet18"]   # or catalog = "models" (every row), families = [...]
    weights = ["trained", "random"]
    baselines = ["pixels"]
    srp = 4096                         # store the sparse random projection (for srp-ridge)

    [score]
    metrics = ["ridge", "rsa"]
    alpha = 1.0

    [sweep]                       # optional: reliability sweep (rescored at each threshold)
    thresholds = [0.0, 0.1, ..., 0.9]
    models = ["alexnet"]

    [tradeoff]                    # optional: method trade-off measured on a few layers
    model = "alexnet"

    [report]
    n_boot = 1000
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema as S
from .errors import MissingDataError, NeuroxrError
from .stats import to_strings

STAGES = ("ingest", "select", "extract", "score", "rank", "sweep", "tradeoff", "report")

#: the built-in demo (``pipelines/demo.toml`` holds the same settings; a test checks they agree)
DEMO = {
    "study": {"dir": "neuroxr-demo", "seed": 0, "kind": "conwell2021"},
    "ingest": {"source": "simulate", "model": "alexnet", "weights_seed": 0, "n_images": 118,
               "neurons_per_area": 150, "n_trials": 20, "image_size": 64},
    "select": {"min_reliability": 0.3},
    "extract": {"models": ["alexnet", "resnet18", "mobilenet_v3_small"],
                "weights": ["random"], "baselines": ["pixels", "gabor", "gist", "rff"], "seed": 0},
    "score": {"metrics": ["ridge", "rsa"], "alpha": 1.0},
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


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
def read_config(config) -> dict:
    """A pipeline config as a dict: a TOML path (parsed with :mod:`tomllib`) or a dict (copied).

    Relative paths in the config are resolved against ``[study] base`` (itself relative to the
    config file's directory; default: that directory, or the working directory for a dict);
    the resolved base is stored as ``cfg["_base"]``.
    """
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
        here = Path.cwd()
    else:
        path = Path(config)
        if not path.exists():
            raise MissingDataError(f"pipeline config {path} does not exist (see pipelines/ for examples)")
        try:
            cfg = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise NeuroxrError(f"{path}: not valid TOML ({exc})") from exc
        here = path.resolve().parent
        cfg["_config"] = str(path)
    if is_domains_config(cfg):
        return cfg  # the image-domain study has its own tables (neuroxr.domains.pipeline)
    st = cfg.setdefault("study", {})
    where = cfg.get("_config", "config")
    for key, val in cfg.items():  # tables must be tables (hostile input: issue 8)
        if not key.startswith("_") and not isinstance(val, dict):
            raise NeuroxrError(f"{where}: {key!r} must be a table ([{key}]), got {val!r}")
    if not isinstance(st.get("base", "."), str):
        raise NeuroxrError(f"{where}: [study] base must be a path string, got {st['base']!r}")
    if "_base" not in cfg:  # a dict already read keeps its base
        cfg["_base"] = str((here / st.get("base", ".")).resolve())
    unknown = [k for k in cfg if not k.startswith("_") and k not in ("study", *STAGES)]
    if unknown:
        raise NeuroxrError(f"{cfg.get('_config', 'config')}: unknown table(s) {unknown}; "
                           f"expected {['study', *STAGES]}")
    return cfg


def is_domains_config(cfg: dict) -> bool:
    """True for the second study's configs (``kind = "prasad2022"`` in ``[study]`` or ``[pipeline]``)."""
    return any(isinstance(cfg.get(t), dict) and cfg[t].get("kind") == "prasad2022" for t in ("study", "pipeline"))


def _path(cfg, p) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else Path(cfg["_base"]) / p


def _spec_path(cfg, spec):
    """``FILE[:key]`` with FILE resolved; other values unchanged."""
    if not isinstance(spec, str):
        return spec
    if _has_key(spec):
        file, _, key = spec.rpartition(":")
        return f"{_path(cfg, file)}:{key}"
    return str(_path(cfg, spec))


def _has_key(spec) -> bool:
    """``FILE:key`` (a key after the last ':' with no path separator in it)."""
    if not isinstance(spec, str) or ":" not in spec:
        return False
    key = spec.rpartition(":")[2]
    return bool(key) and "/" not in key and "\\" not in key


def _study_dir(cfg, study=None) -> Path:
    if study is not None:
        return Path(study)
    d = cfg["study"].get("dir")
    if not d:
        raise NeuroxrError(f"{cfg.get('_config', 'config')}: no [study] dir; give one or pass --study DIR")
    return _path(cfg, d)


def _call(fn, *args, **kwargs):
    """Call ``fn`` with the keyword arguments it accepts (the config may carry more)."""
    sig = inspect.signature(fn)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in sig.parameters})


def _model_list(cfg) -> list[tuple[str, str]]:
    """(model, weights) pairs of the [extract] table, baselines last."""
    ex = cfg.get("extract", {})
    models = list(ex.get("models", []))
    if ex.get("catalog"):
        from .features.zoo import list_models

        cat = list_models(catalog=None if ex["catalog"] in (True, "models") else str(_path(cfg, ex["catalog"])))
        fams = ex.get("families")
        if fams:
            cat = cat[cat.family.isin(fams)]
        models += [m for m in cat.model if m not in models]
    if ex.get("taskonomy"):
        from .features.zoo import list_models

        models += [m for m in list_models(family="taskonomy").model if m not in models]
    exclude = set(ex.get("exclude", []))
    weights = ex.get("weights", ["random"])
    weights = [weights] if isinstance(weights, str) else list(weights)
    baselines = [b for b in ex.get("baselines", []) if b not in models]
    fam = _families()
    pairs = []
    for m in models:
        if m in exclude:
            continue
        if fam.get(m) == "baseline":
            pairs.append((m, "random"))
            continue
        for w in weights:
            if w == "random" and fam.get(m) == "taskonomy" and "trained" in weights:
                continue  # one random ResNet-50 encoder, not 24
            pairs.append((m, w))
    pairs += [(b, "random") for b in baselines]
    return list(dict.fromkeys(pairs))


def _families() -> dict:
    try:
        from .features.zoo import list_models

        cat = list_models()
        return dict(zip(cat.model, cat.family))
    except Exception:
        return {}


# --------------------------------------------------------------------------------------------
# what is missing
# --------------------------------------------------------------------------------------------
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
    study = _study_dir(cfg, study)
    missing = []
    ing = cfg.get("ingest", {})
    src = ing.get("source")
    have_responses = (study / S.RESPONSES_STORE).exists()
    if src == "allen" and not have_responses:
        cache = _path(cfg, ing.get("cache", "allen_cache"))
        if not (cache / "manifest.json").exists() and not (cache.name == "manifest.json" and cache.exists()):
            missing.append(f"Allen Brain Observatory cache: no manifest.json in {cache}; download it with "
                           f"`neuroxr fetch allen {cache} --session {ing.get('session', 'three_session_B')}` "
                           f"(or point [ingest] cache at an AllenSDK BrainObservatoryCache directory)")
        else:
            for sub in ("ophys_experiment_data", "ophys_experiment_events" if ing.get("response", "events") == "events"
                        else None):
                if sub and not (cache / sub).is_dir():
                    missing.append(f"Allen cache {cache}: no {sub}/ directory; run `neuroxr fetch allen {cache}`")
    elif src == "arrays" and not have_responses:
        for key in ("images", "responses", "trials", "neurons"):
            if key in ing:
                f = Path(_spec_path(cfg, ing[key]).rpartition(":")[0] or _spec_path(cfg, ing[key])) \
                    if _has_key(ing[key]) else Path(_spec_path(cfg, ing[key]))
                if not f.exists():
                    missing.append(f"[ingest] {key}: file {f} does not exist")
    elif src not in ("allen", "arrays", "simulate", None):
        missing.append(f"[ingest] source {src!r} is unknown: use allen, arrays or simulate")
    missing += _missing_weights(cfg, study)
    for pkg in cfg.get("study", {}).get("requires", []):
        try:
            __import__(pkg)
        except ImportError:
            missing.append(f"Python package {pkg!r} is not installed: pip install {pkg}")
    return missing


def _torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` without importing torch (TORCH_HOME, XDG_CACHE_HOME)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface")
    return Path(hf_home) / "hub"


def _missing_weights(cfg, study) -> list[str]:
    """Trained weights the [extract] table needs that are not in the local caches (no imports of
    torch or timm, no network: file and directory checks only)."""
    out = []
    pairs = _model_list(cfg)
    if not pairs:
        return out
    from .features.zoo import list_models

    rows = {r["model"]: r for r in list_models().to_dict("records")}
    hub, hf = _torch_hub_checkpoints(), _hf_hub_cache()
    done = _done_models(study)
    for model, weights in pairs:
        if (model, weights) in done:
            continue
        row = rows.get(model)
        if row is None:
            out.append(f"model {model!r} is not in catalogs/models.csv (nor taskonomy.csv): check the name "
                       f"(see catalogs/models.csv and catalogs/taskonomy.csv)")
            continue
        if weights == "random" or row.get("family") == "baseline":
            continue
        if weights != "trained":
            p = _path(cfg, weights)
            if not p.exists():
                out.append(f"{model}: weights file {p} does not exist")
            continue
        src = row.get("source")
        if src in ("torchvision", "taskonomy"):
            fname = row.get("weights_file")
            if not isinstance(fname, str) or not fname or not (hub / fname).exists():
                out.append(f"{model} ({src}) trained weights: {hub / str(fname)} is missing; download it on a "
                           f"machine that is online (torch hub cache), or give [extract] weights a file")
        elif src == "timm":
            ctor = str(row.get("constructor") or model)
            if not any(hf.glob(f"models--timm--{ctor}*")):
                out.append(f"{model} (timm) trained weights: no {hf}/models--timm--{ctor}* directory; "
                           f"`huggingface-cli download timm/{ctor}` on a machine that is online")
        elif src == "lightly":
            out.append(f"{model} (lightly) trained weights: give [extract] weights a SimCLR checkpoint file")
    return out


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------
def _done_models(study) -> set:
    """(model, weights) pairs already extracted: ``features/<model>.zarr`` holds every weights
    variant of a model along ``layer``."""
    from .io.store import open_dataset

    done = set()
    d = Path(study) / S.FEATURES_DIR
    for p in sorted(d.glob("*.zarr")) if d.exists() else []:
        if p.name.startswith("."):
            continue
        try:
            ds = open_dataset(p, chunks={})  # stored chunks (string coords cannot be auto-chunked)
            for m, w in zip(to_strings(ds["model"].values), to_strings(ds["weights"].values)):
                done.add((m, w))
        except Exception:
            continue
    return done


def _ingest(cfg, study, log, force):
    ing = dict(cfg.get("ingest", {}))
    src = ing.pop("source", None)
    if (study / S.RESPONSES_STORE).exists() and "ingest" not in force:
        log("ingest: responses.zarr exists, skipped")
        return
    overwrite = "ingest" in force
    if src == "simulate":
        from .io.simulate import simulate_study

        ing.setdefault("seed", cfg["study"].get("seed", 0))
        log(f"ingest: simulating an observatory driven by {ing.get('model', 'alexnet')} (random weights)")
        _call(simulate_study, study, overwrite=overwrite, **ing)
    elif src == "arrays":
        from .io.arrays import ingest_arrays

        for key in ("images", "responses", "trials", "neurons", "neuron_ids"):
            if key in ing:
                ing[key] = _spec_path(cfg, ing[key])
        log(f"ingest: arrays {ing.get('responses') or ing.get('trials')}")
        _call(ingest_arrays, study, overwrite=overwrite, **ing)
    elif src == "allen":
        from .io.allen import ingest_allen

        cache = _path(cfg, ing.pop("cache", "allen_cache"))
        log(f"ingest: Allen cache {cache} ({ing.get('session', 'three_session_B')}, {ing.get('response', 'events')})")
        _call(ingest_allen, study, cache, overwrite=overwrite, **ing)
    else:
        raise NeuroxrError(f"{cfg.get('_config', 'config')}: [ingest] source must be allen, arrays or simulate, "
                           f"got {src!r}")


def _select(cfg, study, log, force):
    sel = cfg.get("select")
    if not sel:
        return
    from .io.store import open_dataset

    ds = open_dataset(study / S.RESPONSES_STORE)
    want = {"min_reliability": sel.get("min_reliability"), "cre_lines": sel.get("cre_lines"),
            "exclude_running": bool(sel.get("exclude_running", False)),
            "image_selective": bool(sel.get("image_selective", False))}
    if "selected" in ds.variables and "select" not in force:
        try:
            have = json.loads(ds["selected"].attrs.get("criteria", "{}"))
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            log(f"select: {int(ds['selected'].sum())} of {ds.sizes[S.NEURON]} neurons already selected, skipped")
            return
    from .responses import select_study

    if want["min_reliability"] is not None and S.TRIALS not in ds and "splithalf_r" not in ds.variables:
        log("select: no trials, so no split-half reliability; min_reliability ignored")
        want["min_reliability"] = None
    if want["exclude_running"] and "p_run_mod" not in ds.variables:
        log("select: no p_run_mod; exclude_running ignored")
        want["exclude_running"] = False
    if want["image_selective"] and "p_image" not in ds.variables:
        log("select: no p_image; image_selective ignored")
        want["image_selective"] = False
    s = _call(select_study, study, seed=cfg["study"].get("seed", 0), **want, **{k: v for k, v in sel.items()
                                                                               if k not in want})
    log(f"select: {int(np.asarray(s).sum())} of {len(s)} neurons kept ({want})")


def _extract(cfg, study, log, force, client):
    ex = cfg.get("extract", {})
    pairs = _model_list(cfg)
    if not pairs:
        return
    done = set() if "extract" in force else _done_models(study)
    todo = [p for p in pairs if p not in done]
    if not todo:
        log(f"extract: all {len(pairs)} models extracted, skipped")
        return
    seed = ex.get("seed", cfg["study"].get("seed", 0))
    from .features.extract import extract_features

    (study / S.FEATURES_DIR).mkdir(parents=True, exist_ok=True)  # extract spills beside the stores
    for model, weights in todo:
        t0 = time.perf_counter()
        w = weights if weights in ("trained", "random") else str(_path(cfg, weights))
        _call(extract_features, study, [model], weights=w, seed=seed, srp=ex.get("srp"), client=client,
              batch_size=ex.get("batch_size", 32), overwrite="extract" in force, progress=False)
        log(f"extract: {model} ({weights}) in {time.perf_counter() - t0:.1f} s")


def _score(cfg, study, log, force, client):
    from .mapping.score import score_study

    sc = dict(cfg.get("score", {}))
    metrics = sc.pop("metrics", ["ridge", "rsa"])
    log(f"score: {', '.join(metrics)} (finished models are kept)")
    _call(score_study, study, metrics=metrics, client=client, overwrite="score" in force,
          log=lambda m: log(f"score: {m}"), **sc)


def _features_for(study, pairs=None):
    """Open the features stores of the models in ``pairs`` ({(model, None)}; None: every store)."""
    from .io.store import open_dataset

    out = []
    d = Path(study) / S.FEATURES_DIR
    for p in sorted(d.glob("*.zarr")):
        if p.name.startswith("."):
            continue
        ds = open_dataset(p, chunks={})
        if pairs is None or (str(np.asarray(ds["model"].values)[0]), None) in pairs:
            out.append(ds)
    return out


def calc_reliability_sweep(study, models=None, thresholds=tuple(np.round(np.arange(0, 1.0, 0.1), 1)), *,
                           metrics=("ridge", "rsa"), alpha: float = 1.0, select: dict | None = None,
                           n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Scores of ``models`` as the split-half reliability threshold rises, rescored at each threshold.

    The neurons are those passing the other selection criteria (``select``: cre lines, running,
    image selectivity); at each threshold the features of every model are scored against the
    neurons with ``splithalf_r >= threshold`` by :func:`neuroxr.mapping.score.score_layers`.

    Returns
    -------
    DataFrame
        See :func:`neuroxr.stats.sweep_reliability`.
    """
    import xarray as xr

    from . import stats
    from .mapping.score import score_layers
    from .responses import select_neurons
    from .study import open_study

    st = open_study(study)
    resp = st.responses
    if "splithalf_r" not in resp.variables:
        raise MissingDataError(f"{st.store(S.RESPONSES_STORE)}: no splithalf_r; the sweep needs trials "
                               "(run `neuroxr select` on a study with trials)")
    select = dict(select or {})
    base = np.asarray(select_neurons(resp, None, select.get("cre_lines"), bool(select.get("exclude_running")),
                                     bool(select.get("image_selective"))).values, bool)
    resp = resp.isel({S.NEURON: np.flatnonzero(base)})
    for v in ("selected",):
        if v in resp.variables:
            resp = resp.drop_vars(v)
    resp = resp.drop_vars([v for v in resp.data_vars if v != S.MEAN])
    resp[S.MEAN] = resp[S.MEAN].load()
    pairs = {(m, None) for m in models} if models else None
    feats = _features_for(study, pairs)
    feats = [f.load() for f in feats]
    if not feats:
        raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: none of the sweep models {models} is extracted")

    def scores_at(mask):
        sub = resp.isel({S.NEURON: np.flatnonzero(mask)})
        parts = [score_layers(f, sub, tuple(metrics), alpha=alpha).compute() for f in feats]
        return xr.concat(parts, dim=S.LAYER, coords="minimal", compat="override", join="outer")

    # neurons in an area need >= 2 for its RDM: drop areas too thin at a threshold
    rel = np.asarray(resp["splithalf_r"].values, float)
    areas = to_strings(resp[S.AREA].values)

    def scores_at_safe(mask):
        mask = mask.copy()
        for a in np.unique(areas):
            if (mask & (areas == a)).sum() < 3:
                mask &= areas != a
        return scores_at(mask)

    return stats.sweep_reliability(scores_at_safe, rel, thresholds, n_boot=n_boot, seed=seed, min_neurons=3)


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
    from . import stats
    from .features.extract import iter_layer_activations
    from .features.zoo import load_model
    from .responses import load_selected_responses
    from .study import open_study

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


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------
def run_pipeline(config, study=None, client=None, *, force=(), log=None) -> dict:
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

    Returns
    -------
    dict
        ``study``, ``report`` (path of index.html), ``rankings`` (path), ``headline`` (text),
        ``seconds`` per stage.
    """
    log = log or _log_default
    cfg = read_config(config)
    if is_domains_config(cfg):
        from .domains.pipeline import run_domains_pipeline

        cfg.pop("_config", None)
        res = run_domains_pipeline(cfg, study)
        rep = res.get("report")
        return {**res, "report": rep.get("index", rep) if isinstance(rep, dict) else rep, "headline": ""}
    study = _study_dir(cfg, study)
    force = set(force or ())
    missing = check_pipeline(cfg, study)
    if missing:
        raise MissingDataError("this pipeline cannot run; missing:\n  - " + "\n  - ".join(missing))
    study.mkdir(parents=True, exist_ok=True)
    (study / S.REPORTS_DIR).mkdir(exist_ok=True)
    seconds = {}

    def stage(name, fn, *a):
        t0 = time.perf_counter()
        fn(*a)
        seconds[name] = time.perf_counter() - t0

    stage("ingest", _ingest, cfg, study, log, force)
    stage("select", _select, cfg, study, log, force)
    stage("extract", _extract, cfg, study, log, force, client)
    stage("score", _score, cfg, study, log, force, client)
    rep = cfg.get("report", {})
    n_boot, bseed = int(rep.get("n_boot", 1000)), int(rep.get("seed", cfg["study"].get("seed", 0)))
    from .report import format_headline, write_rankings, write_report

    t0 = time.perf_counter()
    rankings = write_rankings(study, n_boot=n_boot, seed=bseed)
    seconds["rank"] = time.perf_counter() - t0
    log(f"rank: {rankings}")
    reports = study / S.REPORTS_DIR
    if cfg.get("sweep") is not None:
        out = reports / "reliability_sweep.csv"
        if out.exists() and "sweep" not in force:
            log("sweep: reliability_sweep.csv exists, skipped")
        else:
            t0 = time.perf_counter()
            sw = cfg["sweep"]
            try:
                df = calc_reliability_sweep(
                    study, sw.get("models"), sw.get("thresholds", [round(0.1 * i, 1) for i in range(10)]),
                    metrics=[m for m in cfg.get("score", {}).get("metrics", ["ridge", "rsa"])],
                    alpha=cfg.get("score", {}).get("alpha", 1.0), select=cfg.get("select"), n_boot=n_boot,
                    seed=bseed)
                df.to_csv(out, index=False, float_format="%.6g")
                log(f"sweep: {out}")
            except MissingDataError as exc:
                log(f"sweep: skipped ({exc})")
            seconds["sweep"] = time.perf_counter() - t0
    if cfg.get("tradeoff") is not None:
        out = reports / "method_tradeoff.csv"
        if out.exists() and "tradeoff" not in force:
            log("tradeoff: method_tradeoff.csv exists, skipped")
        else:
            t0 = time.perf_counter()
            tr = cfg["tradeoff"]
            df = calc_method_tradeoff(study, tr.get("model", "alexnet"), tr.get("weights", "random"),
                                      n_layers=tr.get("n_layers", 2), sizes=tr.get("sizes", (64, 256, 1024, 4096)),
                                      regressions=tr.get("regressions", ("ridge", "pls")),
                                      seed=cfg.get("extract", {}).get("seed", 0),
                                      alpha=cfg.get("score", {}).get("alpha", 1.0))
            df.to_csv(out, index=False, float_format="%.6g")
            seconds["tradeoff"] = time.perf_counter() - t0
            log(f"tradeoff: {out} (timings on this machine)")
    t0 = time.perf_counter()
    index = write_report(study, n_boot=n_boot, seed=bseed)
    seconds["report"] = time.perf_counter() - t0
    headline = json.loads((index.parent / "headline.json").read_text())
    return {"study": study, "report": index, "rankings": rankings, "headline": format_headline(headline),
            "headline_data": headline, "seconds": seconds}


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
    from .report import read_planted

    res["planted"] = read_planted(study)
    if res["planted"]:
        p = res["planted"]
        res["headline"] += (f"\nplanted: generating model {p['model']} ({p['weights']}); driving layer relative depth "
                            + ", ".join(f"{a} {p['area_layers'][a]['relative_depth']:.2f}" for a in S.AREAS
                                       if a in p["area_layers"]))
    return res
