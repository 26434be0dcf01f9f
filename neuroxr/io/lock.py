"""Locks of study stores: one writer per store at a time, the holder named.

:func:`study_lock` takes an exclusive lock per store (``STUDY/.neuroxr-lock-<store>``, the file
holding the owner ``pid@host`` and the time it was taken).  A second writer waits up to
``timeout`` seconds (``$NEUROXR_LOCK_TIMEOUT``, default 600), printing once whom it waits for,
then stops with :class:`StoreLockedError` naming the holder.

- Local filesystems (and NFS v4, whose server emulates it): ``fcntl.flock`` on the lock file;
  the kernel releases it when the holder dies, so a killed writer never leaves a lock behind.
- Where ``flock`` is not available (``ENOLCK``/``EOPNOTSUPP``, some NFS v3 mounts): a lock
  directory created with ``mkdir`` (atomic there too) holding the owner; a lock whose owner is a
  dead process on this host is taken over, one of another host is trusted for
  ``max_foreign_age`` seconds.

Locks are re-entrant within one thread (a pipeline's stages nest); another thread of the same
process waits as another process does.  A lock file is removed by
its holder on release; a writer that locked a file removed meanwhile sees that its inode is no
longer the path's and locks the new file instead.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import sys
import threading
import time
from pathlib import Path

from ..errors import NeuroxrError
from .paths import hostname, make_parent, pid_alive, resolve_path

LOCK_PREFIX = ".neuroxr-lock-"
_HELD: dict[Path, int] = {}  # lock file -> depth, in this process
_FDS: dict[Path, object] = {}
_GUARD = threading.RLock()
_THREAD_LOCKS: dict[Path, threading.RLock] = {}  # lock file -> the thread holding it, in this process
_POLL = 0.2


class StoreLockedError(NeuroxrError):
    """Another process holds the lock of a store; the message names it."""


def default_timeout() -> float:
    raw = os.environ.get("NEUROXR_LOCK_TIMEOUT", "600")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreLockedError(f"NEUROXR_LOCK_TIMEOUT={raw!r}: give a number of seconds") from None


def lock_path(study, store: str) -> Path:
    """The lock file of ``store`` (a name relative to the study, e.g. ``features/pixels.zarr``)."""
    return resolve_path(study) / (LOCK_PREFIX + str(store).strip("/").replace("/", "__"))


def _owner_text() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return f"{os.getpid()}@{hostname()} since {now}\n"


def read_owner(path: Path) -> str:
    """The ``pid@host since TIME`` recorded in a lock (``unknown`` if unreadable)."""
    for p in (path / "owner", path) if path.is_dir() else (path,):
        try:
            text = p.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return "unknown"


def _parse_owner(text: str):
    head = text.split(" ", 1)[0]
    pid, _, host = head.partition("@")
    return (int(pid), host) if pid.isdigit() and host else None


def _try_flock(path: Path):
    """An fd holding ``flock`` on ``path``; None when another holds it; raises OSError when unsupported."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # the previous holder removed the file while this one waited: lock the new one
        os.close(fd)
        return _try_flock(path)
    os.ftruncate(fd, 0)
    os.write(fd, _owner_text().encode())
    return fd


def _try_mkdir(path: Path, max_foreign_age: float):
    """The fallback lock: the directory ``path.d``; a dead local owner's is taken over."""
    d = path.with_name(path.name + ".d")
    try:
        d.mkdir()
    except FileExistsError:
        owner = _parse_owner(read_owner(d))
        if owner is not None and not pid_alive(owner[0], owner[1], d, max_foreign_age):
            stale = d.with_name(f"{d.name}.stale-{os.getpid()}")
            with contextlib.suppress(OSError):
                os.replace(d, stale)
                (stale / "owner").unlink(missing_ok=True)
                stale.rmdir()
            return _try_mkdir(path, max_foreign_age) if not d.exists() else None
        return None
    (d / "owner").write_text(_owner_text())
    return d


def _acquire_one(path: Path, timeout: float, mode: str, max_foreign_age: float):
    deadline = time.monotonic() + timeout
    told = False
    while True:
        if mode == "flock":
            try:
                got = _try_flock(path)
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                mode, got = "mkdir", None
                continue
        else:
            got = _try_mkdir(path, max_foreign_age)
        if got is not None:
            return got
        holder = read_owner(path.with_name(path.name + ".d") if mode == "mkdir" else path)
        if time.monotonic() >= deadline:
            raise StoreLockedError(
                f"{path.parent}: {path.name[len(LOCK_PREFIX):].replace('__', '/')} is being written by "
                f"process {holder}; waited {timeout:g} s. Wait for it to finish (or stop it), then rerun; "
                f"NEUROXR_LOCK_TIMEOUT sets how long to wait")
        if not told:
            print(f"neuroxr: waiting for {path.name[len(LOCK_PREFIX):].replace('__', '/')} "
                  f"(locked by process {holder})", file=sys.stderr)
            told = True
        time.sleep(_POLL)


def _release_one(path: Path, held) -> None:
    if isinstance(held, Path):
        with contextlib.suppress(OSError):
            (held / "owner").unlink(missing_ok=True)
            held.rmdir()
    else:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter then finds its file gone and locks a new one
            fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)


@contextlib.contextmanager
def study_lock(study, what, *, timeout: float | None = None, mode: str = "flock",
               max_foreign_age: float = 6 * 3600):
    """Hold the write locks of the stores ``what`` of ``study`` for the block.

    Parameters
    ----------
    study : path-like
        The study directory (created when missing).
    what : str or iterable of str
        Store names relative to the study (``responses.zarr``, ``features/pixels.zarr``); several
        are locked in sorted order, so two writers never wait for each other in a cycle.
    timeout : float, optional
        Seconds to wait for another holder (default :func:`default_timeout`).
    mode : {"flock", "mkdir"}
        ``flock`` falls back to ``mkdir`` by itself where the filesystem does not support it.
    """
    root = resolve_path(study)
    make_parent(root / "store")
    names = [what] if isinstance(what, (str, os.PathLike)) else list(what)
    paths = sorted({lock_path(root, n) for n in names})
    timeout = default_timeout() if timeout is None else float(timeout)
    taken = []
    try:
        for p in paths:
            with _GUARD:
                tlock = _THREAD_LOCKS.setdefault(p, threading.RLock())
            if not (tlock.acquire(timeout=timeout) if timeout > 0 else tlock.acquire(blocking=False)):
                raise StoreLockedError(
                    f"{p.parent}: {p.name[len(LOCK_PREFIX):].replace('__', '/')} is being written by another "
                    f"thread of this process ({os.getpid()}); waited {timeout:g} s. Run one writer per store "
                    f"at a time; NEUROXR_LOCK_TIMEOUT sets how long to wait")
            try:
                with _GUARD:
                    nested = p in _HELD  # only this thread can hold it now: re-entry
                    if nested:
                        _HELD[p] += 1
                if not nested:
                    held = _acquire_one(p, timeout, mode, max_foreign_age)
                    with _GUARD:
                        _HELD[p], _FDS[p] = 1, held
            except BaseException:
                tlock.release()
                raise
            taken.append(p)
        yield paths
    finally:
        for p in reversed(taken):
            with _GUARD:
                _HELD[p] -= 1
                last = not _HELD[p]
                if last:
                    del _HELD[p]
                    held = _FDS.pop(p)
                tlock = _THREAD_LOCKS[p]
            if last:
                _release_one(p, held)
            tlock.release()


__all__ = ["StoreLockedError", "study_lock", "lock_path", "read_owner", "default_timeout", "LOCK_PREFIX"]
