"""What is in a study: :func:`describe_study` (a dict) and :func:`format_study_description` (text)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema as S
from .errors import NeuroxrError
from .features.progress import plural
from .io.store import open_dataset
from .mapping import open_scores
from .mapping.guard import fingerprint_store
from .stats import build_layer_frame

_PROVENANCE = ("neuroxr_version", "created", "settings", "inputs")


class StaleScoresError(NeuroxrError):
    """``scores.zarr`` was computed from features that were re-extracted (or removed) since."""


def find_stale_scores(study) -> dict[str, str]:
    """{model: why} for every model whose features store differs from the one its scores were
    computed from (by the recorded fingerprints, not by file times); {} when all are current or
    the scores record no fingerprints."""
    study = Path(study)
    try:
        raw = open_scores(study / S.SCORES_STORE).attrs.get("inputs", "{}")
        inputs = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (OSError, ValueError, KeyError):  # no or unreadable scores: the caller's own error says so
        return {}
    stale = {}
    for model, recorded in sorted(inputs.items()):
        if not isinstance(recorded, str):
            continue
        path = study / S.FEATURES_DIR / f"{model}.zarr"
        if not path.exists():
            stale[model] = f"its features store {path} is gone"
        elif fingerprint_store(path) != recorded:  # the runner's own content fingerprint
            stale[model] = f"features/{model}.zarr was extracted again after scoring"
    return stale


def check_scores_current(study) -> None:
    """Raise :class:`StaleScoresError` (one line naming the models and what to run) when
    ``scores.zarr`` is older than its features (see :func:`find_stale_scores`)."""
    stale = find_stale_scores(study)
    if stale:
        first, why = next(iter(stale.items()))
        more = f" (and {plural(len(stale) - 1, 'more model')}: {', '.join(list(stale)[1:])})" if len(stale) > 1 else ""
        raise StaleScoresError(f"{Path(study) / S.SCORES_STORE}: scores of {first} are older than its features "
                               f"({why}){more}; run `neuroxr score {study}` first")


def _provenance(ds) -> dict:
    out = {}
    for k in _PROVENANCE:
        if k in ds.attrs:
            v = ds.attrs[k]
            if k in ("settings", "inputs") and isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
            out[k] = v
    return out


def _counts(values) -> dict:
    vals, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(vals, counts)}


def _describe_store(path: Path, describe, opener=open_dataset):
    """``describe(opener(path))``; None when the store is absent, ``{"error": ...}`` when unreadable."""
    if not path.exists():
        return None
    try:
        ds = opener(path)
    except Exception as exc:  # a broken store is reported, not fatal for `info`
        return {"error": str(exc)}
    return describe(ds)


# --------------------------------------------------------------------------------------------
# describing, store by store
# --------------------------------------------------------------------------------------------
def _describe_stimuli(ds) -> dict:
    return {"n_images": int(ds.sizes[S.IMAGE]), "shape": [int(s) for s in ds[S.PIXELS].shape],
            "provenance": _provenance(ds)}


def _reliability(ds) -> dict | None:
    if "splithalf_r" not in ds.variables:
        return None
    r = np.asarray(ds["splithalf_r"].values, dtype=float)
    f = r[np.isfinite(r)]
    return {
        "n": int(f.size), "n_nan": int(r.size - f.size),
        "mean": float(f.mean()) if f.size else None,
        "quantiles": {q: float(np.quantile(f, float(q))) for q in ("0.1", "0.5", "0.9")} if f.size else {},
        "n_at_least": {t: int((f >= float(t)).sum()) for t in ("0.5", "0.8")},
    }


def _selection(ds) -> dict | None:
    if "selected" not in ds.variables:
        return None
    sel = np.asarray(ds["selected"].values, dtype=bool)
    crit = ds["selected"].attrs.get("criteria")
    try:
        crit = json.loads(crit) if isinstance(crit, str) else crit
    except ValueError:
        pass
    by = _counts(np.asarray(ds["area"].values)[sel]) if "area" in ds.coords else {}
    return {"n_selected": int(sel.sum()), "criteria": crit, "by_area": by}


def _describe_responses(ds) -> dict:
    info = {"n_neurons": int(ds.sizes[S.NEURON]), "n_images": int(ds.sizes[S.IMAGE]),
            "n_trials": int(ds.sizes[S.TRIAL]) if S.TRIALS in ds else None}
    for c in ("area", "cre_line", "cortical_layer"):
        if c in ds.coords:
            info[f"by_{c}"] = _counts(ds[c].values)
    if "area" in ds.coords and "cre_line" in ds.coords:
        tab = pd.crosstab(np.asarray(ds["area"].values).astype(str), np.asarray(ds["cre_line"].values).astype(str))
        info["area_by_cre_line"] = {a: {c: int(v) for c, v in row.items() if v} for a, row in tab.iterrows()}
    info["reliability"] = _reliability(ds)
    info["selection"] = _selection(ds)
    info["provenance"] = _provenance(ds)
    info["attrs"] = {k: v for k, v in ds.attrs.items() if k not in _PROVENANCE}
    return info


def _describe_rdms(ds) -> dict:
    return {"sites": [str(s) for s in ds[S.SITE].values], "n_images": int(ds.sizes[S.IMAGE]),
            "provenance": _provenance(ds)}


def _describe_features(fdir: Path) -> list[dict]:
    out = []
    for fp in sorted(fdir.glob("*.zarr")) if fdir.exists() else []:
        if fp.name.startswith("."):
            continue
        info = _describe_store(fp, lambda ds: {"n_layers": int(ds.sizes.get(S.LAYER, 0)),
                                                "variables": sorted(map(str, ds.data_vars)),
                                                "provenance": _provenance(ds)})
        out.append({"model": fp.name[:-5], **info})
    return out


def _describe_scores(tree) -> dict:
    """Variables of every group, layers, model variants and provenance of a scores DataTree."""
    variables = sorted(str(v) for node in tree.subtree for v in node.data_vars)
    layers = build_layer_frame(tree) if variables else None
    return {"variables": variables, "n_layers": 0 if layers is None else len(layers),
            "models": [] if layers is None else sorted(set(layers[S.VARIANT])), "provenance": _provenance(tree)}


def describe_study(study) -> dict:
    """Summarise a study directory.

    Returns
    -------
    dict
        Keys ``path``, ``stimuli``, ``responses``, ``rdms``, ``features``, ``scores`` (``None``
        when a store is absent).  Each present store carries its ``provenance`` attrs
        (``settings``, ``inputs``, ``neuroxr_version``, ``created``).
    """
    study = Path(study)
    return {"path": str(study),
            "stimuli": _describe_store(study / S.STIMULI_STORE, _describe_stimuli),
            "responses": _describe_store(study / S.RESPONSES_STORE, _describe_responses),
            "rdms": _describe_store(study / S.RDMS_STORE, _describe_rdms),
            "features": _describe_features(study / S.FEATURES_DIR),
            "scores": _describe_store(study / S.SCORES_STORE, _describe_scores, open_scores)}


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def _fmt_prov(prov: dict, indent="    ") -> list[str]:
    lines = []
    for k in _PROVENANCE:
        if k in prov:
            v = prov[k]
            if isinstance(v, (dict, list)):
                v = json.dumps(v, sort_keys=True, default=str)
            lines.append(f"{indent}{k}: {v}")
    return lines


def _format_store(name: str, info, lines) -> list[str]:
    """``name: absent`` / ``name: unreadable (...)``, or ``lines(info)`` for a readable store."""
    if info is None:
        return [f"{name}: absent"]
    if "error" in info:
        return [f"{name}: unreadable ({info['error']})"]
    return lines(info)


def _format_stimuli(st) -> list[str]:
    return [f"stimuli.zarr: {plural(st['n_images'], 'image')}, pixels {tuple(st['shape'])}",
            *_fmt_prov(st["provenance"])]


def _format_reliability(r) -> str:
    rel = r.get("reliability")
    if not rel:
        return "  reliability: not computed" + (" (run `neuroxr select`)" if r.get("n_trials") else " (no trials)")
    if rel["mean"] is None:
        return f"  reliability: all {rel['n_nan']} NaN"
    q = rel["quantiles"]
    return (f"  reliability (split-half r): mean {rel['mean']:.3f}, 10/50/90% "
            f"{q['0.1']:.3f}/{q['0.5']:.3f}/{q['0.9']:.3f}; >= 0.5: {rel['n_at_least']['0.5']}, "
            f">= 0.8: {rel['n_at_least']['0.8']}" + (f"; NaN: {rel['n_nan']}" if rel["n_nan"] else ""))


def _format_responses(r) -> list[str]:
    tr = f", trials up to {r['n_trials']}" if r.get("n_trials") else ", no trials"
    L = [f"responses.zarr: {plural(r['n_neurons'], 'neuron')} x {plural(r['n_images'], 'image')}{tr}"]
    if r.get("by_area"):
        L.append("  neurons by area: " + ", ".join(f"{k} {v}" for k, v in r["by_area"].items()))
    if r.get("area_by_cre_line"):
        L.append("  neurons by area and cre line:")
        for a, row in r["area_by_cre_line"].items():
            L.append(f"    {a}: " + ", ".join(f"{c} {n}" for c, n in row.items()))
    if r.get("by_cortical_layer"):
        L.append("  neurons by layer: " + ", ".join(f"{k} {v}" for k, v in r["by_cortical_layer"].items()))
    L.append(_format_reliability(r))
    sel = r.get("selection")
    if sel:
        L.append(f"  selection: {sel['n_selected']} of {plural(r['n_neurons'], 'neuron')}; criteria "
                 f"{json.dumps(sel['criteria'], sort_keys=True)}")
        if sel.get("by_area"):
            L.append("    selected by area: " + ", ".join(f"{k} {v}" for k, v in sel["by_area"].items()))
    else:
        L.append("  selection: none (all neurons are used)")
    L += [f"    {k}: {v}" for k, v in (r.get("attrs") or {}).items()]
    return L + _fmt_prov(r["provenance"])


def _format_rdms(d) -> list[str]:
    return [f"rdms.zarr: {plural(len(d['sites']), 'site')} ({', '.join(d['sites'])}) x "
            f"{plural(d['n_images'], 'image')}", *_fmt_prov(d["provenance"])]


def _format_features(features) -> list[str]:
    if not features:
        return ["features: none"]
    L = ["features:"]
    for f in features:
        if "error" in f:
            L.append(f"  {f['model']}: unreadable ({f['error']})")
            continue
        L.append(f"  {f['model']}: {plural(f['n_layers'], 'layer')} ({', '.join(f['variables'])})")
        L += _fmt_prov(f["provenance"])
    return L


def _format_scores(sc) -> list[str]:
    return [f"scores.zarr: {', '.join(sc['variables'])} over {plural(sc['n_layers'], 'layer')} of "
            f"{plural(len(sc['models']), 'model variant')} ({', '.join(sc['models'])})",
            *_fmt_prov(sc["provenance"])]


def format_study_description(info: dict) -> str:
    """Human-readable text of :func:`describe_study`'s dict."""
    L = [f"study {info['path']}"]
    L += _format_store("stimuli.zarr", info.get("stimuli"), _format_stimuli)
    L += _format_store("responses.zarr", info.get("responses"), _format_responses)
    L += _format_store("rdms.zarr", info.get("rdms"), _format_rdms)
    L += _format_features(info.get("features"))
    L += _format_store("scores.zarr", info.get("scores"), _format_scores)
    return "\n".join(L)


__all__ = ["describe_study", "format_study_description"]
