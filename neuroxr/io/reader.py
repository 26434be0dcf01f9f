"""The hardened reader every input format shares: headers, memory limits, lossless casts.

Every reader of outside data (the format modules :mod:`~neuroxr.io.npy`,
:mod:`~neuroxr.io.labelled`, :mod:`~neuroxr.io.brainio`, :mod:`~neuroxr.io.tables` and the
Allen cache readers) goes through these checks, so a hostile or damaged file fails fast with a
:class:`~neuroxr.schema.SchemaError` or :class:`InputTooLargeError` naming the file, instead of a
traceback, an allocation of terabytes or a silently changed value:

- :func:`read_npy_header`: the one parser of ``.npy`` headers (plain files, ``.npz`` members,
  Allen event files); object arrays are refused, never unpickled.
- :func:`available_memory` / :func:`check_allocation`: what may be allocated, from the host's
  available memory and the cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``).
- :func:`to_float32`: the cast of the stores' float32 variables, checked after the cast, so
  float64 values beyond float32's range are an error rather than ``inf``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from numpy.lib import format as npf

from ..errors import NeuroxrError
from ..schema import SchemaError

#: cgroup filesystem root read when no ``cgroup_root`` is passed to the functions below
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: share of the available memory one array read may take
ALLOCATION_FRACTION = 0.8
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class InputTooLargeError(NeuroxrError):
    """An input would need more memory than this process may use; the message names the file."""


def where(source) -> str:
    """``"SOURCE: "`` for messages, or nothing when the source is unknown."""
    return f"{source}: " if source else ""


# --------------------------------------------------------------------------- .npy headers
@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says: ``shape``, ``dtype``, ``fortran`` order and the data size."""

    shape: tuple
    dtype: np.dtype
    fortran: bool

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n * self.dtype.itemsize


def read_npy_header(fp, path, label="the array") -> NpyHeader:
    """Parse the ``.npy`` header at the position of the open binary file ``fp``.

    Raises :class:`SchemaError` naming ``path`` and ``label`` for an unknown format version, a
    damaged header or an object (pickled) dtype.  ``fp`` is left at the start of the data.
    """
    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(fp)
        else:
            raise SchemaError(f"{path}: {label} uses .npy format version {version}; save it with numpy.save")
    except SchemaError:
        raise
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        raise SchemaError(f"{path}: {label} has no readable .npy header ({exc}); the file is truncated or "
                          f"corrupt: write it again with numpy.save") from None
    if dtype.hasobject:
        raise SchemaError(
            f"{path}: {label} holds Python objects (dtype {dtype}); neuroxr never unpickles data: "
            f"save numbers (e.g. float32) instead"
        )
    return NpyHeader(tuple(int(s) for s in shape), dtype, bool(fortran))


# --------------------------------------------------------------------------- memory
def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text)
    except ValueError:
        return None


_V2_FILES = ("memory.max", "memory.current")
_V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes")


def _own_cgroups(proc_file: Path) -> tuple[str, str]:
    """This process's cgroup paths from ``/proc/self/cgroup``: (v2 ``0::PATH``, v1 ``N:memory:PATH``)."""
    v2 = v1 = ""
    try:
        lines = proc_file.read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
            v2 = parts[2].strip().lstrip("/")
        elif len(parts) == 3 and "memory" in parts[1].split(","):
            v1 = parts[2].strip().lstrip("/")
    return v2, v1


def _limit_in(directory: Path, files: tuple[str, str]) -> int | None:
    limit = _read_int(directory / files[0])
    if limit is None or limit >= 1 << 60:  # v1 writes "no limit" as a huge number
        return None
    return max(0, limit - (_read_int(directory / files[1]) or 0))


def cgroup_memory_available(root: Path | None = None, proc_file: Path = Path("/proc/self/cgroup")) -> int | None:
    """Bytes this process's cgroup may still allocate (limit minus usage), or None without a limit.

    Reads cgroup v2 (``ROOT/PATH/memory.max``, ``memory.current``) and v1
    (``ROOT/memory/PATH/memory.limit_in_bytes``, ``memory.usage_in_bytes``), in the process's own
    cgroup (``PATH`` from ``proc_file``) and at the root (a container's own view); the smallest applies.
    """
    root = Path(CGROUP_ROOT if root is None else root)
    v2, v1 = _own_cgroups(proc_file)
    candidates = [(root / v2, _V2_FILES), (root, _V2_FILES),
                  (root / "memory" / v1, _V1_FILES), (root / "memory", _V1_FILES)]
    found = [v for v in (_limit_in(d, f) for d, f in candidates) if v is not None]
    return min(found) if found else None


def available_memory(cgroup_root: Path | None = None) -> int:
    """Bytes this process may allocate: the host's available memory, capped by the cgroup's."""
    host = int(psutil.virtual_memory().available)
    cg = cgroup_memory_available(cgroup_root)
    return host if cg is None else min(host, cg)


def check_allocation(nbytes: int, what: str, *, fraction: float = ALLOCATION_FRACTION,
                     cgroup_root: Path | None = None) -> None:
    """Raise :class:`InputTooLargeError` if ``nbytes`` exceed ``fraction`` of :func:`available_memory`.

    Called with the size a file header claims, before anything is read, hashed or allocated.
    """
    avail = available_memory(cgroup_root)
    if nbytes > fraction * avail:
        raise InputTooLargeError(
            f"{what} would need {nbytes / 2**30:.3g} GiB but only {avail / 2**30:.3g} GiB of memory are "
            f"available (host and cgroup limit); check the file (a corrupt header?) or pass a smaller array"
        )


# --------------------------------------------------------------------------- values
def _first(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def check_cast(before: np.ndarray, after: np.ndarray, name, source, offset=None) -> None:
    """Raise :class:`SchemaError` where the float32 cast turned a finite value into an infinite one."""
    with np.errstate(invalid="ignore"):
        lost = np.isinf(after) & np.isfinite(before)
    if lost.any():
        idx = _first(lost)
        shown = idx if not offset else tuple(i + o for i, o in zip(idx, offset))
        raise SchemaError(
            f"{where(source)}variable {name!r} holds {before[idx].item()!r} at index {shown}, beyond float32's range "
            f"(+-{_FLOAT32_MAX:.4g}); the stores keep float32: rescale the values (e.g. to other units)"
        )


def check_values(x: np.ndarray, name, source, *, allow_nan: bool, offset=None) -> None:
    """Raise :class:`SchemaError` naming the first non-finite value (NaN allowed with ``allow_nan``)."""
    with np.errstate(invalid="ignore"):
        bad = np.isinf(x) if allow_nan else ~np.isfinite(x)
    if bad.any():
        idx = _first(bad)
        shown = idx if not offset else tuple(i + o for i, o in zip(idx, offset))
        what = "infinite" if allow_nan else "non-finite"
        raise SchemaError(
            f"{where(source)}variable {name!r} has {int(bad.sum())} {what} values (first at index {shown}: "
            f"{x[idx].item()!r}); clean or drop them before ingesting"
        )


def _cast_block(block, name, source, allow_nan, block_info=None):
    loc = (block_info or {}).get(0, {}).get("array-location")
    offset = tuple(lo for lo, _ in loc) if loc else None
    check_values(np.asarray(block), name, source, allow_nan=allow_nan, offset=offset)
    with np.errstate(over="ignore"):  # overflow is reported by check_cast, naming the value
        out = np.asarray(block, dtype=np.float32)
    check_cast(np.asarray(block), out, name, source, offset)
    return out


def to_float32(x, name, source=None, *, allow_nan: bool = False):
    """``x`` as float32, its values checked: non-finite ones refused (NaN kept with ``allow_nan``),
    and the cast itself checked afterwards (a float64 value beyond float32's range is an error).

    Dask arrays stay lazy: each chunk is checked as it is computed.
    """
    if type(x).__module__.startswith("dask"):
        return x.map_blocks(_cast_block, name, source, allow_nan, dtype=np.float32)
    return _cast_block(np.asarray(x), name, source, allow_nan)


__all__ = ["InputTooLargeError", "NpyHeader", "read_npy_header", "cgroup_memory_available", "available_memory",
           "check_allocation", "check_cast", "check_values", "to_float32", "where", "CGROUP_ROOT"]
