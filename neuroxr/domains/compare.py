"""The domain study's comparisons: predictivity per domain, and how distinct the networks are.

For networks trained with SimCLR on different image domains (checkpoints of
:func:`neuroxr.domains.simclr.train_simclr`), on the study's stimuli:

- :func:`calc_domain_predictivity`: noise-corrected PLS consistency
  (:func:`neuroxr.mapping.pls.calc_pls_consistency`, 25 components, 100 random 50/50 image
  splits) of conv1..conv5 (after ReLU) per area; the per-split score is the median over the
  area's neurons;
- :func:`test_domain_differences`: Mann-Whitney U between every pair of domains per layer and
  area (over splits), with Holm-corrected p values;
- :func:`calc_activation_norms`: L2 norm of every image's activation per network and layer;
- :func:`classify_domains`: a linear SVM (:class:`sklearn.svm.LinearSVC`, 5-fold stratified CV)
  telling which network produced an activation: accuracy, macro precision and recall;
- :func:`calc_activation_distances`: Euclidean distance between two networks' activations to the
  same image (domain_rep ``activation_distances.py``), per image and summarised;
- :func:`compare_domains`: all of it for a study, tables (CSV) and figures under
  ``STUDY/reports/domains/``.
"""
from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from ..mapping.pls import calc_pls_consistency, cross_validated_pls, make_splits, split_trial_halves
from .simclr import CONV_LAYERS, calc_conv_activations, load_simclr_alexnet, prepare_pixels

__all__ = [
    "DOMAINS_REPORT_DIR",
    "parse_model_spec",
    "collect_domain_activations",
    "calc_domain_predictivity",
    "summarize_predictivity",
    "test_domain_differences",
    "calc_activation_norms",
    "classify_domains",
    "calc_activation_distances",
    "compare_domains",
    "run_domains_pipeline",
]

DOMAINS_REPORT_DIR = ("reports", "domains")
SUPPORTED_MODELS = ("alexnet-simclr",)


def parse_model_spec(spec: str) -> tuple[str, Path]:
    """``"alexnet-simclr@path/to.ckpt"`` -> ``("alexnet-simclr", Path("path/to.ckpt"))``."""
    if "@" not in str(spec):
        raise NeuroxrError(f"--model {spec!r}: expected MODEL@CHECKPOINT, e.g. alexnet-simclr@runs/lines.pt")
    model, path = str(spec).split("@", 1)
    if model not in SUPPORTED_MODELS:
        raise NeuroxrError(f"--model {spec!r}: model {model!r} is not one of {SUPPORTED_MODELS}")
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"--model {spec!r}: checkpoint {path} does not exist; train it with `neuroxr train-ssl`")
    return model, path


def _labels_for(checkpoints: list[tuple[Path, dict]]) -> list[str]:
    names = [str(c.get("domain") or p.stem) for p, c in checkpoints]
    out = []
    for (p, _), n in zip(checkpoints, names):
        out.append(n if names.count(n) == 1 else f"{n}:{p.stem}")
    if len(set(out)) < len(out):
        out = [f"{n}#{i}" for i, n in enumerate(out)]
    return out


def _zoo_conv_activations(path, pixels, layers, batch_size):
    """conv1..conv5 (after ReLU) through the zoo, exactly as ``neuroxr extract`` sees them."""
    from ..features.extract import iter_layer_activations
    from ..features.zoo import load_model

    loaded = load_model("alexnet-simclr", weights=str(path), device="cpu")
    want = {f"features.{CONV_LAYERS[l] - 1}": l for l in layers}  # the ReLU closing each conv block
    out = {}
    for name, _mtype, a in iter_layer_activations(loaded, np.asarray(pixels), batch_size=batch_size):
        if name in want:
            out[want[name]] = a
    missing = [l for l in layers if l not in out]
    if missing:
        raise NeuroxrError(f"{path}: the zoo's alexnet-simclr did not yield layers {missing} "
                           f"(looked for {sorted(want)})")
    return {l: out[l] for l in layers}


def collect_domain_activations(pixels, checkpoints, layers=tuple(CONV_LAYERS), batch_size: int = 64,
                               backend: str = "zoo"):
    """Activations of every checkpoint's conv layers to the stimuli.

    Parameters
    ----------
    pixels : array (image, y, x)
    checkpoints : list of paths (or dict label -> path)
    layers : conv layer names (:data:`~neuroxr.domains.simclr.CONV_LAYERS`)
    backend : {"zoo", "direct"}
        ``"zoo"``: :func:`neuroxr.features.zoo.load_model` ("alexnet-simclr") and
        :func:`neuroxr.features.extract.iter_layer_activations`, the same preprocessing as
        ``neuroxr extract``; ``"direct"``: torchvision AlexNet and
        :func:`~neuroxr.domains.simclr.prepare_pixels` (centre square crop, resize to the
        checkpoint's image size, its normalisation).

    Returns
    -------
    activations : dict label -> dict layer -> ndarray (image, feature)
    info : DataFrame
        One row per network: ``label, domain, checkpoint, weights`` (file sha256), ``epochs``,
        ``steps``, ``final_loss``, ``image_size``, ``domain_dir``.
    filters : dict label -> ndarray (64, 3, 11, 11), the first-layer filters
    """
    from ..io.store import hash_file

    if isinstance(checkpoints, dict):
        labels_given = list(checkpoints)
        paths = [Path(p) for p in checkpoints.values()]
    else:
        labels_given = None
        paths = [Path(p) for p in checkpoints]
    if not paths:
        raise NeuroxrError("collect_domain_activations: no checkpoints given; pass --model alexnet-simclr@CKPT")
    if backend not in ("zoo", "direct"):
        raise NeuroxrError(f"backend={backend!r} is not one of 'zoo', 'direct'")
    loaded = [(p, *load_simclr_alexnet(p)) for p in paths]
    labels = labels_given or _labels_for([(p, c) for p, _, c in loaded])
    acts, rows, filters = {}, [], {}
    for label, (p, net, ckpt) in zip(labels, loaded):
        size = int(ckpt.get("image_size", 64))
        if backend == "zoo":
            acts[label] = _zoo_conv_activations(p, pixels, layers, batch_size)
        else:
            x = prepare_pixels(pixels, image_size=size, normalize=ckpt.get("normalize"))
            acts[label] = calc_conv_activations(net, x, layers=layers, batch_size=batch_size)
        filters[label] = net.features[0].weight.detach().cpu().numpy()
        hist = ckpt.get("loss_history") or []
        rows.append({
            "label": label, "domain": ckpt.get("domain", label), "checkpoint": str(p), "weights": hash_file(p),
            "epochs": ckpt.get("epochs"), "steps": ckpt.get("steps"),
            "final_loss": float(hist[-1]) if hist else np.nan, "image_size": size,
            "domain_dir": (ckpt.get("settings") or {}).get("domain_dir"),
        })
    return acts, pd.DataFrame(rows), filters


def _aligned_responses(responses, image_ids):
    """mean (image, neuron), trials (neuron, image, trial) or None, areas, groups coords."""
    ds = responses
    if S.MEAN not in ds:
        raise MissingDataError(f"responses have no variable {S.MEAN!r} (found {list(ds.data_vars)})")
    have = np.asarray(ds[S.IMAGE].values)
    missing = np.setdiff1d(image_ids, have)
    if missing.size:
        raise NeuroxrError(f"responses lack images {missing[:5].tolist()} that the stimuli have; "
                           "the image coordinate must be identical in every store")
    ds = ds.sel({S.IMAGE: image_ids})
    mean = np.asarray(ds[S.MEAN].transpose(S.NEURON, S.IMAGE).values, dtype=np.float64).T
    trials = None
    if S.TRIALS in ds:
        trials = np.asarray(ds[S.TRIALS].transpose(S.NEURON, S.IMAGE, S.TRIAL).values, dtype=np.float64)
    areas = np.asarray(ds[S.AREA].values).astype(str) if S.AREA in ds.coords else np.full(mean.shape[1], "all")
    return mean, trials, areas, ds


def calc_domain_predictivity(activations: dict, responses, *, areas=None, n_splits: int = 100,
                             test_size: float = 0.5, n_components: int = 25, scale: bool = True,
                             seed: int = 0, trial_split: str = "even_odd", pool: str = "neuron",
                             image_ids=None, progress: bool = False) -> pd.DataFrame:
    """PLS consistency of every network's layers with every area, per split.

    Parameters
    ----------
    activations : dict label -> dict layer -> ndarray (image, feature)
        Rows in the order of ``image_ids``.
    responses : Dataset
        ``mean`` (neuron, image), optional ``trials`` (neuron, image, trial), coord ``area``.
    areas : list of str, optional
        Default: every area with neurons.
    n_splits, test_size, n_components, scale, seed :
        100 random 50/50 splits with 25 components in the study; the same splits for every
        network, layer and area.
    trial_split : {"even_odd", "random"}
        How trials are halved for the consistency (domain_rep: even/odd).
    pool : {"neuron", "specimen"}
        ``"neuron"``: consistency per neuron, median over the area's neurons.
        ``"specimen"``: one PLS per specimen (neuron coord ``container``, else ``experiment``),
        consistency of the flattened (image x neuron) block, median over specimens
        (domain_rep's ``inter_animal_consistency``).
    image_ids : array (image,), optional
        Image coordinate of the activation rows (default: the responses' order).

    Returns
    -------
    DataFrame
        Columns ``model, layer, area, split, score, n_neurons, metric`` where ``metric`` is
        ``pls_consistency``, or ``pls_r`` (the plain held-out r, median over neurons) when the
        responses have no trials.
    """
    from tqdm.auto import tqdm

    if image_ids is None:
        image_ids = np.asarray(responses[S.IMAGE].values)
    image_ids = np.asarray(image_ids)
    mean, trials, area_of, ds = _aligned_responses(responses, image_ids)
    n_images = len(image_ids)
    for label, layers in activations.items():
        for layer, X in layers.items():
            if X.shape[0] != n_images:
                raise NeuroxrError(f"activations of {label} {layer} have {X.shape[0]} images, responses {n_images}")
    splits = make_splits(n_images, kind="random", n_splits=n_splits, test_size=test_size, seed=seed)
    use_areas = [a for a in (areas or [a for a in S.AREAS if a in set(area_of)] +
                 sorted(set(area_of) - set(S.AREAS))) if (area_of == a).any()]
    if not use_areas:
        raise MissingDataError(f"no neurons in areas {areas}; areas present: {sorted(set(area_of))}")
    if trials is not None:
        Y1, Y2 = split_trial_halves(trials, kind=trial_split, seed=seed)
        metric = "pls_consistency"
    else:
        Y1 = Y2 = None
        metric = "pls_r"
    groups_all = None
    if pool == "specimen":
        for c in ("container", "experiment"):
            if c in ds.coords:
                groups_all = np.asarray(ds[c].values).astype(str)
                break
        if groups_all is None:
            raise NeuroxrError("pool='specimen' needs a neuron coordinate 'container' or 'experiment'")
    elif pool != "neuron":
        raise NeuroxrError(f"pool={pool!r} is not one of 'neuron', 'specimen'")
    rows = []
    total = len(activations) * len(use_areas) * max(len(v) for v in activations.values())
    bar = tqdm(total=total, desc="PLS consistency", disable=not progress)
    for area in use_areas:
        cols = np.flatnonzero(area_of == area)
        if Y1 is not None:
            ok = np.isfinite(Y1[:, cols]).all(0) & np.isfinite(Y2[:, cols]).all(0)
            cols = cols[ok]
        else:
            cols = cols[np.isfinite(mean[:, cols]).all(0)]
        if cols.size == 0:
            continue
        for label, layers in activations.items():
            for layer, X in layers.items():
                X = np.asarray(X, dtype=np.float64)
                if Y1 is not None:
                    g = None if groups_all is None else groups_all[cols]
                    c = calc_pls_consistency(X, Y1[:, cols], Y2[:, cols], splits, n_components=n_components,
                                             scale=scale, groups=g, pool=pool == "specimen")
                else:
                    c = cross_validated_pls(X, mean[:, cols], splits, n_components=n_components, scale=scale)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN split -> NaN
                    med = np.nanmedian(c, axis=1)
                for s in range(len(splits)):
                    rows.append({"model": label, "layer": layer, "area": area, "split": s,
                                 "score": float(med[s]), "n_neurons": int(cols.size), "metric": metric})
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=["model", "layer", "area", "split", "score", "n_neurons", "metric"])


def summarize_predictivity(predictivity: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd, sem and median of the per-split scores per ``model, layer, area``."""
    g = predictivity.groupby(["model", "layer", "area"], sort=False)["score"]
    out = g.agg(mean="mean", sd="std", median="median", n_splits="count").reset_index()
    out["sem"] = out["sd"] / np.sqrt(out["n_splits"].clip(lower=1))
    out["metric"] = predictivity.groupby(["model", "layer", "area"], sort=False)["metric"].first().values
    return out


def test_domain_differences(predictivity: pd.DataFrame, alternative: str = "two-sided") -> pd.DataFrame:
    """Mann-Whitney U between every pair of networks per layer and area, over splits.

    Returns
    -------
    DataFrame
        ``layer, area, model_a, model_b, median_a, median_b, u, p, p_holm`` (Holm over all rows).
    """
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.multitest import multipletests

    rows = []
    models = list(dict.fromkeys(predictivity["model"]))
    for (layer, area), df in predictivity.groupby(["layer", "area"], sort=False):
        for a, b in itertools.combinations(models, 2):
            xa = df.loc[df["model"] == a, "score"].dropna().to_numpy()
            xb = df.loc[df["model"] == b, "score"].dropna().to_numpy()
            if len(xa) == 0 or len(xb) == 0:
                continue
            u, p = mannwhitneyu(xa, xb, alternative=alternative)
            rows.append({"layer": layer, "area": area, "model_a": a, "model_b": b,
                         "median_a": float(np.median(xa)), "median_b": float(np.median(xb)),
                         "u": float(u), "p": float(p)})
    out = pd.DataFrame(rows, columns=["layer", "area", "model_a", "model_b", "median_a", "median_b", "u", "p"])
    out["p_holm"] = multipletests(out["p"].to_numpy(), method="holm")[1] if len(out) else []
    return out


test_domain_differences.__test__ = False  # a library function, not a pytest test


def calc_activation_norms(activations: dict, image_ids=None) -> pd.DataFrame:
    """L2 norm of each image's activation: columns ``model, layer, image, norm``."""
    rows = []
    for label, layers in activations.items():
        for layer, X in layers.items():
            X = np.asarray(X, dtype=np.float64)
            ids = np.arange(X.shape[0]) if image_ids is None else np.asarray(image_ids)
            rows.append(pd.DataFrame({"model": label, "layer": layer, "image": ids,
                                      "norm": np.linalg.norm(X, axis=1)}))
    return pd.concat(rows, ignore_index=True)


def classify_domains(activations: dict, n_folds: int = 5, seed: int = 0, standardize: bool = True,
                     C: float = 1.0, max_iter: int = 5000) -> pd.DataFrame:
    """Which network produced an activation?  Linear SVM, stratified k-fold CV, per layer.

    The samples of a layer are every network's activation to every image (rows stacked), the
    label is the network.  ``standardize`` z-scores features inside each training fold
    (:class:`~sklearn.pipeline.Pipeline` with :class:`~sklearn.preprocessing.StandardScaler`).

    Returns
    -------
    DataFrame
        ``layer, fold, accuracy, precision, recall, chance, n_samples`` (macro precision and
        recall), one row per fold and one with ``fold = "mean"``.
    """
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    labels = list(activations)
    if len(labels) < 2:
        raise NeuroxrError("classify_domains: need at least two networks to tell apart")
    layers = list(activations[labels[0]])
    rows = []
    for layer in layers:
        X = np.concatenate([np.asarray(activations[m][layer], dtype=np.float64) for m in labels])
        y = np.concatenate([np.full(len(activations[m][layer]), i) for i, m in enumerate(labels)])
        k = int(min(n_folds, np.bincount(y).min()))
        if k < 2:
            raise NeuroxrError(f"classify_domains: layer {layer} has too few images for {n_folds}-fold CV")
        svc = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
        est = make_pipeline(StandardScaler(), svc) if standardize else svc
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = cross_validate(est, X, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                                 scoring={"accuracy": "accuracy", "precision": "precision_macro",
                                          "recall": "recall_macro"})
        for f in range(k):
            rows.append({"layer": layer, "fold": str(f), "accuracy": res["test_accuracy"][f],
                         "precision": res["test_precision"][f], "recall": res["test_recall"][f],
                         "chance": 1.0 / len(labels), "n_samples": len(y)})
        rows.append({"layer": layer, "fold": "mean", "accuracy": res["test_accuracy"].mean(),
                     "precision": res["test_precision"].mean(), "recall": res["test_recall"].mean(),
                     "chance": 1.0 / len(labels), "n_samples": len(y)})
    return pd.DataFrame(rows)


def calc_activation_distances(activations: dict, image_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Euclidean distance between two networks' activations to the same image.

    Returns
    -------
    per_image : DataFrame ``model_a, model_b, layer, image, distance`` (unordered pairs)
    summary : DataFrame ``model_a, model_b, layer, mean, sd, median, total`` where ``total`` is
        the distance of the whole (image x feature) activation matrices (Frobenius norm of
        the difference, as the study's distance matrices).
    """
    labels = list(activations)
    rows, summ = [], []
    for a, b in itertools.combinations(labels, 2):
        for layer in activations[a]:
            A = np.asarray(activations[a][layer], dtype=np.float64)
            B = np.asarray(activations[b][layer], dtype=np.float64)
            d = np.linalg.norm(A - B, axis=1)
            ids = np.arange(len(d)) if image_ids is None else np.asarray(image_ids)
            rows.append(pd.DataFrame({"model_a": a, "model_b": b, "layer": layer, "image": ids, "distance": d}))
            summ.append({"model_a": a, "model_b": b, "layer": layer, "mean": d.mean(),
                         "sd": d.std(ddof=1) if len(d) > 1 else np.nan, "median": float(np.median(d)),
                         "total": float(np.sqrt((d ** 2).sum()))})
    per = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["model_a", "model_b", "layer", "image", "distance"])
    return per, pd.DataFrame(summ, columns=["model_a", "model_b", "layer", "mean", "sd", "median", "total"])


def _naturalness_for(info: pd.DataFrame, naturalness, n_samples: int = 200, crop: int = 256) -> pd.DataFrame | None:
    """Naturalness table (domain, p_mean, naturalness...) matched to the networks' domains."""
    from .naturalness import summarize_naturalness

    if naturalness is None:
        dirs = {r.domain: r.domain_dir for r in info.itertuples() if r.domain_dir and Path(r.domain_dir).is_dir()}
        if not dirs:
            return None
        naturalness = summarize_naturalness(dirs, n_samples=n_samples, crop=crop)
    elif not isinstance(naturalness, pd.DataFrame):
        path = Path(naturalness)
        if not path.exists():
            raise MissingDataError(f"{path}: naturalness table does not exist; write it with `neuroxr naturalness DIR ... --out {path}`")
        naturalness = pd.read_csv(path)
    if "domain" not in naturalness or "naturalness" not in naturalness:
        raise NeuroxrError("naturalness table needs columns 'domain' and 'naturalness' (from `neuroxr naturalness`)")
    return naturalness


def compare_domains(study, checkpoints, *, out=None, layers=tuple(CONV_LAYERS), areas=None,
                    n_splits: int = 100, test_size: float = 0.5, n_components: int = 25, scale: bool = True,
                    seed: int = 0, trial_split: str = "even_odd", pool: str = "neuron", svm_folds: int = 5,
                    svm_standardize: bool = True, naturalness=None, figures: bool = True,
                    use_selection: bool = True, progress: bool = False, batch_size: int = 64,
                    backend: str = "zoo") -> dict:
    """Run the domain study's comparisons on a study and write tables and figures.

    Parameters
    ----------
    study : path
        Study directory with ``stimuli.zarr`` and ``responses.zarr``.
    checkpoints : list of paths, or of ``"alexnet-simclr@CKPT"`` specs, or dict label -> path
    out : path, optional
        Output folder (default ``STUDY/reports/domains``).
    naturalness : DataFrame or CSV path, optional
        Per-domain naturalness (``neuroxr naturalness`` output); default: computed from the
        domain folders recorded in the checkpoints when they exist.
    use_selection : bool
        Use the study's neuron selection (``neuroxr select``) when there is one.

    Returns
    -------
    dict
        DataFrames (``predictivity``, ``summary``, ``mannwhitney``, ``norms``, ``svm``,
        ``distances``, ``distances_per_image``, ``networks``, ``naturalness``) and ``files``
        (name -> path written).
    """
    from ..study import open_study

    st = open_study(study)
    if isinstance(checkpoints, (list, tuple)):
        checkpoints = [parse_model_spec(c)[1] if "@" in str(c) else Path(c) for c in checkpoints]
    pixels_da = st.stimuli[S.PIXELS]
    image_ids = np.asarray(pixels_da[S.IMAGE].values)
    pixels = np.asarray(pixels_da.values)
    if use_selection:
        from ..responses import load_selected_responses

        responses = load_selected_responses(study)
    else:
        responses = st.responses
    acts, info, filters = collect_domain_activations(pixels, checkpoints, layers=layers, batch_size=batch_size,
                                                     backend=backend)
    pred = calc_domain_predictivity(acts, responses, areas=areas, n_splits=n_splits, test_size=test_size,
                                    n_components=n_components, scale=scale, seed=seed, trial_split=trial_split,
                                    pool=pool, image_ids=image_ids, progress=progress)
    summary = summarize_predictivity(pred)
    nat = _naturalness_for(info, naturalness)
    if nat is not None:
        dom = dict(zip(info["label"], info["domain"]))
        summary["domain"] = summary["model"].map(dom)
        summary = summary.merge(nat[["domain", "p_mean", "naturalness"]], on="domain", how="left")
    mw = test_domain_differences(pred)
    norms = calc_activation_norms(acts, image_ids)
    svm = classify_domains(acts, n_folds=svm_folds, seed=seed, standardize=svm_standardize)
    dist_img, dist = calc_activation_distances(acts, image_ids)

    out = Path(out) if out is not None else st.store(*DOMAINS_REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"predictivity": pred, "predictivity_summary": summary, "mannwhitney": mw, "norms": norms,
              "svm": svm, "distances": dist, "distances_per_image": dist_img, "networks": info}
    if nat is not None:
        tables["naturalness"] = nat
    files = {}
    for name, df in tables.items():
        p = out / f"{name}.csv"
        df.to_csv(p, index=False)
        files[name] = p
    settings = {"n_splits": n_splits, "test_size": test_size, "n_components": n_components, "scale": scale,
                "seed": seed, "trial_split": trial_split, "pool": pool, "svm_folds": svm_folds,
                "svm_standardize": svm_standardize, "layers": list(layers), "areas": areas,
                "use_selection": use_selection, "backend": backend}
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    files["settings"] = out / "settings.json"
    if figures:
        from . import plots

        files.update(plots.plot_domain_report(out, summary=summary, norms=norms, filters=filters,
                                              distances=dist, svm=svm))
        if (out / "naturalness.png").exists():
            files.setdefault("fig_naturalness", out / "naturalness.png")
        files["index"] = plots.write_domains_index(out, files, summary=summary, svm=svm, mannwhitney=mw,
                                                   networks=info)
    return {"predictivity": pred, "summary": summary, "mannwhitney": mw, "norms": norms, "svm": svm,
            "distances": dist, "distances_per_image": dist_img, "networks": info, "naturalness": nat,
            "files": files, "out": out, "index": files.get("index")}


def run_domains_pipeline(config: dict, study=None) -> dict:
    """Run the whole domain study from a ``pipelines/prasad2022.toml`` config (see :mod:`.pipeline`)."""
    from .pipeline import run_domains_pipeline as _run

    return _run(config, study=study)
