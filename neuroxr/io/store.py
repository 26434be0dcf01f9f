"""The one atomic writer of study stores, provenance attributes and lazy opening.

Every store is written to a temporary sibling directory (:func:`start_write`) and moved into
place with one atomic rename (:func:`replace_store`), so a reader never sees a half-written
store and an existing store is never lost: with ``overwrite=True`` the old store is removed only
once the new one is in place.  Changes to several stores (an ingest writes ``responses.zarr``
and ``stimuli.zarr``) go through :func:`transaction` / :func:`replace_stores`, journalled so
that a study is entirely old or entirely new after a kill at any point.

- :func:`write_dataset`: one store, atomically; :func:`append_variables`: add variables to one.
- :func:`transaction`: several stores as one unit.
- :func:`check_writable`: the "store already exists" check of every writer.
- :func:`open_dataset`: lazy, checksummed reads; finishes interrupted transactions first.
- :func:`clean_stale`: removes temporaries of killed runs (never those a journal names).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dask
import dask.array as da
import dask.threaded
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync as zarr_sync

from ..errors import MissingDataError, NeuroxrError, SettingsMismatchError, StoreExistsError, StoreWriteError
from ..runtime import WARNINGS_LOCK, available_cores
from . import journal, manifest
from .integrity import ChunkCorruptError, open_checked_store, raise_for_problems
from .lock import StoreLockedError, study_lock
from .paths import exchange_dirs, make_parent, old_sibling, owner_alive, resolve_path, tmp_sibling


def limit_codec_threads(n: int | None = None) -> int:
    """Zarr 3 runs its codecs (zstd, crc32c) in a thread pool of its own, by default of ``cpus + 4``
    threads: hold it to the CPUs this process may use (:func:`~neuroxr.runtime.available_cores`),
    so reading and writing stores stays inside the thread budget.  A value the user set in Zarr's
    configuration (``threading.max_workers``) is kept.  Returns the limit in force."""
    current = zarr.config.get("threading.max_workers")
    if current is None:
        current = max(1, int(n or available_cores()))
        zarr.config.set({"threading.max_workers": current})
    return int(current)


limit_codec_threads()

#: Zarr 3 codecs used for every array: zstd compression and a crc32c checksum per chunk,
#: so a corrupted chunk fails loudly instead of being read.
def default_compressors():
    return (ZstdCodec(level=3), Crc32cCodec())


def _version() -> str:
    try:
        return version("neuroxr")
    except PackageNotFoundError:  # pragma: no cover - not installed
        return "0+unknown"


def provenance(settings: dict | None = None, inputs: dict | None = None) -> dict:
    """Attributes recorded on every store: version, time, settings and input hashes (JSON strings)."""
    return {
        "neuroxr_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": json.dumps(settings or {}, sort_keys=True, default=str),
        "inputs": json.dumps(inputs or {}, sort_keys=True, default=str),
    }


def read_settings(ds_or_attrs) -> dict:
    attrs = getattr(ds_or_attrs, "attrs", ds_or_attrs)
    raw = attrs.get("settings", "{}")
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def check_settings(existing: dict, new: dict, store) -> None:
    """Refuse to mix results: raise naming the first setting that differs."""
    keys = sorted(set(existing) | set(new))
    for k in keys:
        if existing.get(k) != new.get(k):
            raise SettingsMismatchError(
                f"{store}: was written with {k}={existing.get(k)!r}, this run asks for "
                f"{k}={new.get(k)!r}; use another study directory or pass --overwrite"
            )


def hash_array(values, chunk_bytes: int = 64 << 20) -> str:
    """sha256 of an array's bytes (C order), streamed for dask arrays. Short (16 hex) form."""
    h = hashlib.sha256()
    data = getattr(values, "data", values)
    if isinstance(data, da.Array):
        for block in data.rechunk({0: max(1, chunk_bytes // max(1, data[0:1].nbytes))}).blocks:
            # synchronous: inside a Dask worker task, compute() would wait on the cluster for
            # a free thread (deadlock when every worker thread is hashing)
            h.update(np.ascontiguousarray(block.compute(scheduler="synchronous")).tobytes())
        return h.hexdigest()[:16]
    h.update(np.ascontiguousarray(np.asarray(data)).tobytes())
    return h.hexdigest()[:16]


def hash_file(path, chunk: int = 1 << 20, algorithm: str = "sha256") -> str:
    """Full hex digest of a file (``algorithm``: a :func:`hashlib.new` name, sha256 by default)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def store_encoding(ds: xr.Dataset, chunks: dict | None) -> dict:
    """The Zarr encoding of every variable: the checksummed codecs and, for data, ``chunks``."""
    enc = {}
    comp = default_compressors()
    for name, var in ds.variables.items():
        e = {"compressors": comp}
        # strings (coords such as area, model, layer_name) carry the checksum too (zarr >= 3.1)
        if chunks and var.ndim and name in ds.data_vars and var.dtype.kind not in "OUS":
            e["chunks"] = tuple(min(chunks.get(d, s), s) or 1 for d, s in zip(var.dims, var.shape))
        enc[name] = e
    return enc


def check_writable(paths, overwrite: bool) -> None:
    """Raise :class:`StoreExistsError` naming the first of ``paths`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    for p in paths:
        p = resolve_path(p)
        if p.exists():
            raise StoreExistsError(f"{p} already exists; pass --overwrite (overwrite=True) to replace it")


def disk_full(path: Path, nbytes: int) -> StoreWriteError:
    """The error of a write that ran out of space: the store, about how much it needs, what is free."""
    free = shutil.disk_usage(path.parent).free
    return StoreWriteError(
        f"{path}: no space left on the device while writing it (it needs up to {nbytes / 2**30:.3g} GiB "
        f"uncompressed, {free / 2**30:.3g} GiB are free); free space or use another study directory. "
        f"Nothing was replaced"
    )


@dataclass
class PendingWrite:
    """A store being written into the temporary sibling ``tmp`` of ``path``.

    ``delayed`` is the Dask computation still to run (None once written); :meth:`commit` moves
    the finished store into place, :meth:`discard` removes the temporary.
    """

    path: Path
    tmp: Path
    delayed: object = None

    def commit(self) -> Path:
        replace_store(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self.tmp.exists():
            wait_for_zarr_writes()
            shutil.rmtree(self.tmp, ignore_errors=True)


async def _others_done(timeout: float) -> None:
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    if others:
        await asyncio.wait(others, timeout=timeout)


def wait_for_zarr_writes(timeout: float = 30.0) -> None:
    """Wait until the chunk writes still running on zarr's I/O loop are done.

    When one chunk write fails (disk full), zarr raises at once while the others go on in the
    background; a temporary removed before they end would be recreated by them.
    """
    with contextlib.suppress(Exception):
        zarr_sync(_others_done(timeout))


def start_write(ds: xr.Dataset, path, *, chunks: dict | None = None, compute: bool = True) -> PendingWrite:
    """Write ``ds`` into a temporary sibling of ``path`` (the first half of every atomic write).

    With ``compute=False`` the Dask part of the write is left in ``PendingWrite.delayed`` for the
    caller to compute (scoring runs many of them on one cluster).  On failure the temporary is removed.
    """
    path = resolve_path(path)
    make_parent(path)
    pending = PendingWrite(path, tmp_sibling(path))
    try:
        ds = strip_encoding(ds)
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr 3: string dtypes and consolidated metadata are not in the spec yet
            pending.delayed = ds.to_zarr(pending.tmp, mode="w", encoding=store_encoding(ds, chunks),
                                         consolidated=True, zarr_format=3, compute=False)
        if compute:
            compute_write(pending.delayed)
    except OSError as exc:
        pending.discard()
        if exc.errno == errno.ENOSPC:
            raise disk_full(path, int(ds.nbytes)) from None
        raise
    except BaseException:
        pending.discard()
        raise
    if compute:
        pending.delayed = None
    return pending


def compute_write(delayed) -> None:
    """Compute a store write; on the local threaded scheduler, return only once every task is done.

    Dask's threaded scheduler raises the first failing task's error while other tasks still run;
    here they run in a pool of their own that is shut down (queued tasks cancelled, running ones
    awaited) before the error propagates, so no chunk is written into a temporary after its removal.
    """
    scheduler = dask.base.get_scheduler()
    if scheduler is not None and scheduler is not dask.threaded.get:  # a cluster or another scheduler
        dask.compute(delayed)
        return
    pool = ThreadPoolExecutor(max_workers=available_cores(), thread_name_prefix="nxr-write")
    try:
        dask.compute(delayed, scheduler="threads", pool=pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_dataset(
    ds: xr.Dataset,
    path,
    *,
    overwrite: bool = False,
    chunks: dict | None = None,
    compute: bool = True,
) -> Path:
    """Write ``ds`` to the Zarr store ``path`` atomically.

    Parameters
    ----------
    ds : Dataset
        What to write; dask-backed variables are computed chunk by chunk.
    path : path-like
        Target store.  If it exists, :class:`StoreExistsError` unless ``overwrite``.
    chunks : dict, optional
        Chunk size per dim for the stored arrays (e.g. ``{"neuron": 4096}``).
    compute : bool
        Must be True: a deferred write is :func:`start_write` with ``compute=False``.
    """
    if not compute:
        raise NeuroxrError("write_dataset(compute=False): use start_write(..., compute=False) and commit() it")
    path = resolve_path(path)
    check_writable([path], overwrite)
    pending = start_write(ds, path, chunks=chunks)
    try:
        return pending.commit()
    finally:
        pending.discard()


def replace_store(tmp, path) -> None:
    """Move the finished store ``tmp`` to ``path``; an old ``path`` is removed only afterwards.

    The manifest of ``tmp`` (:func:`neuroxr.io.manifest.write_manifest`) is recorded first.
    """
    tmp, path = resolve_path(tmp), resolve_path(path)
    record_manifest(tmp, path)
    old = None
    if path.exists():
        if exchange_dirs(tmp, path):  # Linux: one atomic swap, ``path`` never missing
            shutil.rmtree(tmp, ignore_errors=True)  # now holds the old store
            return
        old = old_sibling(path)
        os.replace(path, old)  # a crash right here is repaired by clean_stale (old moved back)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def record_manifest(tmp: Path, path: Path) -> None:
    """Write the manifest of the finished temporary ``tmp`` of ``path``; disk full names ``path``."""
    try:
        manifest.write_manifest(tmp)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(path, 1 << 20) from None
        raise


def replace_stores(staged: dict, *, record: bool = True) -> list[Path]:
    """Move several finished stores ``{path: tmp}`` into place as one unit.

    The moves are journalled (see :mod:`neuroxr.io.journal`): killed at any point, the stores are
    afterwards all old or, once the journal is written, all new (rolled forward by the next
    :func:`open_dataset` or :func:`clean_stale` of their directory).
    """
    staged = {resolve_path(p): resolve_path(t) for p, t in staged.items()}
    for path, tmp in staged.items() if record else ():
        record_manifest(tmp, path)
    if len(staged) == 1:
        (path, tmp), = staged.items()
        replace_store(tmp, path)
        return [path]
    root = journal.common_directory(staged)
    entries = [{"path": os.path.relpath(p, root), "tmp": os.path.relpath(t, root),
                "old": os.path.relpath(old_sibling(p), root), "ino": os.stat(t).st_ino}
               for p, t in staged.items()]
    return journal.commit(root, entries)


class StoreTransaction:
    """Stores written one by one and put in place together (:func:`replace_stores`).

    Use through :func:`transaction`::

        with transaction(overwrite=True) as tx:
            tx.write(responses, study / "responses.zarr", chunks=...)
            tx.write(stimuli, study / "stimuli.zarr")
        # both replaced here, as one unit; on an error neither is
    """

    def __init__(self, *, overwrite: bool = False):
        self.overwrite = overwrite
        self.staged: dict[Path, PendingWrite] = {}

    def write(self, ds: xr.Dataset, path, *, chunks: dict | None = None) -> Path:
        path = resolve_path(path)
        check_writable([path], self.overwrite)
        if path in self.staged:
            raise NeuroxrError(f"{path} is written twice in one transaction")
        self.staged[path] = start_write(ds, path, chunks=chunks)
        return path

    def commit(self) -> list[Path]:
        check_writable(self.staged, self.overwrite)
        for path, pending in self.staged.items():
            record_manifest(pending.tmp, path)  # before the hand-over: a failure here discards them
        # from here the temporaries belong to the journal: an interrupted commit is finished by
        # the next open, so they must survive any clean-up of this transaction
        staged, self.staged = self.staged, {}
        return replace_stores({p: w.tmp for p, w in staged.items()}, record=False)

    def discard(self) -> None:
        for pending in self.staged.values():
            pending.discard()
        self.staged = {}


@contextlib.contextmanager
def transaction(*, overwrite: bool = False):
    """A :class:`StoreTransaction` committed when the block ends without an error."""
    tx = StoreTransaction(overwrite=overwrite)
    try:
        yield tx
        tx.commit()
    finally:
        tx.discard()


def append_variables(path, new: xr.Dataset) -> None:
    """Add or replace the variables of ``new`` in the Zarr store ``path``, atomically.

    The store is copied to a temporary sibling (compressed chunks, no re-encoding), the
    variables are written into the copy and the copy replaces the store.  The store's attributes
    (provenance, ...) are kept; those of ``new`` are added.
    """
    path = resolve_path(path)
    tmp = tmp_sibling(path)
    try:
        shutil.copytree(path, tmp)
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept = dict(zarr.open_group(str(tmp), mode="r").attrs)
        new = new.assign_attrs({**kept, **new.attrs})
        enc = {k: {"compressors": default_compressors()} for k in new.variables
               if new[k].dtype.kind not in "OUS" and k not in new.dims and not (tmp / k).exists()}
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new.to_zarr(tmp, mode="a", consolidated=True, zarr_format=3, encoding=enc)
        replace_store(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def strip_encoding(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of ``ds`` without the encodings a store it was read from left on it."""
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def open_dataset(path, *, chunks="auto", name: str | None = None) -> xr.Dataset:
    """Open a Zarr store lazily (dask-backed).  Missing store: :class:`MissingDataError` naming it."""
    path = resolve_path(path)
    for directory in {path.parent, path.parent.parent}:
        journal.recover(directory)  # an interrupted transaction: finish it before reading
    if not path.exists():
        raise MissingDataError(
            f"{path} does not exist{' (' + name + ')' if name else ''}; run the step that writes it first"
        )
    raise_for_problems(manifest.check_store(path))  # removed variables or chunks, edited metadata
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = xr.open_zarr(open_checked_store(path, check=False), chunks=chunks, consolidated=True)
        except Exception:  # noqa: BLE001 - no or damaged consolidated metadata: read the arrays' own
            ds = _open_unconsolidated(path, chunks)
    # coordinates are small: load them so labelled queries (groupby("area")) work at once;
    # all in one synchronous pass here (a scheduler run per coordinate cost ~5 ms each)
    names = [k for k in ds.coords if ds[k].chunks is not None]
    if not names:
        return ds
    loaded = dask.compute(*[ds[k].variable for k in names], scheduler="synchronous")
    return ds.assign_coords(dict(zip(names, loaded)))


def _open_unconsolidated(path: Path, chunks) -> xr.Dataset:
    try:
        return xr.open_zarr(open_checked_store(path, check=False), chunks=chunks, consolidated=False)
    except NeuroxrError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated zarr.json, not a store, ...: named, not a traceback
        raise ChunkCorruptError(
            f"{path}: cannot be read as a Zarr store ({type(exc).__name__}: {exc}); check it with "
            f"`neuroxr verify`, then rerun the step that wrote it with --overwrite", str(path)) from None


def clean_stale(directory, *, max_foreign_age: float = 6 * 3600) -> list[Path]:
    """Remove temporary stores left by a killed run (``.*.tmp-*`` and ``.*.old-*``); returns what went.

    Interrupted transactions in ``directory`` are finished first (:func:`neuroxr.io.journal.recover`),
    and nothing a journal still names is removed.  Temporaries of writers that are still running
    are left alone: same host, live pid; another host's only once older than ``max_foreign_age``
    seconds.
    """
    removed = []
    directory = resolve_path(directory)
    if not directory.exists():
        return removed
    removed.extend(journal.recover(directory, max_foreign_age=max_foreign_age))
    keep = journal.journalled_paths(directory)
    for p in list(directory.glob(".*.tmp-*")) + list(directory.glob(".*.old-*")):
        if p in keep or owner_alive(p, max_foreign_age):
            continue
        if ".old-" in p.name:
            # killed between moving the old store aside and the new one in: put the old one back
            target = p.with_name(p.name[1:].rsplit(".old-", 1)[0])
            if not target.exists():
                os.replace(p, target)
                continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


#: the names mapping/score.py reads until it calls store_encoding / strip_encoding / start_write
_encoding = store_encoding
_strip_encoding = strip_encoding

__all__ = [
    "default_compressors", "limit_codec_threads", "provenance", "read_settings", "check_settings", "hash_array", "hash_file",
    "store_encoding", "strip_encoding", "check_writable", "PendingWrite", "start_write", "write_dataset",
    "replace_store", "replace_stores", "StoreTransaction", "transaction", "append_variables", "open_dataset",
    "clean_stale", "resolve_path", "tmp_sibling", "study_lock", "StoreLockedError",
]
