"""The domain study on the data model: recordings, features stores, scores.zarr, ``domains.zarr``.

Layout of a domain study directory ``STUDY``::

    STUDY/domains/<domain>/             synthetic domains (or [data.domains] folders elsewhere)
    STUDY/checkpoints/<domain>.pt       one SimCLR AlexNet per domain
    STUDY/domains.zarr                  naturalness (domain), networks (domain), table1 (domain, recording)
    STUDY/recordings/<recording>/       one study per recording (allen-2p, allen-neuropixels, sensorium):
        stimuli.zarr, responses.zarr    as ingested
        features/alexnet-simclr.zarr    every network, one variant per checkpoint (weights = its sha256)
        scores.zarr                     pls_split_r (layer, neuron, split) [+ pls_split_c with trials]
        domains.zarr                    predictivity, mann-whitney, norms, distances, svm (labelled)
        reports/domains/                CSV tables and figures of this recording
    STUDY/reports/domains/              table1.csv, naturalness, figures across recordings

Parallelism: one Dask task per network, for training and for extraction, on Dask's process
scheduler (each network's torch random state is its own, and the features store's study lock
excludes the other writers), torch and BLAS single-threaded in each task; scoring is
:func:`neuroxr.mapping.runner.score_study` (its own Dask graph, BLAS single-threaded).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from ..io.store import hash_file, open_dataset, write_dataset
from ..runtime import available_cores, single_threaded_blas
from .predictivity import calc_domain_differences
from .scoring import PLS_SPLITS_DEFAULTS, SPLIT
from .separability import calc_activation_distances, classify_domains
from .simclr import CONV_LAYERS

__all__ = ["RECORDINGS", "MODEL", "DOMAINS_STORE", "ingest_recording", "train_networks", "extract_networks",
           "score_recording", "analyse_recording", "write_naturalness_store", "build_table1"]

#: the recordings a domain study can be scored on (one PLS column each in Table 1)
RECORDINGS = ("allen-2p", "allen-neuropixels", "sensorium")
#: the zoo model every domain network is extracted as
MODEL = "alexnet-simclr"
DOMAINS_STORE = "domains.zarr"
RECORDINGS_DIR = "recordings"
#: zoo layer name of each conv block's ReLU (the study's conv1..conv5 after ReLU)
CONV_LAYER_NAMES = {f"features.{k - 1}": name for name, k in CONV_LAYERS.items()}


# --------------------------------------------------------------------------- recordings
def _import_reader(module: str, name: str, recording: str):
    import importlib

    try:
        mod = importlib.import_module(module)
        return getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        raise MissingDataError(f"[recordings.{recording}]: this neuroxr has no {module}.{name} ({exc}); "
                               f"update neuroxr to a version with the {recording} reader, or leave "
                               f"{recording!r} out of [recordings] use") from None


def ingest_recording(name: str, spec: dict, study: Path, log=print) -> Path:
    """Write ``study``'s ``stimuli.zarr`` / ``responses.zarr`` from one recording (skipped when present).

    ``spec["source"]`` (default by name): ``arrays`` (``images``/``responses``/``trials`` as
    ``FILE[:key]``, ``area``, ``cre_line``, ``depth_um``: the shared Allen VISp experiment),
    ``allen`` (an AllenSDK 2-photon cache, ``cache``), ``neuropixels``
    (:func:`neuroxr.io.allen.ecephys.ingest_neuropixels` with ``cache_dir``, ``window``),
    ``sensorium`` (:func:`neuroxr.io.sensorium.ingest_sensorium` with ``path``, ``tiers``) or
    ``simulate`` (:func:`neuroxr.simulate.simulate_study`).
    """
    study = Path(study)
    if (study / S.RESPONSES_STORE).exists() and (study / S.STIMULI_STORE).exists():
        log(f"{name}: {study / S.RESPONSES_STORE} exists, ingest skipped")
        return study
    spec = dict(spec or {})
    default = {"allen-2p": "arrays", "allen-neuropixels": "neuropixels", "sensorium": "sensorium"}.get(name)
    source = spec.pop("source", default)
    study.mkdir(parents=True, exist_ok=True)
    if source == "arrays":
        from ..io.ingest import ingest_arrays

        for k in ("images", "responses", "trials"):
            if k in spec and not Path(str(spec[k]).rpartition(":")[0] or str(spec[k])).exists():
                raise MissingDataError(f"[recordings.{name}] {k} = {spec[k]!r}: file not found (relative paths are "
                                       "relative to the working directory); point it at the recording")
        log(f"{name}: ingesting arrays {spec.get('responses') or spec.get('trials')}")
        ingest_arrays(study, **spec)
    elif source == "allen":
        from ..io.allen import ingest_allen

        cache = spec.pop("cache", "allen_cache")
        log(f"{name}: ingesting the AllenSDK cache {cache}")
        ingest_allen(study, cache, **spec)
    elif source == "neuropixels":
        ingest = _import_reader("neuroxr.io.allen.ecephys", "ingest_neuropixels", name)
        cache_dir = spec.pop("cache_dir", spec.pop("cache", None))
        if cache_dir is None:
            raise NeuroxrError(f"[recordings.{name}]: no cache_dir; set cache_dir = \"DIR\" "
                               "(an AllenSDK ecephys cache)")
        if "window" in spec:
            spec["window"] = tuple(spec["window"]) if isinstance(spec["window"], list) else spec["window"]
        log(f"{name}: ingesting Neuropixels from {cache_dir}")
        ingest(study, cache_dir, **spec)
    elif source == "sensorium":
        ingest = _import_reader("neuroxr.io.sensorium", "ingest_sensorium", name)
        path = spec.pop("path", None)
        if isinstance(spec.get("tiers"), list):
            spec["tiers"] = tuple(spec["tiers"])
        if path is None:
            raise NeuroxrError(f"[recordings.{name}]: no path; set path = \"DIR\" (the Sensorium data)")
        log(f"{name}: ingesting Sensorium from {path}")
        ingest(study, path, **spec)
    elif source == "simulate":
        from ..simulate import simulate_study

        log(f"{name}: simulating an observatory")
        simulate_study(study, **spec)
    else:
        raise NeuroxrError(f"[recordings.{name}] source = {source!r}: use arrays, allen, neuropixels, sensorium "
                           "or simulate")
    return study


# --------------------------------------------------------------------------- Dask, one task per network
@contextlib.contextmanager
def _one_thread_each():
    """torch and BLAS at one thread while Dask's threads run the networks side by side."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_threaded_blas():
            yield
    finally:
        torch.set_num_threads(before)


def _compute(tasks: list, scheduler: str):
    import dask

    if not tasks:
        return []
    cores = available_cores()
    if cores == 1 or len(tasks) == 1:
        with _one_thread_each():
            return list(dask.compute(*tasks, scheduler="synchronous"))
    if scheduler == "threads":
        with _one_thread_each():
            return list(dask.compute(*tasks, scheduler="threads", num_workers=min(cores, len(tasks))))
    return list(dask.compute(*tasks, scheduler="processes", num_workers=min(cores, len(tasks))))


def _train_one(domain_dir, out, domain, settings):
    import torch

    from .simclr import train_simclr

    torch.set_num_threads(1)
    train_simclr(domain_dir, out, domain=domain, progress=False, overwrite=True, **settings)
    return str(out)


def train_networks(domains: dict, ckpt_dir: Path, settings: dict, reuse, log=print) -> dict:
    """One SimCLR checkpoint per domain (``ckpt_dir/<domain>.pt``), one Dask task (process) per network.

    ``reuse(path, domain_dir) -> bool`` says whether an existing checkpoint was trained with these settings.
    """
    import dask

    out, todo = {}, []
    for name, d in domains.items():
        path = Path(ckpt_dir) / f"{name}.pt"
        out[name] = path
        if path.exists() and reuse(path, d):
            log(f"train: {name}: {path} trained with these settings, reused")
            continue
        todo.append(dask.delayed(_train_one, pure=False)(str(d), str(path), name, dict(settings),
                                                          dask_key_name=f"train-{name}"))
    if todo:
        log(f"train: {len(todo)} network(s), one Dask task each")
        _compute(todo, "processes")
    return out


def calc_exact_pls(study, acts: dict, pls: dict) -> dict:
    """The paper's PLS on a network's conv activations: ``PLSRegression(scale=True)`` per split.

    :func:`neuroxr.mapping.pls.calc_pls_consistency` (even/odd trial halves) when the responses
    have trials, else :func:`neuroxr.mapping.pls.cross_validated_pls` (held-out r), on the
    study's (selected) responses and the splits of ``pls`` (the same as the ``pls-splits``
    metric's).  Returns layer -> ndarray (split, neuron).
    """
    from ..mapping.pls import (
        calc_pls_consistency,
        cross_validated_pls,
        make_splits,
        split_trial_halves,
    )
    from ..responses import load_selected_responses

    o = {**PLS_SPLITS_DEFAULTS, **{k: v for k, v in pls.items() if k in PLS_SPLITS_DEFAULTS}}
    resp = load_selected_responses(study)
    image_ids = np.asarray(open_dataset(Path(study) / S.STIMULI_STORE)[S.IMAGE].values)
    resp = resp.sel({S.IMAGE: image_ids})
    Y = np.asarray(resp[S.MEAN].transpose(S.IMAGE, S.NEURON).values, dtype=np.float64)
    splits = make_splits(len(image_ids), kind=o["kind"], n_splits=o["n_splits"], test_size=o["test_size"],
                         seed=o["seed"])
    halves = None
    if S.TRIALS in resp:
        halves = split_trial_halves(np.asarray(resp[S.TRIALS].transpose(S.NEURON, S.IMAGE, S.TRIAL).values),
                                    kind="even_odd")
    out = {}
    ok = np.isfinite(Y).all(axis=0)
    if halves is not None:
        ok &= np.isfinite(halves[0]).all(axis=0) & np.isfinite(halves[1]).all(axis=0)
    for layer, X in acts.items():
        r = np.full((len(splits), Y.shape[1]), np.nan)
        X = np.asarray(X, dtype=np.float64).reshape(len(image_ids), -1)
        if ok.any() and np.isfinite(X).all() and np.ptp(X, axis=0).max(initial=0) > 0:
            if halves is None:
                r[:, ok] = cross_validated_pls(X, Y[:, ok], splits, n_components=o["n_components"])
            else:
                r[:, ok] = calc_pls_consistency(X, halves[0][:, ok], halves[1][:, ok], splits,
                                                n_components=o["n_components"])
        out[layer] = r
    return out


def _extract_one(study, label, ckpt, layers, batch_size, pls):
    import torch

    from ..features.extract import extract_model
    from .activations import _zoo_conv_activations
    from .simclr import load_simclr_alexnet

    torch.set_num_threads(1)
    res = extract_model(study, MODEL, weights=str(ckpt), threads=1, batch_size=batch_size, progress=False)
    pixels = np.asarray(open_dataset(Path(study) / S.STIMULI_STORE)[S.PIXELS].values)
    acts = _zoo_conv_activations(ckpt, pixels, layers, batch_size)
    net, _ = load_simclr_alexnet(ckpt)
    with single_threaded_blas():
        exact = calc_exact_pls(study, acts, pls) if pls is not None else None
    return label, res, acts, net.features[0].weight.detach().cpu().numpy(), exact


def extract_networks(study, checkpoints: dict, layers=tuple(CONV_LAYERS), batch_size: int = 64, log=print,
                     pls: dict | None = None):
    """Every network into ``STUDY/features/alexnet-simclr.zarr`` (one variant each) and its conv activations.

    With ``pls`` (the ``pls-splits`` options) each task also runs the paper's PLS on the conv
    activations (:func:`calc_exact_pls`).

    One Dask task per network, each in a process of its own (torch and BLAS single-threaded in
    each): the networks' variants are added to the one features store under its study lock, which
    excludes other processes (threads of one process share it).

    Returns
    -------
    acts : dict domain -> dict layer -> ndarray (image, feature), the conv layers after ReLU
    filters : dict domain -> ndarray (64, 3, 11, 11)
    exact : dict domain -> dict layer -> ndarray (split, neuron), or None without ``pls``
    """
    import dask

    (Path(study) / S.FEATURES_DIR).mkdir(parents=True, exist_ok=True)
    tasks = [dask.delayed(_extract_one, pure=False)(str(study), label, str(ck), tuple(layers), batch_size, pls,
                                                    dask_key_name=f"extract-{label}")
             for label, ck in checkpoints.items()]
    acts, filters, exact = {}, {}, {}
    for label, res, a, f, e in _compute(tasks, "processes"):
        log(f"extract: {label}: {res['status']}")
        acts[label], filters[label], exact[label] = a, f, e
    return acts, filters, (exact if pls is not None else None)


# --------------------------------------------------------------------------- scoring
def score_recording(study, pls_options: dict, log=print) -> Path:
    """``pls-splits`` of every network's layers into ``STUDY/scores.zarr`` (rescored when the options change)."""
    from ..mapping.score import score_study

    o = {**PLS_SPLITS_DEFAULTS, **pls_options}
    marker = Path(study) / "scores.parts" / ".pls-splits.json"
    same = marker.exists() and json.loads(marker.read_text()) == o
    path = score_study(study, metrics=("pls-splits",), pls_options=o, models=[MODEL], overwrite=not same,
                       log=lambda m: log(f"score: {m}"))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(o, sort_keys=True))
    return path


def _network_layers(scores: xr.Dataset, weights: dict) -> dict:
    """domain -> {conv name: layer index in scores} from the layer coords (weights sha256, layer_name)."""
    w = np.asarray(scores["weights"].values).astype(str)
    names = np.asarray(scores["layer_name"].values).astype(str)
    out = {}
    for dom, sha in weights.items():
        idx = {CONV_LAYER_NAMES[n]: i for i, (ww, n) in enumerate(zip(w, names)) if ww == sha and n in CONV_LAYER_NAMES}
        if not idx:
            raise MissingDataError(f"scores.zarr has no layers of the {dom} network (weights {sha[:12]}); "
                                   "rerun the pipeline to extract and score it")
        out[dom] = idx
    return out


def load_predictivity(study, weights: dict, layers, exact: dict | None = None,
                      name: str = "predictivity") -> tuple[pd.DataFrame, xr.Dataset]:
    """The per-split scores of every network's conv layers, median over each area's neurons.

    From ``scores.zarr`` (``pls_split_c`` when the responses have trials, else ``pls_split_r``),
    or from ``exact`` (domain -> layer -> (split, neuron), :func:`calc_exact_pls`).

    Returns the long table ``model, layer, area, split, score, n_neurons, metric`` (``metric``:
    ``pls_consistency`` with trials, else ``pls_r``) and the same as a Dataset
    ``<name> (domain, layer, area, split)``.
    """
    from ..study import open_study

    sc = open_study(study).scores.to_dataset()
    var = "pls_split_c" if "pls_split_c" in sc else "pls_split_r"
    metric = "pls_consistency" if var == "pls_split_c" else "pls_r"
    idx = _network_layers(sc, weights)
    data = sc[var].load()
    areas = np.asarray(sc[S.AREA].values).astype(str) if S.AREA in sc.coords else np.full(sc.sizes[S.NEURON], "all")
    use = [a for a in S.AREAS if a in set(areas)] + sorted(set(areas) - set(S.AREAS))
    n_split = sc.sizes[SPLIT]
    arr = np.full((len(weights), len(layers), len(use), n_split), np.nan)
    rows = []
    for i, dom in enumerate(weights):
        for j, layer in enumerate(layers):
            if exact is not None:
                block = np.asarray(exact[dom][layer]).T  # (neuron, split), the same neurons and splits
            else:
                block = np.asarray(data.isel({S.LAYER: idx[dom][layer]}).values)  # (neuron, split)
            for k, a in enumerate(use):
                vals = block[areas == a]
                with np.errstate(all="ignore"), _quiet():
                    med = np.nanmedian(vals, axis=0)
                arr[i, j, k] = med
                rows += [{"model": dom, "layer": layer, "area": a, "split": s, "score": float(med[s]),
                          "n_neurons": int(vals.shape[0]), "metric": metric} for s in range(n_split)]
    ds = xr.Dataset({name: (("domain", "layer", S.AREA, SPLIT), arr)},
                    coords={"domain": list(weights), "layer": list(layers), S.AREA: use, SPLIT: np.arange(n_split)})
    src = ("sklearn PLSRegression(scale=True) on the conv activations (the paper's)" if exact is not None
           else f"scores.zarr:{var} (Gram PLS, features z-scored over all images)")
    ds[name].attrs.update(metric=metric, source=src, pooling="median over the area's neurons")
    return pd.DataFrame(rows), ds


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def calc_norms_from_features(study, weights: dict, layers) -> xr.DataArray:
    """L2 norm of every image's activation, ``sqrt(diag(gram))`` of the features store: (domain, layer, image)."""
    feats = open_dataset(Path(study) / S.FEATURES_DIR / f"{MODEL}.zarr")
    w = np.asarray(feats["weights"].values).astype(str)
    names = np.asarray(feats["layer_name"].values).astype(str)
    out = np.full((len(weights), len(layers), feats.sizes[S.IMAGE]), np.nan)
    for i, (dom, sha) in enumerate(weights.items()):
        for j, layer in enumerate(layers):
            hit = np.flatnonzero((w == sha) & (names == f"features.{CONV_LAYERS[layer] - 1}"))
            if hit.size:
                K = np.asarray(feats["gram"].isel({S.LAYER: int(hit[0])}).values)
                out[i, j] = np.sqrt(np.clip(np.diag(K), 0, None))
    return xr.DataArray(out, dims=("domain", "layer", S.IMAGE),
                        coords={"domain": list(weights), "layer": list(layers), S.IMAGE: feats[S.IMAGE].values},
                        name="norm", attrs={"source": f"features/{MODEL}.zarr: sqrt(diag(gram))"})


def analyse_recording(study, weights: dict, acts: dict, naturalness: dict, cfg: dict) -> dict:
    """Predictivity, Mann-Whitney tests, norms, SVM and distances of one recording -> ``STUDY/domains.zarr``.

    Returns the DataFrames (``predictivity``, ``summary``, ``mannwhitney``, ``norms``, ``svm``,
    ``distances``, ``distances_per_image``) and the Dataset written.
    """
    from .predictivity import summarize_predictivity

    layers = list(cfg.get("layers") or CONV_LAYERS)
    exact = cfg.get("_exact")
    pred, pds = load_predictivity(study, weights, layers, exact=exact)
    if exact is not None:  # the data model's Gram PLS beside it, for comparison
        _, gds = load_predictivity(study, weights, layers, name="predictivity_scores")
        pds["predictivity_scores"] = gds["predictivity_scores"]
    summary = summarize_predictivity(pred)
    summary["naturalness"] = summary["model"].map(naturalness)
    mw = calc_domain_differences(pred, naturalness=naturalness, correction=cfg.get("correction", "holm"))
    norms = calc_norms_from_features(study, weights, layers)
    svm = classify_domains({d: acts[d] for d in weights}, n_folds=int(cfg.get("svm_folds", 5)),
                           seed=int(cfg.get("seed", 0)), max_iter=int(cfg.get("svm_max_iter", 1000)))
    dist_img, dist = calc_activation_distances({d: acts[d] for d in weights},
                                               np.asarray(norms[S.IMAGE].values))
    ds = pds
    ds["norm"] = norms
    pairs = [f"{a}>{b}" for a, b in zip(mw["model_a"], mw["model_b"])]
    if len(mw):
        mwi = mw.assign(pair=pairs).set_index(["pair", "layer", "area"])
        for col in ("u", "p", "p_adj", "median_a", "median_b"):
            ds[f"mw_{col}"] = xr.DataArray.from_series(mwi[col]).rename({"area": S.AREA, "layer": "layer"})
        first = mw.assign(pair=pairs).drop_duplicates("pair").set_index("pair")
        at = first.loc[ds["pair"].values]
        ds = ds.assign_coords({f"mw_{c}": ("pair", at[c].to_numpy().astype(str))
                               for c in ("model_a", "model_b", "alternative")})
        ds["mw_p"].attrs.update(test="scipy.stats.mannwhitneyu over splits; pair a>b: H1 a's scores greater "
                                "(a = the more natural domain)")
        ds["mw_p_adj"].attrs.update(correction=str(mw["correction"].iloc[0]), family="every pair, layer and area")
    sv = svm[svm["fold"] != "mean"].copy()
    sv["fold"] = sv["fold"].astype(int)
    svi = sv.set_index(["layer", "fold"])
    for col in ("accuracy", "precision", "recall"):
        ds[f"svm_{col}"] = xr.DataArray.from_series(svi[col]).rename({"fold": "svm_fold"})
    ds["svm_accuracy"].attrs.update(chance=float(svm["chance"].iloc[0]), cv="StratifiedGroupKFold by image")
    if len(dist_img):
        dpi = dist_img.assign(dpair=dist_img["model_a"] + "|" + dist_img["model_b"]).set_index(
            ["dpair", "layer", "image"])["distance"]
        ds["distance"] = xr.DataArray.from_series(dpi).rename({"image": S.IMAGE})
        tot = dist.assign(dpair=dist["model_a"] + "|" + dist["model_b"]).set_index(["dpair", "layer"])["total"]
        ds["distance_total"] = xr.DataArray.from_series(tot)
    ds = ds.assign_coords(naturalness=("domain", np.array([naturalness.get(d, np.nan) for d in weights], float)))
    ds.attrs.update(study=str(study), metric=str(pred["metric"].iloc[0]) if len(pred) else "",
                    weights=json.dumps(weights), correction=cfg.get("correction", "holm"))
    write_dataset(_fixed_strings(ds), Path(study) / DOMAINS_STORE, overwrite=True)
    norms_df = norms.to_dataframe().reset_index().rename(columns={"domain": "model"})
    return {"predictivity": pred, "summary": summary, "mannwhitney": mw, "norms": norms_df, "svm": svm,
            "distances": dist, "distances_per_image": dist_img, "dataset": ds}


def _fixed_strings(ds: xr.Dataset) -> xr.Dataset:
    """Object (Python str) variables and coords as fixed-width unicode: they open lazily everywhere."""
    conv = {k: v.copy(data=np.asarray([str(x) for x in v.values.ravel()], dtype=str).reshape(v.shape))
            for k, v in ds.variables.items() if v.dtype == object}
    if not conv:
        return ds
    coords = {k: v for k, v in conv.items() if k in ds.coords}
    data = {k: v for k, v in conv.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)


# --------------------------------------------------------------------------- the study's own store
def write_naturalness_store(study, naturalness: pd.DataFrame, slopes: dict, networks: pd.DataFrame,
                            table1: pd.DataFrame | None = None) -> Path:
    """``STUDY/domains.zarr``: naturalness and slopes (domain), the networks (domain), Table 1 (domain, recording)."""
    doms = list(naturalness["domain"])
    n_max = max((len(slopes.get(d, [])) for d in doms), default=0)
    sl = np.full((len(doms), n_max), np.nan)
    for i, d in enumerate(doms):
        v = np.asarray(slopes.get(d, []), float)
        sl[i, :len(v)] = v
    nat = naturalness.set_index("domain")
    ds = xr.Dataset({k: ("domain", nat[k].to_numpy()) for k in ("n_images", "p_mean", "p_sd", "naturalness")},
                    coords={"domain": doms})
    ds["slope"] = (("domain", "sample"), sl)
    ds["slope"].attrs.update(what="spectral slope p of each sampled image (NaN padded)")
    ds["naturalness"].attrs.update(formula="-log|p_mean - 2|")
    if networks is not None and len(networks):
        net = networks.set_index("domain").reindex(doms)
        for col in ("checkpoint", "weights", "variant"):
            ds[f"network_{col}"] = ("domain", net[col].astype(str).to_numpy())
        for col in ("steps", "final_loss"):
            if col in net:
                ds[f"network_{col}"] = ("domain", net[col].to_numpy(dtype=float))
    if table1 is not None and len(table1):
        recs = [c[len("pls_"):] for c in table1 if c.startswith("pls_") and not c.endswith("_layer")]
        t = table1.set_index("domain").reindex(doms)
        ds["pls"] = (("domain", "recording"), np.stack([t[f"pls_{r}"].to_numpy(float) for r in recs], axis=1))
        ds["pls_layer"] = (("domain", "recording"), np.stack([t[f"pls_{r}_layer"].astype(str).to_numpy()
                                                            for r in recs], axis=1))
        ds = ds.assign_coords(recording=recs)
        ds["pls"].attrs.update(what="best conv layer: mean over splits of the median over each area's neurons, "
                                    "averaged over areas")
    write_dataset(_fixed_strings(ds), Path(study) / DOMAINS_STORE, overwrite=True)
    return Path(study) / DOMAINS_STORE


def build_table1(naturalness: pd.DataFrame, per_recording: dict) -> pd.DataFrame:
    """Table 1 in the paper's layout: ``domain, naturalness, p_mean`` (the slope) and one PLS column per recording.

    A recording's PLS of a domain is its best conv layer's score: mean over splits of the median
    over each area's neurons, averaged over areas; ``pls_<recording>_layer`` names the layer.
    Rows are ordered from the most to the least natural domain.
    """
    t = naturalness[["domain", "naturalness", "p_mean"]].copy()
    for rec, summary in per_recording.items():
        by = summary.groupby(["model", "layer"], sort=False)["mean"].mean().reset_index()
        best = by.loc[by.groupby("model")["mean"].idxmax()].set_index("model")
        t[f"pls_{rec}"] = t["domain"].map(best["mean"])
        t[f"pls_{rec}_layer"] = t["domain"].map(best["layer"])
    return t.sort_values("naturalness", ascending=False, kind="stable").reset_index(drop=True)


def format_table1(table: pd.DataFrame) -> str:
    """Table 1 as printed by the pipeline."""
    cols = ["domain", "naturalness", "p_mean"] + [c for c in table if c.startswith("pls_") and not c.endswith("_layer")]
    show = table[cols].rename(columns={"p_mean": "slope p"})
    for c in cols:
        if c.startswith("pls_"):
            show[c] = [f"{v:.3f} ({lay})" if np.isfinite(v) else "nan"
                       for v, lay in zip(table[c], table[f"{c}_layer"])]
    return "Table 1: domains by naturalness; PLS = best conv layer (mean over splits)\n" + show.to_string(
        index=False, float_format=lambda v: f"{v:.3f}")


def weights_of(checkpoints: dict) -> dict:
    """domain -> sha256 of its checkpoint file (the ``weights`` layer coord of its features and scores)."""
    return {d: hash_file(p) for d, p in checkpoints.items()}


def print_table(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
