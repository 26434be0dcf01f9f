"""Guards of a scoring run: content fingerprints, stores that hold what they claim, the scores lock.

- :func:`fingerprint_store`: a content hash of a Zarr store (every array's metadata and the
  checksum that ends each stored chunk, or the chunk's bytes where it has none; the group's
  attributes except the creation time).  Rebuilt identical features keep their fingerprint;
  changed ones get a new one whatever their time stamps say.
- :func:`check_store_variables`: each variable a metric reads is on disk (its metadata and at
  least one chunk); a deleted array would otherwise read as its fill value (NaN scores).
- :func:`scores_lock`: one writer of ``STUDY/scores.zarr`` at a time, through the study lock
  (:func:`neuroxr.io.lock.study_lock`); a second writer waits up to a timeout, then stops with
  :class:`~neuroxr.io.lock.StoreLockedError` naming the holder (``pid@host``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import schema as S
from ..errors import MissingDataError
from ..io.lock import study_lock

__all__ = ["fingerprint_store", "check_store_variables", "scores_lock",
           "LOCK_TIMEOUT", "VOLATILE_ATTRS"]

#: seconds a second writer waits for the scores lock
LOCK_TIMEOUT = 600.0
#: group attributes that say when, not what (left out of fingerprints)
VOLATILE_ATTRS = ("created",)


def _array_codecs(meta: dict) -> list:
    names = [c.get("name") for c in meta.get("codecs", []) if isinstance(c, dict)]
    for c in meta.get("codecs", []):
        if isinstance(c, dict) and c.get("name") == "sharding_indexed":
            names += [x.get("name") for x in c.get("configuration", {}).get("codecs", [])]
    return names


def _hash_chunks(h, array_dir: Path, tail_only: bool) -> None:
    for f in sorted(p for p in array_dir.rglob("*") if p.is_file() and p.name != "zarr.json"):
        h.update(str(f.relative_to(array_dir)).encode())
        size = f.stat().st_size
        h.update(size.to_bytes(8, "little"))
        with open(f, "rb") as fp:
            if tail_only and size >= 4:
                fp.seek(size - 4)
            h.update(fp.read())


def fingerprint_store(path) -> str:
    """Content hash (16 hex) of the Zarr store at ``path``: what it holds, not when it was written."""
    path = Path(path)
    h = hashlib.sha256()
    for meta_file in sorted(path.rglob("zarr.json")):
        node = meta_file.parent
        if any(part.startswith(".") for part in node.relative_to(path).parts):
            continue
        meta = json.loads(meta_file.read_text())
        h.update(str(node.relative_to(path)).encode())
        if meta.get("node_type") == "array":
            h.update(json.dumps(meta, sort_keys=True).encode())
            _hash_chunks(h, node, tail_only="crc32c" in _array_codecs(meta))
        else:
            attrs = {k: v for k, v in meta.get("attributes", {}).items() if k not in VOLATILE_ATTRS}
            h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def check_store_variables(path, names, what: str) -> None:
    """Raise :class:`MissingDataError` unless each variable of ``names`` in store ``path`` is on disk.

    Call it after opening the store (:func:`neuroxr.io.store.open_dataset` checks the store's
    manifest, whose message names the missing chunk); this covers stores without a manifest.
    """
    path = Path(path)
    for name in names:
        arr = path / name
        if not (arr / "zarr.json").is_file():
            raise MissingDataError(f"{path}: variable {name!r} is missing (no {arr / 'zarr.json'}), needed by {what}; "
                                   "rebuild the store (re-run the stage that wrote it)")
        if not any(p.is_file() for p in arr.rglob("*") if p.name != "zarr.json"):
            raise MissingDataError(f"{path}: variable {name!r} has no stored chunks, needed by {what}; "
                                   "rebuild the store (re-run the stage that wrote it)")


def scores_lock(study, timeout: float = LOCK_TIMEOUT):
    """Hold the study's write lock of ``scores.zarr`` in the block (the study lock of :mod:`neuroxr.io.lock`)."""
    return study_lock(study, S.SCORES_STORE, timeout=timeout)
