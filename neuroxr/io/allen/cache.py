"""Allen Brain Observatory cache (AllenSDK ``BrainObservatoryCache`` layout): manifest and metadata tables.

Read with ``json`` only; AllenSDK itself is not needed.  Cache layout (``manifest.json``,
version 1.3, paths relative to the manifest's directory)::

    manifest.json
    ophys_experiments.json                  OphysExperiment records (id, stimulus_name, ...)
    cell_specimens.json                     ApiCamCellMetric records (cell_specimen_id, area, tld1_name, ...)
    ophys_experiment_data/<id>.nwb          NWB 1.x: stimulus table, image stack, dF/F, cell ids
    ophys_experiment_events/<id>_events.npz ``ev`` (cell, frame): detected event magnitudes
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ... import schema as S
from ...errors import MissingDataError, NeuroxrError

DEFAULT_SESSION = "three_session_B"

#: manifest keys -> default specs (``BrainObservatoryCache.build_manifest``, version 1.3)
MANIFEST_DEFAULTS = {
    "EXPERIMENT_CONTAINERS": "experiment_containers.json",
    "EXPERIMENTS": "ophys_experiments.json",
    "CELL_SPECIMENS": "cell_specimens.json",
    "EXPERIMENT_DATA": "ophys_experiment_data/%d.nwb",
    "EVENTS_DATA": "ophys_experiment_events/%d_events.npz",
}
MANIFEST_VERSION = "1.3"


class AllenCacheError(NeuroxrError):
    """A file of the Allen cache is missing, truncated or lacks what the reader needs."""


class AllenDataWarning(UserWarning):
    """An experiment or cell of the Allen cache was skipped or completed from other metadata."""


def warn(msg):
    """Issue an :class:`AllenDataWarning`."""
    warnings.warn(msg, AllenDataWarning, stacklevel=3)


# --------------------------------------------------------------------------- the cache directory
@dataclass(frozen=True)
class AllenCache:
    """Paths of an AllenSDK ``BrainObservatoryCache`` directory, resolved from its manifest."""

    root: Path
    paths: dict = field(default_factory=dict)

    def path(self, key, *args) -> Path:
        spec = self.paths.get(key, str(self.root / MANIFEST_DEFAULTS[key]))
        return Path(spec % args if args else spec)

    def nwb_path(self, experiment_id) -> Path:
        return self.path("EXPERIMENT_DATA", int(experiment_id))

    def events_path(self, experiment_id) -> Path:
        return self.path("EVENTS_DATA", int(experiment_id))

    def relpath(self, p) -> str:
        try:
            return str(Path(p).relative_to(self.root))
        except ValueError:
            return str(p)


def read_manifest(path) -> dict:
    """Resolve the file keys of an AllenSDK ``manifest.json`` to absolute path specs.

    ``dir`` entries with a relative spec are relative to the manifest's directory (as AllenSDK's
    ``Cache`` resolves them); ``file`` entries join their ``parent_key`` directory.  Keys the
    reader needs but the manifest lacks (older manifests have no ``EVENTS_DATA``) get the
    version-1.3 defaults.
    """
    path = Path(path)
    try:
        with open(path) as f:
            config = json.load(f)
        entries = config["manifest"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AllenCacheError(f"{path}: not an AllenSDK manifest ({exc}); delete it and rerun "
                              "`neuroxr fetch allen` (it writes a fresh one)") from None
    base = path.parent.resolve()
    resolved: dict = {}
    for e in entries:
        if not isinstance(e, dict) or "key" not in e or "spec" not in e:
            continue
        spec = str(e["spec"])
        parent = e.get("parent_key")
        if parent and parent in resolved:
            p = os.path.join(resolved[parent], *spec.split("/"))
        elif spec.startswith("/"):
            p = spec
        else:
            p = os.path.join(str(base), *spec.split("/"))
        resolved[e["key"]] = os.path.normpath(p)
    for k, spec in MANIFEST_DEFAULTS.items():
        resolved.setdefault(k, os.path.join(resolved.get("BASEDIR", str(base)), *spec.split("/")))
    return resolved


def open_allen_cache(cache) -> AllenCache:
    """Find the manifest of an AllenSDK Brain Observatory cache.

    ``cache`` may be the ``manifest.json`` itself, the directory holding it, or a parent with
    ``brain_observatory/manifest.json`` (where ``BrainObservatoryCache()`` puts it by default).
    A directory without a manifest but with ``ophys_experiments.json`` is read with the default
    layout.
    """
    p = Path(cache).expanduser()
    if p.is_file() and p.suffix == ".json":
        return AllenCache(p.parent.resolve(), read_manifest(p))
    for cand in (p / "manifest.json", p / "brain_observatory" / "manifest.json"):
        if cand.is_file():
            return AllenCache(cand.parent.resolve(), read_manifest(cand))
    if (p / MANIFEST_DEFAULTS["EXPERIMENTS"]).is_file():
        return AllenCache(p.resolve(), {k: str(p.resolve() / v) for k, v in MANIFEST_DEFAULTS.items()})
    raise MissingDataError(
        f"{p}: no AllenSDK cache here (no manifest.json, brain_observatory/manifest.json or "
        f"ophys_experiments.json); download one with `neuroxr fetch allen {p}`"
    )


def require_downloaded(path: Path, what: str, hint: str = "") -> Path:
    """``path`` if it exists, else :class:`MissingDataError` naming it (and a partial download)."""
    if not path.exists():
        partial = " (a partial download is there)" if path.with_name(path.name + ".part").exists() else ""
        raise MissingDataError(f"{path} ({what}) is not downloaded{partial}; run `neuroxr fetch allen "
                               f"{path.parent}` to get it{hint}")
    return path


def _read_json(path, what, keep=None):
    """Records of a cache JSON file; with ``keep``, objects keep only those keys (the full
    ``cell_specimens.json`` has ~100 metrics per cell: this keeps memory to what is used)."""
    path = require_downloaded(Path(path), what)
    try:
        hook = None if keep is None else (lambda pairs: {k: v for k, v in pairs if k in keep or k == "msg"})
        with open(path) as f:
            obj = json.load(f, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise AllenCacheError(f"{path} ({what}) is not valid JSON ({exc}); the download is probably "
                              "truncated: delete it and rerun `neuroxr fetch allen`") from None
    if isinstance(obj, dict) and "msg" in obj:          # raw RMA response envelope
        obj = obj["msg"]
    if not isinstance(obj, list):
        raise AllenCacheError(f"{path} ({what}) holds a {type(obj).__name__}, expected a list of records")
    return obj


# --------------------------------------------------------------------------- metadata records
def _acronym(v):
    if isinstance(v, dict):
        return v.get("acronym")
    return v


def _cre_from_specimen(rec):
    """First driver line with 'Cre' in its name (AllenSDK's ``find_specimen_cre_line``)."""
    try:
        for tl in rec["specimen"]["donor"]["transgenic_lines"]:
            if tl.get("transgenic_line_type_name") == "driver" and "Cre" in tl.get("name", ""):
                return tl["name"]
    except (KeyError, TypeError):
        pass
    return None


def _num(v, kind=float):
    try:
        return kind(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def read_experiments(cache) -> pd.DataFrame:
    """One row per ophys experiment of ``ophys_experiments.json``.

    Returns
    -------
    DataFrame
        Index ``id``; columns ``container``, ``session_type``, ``area``, ``cre_line``,
        ``depth_um``, ``failed``.  Reads the raw RMA records the cache stores (``stimulus_name``,
        ``targeted_structure.acronym``, ``specimen.donor.transgenic_lines``) and the simplified
        ones AllenSDK returns (``session_type``, ``targeted_structure``, ``cre_line``).  Records
        without an ``id`` are skipped with a warning.
    """
    cache = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    path = cache.path("EXPERIMENTS")
    rows = []
    for i, r in enumerate(_read_json(path, "ophys experiments")):
        if not isinstance(r, dict) or _num(r.get("id"), int) is None:
            warn(f"{path}: record {i} has no 'id'; skipped")
            continue
        failed = bool(r.get("failed", False)) or bool((r.get("experiment_container") or {}).get("failed", False))
        rows.append({
            "id": int(r["id"]),
            "container": _num(r.get("experiment_container_id"), int),
            "session_type": r.get("stimulus_name", r.get("session_type")),
            "area": _acronym(r.get("targeted_structure")),
            "cre_line": r.get("cre_line") or _cre_from_specimen(r),
            "depth_um": _num(r.get("imaging_depth")),
            "failed": failed,
        })
    df = pd.DataFrame(rows, columns=["id", "container", "session_type", "area", "cre_line", "depth_um", "failed"])
    return df.set_index("id")


def read_cell_metadata(cache) -> pd.DataFrame:
    """Cell metadata of ``cell_specimens.json``, one row per ``cell_specimen_id``.

    Returns
    -------
    DataFrame
        Index ``cell_specimen_id``; columns ``container`` (``experiment_container_id``),
        ``area``, ``cre_line`` (``tld1_name``), ``depth_um`` (``imaging_depth``), ``p_run_mod``
        (``p_run_mod_ns``), ``p_image`` (``p_ns``), ``failed`` (``failed_experiment_container``).
        Missing fields are NaN/None; records without ``cell_specimen_id`` are skipped with a warning.
    """
    cache = cache if isinstance(cache, AllenCache) else open_allen_cache(cache)
    path = cache.path("CELL_SPECIMENS")
    cols = ["cell_specimen_id", "container", "area", "cre_line", "depth_um", "p_run_mod", "p_image", "failed"]
    rows, bad = [], 0
    fields = {"cell_specimen_id", "experiment_container_id", "area", "tld1_name", "imaging_depth", "p_run_mod_ns",
              "p_ns", "failed_experiment_container"}
    for r in _read_json(path, "cell specimens", keep=fields):
        cid = _num(r.get("cell_specimen_id"), int) if isinstance(r, dict) else None
        if cid is None:
            bad += 1
            continue
        rows.append((cid, _num(r.get("experiment_container_id"), int), r.get("area"), r.get("tld1_name"),
                     _num(r.get("imaging_depth")), _num(r.get("p_run_mod_ns")), _num(r.get("p_ns")),
                     bool(r.get("failed_experiment_container", False))))
    if bad:
        warn(f"{path}: {bad} records without 'cell_specimen_id' skipped")
    df = pd.DataFrame(rows, columns=cols)
    df = df[~df.cell_specimen_id.duplicated(keep="first")]
    for c in ("depth_um", "p_run_mod", "p_image"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df.set_index("cell_specimen_id")


def match_cre(cre, wanted) -> bool:
    """True if the Cre line ``cre`` is one of ``wanted`` (full names, driver names, excitatory/inhibitory)."""
    if cre is None:
        return False
    for w in wanted:
        wl = w.lower()
        if wl == "excitatory" and S.is_excitatory(cre):
            return True
        if wl == "inhibitory" and not S.is_excitatory(cre):
            return True
        c = str(cre).lower()
        if c == wl or c.split("-")[0] == wl.split("-")[0] and "-" not in wl:
            return True
    return False


def select_experiments(cache, session=DEFAULT_SESSION, areas=None, cre_lines=None, containers=None,
                       include_failed=False) -> pd.DataFrame:
    """Rows of :func:`read_experiments` of ``session`` passing the area/cre/container filters."""
    exps = read_experiments(cache)
    sel = exps[exps.session_type == session]
    if not include_failed:
        sel = sel[~sel.failed.astype(bool)]
    if containers is not None:
        sel = sel[sel.container.isin([int(c) for c in containers])]
    if areas is not None:
        sel = sel[sel.area.isin(list(areas))]
    if cre_lines is not None:
        sel = sel[[match_cre(c, cre_lines) for c in sel.cre_line]]
    return sel


__all__ = ["AllenCache", "AllenCacheError", "AllenDataWarning", "open_allen_cache", "read_manifest", "read_experiments",
           "read_cell_metadata", "select_experiments", "match_cre", "warn", "require_downloaded", "DEFAULT_SESSION", "MANIFEST_DEFAULTS"]
