"""Study-level feature extraction: every model's per-layer summaries into ``STUDY/features/<model>.zarr``.

The pieces live beside it: :mod:`.preprocess` (stimuli -> input tensors), :mod:`.hooks`
(forward hooks, batches, brute-force activations), :mod:`.reduce` (streaming Gram / SRP
reductions) and :mod:`.imported` (features computed elsewhere); their public names are
re-exported here.
"""
from __future__ import annotations

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
from .reduce import (SRP_EPS, SRP_SEED, FeatureError, SRPCache, build_layer_dataset, find_srp_components,
                     reduce_features, reduce_model)
from .variants import (clean_features_dir, find_features_path, has_variant, make_store_settings, skipped_result,
                       write_variant)
from .zoo import list_models, load_model, resolve_model_row


def _weights_label(weights):
    w = str(weights)
    if w in ("random", "trained"):
        return w
    p = Path(w).expanduser()
    if not p.exists():
        raise MissingDataError(f"weights file {p} does not exist")
    return hash_file(p)


def extract_model(study, model: str, weights="random", seed: int = 0, srp=None, srp_seed: int = SRP_SEED,
                  batch_size: int = 32, device=None, catalog=None, overwrite: bool = False,
                  ram_budget: float = 1 << 30, progress=None) -> dict:
    """Extract one model into ``STUDY/features/<model>.zarr`` (skipped when already there).

    Returns a dict ``{"model", "weights", "status": "done"|"skipped", "layers", "nonfinite": [...]}``.
    """
    st = open_study(study)
    label = _weights_label(weights)
    path = find_features_path(study, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and has_variant(study, model, label):
        return skipped_result(model, label)
    stim = st.stimuli
    S.validate_stimuli(stim, st.store(S.STIMULI_STORE))
    pixels = stim[S.PIXELS]
    srp_k = find_srp_components(srp, pixels.shape[0])
    loaded = load_model(model, weights=weights, seed=seed, device=device, catalog=catalog)
    ds = reduce_model(loaded, pixels, image=stim[S.IMAGE].values, batch_size=batch_size, srp=srp_k,
                      srp_seed=srp_seed, ram_budget=ram_budget, tmpdir=path.parent, progress=progress)
    inputs = {"stimuli": hash_array(pixels), "variant": {label: {**loaded.settings(), "weights_sha256":
              None if label in ("random", "trained") else label, "layers": int(ds.sizes[S.LAYER])}}}
    write_variant(path, ds, make_store_settings(srp_k, srp_seed if srp_k else None), inputs, overwrite)
    bad = [str(n) for n, ok in zip(ds["layer_name"].values, ds["finite"].values) if not ok]
    if bad:
        warnings.warn(f"{model} ({label}): {len(bad)} layer(s) with NaN or infinite activations, kept and "
                      f"marked finite=False: {', '.join(bad[:5])}", RuntimeWarning, stacklevel=2)
    return {"model": model, "weights": label, "status": "done", "layers": int(ds.sizes[S.LAYER]), "nonfinite": bad}


def extract_features(study, models=None, weights="random", seed: int = 0, srp=None, catalog=None,
                     family=None, client=None, overwrite: bool = False, batch_size: int = 32,
                     device=None, srp_seed: int = SRP_SEED, progress=None) -> list[dict]:
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
        Rebuild the stores instead of skipping (model, weights) pairs already extracted.

    Returns
    -------
    list of dict
        One summary per model (``status`` ``done`` or ``skipped``, number of layers, non-finite layers).
    """
    if not models:
        models = list(list_models(family=family, catalog=catalog)["model"])
    elif family is not None:
        keep = set(list_models(family=family, catalog=catalog)["model"])
        models = [m for m in models if m in keep]
    for m in models:  # fail early on unknown names, before any model runs
        resolve_model_row(m, catalog)
    clean_features_dir(study)
    kw = dict(weights=weights, seed=seed, srp=srp, srp_seed=srp_seed, batch_size=batch_size, device=device,
              catalog=catalog, overwrite=overwrite)
    if client is not None:
        res = gpu_resources(client)  # GPU workers (`dask worker --resources GPU=1`) take the models
        futures = [client.submit(extract_model, study, m, progress=False, pure=False, key=f"extract-{m}",
                                 resources=res, **kw)
                   for m in models]
        return gather(client, futures, what="feature extraction")
    out = []
    for m in tqdm(models, desc="models", unit="model", disable=None if progress is None else not progress):
        out.append(extract_model(study, m, progress=progress, **kw))
    return out

__all__ = ["extract_features", "extract_model", "import_features", "read_feature_file", "has_variant",
           "find_features_path", "write_variant", "make_store_settings", "skipped_result",
           "reduce_model", "reduce_features", "iter_layer_activations", "preprocess_images", "find_pixel_scale",
           "run_forward", "iter_batches", "LayerHooks", "SRPCache", "build_layer_dataset", "find_srp_components",
           "SRP_EPS", "SRP_SEED", "FeatureError"]
