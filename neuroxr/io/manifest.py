"""Structural manifests of study stores: what a store must hold, recorded when it is written.

A store's ``neuroxr_manifest.json`` (beside its root ``zarr.json``) lists every group and every
array with its shape, data type, chunk grid and codecs, each chunk written with its size and
CRC-32C, and the chunks left unwritten because they are all fill value (zarr does not store
those).  :func:`write_manifest` records it from the finished temporary store, just before the
store is moved into place (:func:`neuroxr.io.store.replace_store` and
:func:`~neuroxr.io.store.replace_stores` call it, so every writer of a study store records one).

:func:`check_store` compares a store with its manifest and its consolidated metadata with each
node's own ``zarr.json``: a removed variable, a removed or replaced chunk, an edited shape, dtype
or byte order are problems naming the store, the variable and the chunk.  Every reader opens
stores through :func:`neuroxr.io.integrity.open_checked_store`, which raises on them, and
``neuroxr verify`` lists them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import google_crc32c
import numpy as np

from .problems import Problem

MANIFEST = "neuroxr_manifest.json"
VERSION = 1
#: the parts of an array's metadata the manifest records
_ARRAY_KEYS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "codecs", "fill_value", "dimension_names")


def _read_json(path: Path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def _nodes(root: Path):
    """``{name: metadata}`` of every node below the store root (``""`` is the root), from the files."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        if "zarr.json" not in filenames:
            dirnames[:] = []
            continue
        meta = _read_json(here / "zarr.json")
        out[rel] = meta
        if meta.get("node_type") == "array":
            dirnames[:] = []  # chunks below
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return out


def chunk_keys(meta: dict) -> list[str]:
    """Every chunk key of an array's grid (``c/0/1`` ...; ``c`` for a 0-d array)."""
    shape = meta["shape"]
    if not shape:
        return ["c"]
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    enc = meta.get("chunk_key_encoding", {})
    sep = enc.get("configuration", {}).get("separator", "/")
    prefix = "c" + sep if enc.get("name", "default") == "default" else ""
    grid = [-(-s // c) if c else 0 for s, c in zip(shape, chunks)]
    return [prefix + sep.join(map(str, idx)) for idx in np.ndindex(*grid)]


def _uses_crc(meta: dict) -> bool:
    codecs = meta.get("codecs") or []
    return bool(codecs) and isinstance(codecs[-1], dict) and codecs[-1].get("name") == "crc32c"


def chunk_digest(path: Path, crc_trailer: bool) -> dict:
    """``{"size", "crc32c"}`` of a chunk file: its trailing checksum, or the CRC-32C of the whole file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if crc_trailer and size >= 4:
            f.seek(size - 4)
            crc = int(np.frombuffer(f.read(4), dtype="<u4")[0])
        else:
            crc = int(google_crc32c.value(f.read()))
    return {"size": size, "crc32c": f"{crc:08x}"}


def _array_entry(root: Path, name: str, meta: dict) -> dict:
    entry = {k: meta.get(k) for k in _ARRAY_KEYS}
    crc = _uses_crc(meta)
    written, fill = {}, []
    for key in chunk_keys(meta):
        p = root / name / key
        if p.exists():
            written[key] = chunk_digest(p, crc)
        else:
            fill.append(key)
    entry["chunks_written"] = written
    entry["chunks_fill"] = fill
    return entry


def build_manifest(path) -> dict:
    """The manifest of the store ``path`` as it is on disk (groups, arrays, chunks)."""
    root = Path(path)
    groups, arrays = [], {}
    for name, meta in sorted(_nodes(root).items()):
        if meta.get("node_type") == "array":
            arrays[name] = _array_entry(root, name, meta)
        else:
            groups.append(name)
    return {"version": VERSION, "groups": groups, "arrays": arrays}


def write_manifest(path) -> Path:
    """Record the manifest of the finished store ``path`` (call before moving it into place)."""
    root = Path(path)
    target = root / MANIFEST
    part = root / (MANIFEST + ".part")
    with open(part, "w") as f:
        json.dump(build_manifest(root), f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, target)
    return target


def read_manifest(path) -> dict | None:
    """The manifest of the store ``path``, or None when it has none."""
    p = Path(path) / MANIFEST
    if not p.exists():
        return None
    return _read_json(p)


# --------------------------------------------------------------------------- checks
class _Findings:
    def __init__(self, store: str):
        self.store, self.items = store, []

    def add(self, kind, message, variable=None, chunk=None):
        self.items.append(Problem(self.store, variable, chunk, kind, f"{self.store}: {message}"))


_FIX = "rerun the step that wrote the store with --overwrite, or restore it from a backup"


def _check_array(root: Path, name: str, want: dict, meta: dict | None, found: _Findings, deep: bool) -> None:
    if meta is None:
        found.add("lost", f"variable {name!r} is missing (its zarr.json or directory was removed); {_FIX}", name)
        return
    for k in _ARRAY_KEYS:
        if meta.get(k) != want.get(k):
            found.add("altered", f"variable {name!r}: {k} is {meta.get(k)!r} in {name}/zarr.json but the store "
                                 f"was written with {want.get(k)!r}; {_FIX}", name)
            return
    crc = _uses_crc(meta)
    for key, digest in want.get("chunks_written", {}).items():
        p = root / name / key
        if not p.exists():
            found.add("lost", f"variable {name!r}, chunk {key!r} is missing (it was written; it would read as "
                              f"the fill value {want.get('fill_value')!r}); {_FIX}", name, key)
        elif deep and chunk_digest(p, crc) != digest:
            found.add("altered", f"variable {name!r}, chunk {key!r} differs from the chunk that was written "
                                 f"({chunk_digest(p, crc)} instead of {digest}); {_FIX}", name, key)
    for key in want.get("chunks_fill", []):
        if (root / name / key).exists():
            found.add("altered", f"variable {name!r}, chunk {key!r} exists but the store was written without it "
                                 f"(all fill value); {_FIX}", name, key)


def _check_consolidated(root: Path, nodes: dict, found: _Findings) -> None:
    consolidated = (nodes.get("", {}).get("consolidated_metadata") or {}).get("metadata")
    if consolidated is None:
        return
    named = {p.variable for p in found.items}
    for name, meta in consolidated.items():
        own = nodes.get(name)
        if own is None and name in named:
            continue  # reported as lost
        if own is None:
            found.add("inconsistent", f"the consolidated metadata (zarr.json) lists {name!r}, which is not in the "
                                      f"store; {_FIX}", name)
            continue
        a = {k: v for k, v in meta.items() if k != "consolidated_metadata"}
        b = {k: v for k, v in own.items() if k != "consolidated_metadata"}
        if a != b:
            key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            found.add("inconsistent", f"variable {name!r}: the consolidated metadata (zarr.json) has {key}="
                                      f"{a.get(key)!r} but {name}/zarr.json has {b.get(key)!r}; readers use the "
                                      f"consolidated copy; {_FIX}", name)
    for name in nodes:
        if name and name not in consolidated:
            found.add("inconsistent", f"{name!r} is missing from the consolidated metadata (zarr.json); {_FIX}", name)


def check_store(path, *, deep: bool = False) -> list[Problem]:
    """Compare the store ``path`` with its manifest and its consolidated metadata.

    Parameters
    ----------
    path : Path
        A Zarr store written by neuroxr.
    deep : bool
        Also compare every chunk's size and checksum with the manifest (reads 4 bytes of each
        chunk file); without it, chunks are only checked to exist.

    Returns
    -------
    list of Problem
        Errors ``lost`` (a variable or chunk the writer wrote is gone), ``altered`` (it differs
        from what was written), ``inconsistent`` (consolidated and per-node metadata disagree),
        ``metadata`` (unreadable metadata); the warning ``no-manifest`` for stores written
        without one.
    """
    root = Path(path)
    found = _Findings(str(root))
    try:
        nodes = _nodes(root)
        want = read_manifest(root)
    except (OSError, ValueError) as exc:
        found.add("metadata", f"cannot be read as a Zarr store: {exc}; check it with `neuroxr verify`, then {_FIX}")
        return found.items
    if want is None:
        _check_consolidated(root, nodes, found)
        found.add("no-manifest", f"no {MANIFEST}: written by another tool or an older neuroxr, so removed "
                                 f"variables or chunks cannot be detected; rewrite it to record one")
        return found.items
    for g in want.get("groups", []):
        if g not in nodes:
            found.add("lost", f"group {g!r} is missing (its zarr.json or directory was removed); {_FIX}", g)
    for name, entry in want.get("arrays", {}).items():
        _check_array(root, name, entry, nodes.get(name), found, deep)
    recorded = set(want.get("arrays", {})) | set(want.get("groups", []))
    for name in sorted(set(nodes) - recorded):
        found.add("altered", f"{name!r} is not in the store's manifest (added after it was written); {_FIX}", name)
    _check_consolidated(root, nodes, found)
    return found.items


def fill_chunks(path) -> dict[str, set]:
    """``{variable: chunk keys}`` the manifest of ``path`` records as left unwritten (all fill value)."""
    want = read_manifest(path) or {}
    return {k: set(v.get("chunks_fill", [])) for k, v in want.get("arrays", {}).items()}


__all__ = ["MANIFEST", "build_manifest", "write_manifest", "read_manifest", "check_store", "chunk_keys",
           "chunk_digest", "fill_chunks"]
