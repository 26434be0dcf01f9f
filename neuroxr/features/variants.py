"""A model's features store, ``STUDY/features/<model>.zarr``: one or more (model, weights) variants."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import SettingsMismatchError
from ..io.lock import study_lock
from ..io.paths import pid_alive
from ..io.store import check_settings, clean_stale, open_dataset, provenance, read_settings, write_dataset
from .reduce import SRP_EPS, FeatureError


class StaleFeaturesError(SettingsMismatchError):
    """A features store was built from other inputs or settings than this run's; the message names which."""


def find_features_path(study, model):
    """``STUDY/features/<model>.zarr``."""
    return S.study_path(study, S.FEATURES_DIR, f"{model}.zarr")


def make_store_settings(srp_k, srp_seed) -> dict:
    """The settings a features store is written with (checked when a variant is added)."""
    return {"srp_components": srp_k, "srp_eps": SRP_EPS if srp_k else None, "srp_seed": srp_seed if srp_k else None,
            "srp_density": "auto" if srp_k else None, "precision": "float64"}


def _existing(path):
    """The finished store at ``path`` (loaded), or None.  Temporary stores are never looked at."""
    if not path.exists():
        return None
    return open_dataset(path).load()


def write_variant(path, ds, settings, inputs, overwrite):
    """Add one (model, weights) variant to the model's store: concat with what is there, atomic rewrite.

    The read-modify-write holds the store's study lock, so two extractions of one model never lose
    each other's variants.
    """
    path = Path(path)
    with study_lock(path.parent.parent, f"{path.parent.name}/{path.name}"):
        old = None if overwrite else _existing(path)
        variants = {}
        if old is not None:
            have = read_settings(old)
            check_settings({k: have.get(k) for k in settings}, settings, path)
            variants = json.loads(old.attrs.get("variants", "{}"))
            label = str(ds["weights"].values[0])
            old = old.isel({S.LAYER: np.flatnonzero(np.asarray(old["weights"].values) != label)})
            if old.sizes.get(S.LAYER, 0):
                if not np.array_equal(old[S.IMAGE].values, ds[S.IMAGE].values):
                    raise FeatureError(f"{path}: image ids differ from the stimuli's; use --overwrite to rebuild it")
                ds = xr.concat([old, ds], dim=S.LAYER, data_vars="all", coords="different", compat="equals",
                               join="outer")
        variants.update(inputs.pop("variant"))
        ds.attrs = provenance(settings, inputs)
        ds.attrs["variants"] = json.dumps(variants, sort_keys=True, default=str)
        write_dataset(ds, path, overwrite=True)
        return path


_SPILL_OWNER = re.compile(r"-p(\d+)@(.+)$")


def spill_owner_alive(p: Path, max_foreign_age: float = 6 * 3600) -> bool:
    """True if the spill directory ``p`` (``.spill-<id>-p<pid>@<host>``) may belong to a running extraction."""
    m = _SPILL_OWNER.search(p.name)
    return m is not None and pid_alive(int(m.group(1)), m.group(2), p, max_foreign_age)


def clean_features_dir(study):
    """Remove what killed runs left (temporary stores, spill directories); a live run's are kept."""
    d = S.study_path(study, S.FEATURES_DIR)
    clean_stale(d)
    for p in d.glob(".spill-*") if d.exists() else []:
        if not spill_owner_alive(p):
            shutil.rmtree(p, ignore_errors=True)


def has_variant(study, model: str, weights: str) -> bool:
    """True when ``STUDY/features/<model>.zarr`` already holds the layers of ``weights``."""
    path = find_features_path(study, model)
    if not path.exists():
        return False
    ds = open_dataset(path)
    return weights in set(np.asarray(ds["weights"].values).tolist())


def _plain(value):
    """``value`` as it reads back from the store's JSON attributes (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _first_change(stored: dict, current: dict):
    """``(key, stored value, current value)`` of the first key whose values differ, or None."""
    for key in sorted(current):
        old, new = stored.get(key, "<not recorded>"), _plain(current[key])
        if old != new:
            return key, old, new
    return None


def _stale(path, what: str, change, rerun: str) -> StaleFeaturesError:
    key, old, new = change
    return StaleFeaturesError(
        f"{path}: {what} changed since these features were extracted ({key}: stored {old!r}, now {new!r}); "
        f"rerun `{rerun} --overwrite` to rebuild the store (or use another study directory)"
    )


def find_up_to_date(path, label: str, *, stimuli: str, settings: dict, variant: dict, rerun: str) -> bool:
    """Whether the features store ``path`` already holds variant ``label`` built from these inputs.

    True: the store records the same stimuli hash, store settings (SRP) and, for ``label``, the same
    ``variant`` record (weights, seed, preprocessing): the work can be skipped.  False: the store
    or the variant is not there yet.  Raises :class:`StaleFeaturesError` naming the first input
    that differs (content hashes and settings, never times), with the command (``rerun``) that
    rebuilds it.
    """
    if not path.exists():
        return False
    attrs = open_dataset(path).attrs
    inputs = json.loads(attrs.get("inputs", "{}"))
    change = _first_change(inputs, {"stimuli": stimuli})
    if change:
        raise _stale(path, "the stimuli", change, rerun)
    change = _first_change(read_settings(attrs), settings)
    if change:
        raise _stale(path, "a store setting", change, rerun)
    variants = json.loads(attrs.get("variants", "{}"))
    if label not in variants:
        return False
    change = _first_change(variants[label], variant)
    if change:
        raise _stale(path, f"variant {label[:16]!r}", change, rerun)
    return True


def store_bytes(path) -> int:
    """Bytes of the files under ``path`` (a store directory)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def skipped_result(model: str, label: str) -> dict:
    """The summary of a (model, weights) pair that is already extracted."""
    return {"model": model, "weights": label, "status": "skipped", "layers": None, "nonfinite": [], "seconds": 0.0,
            "bytes": 0}


__all__ = ["find_features_path", "make_store_settings", "write_variant", "clean_features_dir", "has_variant",
           "find_up_to_date", "skipped_result", "store_bytes", "StaleFeaturesError"]
