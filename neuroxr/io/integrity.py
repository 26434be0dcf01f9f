"""Integrity of study stores: checksummed chunks reported by name, verification, stale units.

Every array neuroxr writes ends its codec chain with zarr 3's ``crc32c`` codec (see
:func:`neuroxr.io.store.default_compressors`): the last four bytes of each stored chunk are
the CRC-32C of the (compressed) bytes before them.  Zarr itself checks it, but its error
(``ValueError: Stored and computed checksum do not match``) does not say which store,
variable or chunk is broken.  Here:

- :class:`ChecksumStore` wraps a zarr store and checks each chunk as it is read, raising
  :class:`ChunkCorruptError` naming the store, the variable and the chunk key.
  :func:`neuroxr.io.store.open_dataset` opens every store through it, so ordinary lazy
  reads (``study.scores.ridge_r.values``, scoring, ranking) fail by name too, on a
  LocalCluster or a remote one alike.
- :func:`verify_store` / :func:`verify_study` read every chunk of every array and list each
  problem (``neuroxr verify STUDY``): corrupt or undecodable chunks, unreadable metadata,
  arrays written without a checksum, absent chunks (which zarr reads as the fill value) and
  temporary stores and unfinished transaction journals left behind by a killed run.
"""
from __future__ import annotations

import fnmatch
import json
import os
import warnings
from pathlib import Path

import google_crc32c  # zarr's own crc32c implementation
import numpy as np
import xarray as xr
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore, WrapperStore

from .. import schema as S
from ..errors import NeuroxrError
from . import journal, manifest
from .paths import owner_alive, resolve_path
from .problems import ERROR_KINDS, Problem

class ChunkCorruptError(NeuroxrError):
    """A stored chunk fails its checksum or cannot be decoded; the message names it.

    Attributes ``store``, ``variable`` and ``chunk`` (the key inside the variable, e.g.
    ``c/0/3``) say where; they survive pickling so a remote worker's error keeps them.
    """

    def __init__(self, message, store=None, variable=None, chunk=None):
        super().__init__(message)
        self.store, self.variable, self.chunk = store, variable, chunk

    def __reduce__(self):
        return (type(self), (self.args[0], self.store, self.variable, self.chunk))


def _crc32c(data) -> int:
    return int(google_crc32c.value(bytes(data)))


def check_chunk_bytes(raw, *, store=None, variable=None, chunk=None) -> None:
    """Raise :class:`ChunkCorruptError` unless ``raw`` ends with the CRC-32C of the bytes before it."""
    raw = memoryview(bytes(raw))
    where = f"{store}: variable {variable!r}, chunk {chunk!r}"
    if len(raw) < 4:
        raise ChunkCorruptError(
            f"{where} is truncated ({len(raw)} bytes, shorter than its 4-byte checksum); "
            f"rewrite the store (rerun the step that wrote it with --overwrite) or restore it",
            store, variable, chunk)
    stored = int(np.frombuffer(raw[-4:], dtype="<u4")[0])
    computed = _crc32c(raw[:-4])
    if stored != computed:
        raise ChunkCorruptError(
            f"{where} is corrupted (crc32c checksum mismatch: stored {stored:#010x}, computed "
            f"{computed:#010x}); rewrite the store (rerun the step that wrote it with --overwrite) "
            f"or restore it from a backup",
            store, variable, chunk)


def split_chunk_key(key: str):
    """``'ridge_r/c/0/3'`` -> ``('ridge_r', 'c/0/3')``; ``None`` for metadata and other keys."""
    parts = key.split("/")
    if "c" not in parts or parts[-1] == "zarr.json":
        return None
    i = len(parts) - 1 - parts[::-1].index("c")
    if i == 0:
        return None
    return "/".join(parts[:i]), "/".join(parts[i:])


def _has_trailing_crc(meta: dict) -> bool:
    codecs = meta.get("codecs") or []
    return bool(codecs) and isinstance(codecs[-1], dict) and codecs[-1].get("name") == "crc32c"


class ChecksumStore(WrapperStore):
    """A zarr store wrapper that checks every chunk's crc32c as it is read.

    Chunks of arrays whose codec chain ends with ``crc32c`` are checked on ``get``; a
    mismatch raises :class:`ChunkCorruptError` naming ``label`` (the store's path), the
    variable and the chunk key.  Everything else is passed through unchanged.
    """

    def __init__(self, store, label=None):
        super().__init__(store)
        self._label = str(label if label is not None else store)
        self._crc = {}  # array path -> bool (codec chain ends with crc32c)

    def _with_store(self, store):
        return type(self)(store, self._label)

    def __getstate__(self):
        return {"_store": self._store, "_label": self._label, "_crc": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __str__(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"ChecksumStore({self._label!r})"

    async def _uses_crc(self, array: str) -> bool:
        if array not in self._crc:
            buf = await self._store.get(f"{array}/zarr.json", default_buffer_prototype())
            try:
                self._crc[array] = buf is not None and _has_trailing_crc(json.loads(buf.to_bytes()))
            except ValueError:
                self._crc[array] = False
        return self._crc[array]

    async def _check(self, key, buf, byte_range):
        if buf is None or byte_range is not None:
            return buf
        parsed = split_chunk_key(key)
        if parsed is not None and await self._uses_crc(parsed[0]):
            check_chunk_bytes(buf.to_bytes(), store=self._label, variable=parsed[0], chunk=parsed[1])
        return buf

    async def get(self, key, prototype, byte_range=None):
        buf = await self._store.get(key, prototype, byte_range)
        return await self._check(key, buf, byte_range)

    async def _get_many(self, requests):
        requests = list(requests)
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)


def open_checked_store(path, *, read_only: bool = True, check: bool = True):
    """A :class:`ChecksumStore` over the local Zarr store ``path`` (read-only by default).

    With ``check`` (the default), the store is first compared with its manifest and its
    consolidated metadata (:func:`neuroxr.io.manifest.check_store`): a removed variable or
    chunk, or edited metadata, raises :class:`ChunkCorruptError` naming it, before anything is read.
    """
    path = resolve_path(path)
    if check and path.exists():
        raise_for_problems(manifest.check_store(path))
    return ChecksumStore(LocalStore(str(path), read_only=read_only), label=str(path))


# --------------------------------------------------------------------------- verification
def _chunk_key(arr, idx) -> str:
    key = arr.metadata.encode_chunk_key(tuple(int(i) for i in idx))
    return key


def _walk_arrays(group, prefix=""):
    for name, member in sorted(group.members(), key=lambda kv: kv[0]):
        path = f"{prefix}{name}"
        if hasattr(member, "members"):
            yield from _walk_arrays(member, prefix=f"{path}/")
        else:
            yield path, member


def verify_store(path) -> list[Problem]:
    """Check the Zarr store ``path`` against its manifest and read every chunk; list what is wrong.

    Parameters
    ----------
    path : path-like or ``file://`` URL
        A store of a study (``responses.zarr``, ``features/resnet18.zarr``, ...).

    Returns
    -------
    list of Problem
        Empty when the store holds what its manifest records and every chunk passes its checksum
        and decodes.  Errors (``lost``, ``altered``, ``inconsistent``, ``corrupt``, ``unreadable``,
        ``metadata``) name the variable and chunk key.  Warnings, for stores written without a
        manifest only: ``no-manifest``, ``missing`` (an absent chunk, read as the fill value) and
        ``no-checksum``.
    """
    path = resolve_path(path)
    label = str(path)
    if not (path / "zarr.json").exists() and not (path / ".zgroup").exists():
        return [Problem(label, None, None, "metadata", f"{label}: not a Zarr store (no zarr.json)")]
    problems = manifest.check_store(path, deep=True)
    if any(p.kind == "metadata" for p in problems):
        return problems
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(open_checked_store(path, check=False), mode="r", use_consolidated=False)
            arrays = list(_walk_arrays(group))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return problems + [Problem(label, None, None, "metadata", f"{label}: metadata unreadable: {exc}")]
    recorded = manifest.read_manifest(path)
    for var, arr in arrays:
        problems.extend(_verify_array(path, var, arr, recorded))
    return problems


def _verify_array(path: Path, var: str, arr, recorded: dict | None) -> list[Problem]:
    """Every chunk of one array read and checked; absent chunks judged by the manifest when there is one."""
    label, out = str(path), []
    try:
        meta = json.loads((path / var / "zarr.json").read_text())
    except (OSError, ValueError) as exc:
        return [Problem(label, var, None, "metadata", f"{label}: {var}/zarr.json unreadable: {exc}")]
    if arr.size and not _has_trailing_crc(meta):
        out.append(Problem(label, var, None, "no-checksum",
                           f"{label}: variable {var!r} was written without a crc32c checksum"))
    if arr.size == 0:
        return out
    grid = tuple(int(-(-s // c)) for s, c in zip(arr.shape, arr.chunks)) if arr.ndim else ()
    for idx in np.ndindex(*grid):
        key = _chunk_key(arr, idx)
        if not (path / var / key).exists():
            if recorded is None:
                out.append(Problem(label, var, key, "missing",
                                   f"{label}: variable {var!r}, chunk {key!r} is absent and reads as "
                                   f"the fill value {arr.fill_value!r}"))
            continue  # with a manifest: recorded as fill value, or reported as lost by check_store
        try:
            if arr.ndim:
                arr.get_block_selection(idx)
            else:
                arr[()]
        except ChunkCorruptError as exc:
            out.append(Problem(label, var, key, "corrupt", str(exc)))
        except Exception as exc:  # noqa: BLE001 - decoding failed: reported by name
            out.append(Problem(label, var, key, "unreadable",
                               f"{label}: variable {var!r}, chunk {key!r} cannot be decoded: "
                               f"{type(exc).__name__}: {exc}"))
    return out


def find_stores(study) -> list[Path]:
    """Every Zarr store under the study directory (not descending into stores), sorted."""
    root = resolve_path(getattr(study, "path", study))
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        keep = []
        for d in sorted(dirnames):
            full = Path(dirpath) / d
            if d.endswith(".zarr") and not d.startswith("."):
                found.append(full)
            elif not d.startswith(".") and not d.endswith(".zarr"):
                keep.append(d)
        dirnames[:] = keep
    return sorted(found)


def find_stale(study) -> list[Path]:
    """Temporary stores (``.NAME.tmp-*``, ``.NAME.old-*``) and unfinished transaction journals
    left by killed runs, anywhere in the study."""
    root = resolve_path(getattr(study, "path", study))
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out.extend(Path(dirpath) / f for f in filenames if fnmatch.fnmatch(f, journal.JOURNAL_GLOB))
        for d in list(dirnames):
            if d.startswith(".") and (".tmp-" in d or ".old-" in d):
                out.append(Path(dirpath) / d)
                dirnames.remove(d)
            elif d.endswith(".zarr"):
                dirnames.remove(d)
    return sorted(out)


def _journal_problem(p: Path) -> Problem:
    if journal.in_progress(p):
        return Problem(str(p), None, None, "in-progress", f"{p}: a change of several stores is being committed")
    return Problem(str(p), None, None, "stale",
                   f"{p}: a change of several stores was interrupted; `neuroxr verify --clean`, or the next "
                   f"step that opens the study, finishes it (every new store is complete)")


def verify_study(study, *, progress=None) -> list[Problem]:
    """:func:`verify_store` on every store of the study, plus ``stale`` temporary stores.

    Parameters
    ----------
    study : Study or path-like
    progress : callable, optional
        Called with each store's path before it is read.
    """
    problems = []
    for p in find_stale(study):
        if p.is_file():
            problems.append(_journal_problem(p))
            continue
        if p in journal.journalled_paths(p.parent):
            problems.append(Problem(str(p), None, None, "in-progress",
                                    f"{p}: part of a transaction named by a journal in {p.parent} (kept)"))
            continue
        if owner_alive(p, 6 * 3600):
            problems.append(Problem(str(p), None, None, "in-progress",
                                    f"{p}: being written by a running neuroxr process (left alone)"))
            continue
        problems.append(Problem(str(p), None, None, "stale",
                                f"{p}: temporary store left by an interrupted run (never read); "
                                f"remove it with `neuroxr verify --clean` or rerun the step"))
    for p in find_stores(study):
        if progress is not None:
            progress(p)
        found = verify_store(p)
        problems.extend(found)
        if not any(f.is_error for f in found):
            problems.extend(schema_problems(p))
    return problems


#: the contract check of each store a study holds by name (:mod:`neuroxr.schema`)
_VALIDATORS = {S.STIMULI_STORE: S.validate_stimuli, S.RESPONSES_STORE: S.validate_responses,
               S.SCORES_STORE: S.validate_scores}


def schema_problems(path) -> list[Problem]:
    """The contract (:mod:`neuroxr.schema`) checked on a study store: ``schema`` errors naming it."""
    path = resolve_path(path)
    check = _VALIDATORS.get(path.name)
    if check is None:
        return []
    groups = [None] + ([S.AREAS_GROUP] if path.name == S.SCORES_STORE and (path / S.AREAS_GROUP).exists() else [])
    out = []
    for group in groups:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = xr.open_zarr(open_checked_store(path, check=False), group=group, consolidated=False)
                check(ds, source=f"{path}" + (f" (group {group})" if group else ""))
        except (S.SchemaError, ValueError, KeyError) as exc:
            out.append(Problem(str(path), None, None, "schema",
                               f"{exc}; rewrite the store with the step that writes it (--overwrite)"))
    return out


def raise_for_problems(problems, *, what="store") -> None:
    """Raise :class:`ChunkCorruptError` for the first error in ``problems`` (warnings pass)."""
    errors = [p for p in problems if p.is_error]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; run `neuroxr verify`)" if len(errors) > 1 else ""
        raise ChunkCorruptError(first.message + more, first.store, first.variable, first.chunk)


__all__ = [
    "ChunkCorruptError", "ChecksumStore", "Problem", "check_chunk_bytes", "open_checked_store",
    "verify_store", "verify_study", "find_stores", "find_stale", "raise_for_problems",
]
