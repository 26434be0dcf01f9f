"""What is in a study: :func:`describe_study` (a dict) and :func:`format_study_description` (text)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import schema as S
from .io.store import open_dataset

_PROVENANCE = ("neuroxr_version", "created", "settings", "inputs")


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


def _open(path):
    try:
        return open_dataset(path)
    except Exception as exc:  # a broken store is reported, not fatal for `info`
        return exc


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
    out = {"path": str(study), "stimuli": None, "responses": None, "rdms": None, "features": [], "scores": None}
    p = study / S.STIMULI_STORE
    if p.exists():
        ds = _open(p)
        if isinstance(ds, Exception):
            out["stimuli"] = {"error": str(ds)}
        else:
            px = ds[S.PIXELS]
            out["stimuli"] = {"n_images": int(ds.sizes[S.IMAGE]), "shape": [int(s) for s in px.shape],
                              "provenance": _provenance(ds)}
    p = study / S.RESPONSES_STORE
    if p.exists():
        ds = _open(p)
        if isinstance(ds, Exception):
            out["responses"] = {"error": str(ds)}
        else:
            info = {"n_neurons": int(ds.sizes[S.NEURON]), "n_images": int(ds.sizes[S.IMAGE]),
                    "n_trials": int(ds.sizes[S.TRIAL]) if S.TRIALS in ds else None}
            for c in ("area", "cre_line", "cortical_layer"):
                if c in ds.coords:
                    info[f"by_{c}"] = _counts(ds[c].values)
            if "area" in ds.coords and "cre_line" in ds.coords:
                import pandas as pd

                tab = pd.crosstab(np.asarray(ds["area"].values).astype(str),
                                  np.asarray(ds["cre_line"].values).astype(str))
                info["area_by_cre_line"] = {a: {c: int(v) for c, v in row.items() if v}
                                            for a, row in tab.iterrows()}
            if "splithalf_r" in ds.variables:
                r = np.asarray(ds["splithalf_r"].values, dtype=float)
                f = r[np.isfinite(r)]
                info["reliability"] = {
                    "n": int(f.size), "n_nan": int(r.size - f.size),
                    "mean": float(f.mean()) if f.size else None,
                    "quantiles": {q: float(np.quantile(f, float(q))) for q in ("0.1", "0.5", "0.9")} if f.size else {},
                    "n_at_least": {t: int((f >= float(t)).sum()) for t in ("0.5", "0.8")},
                }
            else:
                info["reliability"] = None
            if "selected" in ds.variables:
                sel = np.asarray(ds["selected"].values, dtype=bool)
                crit = ds["selected"].attrs.get("criteria")
                try:
                    crit = json.loads(crit) if isinstance(crit, str) else crit
                except ValueError:
                    pass
                by = {}
                if "area" in ds.coords:
                    by = _counts(np.asarray(ds["area"].values)[sel])
                info["selection"] = {"n_selected": int(sel.sum()), "criteria": crit, "by_area": by}
            else:
                info["selection"] = None
            info["provenance"] = _provenance(ds)
            info["attrs"] = {k: v for k, v in ds.attrs.items() if k not in _PROVENANCE}
            out["responses"] = info
    p = study / S.RDMS_STORE
    if p.exists():
        ds = _open(p)
        if isinstance(ds, Exception):
            out["rdms"] = {"error": str(ds)}
        else:
            out["rdms"] = {"sites": [str(s) for s in ds[S.SITE].values], "n_images": int(ds.sizes[S.IMAGE]),
                           "provenance": _provenance(ds)}
    fdir = study / S.FEATURES_DIR
    if fdir.exists():
        for fp in sorted(fdir.glob("*.zarr")):
            if fp.name.startswith("."):
                continue
            ds = _open(fp)
            if isinstance(ds, Exception):
                out["features"].append({"model": fp.name[:-5], "error": str(ds)})
                continue
            out["features"].append({
                "model": fp.name[:-5],
                "n_layers": int(ds.sizes.get(S.LAYER, 0)),
                "variables": sorted(map(str, ds.data_vars)),
                "provenance": _provenance(ds),
            })
    p = study / S.SCORES_STORE
    if p.exists():
        ds = _open(p)
        if isinstance(ds, Exception):
            out["scores"] = {"error": str(ds)}
        else:
            models = sorted(set(np.asarray(ds["model"].values).astype(str))) if "model" in ds.coords else []
            out["scores"] = {"variables": sorted(map(str, ds.data_vars)),
                             "n_layers": int(ds.sizes.get(S.LAYER, 0)), "models": models,
                             "provenance": _provenance(ds)}
    return out


def _fmt_prov(prov: dict, indent="    ") -> list[str]:
    lines = []
    for k in _PROVENANCE:
        if k in prov:
            v = prov[k]
            if isinstance(v, (dict, list)):
                v = json.dumps(v, sort_keys=True, default=str)
            lines.append(f"{indent}{k}: {v}")
    return lines


def format_study_description(info: dict) -> str:
    """Human-readable text of :func:`describe_study`'s dict."""
    L = [f"study {info['path']}"]
    st = info.get("stimuli")
    if st is None:
        L.append("stimuli.zarr: absent")
    elif "error" in st:
        L.append(f"stimuli.zarr: unreadable ({st['error']})")
    else:
        L.append(f"stimuli.zarr: {st['n_images']} images, pixels {tuple(st['shape'])}")
        L += _fmt_prov(st["provenance"])
    r = info.get("responses")
    if r is None:
        L.append("responses.zarr: absent")
    elif "error" in r:
        L.append(f"responses.zarr: unreadable ({r['error']})")
    else:
        tr = f", trials up to {r['n_trials']}" if r.get("n_trials") else ", no trials"
        L.append(f"responses.zarr: {r['n_neurons']} neurons x {r['n_images']} images{tr}")
        if r.get("by_area"):
            L.append("  neurons by area: " + ", ".join(f"{k} {v}" for k, v in r["by_area"].items()))
        if r.get("area_by_cre_line"):
            L.append("  neurons by area and cre line:")
            for a, row in r["area_by_cre_line"].items():
                L.append(f"    {a}: " + ", ".join(f"{c} {n}" for c, n in row.items()))
        if r.get("by_cortical_layer"):
            L.append("  neurons by layer: " + ", ".join(f"{k} {v}" for k, v in r["by_cortical_layer"].items()))
        rel = r.get("reliability")
        if rel:
            if rel["mean"] is None:
                L.append(f"  reliability: all {rel['n_nan']} NaN")
            else:
                q = rel["quantiles"]
                L.append(f"  reliability (split-half r): mean {rel['mean']:.3f}, 10/50/90% "
                         f"{q['0.1']:.3f}/{q['0.5']:.3f}/{q['0.9']:.3f}; >= 0.5: {rel['n_at_least']['0.5']}, "
                         f">= 0.8: {rel['n_at_least']['0.8']}" + (f"; NaN: {rel['n_nan']}" if rel["n_nan"] else ""))
        else:
            L.append("  reliability: not computed" + (" (run `neuroxr select`)" if r.get("n_trials") else " (no trials)"))
        sel = r.get("selection")
        if sel:
            L.append(f"  selection: {sel['n_selected']} of {r['n_neurons']} neurons; criteria "
                     f"{json.dumps(sel['criteria'], sort_keys=True)}")
            if sel.get("by_area"):
                L.append("    selected by area: " + ", ".join(f"{k} {v}" for k, v in sel["by_area"].items()))
        else:
            L.append("  selection: none (all neurons are used)")
        for k, v in (r.get("attrs") or {}).items():
            L.append(f"    {k}: {v}")
        L += _fmt_prov(r["provenance"])
    d = info.get("rdms")
    if d is None:
        L.append("rdms.zarr: absent")
    elif "error" in d:
        L.append(f"rdms.zarr: unreadable ({d['error']})")
    else:
        L.append(f"rdms.zarr: {len(d['sites'])} sites ({', '.join(d['sites'])}) x {d['n_images']} images")
        L += _fmt_prov(d["provenance"])
    if info.get("features"):
        L.append("features:")
        for f in info["features"]:
            if "error" in f:
                L.append(f"  {f['model']}: unreadable ({f['error']})")
                continue
            L.append(f"  {f['model']}: {f['n_layers']} layers ({', '.join(f['variables'])})")
            L += _fmt_prov(f["provenance"])
    else:
        L.append("features: none")
    sc = info.get("scores")
    if sc is None:
        L.append("scores.zarr: absent")
    elif "error" in sc:
        L.append(f"scores.zarr: unreadable ({sc['error']})")
    else:
        L.append(f"scores.zarr: {', '.join(sc['variables'])} over {sc['n_layers']} layers of "
                 f"{len(sc['models'])} models ({', '.join(sc['models'])})")
        L += _fmt_prov(sc["provenance"])
    return "\n".join(L)


__all__ = ["describe_study", "format_study_description"]
