"""Atomic Zarr writes, provenance attributes and lazy opening of study stores.

Every store is written to a temporary sibling directory and moved into place
with one ``os.replace``, so a reader never sees a half-written store and an
existing store is never lost: with ``overwrite=True`` the old store is moved
aside first and only deleted once the new one is in place.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import MissingDataError, NeuroxrError, SettingsMismatchError, StoreExistsError
from ..runtime import WARNINGS_LOCK


#: Zarr 3 codecs used for every array: zstd compression and a crc32c checksum per chunk,
#: so a corrupted chunk fails loudly instead of being read.
def default_compressors():
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=3), Crc32cCodec())


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("neuroxr")
    except Exception:  # pragma: no cover - not installed
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
    try:
        import dask.array as da

        if isinstance(data, da.Array):
            for block in data.rechunk({0: max(1, chunk_bytes // max(1, data[0:1].nbytes))}).blocks:
                # synchronous: inside a Dask worker task, compute() would wait on the cluster for
                # a free thread (deadlock when every worker thread is hashing)
                h.update(np.ascontiguousarray(block.compute(scheduler="synchronous")).tobytes())
            return h.hexdigest()[:16]
    except ImportError:  # pragma: no cover
        pass
    h.update(np.ascontiguousarray(np.asarray(data)).tobytes())
    return h.hexdigest()[:16]


def hash_file(path, chunk: int = 1 << 20) -> str:
    """Full sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _encoding(ds: xr.Dataset, chunks: dict | None) -> dict:
    enc = {}
    comp = default_compressors()
    for name, var in ds.variables.items():
        e = {"compressors": comp}
        # strings (coords such as area, model, layer_name) carry the checksum too (zarr >= 3.1)
        if chunks and var.ndim and name in ds.data_vars and var.dtype.kind not in "OUS":
            e["chunks"] = tuple(min(chunks.get(d, s), s) or 1 for d, s in zip(var.dims, var.shape))
        enc[name] = e
    return enc


def tmp_sibling(path) -> Path:
    """A hidden sibling ``.NAME.tmp-<id>-p<pid>@<host>`` to write into before the atomic move.

    The owner's pid and host in the name let :func:`clean_stale` leave the temporaries of
    running writers alone (another Dask worker extracting another model into the same directory).
    """
    path = resolve_path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{_owner_tag()}")


def _owner_tag() -> str:
    import socket

    host = socket.gethostname().replace("/", "_") or "localhost"
    return f"-p{os.getpid()}@{host}"


_OWNER = re.compile(r"\.(?:tmp|old)-[0-9a-f]{8}-p(\d+)@(.+)$")


def _owner_alive(p: Path, max_foreign_age: float) -> bool:
    """True if the temporary ``p`` may belong to a running writer (so it must not be removed)."""
    import socket
    import time

    m = _OWNER.search(p.name)
    if m is None:  # no owner recorded (older neuroxr): a leftover
        return False
    pid, host = int(m.group(1)), m.group(2)
    if host != (socket.gethostname().replace("/", "_") or "localhost"):
        try:  # another machine's writer: cannot ask it; assume alive unless old
            return time.time() - p.stat().st_mtime < max_foreign_age
        except OSError:
            return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    """
    path = resolve_path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        ds = _strip_encoding(ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr 3: string dtypes and consolidated metadata are not in the spec yet
            ds.to_zarr(tmp, mode="w", encoding=_encoding(ds, chunks), consolidated=True, zarr_format=3,
                       compute=compute)
        replace_store(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def replace_store(tmp, path) -> None:
    """Move the finished store ``tmp`` to ``path``; an old ``path`` is removed only afterwards."""
    tmp, path = resolve_path(tmp), resolve_path(path)
    old = None
    if path.exists():
        if _exchange(tmp, path):  # Linux: one atomic swap, ``path`` never missing
            shutil.rmtree(tmp, ignore_errors=True)  # now holds the old store
            return
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}{_owner_tag()}")
        os.replace(path, old)  # a crash right here is repaired by clean_stale (old moved back)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a, b) -> bool:
    """Atomically swap two directories with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def _strip_encoding(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def open_dataset(path, *, chunks="auto", name: str | None = None) -> xr.Dataset:
    """Open a Zarr store lazily (dask-backed).  Missing store: :class:`MissingDataError` naming it."""
    path = resolve_path(path)
    if not path.exists():
        raise MissingDataError(
            f"{path} does not exist{' (' + name + ')' if name else ''}; run the step that writes it first"
        )
    from .integrity import open_checked_store  # chunks are checked as read: errors name the chunk

    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = xr.open_zarr(open_checked_store(path), chunks=chunks, consolidated=True)
        except Exception:
            ds = xr.open_zarr(open_checked_store(path), chunks=chunks, consolidated=False)
    # coordinates are small: load them so labelled queries (groupby("area")) work at once;
    # all in one synchronous pass here (a scheduler run per coordinate cost ~5 ms each)
    names = [k for k in ds.coords if ds[k].chunks is not None]
    if not names:
        return ds
    import dask

    loaded = dask.compute(*[ds[k].variable for k in names], scheduler="synchronous")
    return ds.assign_coords(dict(zip(names, loaded)))


def clean_stale(directory, *, max_foreign_age: float = 6 * 3600) -> list[Path]:
    """Remove temporary stores left by a killed run (``.*.tmp-*`` and ``.*.old-*``).

    Temporaries of writers that are still running are left alone: same host, live pid; another
    host's only once older than ``max_foreign_age`` seconds.
    """
    removed = []
    directory = resolve_path(directory)
    if not directory.exists():
        return removed
    for p in list(directory.glob(".*.tmp-*")) + list(directory.glob(".*.old-*")):
        if _owner_alive(p, max_foreign_age):
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


def resolve_path(path) -> Path:
    """The local path of a study or store given as a path or an fsspec URL.

    Local paths and ``file://`` URLs (``file:///scratch/study``, ``local://...``) work
    everywhere; this is the one place they are normalised.  Other protocols (``s3://``,
    ``gs://``, ``az://``...) raise :class:`NeuroxrError`: object storage has no atomic rename,
    so the all-or-nothing writes of a study cannot be guaranteed there; mount the bucket
    as a POSIX filesystem on every worker (s3fs-fuse, gcsfuse, blobfuse) or use a shared
    filesystem (NFS, Lustre, GPFS), and pass its path.  The result is absolute.
    """
    s = os.fspath(path)
    m = re.match(r"^(file|local):/+", s)  # also Path("file:///x") == "file:/x"
    if m:
        from urllib.parse import unquote

        rest = s[m.end():]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost/"):]
        return Path("/" + unquote(rest))
    if "://" in s:
        protocol = s.split("://", 1)[0]
        raise NeuroxrError(
            f"{s}: {protocol}:// URLs are not supported: object storage has no atomic rename, so "
            f"neuroxr cannot write its stores all-or-nothing there. Mount the bucket as a filesystem "
            f"on every machine (s3fs-fuse, gcsfuse, blobfuse2) or use a shared filesystem, and pass the path"
        )
    return Path(s).absolute()  # absolute: Dask workers may run in another directory
