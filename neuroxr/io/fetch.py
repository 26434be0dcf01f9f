"""Download the Allen Brain Observatory files the reader needs into an AllenSDK cache layout.

Source: the Allen Institute's public S3 bucket ``allen-brain-observatory`` (an AWS Open Data
set, read anonymously over HTTPS), prefix ``visual-coding-2p/``.  It holds the same files a
``BrainObservatoryCache`` stores, under the same relative paths::

    <base_url>/ophys_experiments.json
    <base_url>/cell_specimens.json
    <base_url>/experiment_containers.json
    <base_url>/ophys_experiment_data/<id>.nwb
    <base_url>/ophys_experiment_events/<id>_events.npz

(``https://allen-brain-observatory.s3.us-west-2.amazonaws.com/visual-coding-2p/...``; the JSON
tables and ``ophys_experiment_data/<id>.nwb`` are known to be there).  When the bucket answers
404 for an experiment's NWB or events file, the file's download link is asked from the RMA API
that AllenSDK uses (``api.brain-map.org``, well-known file types ``NWBOphys`` and
``ObservatoryEventsFile``), unless ``api_url=None``.  So a directory filled by :func:`fetch_allen`
is also a valid AllenSDK cache (we write the
standard version-1.3 ``manifest.json``), and an existing AllenSDK cache is completed in place.
We chose the bucket as the primary source over the RMA API because its files are static, support
HTTP ``Range`` (resume), and report their size and, for files uploaded in one part, their MD5
(``ETag``; multipart uploads have ETags ``<hash>-<parts>`` which are not an MD5 of the file, so
only the size is checked then); the RMA API serves the metadata as paged query results rather
than the cached files.

Every file is downloaded into ``<name>.part`` and resumed from there (HTTP ``Range``) after a
dropped connection or an interrupted run; it is moved into place only once its size (and MD5 when
the server gives one) is verified, else the ``.part`` is deleted and the file refused.  Files
already present with the server's size (and MD5) are not downloaded again; a small record,
``.neuroxr_fetch.json``, remembers verified files so they are not re-hashed on every run.
Only the Python standard library (``urllib``) is used.

The same machinery fetches the models' trained weights (:mod:`neuroxr.features.weights`):
:func:`download_verified` adds the sha256 check (full digest, or the prefix torchvision file names
carry) before a file is moved into place, and :func:`hub_file_info` reads the Hugging Face hub's
metadata headers (commit, LFS sha256, size) of a ``resolve`` URL.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import NeuroxrError
from . import allen
from .store import hash_file

DEFAULT_BASE_URL = "https://allen-brain-observatory.s3.us-west-2.amazonaws.com/visual-coding-2p"
#: AllenSDK's RMA API, asked for a file's well-known-file download link when the bucket lacks it
DEFAULT_API_URL = "http://api.brain-map.org"
RMA_FILE_TYPES = {"EXPERIMENT_DATA": "NWBOphys", "EVENTS_DATA": "ObservatoryEventsFile"}
#: remote path of each manifest key, relative to ``base_url``
REMOTE = {
    "EXPERIMENTS": "ophys_experiments.json",
    "CELL_SPECIMENS": "cell_specimens.json",
    "EXPERIMENT_CONTAINERS": "experiment_containers.json",
    "EXPERIMENT_DATA": "ophys_experiment_data/%d.nwb",
    "EVENTS_DATA": "ophys_experiment_events/%d_events.npz",
}
RECORD = ".neuroxr_fetch.json"
_CHUNK = 1 << 20
_MD5 = re.compile(r"^[0-9a-f]{32}$")

#: what ``BrainObservatoryCache.build_manifest`` writes (manifest version 1.3)
MANIFEST = {"manifest": [
    {"type": "manifest_version", "value": "1.3"},
    {"type": "dir", "spec": ".", "key": "BASEDIR"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "experiment_containers.json", "key": "EXPERIMENT_CONTAINERS"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiments.json", "key": "EXPERIMENTS"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_data/%d.nwb", "key": "EXPERIMENT_DATA"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_analysis/%d_%s_analysis.h5",
     "key": "ANALYSIS_DATA"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "ophys_experiment_events/%d_events.npz", "key": "EVENTS_DATA"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "cell_specimens.json", "key": "CELL_SPECIMENS"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "stimulus_mappings.json", "key": "STIMULUS_MAPPINGS"},
    {"parent_key": "BASEDIR", "type": "file",
     "spec": "ophys_eye_gaze_mapping/%d_eyetracking_dlc_to_screen_mapping.h5", "key": "EYE_GAZE_DATA"},
]}


class DownloadError(NeuroxrError):
    """A file could not be downloaded (after retries); a ``.part`` may be kept for resuming."""


class VerificationError(DownloadError):
    """A downloaded file has the wrong size or checksum; nothing of it was kept."""


class RemoteMissingError(DownloadError):
    """The server has no such file (HTTP 404)."""


_TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, http.client.BadStatusLine,
              ConnectionError, socket.timeout, TimeoutError)


def _md5(path) -> str:
    return hash_file(path, _CHUNK, "md5")


def head_file(url, timeout=60) -> dict:
    """``{"size": int | None, "etag": str | None}`` of a remote file (HTTP HEAD)."""
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        size = r.headers.get("Content-Length")
        etag = (r.headers.get("ETag") or "").strip().strip('"') or None
    return {"size": int(size) if size is not None else None, "etag": etag}


def download_file(url, dest, *, size=None, md5=None, retries=5, timeout=60, progress=True, desc=None,
                  backoff=0.5) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming and verifying.

    Parameters
    ----------
    size : int, optional
        Expected size in bytes (from HEAD or a catalog).  A server answer of another length is
        refused at once.
    md5 : str, optional
        Expected MD5 hex digest, checked on the complete file.
    retries : int
        How many dropped connections to resume from before giving up (the ``.part`` is kept, so
        running again resumes).

    Raises
    ------
    VerificationError
        Wrong size or checksum: the ``.part`` is deleted and ``dest`` not created.
    DownloadError
        The server kept failing; the partial file is kept for the next run.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    bar = tqdm(total=size, initial=0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or dest.name,
               disable=not progress, leave=False, dynamic_ncols=True)
    try:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()
                offset = 0
            if size is not None and offset == size:
                break
            bar.n = offset
            bar.refresh()
            req = urllib.request.Request(url)
            if offset:
                req.add_header("Range", f"bytes={offset}-")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    got = _receive(r, url, part, offset, size, bar)
                if got is not _RESTART:
                    size = got
            except urllib.error.HTTPError as exc:
                action = _on_http_error(exc, url, part, offset, size, attempt < retries)
                if action == "done":
                    break
                if action == "retry":
                    attempt += 1
                    time.sleep(backoff * attempt)
            except _TRANSIENT + (urllib.error.URLError,) as exc:
                attempt += 1
                _check_transient(exc, url, part, attempt, retries)
                time.sleep(backoff * attempt)
    finally:
        bar.close()
    return _finish_download(url, part, dest, size, md5)


#: :func:`_receive`: the server answered another range, start over
_RESTART = object()


def _receive(r, url, part: Path, offset: int, size, bar):
    """Append the body of the response ``r`` to ``part``; the file size now known, or :data:`_RESTART`."""
    length = r.headers.get("Content-Length")
    length = int(length) if length is not None else None
    if r.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", r.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            part.unlink(missing_ok=True)
            return _RESTART
        total = None if m.group(3) == "*" else int(m.group(3))
    else:                                     # 200: the whole file
        offset = 0
        total = length
    if size is not None and total is not None and total != size:
        part.unlink(missing_ok=True)
        raise VerificationError(
            f"{url}: the server sends {total} bytes but announced {size}; refused, nothing kept "
            f"(the file on the server changed or is wrong; try again later or check --base-url)")
    if size is None:
        size = total
        bar.total = size
    got = 0
    with open(part, "ab" if offset else "wb") as out:
        for b in iter(lambda: r.read(_CHUNK), b""):
            out.write(b)
            got += len(b)
            bar.update(len(b))
    if length is not None and got < length:
        raise http.client.IncompleteRead(b"", length - got)
    return offset + got if size is None else size  # no length anywhere: trust the close


def _on_http_error(exc, url, part: Path, offset: int, size, may_retry: bool) -> str:
    """What an HTTP error means: ``"done"`` (range past the end of a complete file), ``"restart"``,
    ``"retry"`` (a server error) or a :class:`DownloadError`."""
    if exc.code == 416 and offset and size is not None and offset == size:
        return "done"
    if exc.code == 416:
        part.unlink(missing_ok=True)
        return "restart"
    if exc.code in (500, 502, 503, 504) and may_retry:
        return "retry"
    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check --base-url and the experiment ids") from None


def _check_transient(exc, url, part: Path, attempt: int, retries: int) -> None:
    """Raise :class:`DownloadError` unless a dropped connection may be resumed once more."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(
            getattr(exc, "reason", None), (socket.timeout, TimeoutError, ConnectionError)):
        raise DownloadError(f"{url}: {exc.reason}; check your network and --base-url") from None
    if attempt > retries:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: connection failed {attempt} times ({type(exc).__name__}); {have} bytes kept in "
            f"{part}: run the same command again to resume") from None


def _finish_download(url, part: Path, dest: Path, size, md5) -> Path:
    """Check the size and MD5 of the complete ``part`` and move it to ``dest``."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have != size:
        part.unlink(missing_ok=True)
        raise VerificationError(f"{url}: got {have} bytes, expected {size}; refused, nothing kept")
    if md5 is not None:
        got_md5 = _md5(part)
        if got_md5 != md5:
            part.unlink(missing_ok=True)
            raise VerificationError(f"{url}: MD5 {got_md5} differs from the server's {md5}; refused, nothing kept "
                                    "(run again; if it persists the file on the server is damaged)")
    os.replace(part, dest)
    return dest


def _sha256(path) -> str:
    return hash_file(path, _CHUNK)


def download_verified(url, dest, *, sha256=None, sha256_prefix=None, size=None, retries=5, timeout=60,
                      progress=True, desc=None, hint="run the same command again", backoff=0.5) -> Path:
    """Download ``url`` to ``dest`` (resuming through ``dest.download.part``) and check its sha256.

    ``sha256``: the full hex digest the file must have; ``sha256_prefix``: the start of it (the
    hash prefix torchvision and torch hub put in file names).  The file is moved to ``dest`` only
    once verified; a wrong checksum or size deletes everything of it and raises
    :class:`VerificationError` (one line: file, URL, expected and actual sha256, ``hint``).  A
    dropped connection keeps the partial file, so the next run resumes (HTTP ``Range``).
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".download")
    try:
        download_file(url, tmp, size=size, retries=retries, timeout=timeout, progress=progress, desc=desc,
                      backoff=backoff)
    except VerificationError as exc:
        why = re.split(r" \(the file on the server|; refused", str(exc), maxsplit=1)[0]
        want = sha256 or sha256_prefix
        raise VerificationError(f"{dest}: {why}; expected sha256 {want or '(not pinned)'}; refused, nothing kept: "
                                f"{hint}") from None
    except DownloadError as exc:
        msg = str(exc).split("; check", 1)[0]
        raise DownloadError(f"{dest}: {msg}; {hint}") from None
    want = (sha256 or sha256_prefix or "").lower()
    if want:
        got = _sha256(tmp)
        if not got.startswith(want):
            tmp.unlink(missing_ok=True)
            what = "sha256" if sha256 else "sha256 starting with"
            raise VerificationError(f"{dest}: downloaded from {url} has sha256 {got}, expected {what} {want}; "
                                    f"refused, nothing kept (a truncated or changed file): {hint}")
    os.replace(tmp, dest)
    return dest


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # keep the 3xx response (its headers are the hub's metadata)
        return None


def hub_file_info(url, timeout=60) -> dict:
    """What the Hugging Face hub says of ``<endpoint>/<repo>/resolve/<rev>/<file>`` (HEAD, no redirect).

    ``{"commit", "sha256", "size", "location"}`` from ``X-Repo-Commit``, ``X-Linked-Etag`` (LFS
    files: their sha256) or ``ETag``, ``X-Linked-Size`` / ``Content-Length`` and the redirect target.
    """
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity"})
    try:
        r = opener.open(req, timeout=timeout)
        headers, status = r.headers, r.status
        r.close()
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307, 308):
            headers, status = exc.headers, exc.code
        elif exc.code in (401, 403, 404):
            raise RemoteMissingError(f"{url}: HTTP {exc.code} {exc.reason} (no such repo, revision or file on the "
                                     "hub; check the catalogue's weights_repo and weights_file)") from None
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError,) + _TRANSIENT as exc:
        raise DownloadError(f"{url}: unreachable ({getattr(exc, 'reason', exc)}); check your network "
                            "(or set HF_HUB_OFFLINE=1 and fill the cache by hand: neuroxr fetch weights --print)"
                            ) from None
    etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip().strip('"')
    if etag.startswith("W/"):
        etag = etag[2:].strip('"')
    size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if status == 200 else None)
    loc = headers.get("Location")
    if loc:
        loc = urllib.parse.urljoin(url, loc)
    return {"commit": headers.get("X-Repo-Commit"), "sha256": etag or None,
            "size": int(size) if size else None, "location": loc}


def _load_record(root) -> dict:
    try:
        with open(Path(root) / RECORD) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _save_record(root, rec):
    p = Path(root) / RECORD
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
    os.replace(tmp, p)


def ensure_file(url, dest, *, root, record, retries=5, timeout=60, progress=True, check_json=False) -> str:
    """Make ``dest`` a verified copy of ``url``; returns ``"present"`` or ``"downloaded"``."""
    dest = Path(dest)
    rel = os.path.relpath(dest, root)
    try:
        info = head_file(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RemoteMissingError(f"{url}: not on the server (HTTP 404); check --base-url and the experiment ids"
                                     ) from None
        if exc.code in (403, 405, 501):          # no HEAD: size and checksum come from the GET
            info = {"size": None, "etag": None}
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check --base-url and the experiment ids"
                                ) from None
    except (urllib.error.URLError,) + _TRANSIENT as exc:
        if dest.exists():
            warnings.warn(f"{dest}: kept without checking ({url} unreachable: {exc})", stacklevel=2)
            return "present"
        raise DownloadError(f"{url}: unreachable ({getattr(exc, 'reason', exc)}); check your network and --base-url"
                            ) from None
    size, etag = info["size"], info["etag"]
    md5 = etag if etag and _MD5.match(etag) else None
    if dest.exists():
        st = dest.stat()
        r = record.get(rel)
        if r and r.get("size") == st.st_size == size and r.get("mtime_ns") == st.st_mtime_ns and r.get("etag") == etag:
            return "present"
        if (size is None or st.st_size == size) and (md5 is None or _md5(dest) == md5):
            record[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": etag}
            return "present"
        warnings.warn(f"{dest}: differs from {url} (size {st.st_size} vs {size}); downloading it again", stacklevel=2)
    download_file(url, dest, size=size, md5=md5, retries=retries, timeout=timeout, progress=progress, desc=rel)
    if check_json:
        try:
            with open(dest) as f:
                json.load(f)
        except json.JSONDecodeError as exc:
            dest.unlink()
            raise VerificationError(f"{url}: not valid JSON ({exc}); refused, nothing kept") from None
    st = dest.stat()
    record[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": etag}
    return "downloaded"


def _valid_json(dest, root, record) -> bool:
    """A present JSON table that parses (remembered in the record so it is parsed once)."""
    dest = Path(dest)
    if not dest.is_file():
        return False
    rel = os.path.relpath(dest, root)
    st = dest.stat()
    r = record.get(rel)
    if r and r.get("size") == st.st_size and r.get("mtime_ns") == st.st_mtime_ns:
        return True
    try:
        with open(dest) as f:
            json.load(f)
    except (OSError, ValueError):
        warnings.warn(f"{dest}: present but not valid JSON (truncated?); downloading it again", stacklevel=3)
        return False
    record[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": r.get("etag") if r else None}
    return True


def rma_download_url(api_url, experiment_id: int, file_type: str, timeout=60) -> str:
    """Download URL of an experiment's well-known file (``NWBOphys``, ``ObservatoryEventsFile``)
    from the RMA API, as AllenSDK's ``BrainObservatoryApi`` finds it."""
    api_url = api_url.rstrip("/")
    q = (f"model::WellKnownFile,rma::criteria,[attachable_id$eq{int(experiment_id)}],"
         f"well_known_file_type[name$eq{file_type}],rma::options[num_rows$eq'all'][count$eqfalse]")
    url = f"{api_url}/api/v2/data/query.json?q={urllib.parse.quote(q, safe=':,[]$=()')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            msg = json.load(r)
    except (urllib.error.URLError, json.JSONDecodeError) + _TRANSIENT as exc:
        raise DownloadError(f"{url}: RMA query failed ({exc})") from None
    rows = msg.get("msg") if isinstance(msg, dict) else None
    if not rows or not isinstance(rows, list) or "download_link" not in rows[0]:
        raise RemoteMissingError(f"{api_url}: experiment {experiment_id} has no {file_type} file")
    return api_url + rows[0]["download_link"]


def fetch_allen(cache_dir, containers=None, areas=None, cre_lines=None, base_url: str = DEFAULT_BASE_URL, *,
                session: str = "three_session_B", events: bool = True, include_failed: bool = False,
                experiments=None, api_url: str | None = DEFAULT_API_URL, refresh_metadata: bool = False,
                retries: int = 5, timeout: float = 60, progress: bool = True) -> dict:
    """Download the natural-scenes experiments (and the metadata) into an AllenSDK cache directory.

    Parameters
    ----------
    cache_dir : path-like
        Cache directory; created with a standard ``manifest.json`` if it has none.  An existing
        AllenSDK cache (``manifest.json`` there or in ``brain_observatory/``) is completed in place.
    containers, areas, cre_lines : list, optional
        Only experiments of these experiment containers, areas (``VISp`` ...) and Cre lines
        (same matching as :func:`neuroxr.io.allen.select_experiments`).
    base_url : str
        Where the files live, in the layout of the S3 bucket (default: the public bucket).
    session : str
        Session type to fetch (``three_session_B`` holds the natural scenes).
    events : bool
        Also fetch ``ophys_experiment_events/<id>_events.npz`` (needed by ``--response events``).
    experiments : list of int, optional
        Only these ophys experiment ids.
    api_url : str or None
        When the bucket has no copy of an experiment's NWB or events file (HTTP 404), ask this
        RMA API for the file's download link (``None``: don't).
    refresh_metadata : bool
        Download the JSON tables again even when valid copies are present (by default a present,
        parseable table is kept: one written by AllenSDK from the RMA API may legitimately differ
        in bytes from the bucket's copy).

    Returns
    -------
    dict
        ``{"downloaded": [paths], "present": [paths], "experiments": [ids]}``.

    Raises
    ------
    DownloadError
        After trying every file, listing those that failed (verified files are kept; a file that
        failed verification is not).
    """
    cache = _open_or_create_cache(Path(cache_dir).expanduser())
    fetcher = _Fetcher(cache, base_url.rstrip("/"), api_url, refresh_metadata,
                       {"retries": retries, "timeout": timeout, "progress": progress})
    try:
        for key in ("EXPERIMENTS", "CELL_SPECIMENS", "EXPERIMENT_CONTAINERS"):
            fetcher.get(key, check_json=True)
        if str(cache.path("EXPERIMENTS")) in fetcher.failed:
            raise DownloadError(f"{cache.path('EXPERIMENTS')}: {fetcher.failed[str(cache.path('EXPERIMENTS'))]}")
        sel = allen.select_experiments(cache, session, areas, cre_lines, containers, include_failed)
        if experiments is not None:
            sel = sel[sel.index.isin([int(e) for e in experiments])]
        if sel.empty:
            raise DownloadError(f"no {session} experiment in {cache.path('EXPERIMENTS')} matches areas={areas}, "
                                f"cre_lines={cre_lines}, containers={containers}")
        for eid in tqdm(list(sel.index), desc="experiments", unit="exp", disable=not progress):
            fetcher.get("EXPERIMENT_DATA", int(eid))
            if events:
                fetcher.get("EVENTS_DATA", int(eid))
            fetcher.done["experiments"].append(int(eid))
    finally:
        _save_record(cache.root, fetcher.record)
    done, failed = fetcher.done, fetcher.failed
    if failed:
        lines = "\n  ".join(f"{k}: {v}" for k, v in failed.items())
        raise DownloadError(f"{len(failed)} of {len(failed) + len(done['downloaded']) + len(done['present'])} "
                            f"files failed (the others are in place; run again to retry):\n  {lines}")
    return done


def _open_or_create_cache(root: Path):
    """The AllenSDK cache at ``root``, given a standard ``manifest.json`` when it has none."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        cache = allen.open_allen_cache(root)
        if (cache.root / "manifest.json").is_file():
            return cache
    except (FileNotFoundError, NeuroxrError):
        pass
    with open(root / "manifest.json", "w") as f:
        json.dump(MANIFEST, f, indent=2)
    return allen.open_allen_cache(root)


class _Fetcher:
    """Fetches files of one cache, recording what was downloaded, present or failed."""

    def __init__(self, cache, base_url: str, api_url, refresh_metadata: bool, options: dict):
        self.cache, self.base_url, self.api_url = cache, base_url, api_url
        self.refresh_metadata, self.options = refresh_metadata, options
        self.record = _load_record(cache.root)
        self.done: dict = {"downloaded": [], "present": [], "experiments": []}
        self.failed: dict = {}

    def get(self, key, *args, check_json=False) -> None:
        croot = self.cache.root
        dest = self.cache.path(key, *args)
        url = f"{self.base_url}/{REMOTE[key] % args if args else REMOTE[key]}"
        kw = dict(root=croot, record=self.record, check_json=check_json, **self.options)
        if check_json and not self.refresh_metadata and _valid_json(dest, croot, self.record):
            self.done["present"].append(dest)
            return
        try:
            try:
                how = ensure_file(url, dest, **kw)
            except RemoteMissingError:
                if self.api_url is None or key not in RMA_FILE_TYPES:
                    raise
                link = rma_download_url(self.api_url, args[0], RMA_FILE_TYPES[key], self.options["timeout"])
                how = ensure_file(link, dest, **kw)
            self.done[how].append(dest)
        except DownloadError as exc:
            self.failed[str(dest)] = str(exc)
        finally:
            _save_record(croot, self.record)


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_BASE_URL",
    "MANIFEST",
    "DownloadError",
    "RemoteMissingError",
    "VerificationError",
    "download_file",
    "download_verified",
    "ensure_file",
    "fetch_allen",
    "head_file",
    "hub_file_info",
    "rma_download_url",
]
