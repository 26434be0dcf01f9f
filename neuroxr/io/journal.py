"""Journals that make a change to several stores one unit (a study transaction).

:func:`neuroxr.io.store.replace_stores` first writes every new store to a temporary sibling,
then records the planned moves in a journal file ``.neuroxr-journal-<id>-p<pid>@<host>.json`` in
the stores' common directory (written to a ``.part`` file, flushed and renamed, so a journal is
whole or absent), and only then moves the stores into place.  Each entry names the store, its
finished temporary (by path and inode) and where the replaced store goes.

A run killed before the journal exists leaves the old study untouched (its temporaries are
leftovers for :func:`neuroxr.io.store.clean_stale`).  A run killed after it is rolled forward by
:func:`recover`, which :func:`neuroxr.io.store.open_dataset` and ``clean_stale`` call: every
finished temporary is moved into place, then the replaced stores and the journal are removed.
The study is therefore entirely old or entirely new, and nothing a journal names is deleted
before every new store is in place.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import uuid
from pathlib import Path

from ..errors import NeuroxrError
from .paths import exchange_dirs, hostname, journal_owner, owner_tag, pid_alive

JOURNAL_GLOB = ".neuroxr-journal-*.json"

#: journals of commits running in this process (recovery leaves them alone)
_ACTIVE: set[Path] = set()
_LOCK = threading.Lock()


class TransactionError(NeuroxrError):
    """A journalled change to several stores cannot be finished; the message says what to do."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def common_directory(paths) -> Path:
    """The deepest directory holding every one of ``paths``."""
    return Path(os.path.commonpath([str(Path(p).parent) for p in paths]))


def write_journal(directory: Path, entries: list[dict]) -> Path:
    """Write the journal of ``entries`` (``path``, ``tmp``, ``old``, ``ino``) into ``directory``."""
    name = f".neuroxr-journal-{uuid.uuid4().hex[:8]}{owner_tag()}.json"
    final = directory / name
    part = directory / (name + ".part")
    with open(part, "w") as f:
        json.dump({"version": 1, "entries": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, final)
    _fsync_dir(directory)
    return final


def _ino(p: Path) -> int | None:
    try:
        return os.stat(p).st_ino
    except FileNotFoundError:
        return None


def _finish_entry(root: Path, entry: dict, journal: Path) -> None:
    """Put the new store of ``entry`` in place (idempotent: safe to repeat after a kill)."""
    path, tmp, old = root / entry["path"], root / entry["tmp"], root / entry["old"]
    if _ino(path) == entry["ino"]:  # new store in place; tmp may hold the exchanged old one
        if tmp.exists():
            os.replace(tmp, old)
        return
    if _ino(tmp) != entry["ino"]:
        raise TransactionError(
            f"{journal}: the new copy of {path} ({tmp}) is missing, so the change cannot be finished; "
            f"the stores named in the journal are left as they are: check them with `neuroxr verify`"
        )
    if path.exists():
        if exchange_dirs(tmp, path):
            os.replace(tmp, old)
            return
        os.replace(path, old)
    os.replace(tmp, path)


def roll_forward(journal: Path) -> list[Path]:
    """Finish the journalled change: every new store in place, then the replaced ones removed.

    Holds an exclusive lock on the journal, so two processes finishing it at once take turns (the
    second finds it done).  Returns the stores of the change.
    """
    journal = Path(journal)
    try:
        fd = os.open(journal, os.O_RDONLY)
    except FileNotFoundError:  # finished by another process
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _roll_forward_locked(journal)
    finally:
        os.close(fd)


def _roll_forward_locked(journal: Path) -> list[Path]:
    root = journal.parent
    try:
        entries = json.loads(journal.read_text())["entries"]
    except FileNotFoundError:  # finished by the process this one waited for
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TransactionError(f"{journal}: unreadable journal ({exc}); check the study with `neuroxr verify`") from None
    for entry in entries:
        _finish_entry(root, entry, journal)
    _fsync_dir(root)
    for entry in entries:
        shutil.rmtree(root / entry["old"], ignore_errors=True)
    journal.unlink(missing_ok=True)
    return [root / e["path"] for e in entries]


def commit(directory: Path, entries: list[dict]) -> list[Path]:
    """Journal ``entries`` in ``directory`` and roll them forward at once."""
    journal = write_journal(directory, entries)
    with _LOCK:
        _ACTIVE.add(journal)
    try:
        return roll_forward(journal)
    finally:
        with _LOCK:
            _ACTIVE.discard(journal)


def in_progress(journal: Path, max_foreign_age: float = 6 * 3600) -> bool:
    """True while the process that wrote ``journal`` may still be committing it."""
    with _LOCK:
        if journal in _ACTIVE:
            return True
    owner = journal_owner(journal)
    if owner is None or owner == (os.getpid(), hostname()):  # this process's: not committing now
        return False
    return pid_alive(owner[0], owner[1], journal, max_foreign_age)


def find_journals(directory) -> list[Path]:
    directory = Path(directory)
    return sorted(directory.glob(JOURNAL_GLOB)) if directory.is_dir() else []


def recover(directory, *, max_foreign_age: float = 6 * 3600) -> list[Path]:
    """Roll forward the unfinished journals in ``directory`` (not those of running writers).

    Returns the journals finished (and removed).
    """
    done = []
    for journal in find_journals(directory):
        if not in_progress(journal, max_foreign_age):
            roll_forward(journal)
            done.append(journal)
    return done


def journalled_paths(directory) -> set[Path]:
    """Temporaries and replaced stores named by the journals in ``directory`` (never removed as stale)."""
    out = set()
    for journal in find_journals(directory):
        try:
            entries = json.loads(journal.read_text())["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.update(journal.parent / e[k] for e in entries for k in ("tmp", "old"))
    return out


__all__ = ["TransactionError", "common_directory", "write_journal", "roll_forward", "commit", "recover",
           "find_journals", "journalled_paths", "in_progress", "JOURNAL_GLOB"]
