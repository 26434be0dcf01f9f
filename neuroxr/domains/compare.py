"""The domain study's comparisons: predictivity per domain, and how distinct the networks are.

For networks trained with SimCLR on different image domains (checkpoints of
:func:`neuroxr.domains.simclr.train_simclr`), on the study's stimuli:

- :func:`calc_domain_predictivity`: noise-corrected PLS consistency
  (:func:`neuroxr.mapping.pls.calc_pls_consistency`, 25 components, 100 random 50/50 image
  splits) of conv1..conv5 (after ReLU) per area; the per-split score is the median over the
  area's neurons;
- :func:`calc_domain_differences`: one-sided Mann-Whitney U between every pair of domains per
  layer and area (over splits; H1: the more natural domain's network predicts better), with
  Holm-corrected p values;
- :func:`calc_activation_norms`: L2 norm of every image's activation per network and layer;
- :func:`classify_domains`: a linear SVM (:class:`sklearn.svm.LinearSVC`, 5-fold CV grouped by image)
  telling which network produced an activation: accuracy, macro precision and recall;
- :func:`calc_activation_distances`: Euclidean distance between two networks' activations to the
  same image (domain_rep ``activation_distances.py``), per image and summarised;
- :func:`compare_domains`: all of it for a study, tables (CSV) and figures under
  ``STUDY/reports/domains/``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from ..responses import load_selected_responses
from ..study import open_study
from . import plots
from .activations import SUPPORTED_MODELS, collect_domain_activations, parse_model_spec
from .naturalness import summarize_naturalness
from .predictivity import calc_domain_differences, calc_domain_predictivity, summarize_predictivity
from .separability import calc_activation_distances, calc_activation_norms, classify_domains
from .simclr import CONV_LAYERS

__all__ = [
    "DOMAINS_REPORT_DIR",
    "SUPPORTED_MODELS",
    "parse_model_spec",
    "collect_domain_activations",
    "calc_domain_predictivity",
    "summarize_predictivity",
    "calc_domain_differences",
    "calc_activation_norms",
    "classify_domains",
    "calc_activation_distances",
    "compare_domains",
]

DOMAINS_REPORT_DIR = ("reports", "domains")


def _naturalness_for(info: pd.DataFrame, naturalness, n_samples: int = 200, crop: int = 256) -> pd.DataFrame | None:
    """Naturalness table (domain, p_mean, naturalness...) matched to the networks' domains."""
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
                    backend: str = "zoo", correction: str = "holm") -> dict:
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
    st = open_study(study)
    if isinstance(checkpoints, (list, tuple)):
        checkpoints = [parse_model_spec(c)[1] if "@" in str(c) else Path(c) for c in checkpoints]
    pixels_da = st.stimuli[S.PIXELS]
    image_ids = np.asarray(pixels_da[S.IMAGE].values)
    pixels = np.asarray(pixels_da.values)
    responses = load_selected_responses(study) if use_selection else st.responses
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
    nat_of = None
    if nat is not None:
        by_domain = dict(zip(nat["domain"], nat["naturalness"]))
        nat_of = {lab: by_domain[d] for lab, d in zip(info["label"], info["domain"]) if d in by_domain}
        if len(nat_of) < len(info):
            nat_of = None  # a network without a naturalness: two-sided tests
    mw = calc_domain_differences(pred, naturalness=nat_of, correction=correction)
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
                "use_selection": use_selection, "backend": backend, "correction": correction}
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    files["settings"] = out / "settings.json"
    if figures:
        files.update(plots.plot_domain_report(out, summary=summary, norms=norms, filters=filters,
                                              distances=dist, svm=svm))
        if (out / "naturalness.png").exists():
            files.setdefault("fig_naturalness", out / "naturalness.png")
        files["index"] = plots.write_domains_index(out, files, summary=summary, svm=svm, mannwhitney=mw,
                                                   networks=info)
    return {"predictivity": pred, "summary": summary, "mannwhitney": mw, "norms": norms, "svm": svm,
            "distances": dist, "distances_per_image": dist_img, "networks": info, "naturalness": nat,
            "files": files, "out": out, "index": files.get("index")}
