"""How well each domain's network predicts each area: PLS consistency per split, and the tests between domains."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests
from tqdm.auto import tqdm

from .. import schema as S
from ..errors import MissingDataError, NeuroxrError
from ..mapping.pls import (
    calc_pls_consistency,
    cross_validated_pls,
    make_splits,
    split_trial_halves,
)


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
    groups_all = _specimen_groups(ds, pool)
    rows = []
    total = len(activations) * len(use_areas) * max(len(v) for v in activations.values())
    with tqdm(total=total, desc="PLS consistency", disable=not progress) as bar:
        for area in use_areas:
            cols = _usable_neurons(np.flatnonzero(area_of == area), mean, Y1, Y2)
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
                    rows += [{"model": label, "layer": layer, "area": area, "split": s, "score": float(med[s]),
                              "n_neurons": int(cols.size), "metric": metric} for s in range(len(splits))]
                    bar.update(1)
    return pd.DataFrame(rows, columns=["model", "layer", "area", "split", "score", "n_neurons", "metric"])


def _specimen_groups(ds, pool: str):
    """The specimen of every neuron (``container``, else ``experiment``) when pooling by specimen, else None."""
    if pool == "specimen":
        for c in ("container", "experiment"):
            if c in ds.coords:
                return np.asarray(ds[c].values).astype(str)
        raise NeuroxrError("pool='specimen' needs a neuron coordinate 'container' or 'experiment'")
    if pool != "neuron":
        raise NeuroxrError(f"pool={pool!r} is not one of 'neuron', 'specimen'")
    return None


def _usable_neurons(cols, mean, Y1, Y2):
    """The neurons among ``cols`` with finite responses (in both trial halves when there are trials)."""
    if Y1 is not None:
        return cols[np.isfinite(Y1[:, cols]).all(0) & np.isfinite(Y2[:, cols]).all(0)]
    return cols[np.isfinite(mean[:, cols]).all(0)]


def summarize_predictivity(predictivity: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd, sem and median of the per-split scores per ``model, layer, area``."""
    g = predictivity.groupby(["model", "layer", "area"], sort=False)["score"]
    out = g.agg(mean="mean", sd="std", median="median", n_splits="count").reset_index()
    out["sem"] = out["sd"] / np.sqrt(out["n_splits"].clip(lower=1))
    out["metric"] = predictivity.groupby(["model", "layer", "area"], sort=False)["metric"].first().values
    return out


#: multiple-comparison corrections accepted (statsmodels ``multipletests`` methods)
CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")


def _naturalness_of(naturalness, models) -> dict | None:
    """model -> naturalness (a dict, or a table with ``domain``/``model`` and ``naturalness``)."""
    if naturalness is None:
        return None
    if isinstance(naturalness, pd.DataFrame):
        key = "model" if "model" in naturalness else "domain"
        naturalness = dict(zip(naturalness[key], naturalness["naturalness"]))
    nat = {str(k): float(v) for k, v in dict(naturalness).items()}
    missing = [m for m in models if m not in nat]
    if missing:
        raise NeuroxrError(f"calc_domain_differences: no naturalness for networks {missing}; "
                           f"have {sorted(nat)} (the naturalness table's 'domain' must name every network)")
    return nat


def calc_domain_differences(predictivity: pd.DataFrame, naturalness=None, alternative: str | None = None,
                            correction: str = "holm") -> pd.DataFrame:
    """Mann-Whitney U between every pair of networks per layer and area, over splits.

    The study's hypothesis is directional: networks trained on a *more natural* domain predict
    the neurons *better*.  With ``naturalness`` every pair is ordered so that ``model_a`` is the
    more natural domain's network and the test is one-sided, ``alternative="greater"``
    (H1: a's per-split scores are stochastically greater than b's), exactly
    ``scipy.stats.mannwhitneyu(scores_a, scores_b, alternative="greater")``.  Without it the
    networks keep their order and the test is two-sided.  Ties in naturalness are tested
    two-sided.

    Parameters
    ----------
    predictivity : DataFrame
        ``model, layer, area, split, score`` (:func:`calc_domain_predictivity`).
    naturalness : dict model -> naturalness, or DataFrame (``domain`` or ``model``, ``naturalness``)
    alternative : {"greater", "less", "two-sided"}, optional
        Override the direction (default: ``"greater"`` with naturalness, else ``"two-sided"``).
    correction : {"holm", "bonferroni", "fdr_bh", "none"}
        Family-wise correction over all rows (every layer, area and pair) with
        :func:`statsmodels.stats.multitest.multipletests`; Holm by default (it controls the same
        family-wise error as Bonferroni and is uniformly more powerful).

    Returns
    -------
    DataFrame
        ``layer, area, model_a, model_b, naturalness_a, naturalness_b, median_a, median_b, n_a, n_b,
        alternative, u, p, p_adj, correction``; ``u`` is U of ``model_a``.
    """
    if correction not in CORRECTIONS:
        raise NeuroxrError(f"correction={correction!r} is not one of {CORRECTIONS}")
    if alternative not in (None, "greater", "less", "two-sided"):
        raise NeuroxrError(f"alternative={alternative!r} is not one of 'greater', 'less', 'two-sided'")
    rows = []
    models = list(dict.fromkeys(predictivity["model"]))
    nat = _naturalness_of(naturalness, models)
    for (layer, area), df in predictivity.groupby(["layer", "area"], sort=False):
        for a, b in itertools.combinations(models, 2):
            if nat is not None and nat[b] > nat[a]:
                a, b = b, a
            alt = alternative or ("greater" if nat is not None and nat[a] != nat[b] else "two-sided")
            xa = df.loc[df["model"] == a, "score"].dropna().to_numpy()
            xb = df.loc[df["model"] == b, "score"].dropna().to_numpy()
            if len(xa) == 0 or len(xb) == 0:
                continue
            u, p = mannwhitneyu(xa, xb, alternative=alt)
            rows.append({"layer": layer, "area": area, "model_a": a, "model_b": b,
                         "naturalness_a": np.nan if nat is None else nat[a],
                         "naturalness_b": np.nan if nat is None else nat[b],
                         "median_a": float(np.median(xa)), "median_b": float(np.median(xb)),
                         "n_a": len(xa), "n_b": len(xb), "alternative": alt, "u": float(u), "p": float(p)})
    cols = ["layer", "area", "model_a", "model_b", "naturalness_a", "naturalness_b", "median_a", "median_b",
            "n_a", "n_b", "alternative", "u", "p"]
    out = pd.DataFrame(rows, columns=cols)
    if len(out) and correction != "none":
        out["p_adj"] = multipletests(out["p"].to_numpy(), method=correction)[1]
    else:
        out["p_adj"] = out["p"].to_numpy(dtype=float)
    out["correction"] = correction
    return out


__all__ = ["calc_domain_predictivity", "summarize_predictivity", "calc_domain_differences", "CORRECTIONS"]
