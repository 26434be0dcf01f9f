"""Numpy files: ``.npy`` (memory-mapped) and ``.npz`` members, read through the hardened reader.

The header is checked against the bytes actually present and against the memory this process may
use before anything is read, allocated or hashed (:func:`inspect_numpy_file`): a truncated or
corrupt file, an object (pickled) array or an absurd shape raises a
:class:`~neuroxr.schema.SchemaError` / :class:`~neuroxr.io.reader.InputTooLargeError` naming the
file, instead of ``EOFError``, a ``MemoryError`` or hours spent hashing a sparse file.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import NeuroxrError
from ..schema import SchemaError
from .reader import NpyHeader, check_allocation, read_npy_header

SUFFIXES = (".npy", ".npz")


def _members(z: zipfile.ZipFile) -> dict:
    return {n[:-4] if n.endswith(".npy") else n: n for n in z.namelist()}


def _member(z: zipfile.ZipFile, path, key) -> zipfile.ZipInfo:
    members = _members(z)
    names = list(members)
    if key is None:
        if len(names) != 1:
            raise SchemaError(f"{path}: holds arrays {names}; name one as {path}:KEY")
        key = names[0]
    if key not in members:
        raise SchemaError(f"{path}: no array {key!r}; it holds {names}")
    return z.getinfo(members[key])


def _label(info: zipfile.ZipInfo) -> str:
    return f"array {info.filename[:-4] if info.filename.endswith('.npy') else info.filename!r}"


def _check_npy(path: Path, label: str, header: NpyHeader, have: int, *, allocate: bool = True) -> None:
    if have < header.nbytes:
        raise SchemaError(
            f"{path}: {label}: header says shape {header.shape} {header.dtype} ({header.nbytes} bytes) but the "
            f"file holds only {have} bytes of data; the file is truncated or corrupt"
        )
    if allocate:
        check_allocation(header.nbytes, f"{path}: {label} (shape {header.shape}, {header.dtype})")


def _npz_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> NpyHeader:
    with z.open(info) as f:
        return read_npy_header(f, path, _label(info))


def inspect_numpy_file(path, key=None) -> NpyHeader:
    """Check a ``.npy`` file or ``.npz`` member from its header alone and return the header.

    Raises when the data are shorter than the header says or larger than the memory available
    (:func:`~neuroxr.io.reader.check_allocation`); reads nothing else.
    """
    path = Path(path)
    return _guarded(path, lambda: _inspect(path, key))


def _inspect(path: Path, key):
    if path.suffix.lower() == ".npy":
        if key:
            raise SchemaError(f"{path}: a .npy file holds one array; drop ':{key}'")
        with open(path, "rb") as f:
            header = read_npy_header(f, path)
            offset = f.tell()
        _check_npy(path, "the array", header, path.stat().st_size - offset)
        return header
    with zipfile.ZipFile(path) as z:
        info = _member(z, path, key)
        header = _npz_header(z, info, path)
        _check_npy(path, _label(info), header, info.file_size)
        return header


def read_numpy_file(path, key=None):
    """Read a ``.npy`` file (memory-mapped) or one array of a ``.npz`` file, defensively.

    Parameters
    ----------
    path : path-like
    key : str, optional
        The array of a ``.npz`` file (optional when it holds exactly one).
    """
    path = Path(path)
    return _guarded(path, lambda: _read(path, key))


def _read(path: Path, key):
    _inspect(path, key)
    if path.suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with zipfile.ZipFile(path) as z, z.open(_member(z, path, key)) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _guarded(path: Path, fn):
    try:
        return fn()
    except (NeuroxrError, SchemaError, FileNotFoundError):
        raise
    except Exception as exc:  # EOFError, BadZipFile, CRC errors, short reads ...
        raise SchemaError(
            f"{path}: cannot be read as a {path.suffix.lower() or 'numpy'} file ({type(exc).__name__}: {exc}); "
            f"the file is truncated or corrupt: write it again with numpy.save / numpy.savez"
        ) from None


def read_npz_shape(path, key) -> tuple:
    """Shape of the array ``key`` of a ``.npz`` file (reads only the zip directory and its header)."""
    path = Path(path)

    def shape():
        with zipfile.ZipFile(path) as z:
            return _npz_header(z, _member(z, path, key), path).shape

    return _guarded(path, shape)


def iter_npz_rows(path, key, block: int = 64):
    """Yield ``(row0, rows)`` blocks of a 2-D array stored in a ``.npz`` without loading it whole."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SchemaError(f"{path}: not a readable .npz ({exc}); it is probably truncated") from None
    with z:
        info = _member(z, path, key)
        header = _guarded(path, lambda: _npz_header(z, info, path))
        streamed = not header.fortran and len(header.shape) == 2
        _check_npy(path, _label(info), header, info.file_size, allocate=not streamed)
        if not streamed:
            with z.open(info) as f:
                arr = _guarded(path, lambda: np.lib.format.read_array(f, allow_pickle=False))
            for i0 in range(0, arr.shape[0], block):
                yield i0, np.asarray(arr[i0:i0 + block])
            return
        n, t = header.shape
        row = t * header.dtype.itemsize
        with z.open(info) as f:
            read_npy_header(f, path, _label(info))
            for i0 in range(0, n, block):
                k = min(block, n - i0)
                buf = _guarded(path, lambda: f.read(k * row))
                if len(buf) != k * row:
                    raise SchemaError(f"{path}: {_label(info)} ends early at row {i0} of {n}; the file is truncated")
                yield i0, np.frombuffer(buf, dtype=header.dtype).reshape(k, t)


__all__ = ["inspect_numpy_file", "read_numpy_file", "read_npz_shape", "iter_npz_rows", "SUFFIXES"]
