"""Paths of study stores: URL normalisation, temporary siblings and who owns them.

Every writer of a store works in a hidden sibling named ``.NAME.tmp-<id>-p<pid>@<host>`` (and
moves a replaced store aside as ``.NAME.old-<id>-p<pid>@<host>``), so :func:`owner_alive` can tell
a running writer's temporaries from those a killed run left behind.
"""
from __future__ import annotations

import ctypes
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

from ..errors import NeuroxrError, StoreWriteError

_OWNER = re.compile(r"\.(?:tmp|old)-[0-9a-f]{8}-p(\d+)@(.+)$")
_JOURNAL_OWNER = re.compile(r"-p(\d+)@(.+)\.json$")


def resolve_path(path) -> Path:
    """The local path of a study or store given as a path or an fsspec URL.

    Local paths and ``file://`` URLs (``file:///scratch/study``, ``local://...``) work
    everywhere; this is the one place they are normalised.  Other protocols (``s3://``,
    ``gs://``, ``az://``...) raise :class:`NeuroxrError`: object storage has no atomic rename,
    so the all-or-nothing writes of a study cannot be guaranteed there; use a POSIX filesystem
    with atomic directory renames (local disk, NFS, Lustre, GPFS) and pass its path.  The result
    is absolute.
    """
    s = os.fspath(path)
    m = re.match(r"^(file|local):/+", s)  # also Path("file:///x") == "file:/x"
    if m:
        rest = s[m.end():]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost/"):]
        return Path("/" + unquote(rest))
    if "://" in s:
        protocol = s.split("://", 1)[0]
        raise NeuroxrError(
            f"{s}: {protocol}:// URLs are not supported: object storage has no atomic rename, so "
            f"neuroxr cannot write its stores all-or-nothing there. Use a filesystem with atomic "
            f"directory renames (local disk, NFS, Lustre, GPFS) and pass the path"
        )
    return Path(s).absolute()  # absolute: Dask workers may run in another directory


def make_parent(path: Path) -> None:
    """Create the directory of the store ``path``; a path under a file is a :class:`StoreWriteError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise StoreWriteError(f"{path}: cannot be written, {blocker} is a file, not a directory; "
                              f"choose another study directory") from None


def hostname() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def owner_tag() -> str:
    """``-p<pid>@<host>``: the suffix naming this process as the owner of a temporary."""
    return f"-p{os.getpid()}@{hostname()}"


def tmp_sibling(path) -> Path:
    """A hidden sibling ``.NAME.tmp-<id>-p<pid>@<host>`` to write into before the atomic move."""
    path = resolve_path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{owner_tag()}")


def old_sibling(path) -> Path:
    """A hidden sibling ``.NAME.old-<id>-p<pid>@<host>`` a replaced store is moved to."""
    path = resolve_path(path)
    return path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}{owner_tag()}")


def pid_alive(pid: int, host: str, mtime_of: Path, max_foreign_age: float) -> bool:
    """True if process ``pid`` on ``host`` may still run (another host's: while ``mtime_of`` is young)."""
    if host != hostname():
        try:
            return time.time() - mtime_of.stat().st_mtime < max_foreign_age
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


def owner_alive(p: Path, max_foreign_age: float = 6 * 3600) -> bool:
    """True if the temporary ``p`` may belong to a running writer (so it must not be removed)."""
    m = _OWNER.search(p.name)
    if m is None:  # no owner recorded: a leftover
        return False
    return pid_alive(int(m.group(1)), m.group(2), p, max_foreign_age)


def journal_owner(p: Path) -> tuple[int, str] | None:
    """``(pid, host)`` of the process that wrote the journal file ``p``."""
    m = _JOURNAL_OWNER.search(p.name)
    return (int(m.group(1)), m.group(2)) if m else None


def exchange_dirs(a, b) -> bool:
    """Atomically swap two directories with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


__all__ = ["make_parent", "exchange_dirs", "resolve_path", "tmp_sibling", "old_sibling", "owner_tag", "owner_alive", "pid_alive", "hostname",
           "journal_owner"]
