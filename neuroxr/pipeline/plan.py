"""What a pipeline will do and what it lacks: model variants, input files, weights in the caches."""
from __future__ import annotations

import importlib
from pathlib import Path

from .. import schema as S
from ..catalogs import find_selection
from ..errors import NeuroxrError
from ..features.weights import (
    find_cached_weights,
    find_weights_spec,
    has_trained_weights,
)
from ..features.zoo import list_models
from ..io.store import open_dataset
from ..stats import to_strings
from .config import PipelineSettings


def has_key(spec) -> bool:
    """``FILE:key`` (a key after the last ':' with no path separator in it)."""
    if not isinstance(spec, str) or ":" not in spec:
        return False
    key = spec.rpartition(":")[2]
    return bool(key) and "/" not in key and "\\" not in key


def resolve_spec(settings: PipelineSettings, spec):
    """``FILE[:key]`` with FILE resolved against the config's base; other values unchanged."""
    if not isinstance(spec, str):
        return spec
    if has_key(spec):
        file, _, key = spec.rpartition(":")
        return f"{settings.path(file)}:{key}"
    return str(settings.path(spec))


def _catalog_families() -> dict:
    """model -> family of the default catalog ({} when it cannot be read)."""
    try:
        cat = list_models()
    except Exception:  # the families only refine the pairs; the missing-data check names a broken catalog
        return {}
    return dict(zip(cat.model, cat.family))


def _random_only_models() -> set:
    """Networks of the default catalog with no trained weights of their own (the random Taskonomy encoder)."""
    try:
        cat = list_models()
    except (NeuroxrError, OSError, ValueError):  # as _catalog_families: the missing-data check names it
        return set()
    return {r["model"] for r in cat.to_dict("records")
            if r.get("source") == "taskonomy" and not has_trained_weights(r)}


def list_model_variants(settings: PipelineSettings) -> list[tuple[str, str]]:
    """(model, weights) pairs of the [extract] table, baselines last."""
    ex = settings.extract
    models = list(ex.models)
    if ex.catalog:
        cat = list_models(catalog=None if ex.catalog in (True, "models") else
                          ex.catalog if find_selection(ex.catalog) else str(settings.path(ex.catalog)))
        if ex.families:
            cat = cat[cat.family.isin(ex.families)]
        models += [m for m in cat.model if m not in models]
    if ex.taskonomy:
        models += [m for m in list_models(family="taskonomy").model if m not in models]
    exclude = set(ex.exclude)
    weights = [ex.weights] if isinstance(ex.weights, str) else list(ex.weights)
    baselines = [b for b in ex.baselines if b not in models]
    fam = _catalog_families()
    random_only = _random_only_models()
    pairs = []
    for m in models:
        if m in exclude:
            continue
        if fam.get(m) == "baseline" or m in random_only:
            pairs.append((m, "random"))
            continue
        for w in weights:
            if w == "random" and fam.get(m) == "taskonomy" and "trained" in weights:
                continue  # one random ResNet-50 encoder, not 24
            pairs.append((m, w))
    pairs += [(b, "random") for b in baselines]
    return list(dict.fromkeys(pairs))


def list_done_variants(study) -> set:
    """(model, weights) pairs already extracted: ``features/<model>.zarr`` holds every weights
    variant of a model along ``layer``; an unreadable store counts as not extracted."""
    done = set()
    d = Path(study) / S.FEATURES_DIR
    for p in sorted(d.glob("*.zarr")) if d.exists() else []:
        if p.name.startswith("."):
            continue
        try:
            ds = open_dataset(p, chunks={})  # stored chunks (string coords cannot be auto-chunked)
            done.update(zip(to_strings(ds["model"].values), to_strings(ds["weights"].values)))
        except Exception:  # a half-written or foreign store: extract redoes it
            continue
    return done


def _missing_inputs(settings: PipelineSettings, study: Path) -> list[str]:
    """The [ingest] source's files that are not there (nothing once responses.zarr exists)."""
    ing = settings.ingest
    if (study / S.RESPONSES_STORE).exists():
        return []
    missing = []
    if ing.source == "allen":
        cache = settings.path(ing.cache or "allen_cache")
        if not (cache / "manifest.json").exists() and not (cache.name == "manifest.json" and cache.exists()):
            missing.append(f"Allen Brain Observatory cache: no manifest.json in {cache}; download it with "
                           f"`neuroxr fetch allen {cache} --session {ing.session or 'three_session_B'}` "
                           f"(or point [ingest] cache at an AllenSDK BrainObservatoryCache directory)")
        else:
            for sub in ("ophys_experiment_data",
                        "ophys_experiment_events" if (ing.response or "events") == "events" else None):
                if sub and not (cache / sub).is_dir():
                    missing.append(f"Allen cache {cache}: no {sub}/ directory; run `neuroxr fetch allen {cache}`")
    elif ing.source == "arrays":
        for key in ("images", "responses", "trials", "neurons"):
            spec = getattr(ing, key)
            if spec is not None:
                resolved = resolve_spec(settings, spec)
                f = Path(resolved.rpartition(":")[0] if has_key(spec) else resolved)
                if not f.exists():
                    missing.append(f"[ingest] {key}: file {f} does not exist")
    return missing


def check_settings(settings: PipelineSettings, study: Path) -> list[str]:
    """Everything checked settings need that is not here (see :func:`neuroxr.pipeline.check_pipeline`)."""
    blocking, weights = split_missing(settings, study)
    return blocking + [w["reason"] for w in weights]


def split_missing(settings: PipelineSettings, study: Path) -> tuple[list[str], list[dict]]:
    """What is missing, split into what stops a run (input data, unknown models, packages: one
    line each) and the weights of model variants a run can skip (dicts ``model, weights, reason``)."""
    blocking = _missing_inputs(settings, study)
    weights = []
    for model, w, reason in _missing_weights(settings, study):
        if w is None:
            blocking.append(reason)
        else:
            weights.append({"model": model, "weights": w, "reason": reason})
    for pkg in settings.study.requires:
        try:
            importlib.import_module(pkg)
        except ImportError:
            blocking.append(f"Python package {pkg!r} is not installed: pip install {pkg}")
    return blocking, weights


def _missing_trained(model, row) -> str | None:
    """What is missing for ``model``'s trained weights in the standard caches (None: nothing); the
    same spec (file, URL, repo id, cache path) as ``extract`` and ``neuroxr fetch weights``."""
    from ..features.weights import describe_missing

    spec = find_weights_spec(row)
    if spec is None:
        if row.get("source") == "lightly":
            return f"{model} (lightly) trained weights: give [extract] weights a SimCLR checkpoint file"
        return None if row.get("family") == "baseline" else (
            f"{model} ({row.get('source')}) has no published trained weights: give [extract] weights a file")
    return None if find_cached_weights(spec) is not None else describe_missing(spec)


def _missing_weights(settings: PipelineSettings, study) -> list[tuple]:
    """(model, weights, reason) for the weights the [extract] table needs that are not in the local
    caches (no imports of torch or timm, no network: file and directory checks only); weights None
    for a model that is not in the catalog."""
    out = []
    pairs = list_model_variants(settings)
    if not pairs:
        return out
    rows = {r["model"]: r for r in list_models().to_dict("records")}
    done = list_done_variants(study)
    for model, weights in pairs:
        if (model, weights) in done:
            continue
        row = rows.get(model)
        if row is None:
            out.append((model, None, f"model {model!r} is not in catalogs/models.csv (nor taskonomy.csv): check "
                                     f"the name (see catalogs/models.csv and catalogs/taskonomy.csv)"))
            continue
        if weights == "random" or row.get("family") == "baseline":
            continue
        if weights != "trained":
            p = settings.path(weights)
            if not p.exists():
                out.append((model, weights, f"{model}: weights file {p} does not exist"))
            continue
        problem = _missing_trained(model, row)
        if problem:
            out.append((model, weights, problem))
    return out
