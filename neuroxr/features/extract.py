"""Study-level feature extraction: every model's per-layer summaries into ``STUDY/features/<model>.zarr``.

The pieces live beside it: :mod:`.preprocess` (stimuli -> input tensors), :mod:`.hooks`
(forward hooks, batches, brute-force activations), :mod:`.reduce` (streaming Gram / SRP
reductions) and :mod:`.imported` (features computed elsewhere); their public names are
re-exported here.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from .. import schema as S
from ..cluster import gather, gpu_resources
from ..errors import MissingDataError
from ..io.store import hash_array, hash_file
from ..study import open_study
from .hooks import LayerHooks, iter_batches, iter_layer_activations, run_forward
from .imported import import_features, read_feature_file
from .preprocess import find_pixel_scale, preprocess_images
from .progress import format_bytes, format_seconds, plural
from .reduce import (
    SRP_EPS,
    SRP_SEED,
    FeatureError,
    SRPCache,
    build_layer_dataset,
    default_ram_budget,
    find_srp_components,
    reduce_features,
)
from .run import pick_precision, reduce_model
from .threads import describe_threads, extraction_threads
from .variants import (
    StaleFeaturesError,
    clean_features_dir,
    find_features_path,
    find_up_to_date,
    has_variant,
    make_store_settings,
    skipped_result,
    store_bytes,
    write_variant,
)
from .zoo import list_models, load_model, read_preprocessing, resolve_model_row


def _weights_label(weights):
    w = str(weights)
    if w in ("random", "trained"):
        return w
    p = Path(w).expanduser()
    if not p.exists():
        raise MissingDataError(f"weights file {p} does not exist")
    return hash_file(p)


def expected_variant(row: dict, label: str, seed: int) -> dict:
    """What a variant's record must hold to be reused: weights, seed (where it shapes them), preprocessing."""
    record = {"constructor": row["constructor"], **read_preprocessing(row),
              "weights_sha256": None if label in ("random", "trained") else label}
    if label == "random" or row["source"] == "neuroxr":  # the seed draws random weights (and baselines' filters)
        record["seed"] = int(seed)
    return record


def _rerun(study, model, weights, seed, srp) -> str:
    """The ``neuroxr extract`` command of this run (quoted in the message about stale features)."""
    parts = ["neuroxr extract", str(study), "--model", model]
    for flag, value, default in (("--weights", weights, "random"), ("--seed", seed, 0), ("--srp", srp, None)):
        if value not in (default, None):
            parts += [flag, str(value)]
    return " ".join(parts)


def extract_model(study, model: str, weights="random", seed: int = 0, srp=None, srp_seed: int = SRP_SEED,
                  batch_size: int = 32, device=None, catalog=None, overwrite: bool = False,
                  ram_budget: float | None = None, progress=None, threads: int | None = None, log=None) -> dict:
    """Extract one model into ``STUDY/features/<model>.zarr``.

    Skipped when the store already holds this (model, weights) variant built from the same stimuli
    (content hash), weights, seed, SRP settings and preprocessing; when one of them differs,
    :class:`~neuroxr.features.variants.StaleFeaturesError` names it (``overwrite`` rebuilds).
    ``threads``: the thread budget (default: the available cores, see :mod:`.threads`).

    Returns a dict ``{"model", "weights", "status": "done"|"skipped", "layers", "nonfinite": [...],
    "seconds", "bytes"}`` (``bytes``: the size of the store written).
    """
    t0 = time.perf_counter()
    st = open_study(study)
    row = resolve_model_row(model, catalog)
    label = _weights_label(weights)
    path = find_features_path(study, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    stim = st.stimuli
    pixels = stim[S.PIXELS]
    srp_k = find_srp_components(srp, pixels.shape[0])
    settings = make_store_settings(srp_k, srp_seed if srp_k else None)
    stimuli = hash_array(pixels)
    if not overwrite and find_up_to_date(path, label, stimuli=stimuli, settings=settings,
                                         variant=expected_variant(row, label, seed),
                                         rerun=_rerun(study, model, weights, seed, srp)):
        return skipped_result(model, label)
    S.validate_stimuli(stim, st.store(S.STIMULI_STORE))
    if pixels.nbytes <= default_ram_budget() / 4:  # read once here, not by the store's I/O threads mid-extraction
        pixels = pixels.compute(scheduler="synchronous")
    with extraction_threads(threads) as n_threads:
        loaded = load_model(model, weights=weights, seed=seed, device=device, catalog=catalog)
        if log is not None:
            log(f"{model} [{label[:16]}]: {pixels.shape[0]} images on {loaded.device}, {describe_threads(n_threads)}")
            _log_plan(study, [model], weights, srp, catalog, threads, log)  # its predicted cost, before it runs
        ds = reduce_model(loaded, pixels, image=stim[S.IMAGE].values, batch_size=batch_size, srp=srp_k,
                          srp_seed=srp_seed, ram_budget=ram_budget, tmpdir=path.parent, progress=progress,
                          n_threads=n_threads, log=log)
    inputs = {"stimuli": stimuli, "variant": {label: {**loaded.settings(), "weights_sha256":
              None if label in ("random", "trained") else label, "layers": int(ds.sizes[S.LAYER]),
              "gram_products": pick_precision(loaded)}}}
    write_variant(path, ds, settings, inputs, overwrite)
    bad = [str(n) for n, ok in zip(ds["layer_name"].values, ds["finite"].values) if not ok]
    if bad:
        warnings.warn(f"{model} ({label}): {len(bad)} layer(s) with NaN or infinite activations, kept and "
                      f"marked finite=False: {', '.join(bad[:5])}", RuntimeWarning, stacklevel=2)
    return {"model": model, "weights": label, "status": "done", "layers": int(ds.sizes[S.LAYER]), "nonfinite": bad,
            "seconds": time.perf_counter() - t0, "bytes": store_bytes(path)}


def extract_features(study, models=None, weights="random", seed: int = 0, srp=None, catalog=None,
                     family=None, client=None, overwrite: bool = False, batch_size: int = 32,
                     device=None, srp_seed: int = SRP_SEED, progress=None, threads: int | None = None,
                     log=None) -> list[dict]:
    """Extract the per-layer summaries of several models into ``STUDY/features/<model>.zarr``.

    Parameters
    ----------
    study : path
        Study directory with ``stimuli.zarr`` (``pixels`` (image, y, x)).
    models : list of str, optional
        Model names; default: every row of ``catalog`` (optionally one ``family``).
    weights : 'random', 'trained' or path
    seed : int
        Seed of the random initialisation.
    srp : int, 'auto' or None
        Also store the sparse random projection ``srp`` (layer, image, component).
    catalog : path, optional
        A models CSV (default: the shipped catalog).
    family : str, optional
        Restrict the catalog to one family.
    client : distributed.Client, optional
        Run one Dask task per model on the cluster; otherwise models run here, one after another.
    overwrite : bool
        Rebuild the stores instead of skipping (model, weights) pairs already extracted (or
        refusing those whose inputs changed).
    threads : int, optional
        Thread budget of each extraction (default: the available cores; see :mod:`.threads`).
    log : callable, optional
        Receives progress lines (per model: batches and layer groups with elapsed time and an
        estimate of what is left, then its time and bytes written).

    Returns
    -------
    list of dict
        One summary per model (``status`` ``done`` or ``skipped``, number of layers, non-finite layers,
        ``seconds`` and ``bytes`` written).
    """
    if not models:
        models = list(list_models(family=family, catalog=catalog)["model"])
    elif family is not None:
        keep = set(list_models(family=family, catalog=catalog)["model"])
        models = [m for m in models if m in keep]
    for m in models:  # fail early on unknown names, before any model runs
        resolve_model_row(m, catalog)
    clean_features_dir(study)
    if log is not None and len(models) > 1:  # the whole run's cost, from the meta device, before any model runs
        _log_plan(study, models, weights, srp, catalog, threads, log, totals_only=True)
    kw = {"weights": weights, "seed": seed, "srp": srp, "srp_seed": srp_seed, "batch_size": batch_size, "device": device,
              "catalog": catalog, "overwrite": overwrite, "threads": threads}
    if client is not None:
        res = gpu_resources(client)  # GPU workers (`dask worker --resources GPU=1`) take the models
        futures = [client.submit(extract_model, study, m, progress=False, pure=False, key=f"extract-{m}",
                                 resources=res, **kw)
                   for m in models]
        return gather(client, futures, what="feature extraction")
    out = []
    for m in tqdm(models, desc="models", unit="model", disable=None if progress is None else not progress):
        r = extract_model(study, m, progress=progress, log=log, **kw)
        if log is not None:
            log(describe_result(r))
        out.append(r)
    return out


def _log_plan(study, models, weights, srp, catalog, threads, log, totals_only: bool = False) -> None:
    """The plan's line per model, or only its totals (:func:`neuroxr.planner.log_plan`), for the stimuli of
    ``study``: each model's line comes before it runs, the totals of several at the start of the run."""
    from ..planner import log_plan, study_images

    try:
        n, shape = study_images(study)
    except MissingDataError:
        return  # open_study / the stimuli check say what is missing
    if shape is not None:
        log_plan([(m, str(weights)) for m in models], n, shape, log, srp=srp, threads=threads, catalog=catalog,
                 totals_only=totals_only)


def describe_result(r: dict) -> str:
    """One line for a model's summary: status, layers, non-finite layers, time and bytes written."""
    bad = r["nonfinite"]
    extra = f", {plural(len(bad), 'non-finite layer')}: {', '.join(bad[:5])}" if bad else ""
    if r["layers"] is None:
        return f"{r['model']} [{r['weights'][:16]}]: {r['status']} (already extracted from the same inputs)"
    return (f"{r['model']} [{r['weights'][:16]}]: {r['status']} ({plural(r['layers'], 'layer')}{extra}; "
            f"{format_seconds(r['seconds'])}, wrote {format_bytes(r['bytes'])})")

__all__ = [
    "SRP_EPS",
    "SRP_SEED",
    "FeatureError",
    "LayerHooks",
    "SRPCache",
    "StaleFeaturesError",
    "build_layer_dataset",
    "describe_result",
    "expected_variant",
    "extract_features",
    "extract_model",
    "find_features_path",
    "find_pixel_scale",
    "find_srp_components",
    "find_up_to_date",
    "has_variant",
    "import_features",
    "iter_batches",
    "iter_layer_activations",
    "make_store_settings",
    "preprocess_images",
    "read_feature_file",
    "reduce_features",
    "reduce_model",
    "run_forward",
    "skipped_result",
    "store_bytes",
    "write_variant",
]
