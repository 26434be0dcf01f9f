"""Download Visual Coding Neuropixels sessions into an AllenSDK ``EcephysProjectCache`` layout.

Source: the public S3 bucket ``allen-brain-observatory`` (AWS Open Data, read anonymously over
HTTPS), prefix ``visual-coding-neuropixels/ecephys-cache/``, which holds a complete
``EcephysProjectCache`` tree under the same relative paths::

    <base_url>/sessions.csv  probes.csv  channels.csv  units.csv
    <base_url>/session_<id>/session_<id>.nwb
    <base_url>/natural_scene_templates/natural_scene_<n>.tiff        n = 0..117

When the bucket answers 404 for a session file, its download link is asked from the RMA API
AllenSDK's ``EcephysProjectWarehouseApi`` uses (well-known file type ``EcephysNwb``), unless
``api_url=None``.  Every file goes through :func:`neuroxr.io.fetch.ensure_file`: downloaded into
``<name>.part``, resumed with HTTP ``Range`` after a dropped connection, moved into place only
once its size (and MD5, from a single-part ``ETag``) is verified, else deleted and refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import fetch as F
from .ecephys import N_SCENES, NATURAL_SCENES_SESSION, open_ecephys_cache, read_sessions

DEFAULT_NEUROPIXELS_URL = ("https://allen-brain-observatory.s3.us-west-2.amazonaws.com/"
                           "visual-coding-neuropixels/ecephys-cache")
TABLES = ("sessions.csv", "probes.csv", "channels.csv", "units.csv")
RMA_SESSION_FILE = "EcephysNwb"

#: the manifest ``EcephysProjectCache`` writes (paths relative to the manifest's directory)
MANIFEST = {"manifest": [
    {"type": "manifest_version", "value": "0.3.0"},
    {"type": "dir", "spec": ".", "key": "BASEDIR"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "sessions.csv", "key": "sessions"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "probes.csv", "key": "probes"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "channels.csv", "key": "channels"},
    {"parent_key": "BASEDIR", "type": "file", "spec": "units.csv", "key": "units"},
    {"parent_key": "BASEDIR", "type": "dir", "spec": "session_%d", "key": "session_data"},
    {"parent_key": "session_data", "type": "file", "spec": "session_%d.nwb", "key": "session_nwb"},
    {"parent_key": "session_data", "type": "file", "spec": "session_%d_analysis_metrics.csv",
     "key": "session_analysis_metrics"},
    {"parent_key": "session_data", "type": "file", "spec": "probe_%d_lfp.nwb", "key": "probe_lfp_nwb"},
    {"parent_key": "BASEDIR", "type": "dir", "spec": "natural_movie_templates", "key": "movie_dir"},
    {"parent_key": "movie_dir", "type": "file", "spec": "natural_movie_%d.h5", "key": "natural_movie"},
    {"parent_key": "BASEDIR", "type": "dir", "spec": "natural_scene_templates", "key": "natural_scene_dir"},
    {"parent_key": "natural_scene_dir", "type": "file", "spec": "natural_scene_%d.tiff", "key": "natural_scene"},
]}


def _load_record(root: Path) -> dict:
    try:
        with open(root / F.RECORD) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_record(root: Path, record: dict) -> None:
    p = root / F.RECORD
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, p)


def _check_csv(path: Path, url: str) -> None:
    import pandas as pd

    try:
        df = pd.read_csv(path, nrows=5)
        if "id" not in df.columns:
            raise ValueError("no 'id' column")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        path.unlink(missing_ok=True)
        raise F.VerificationError(f"{url}: not a metadata table ({exc}); refused, nothing kept") from None


def fetch_neuropixels(cache_dir, sessions=None, base_url: str = DEFAULT_NEUROPIXELS_URL, *, templates: bool = True,
                      n_scenes: int = N_SCENES, api_url: str | None = F.DEFAULT_API_URL, retries: int = 5,
                      timeout: float = 60, progress: bool = True) -> dict:
    """Download the metadata tables, the natural scene templates and session NWB files.

    Parameters
    ----------
    cache_dir : path-like
        ``EcephysProjectCache`` directory; created with a standard ``manifest.json`` if it has none
        (an existing AllenSDK cache is completed in place).
    sessions : list of int, optional
        Session ids; default every ``brain_observatory_1.1`` session of ``sessions.csv``.
    base_url : str
        Where the files live, in the bucket's layout.
    templates : bool
        Also fetch ``natural_scene_templates/natural_scene_<n>.tiff`` (n < ``n_scenes``).
    api_url : str or None
        RMA API asked for a session file the bucket lacks (``None``: don't).

    Returns
    -------
    dict
        ``{"downloaded": [paths], "present": [paths], "sessions": [ids]}``.

    Raises
    ------
    DownloadError
        After trying every file, listing those that failed (verified files are kept; a file that
        failed verification is not, a dropped download keeps its ``.part`` for resuming).
    """
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "manifest.json").is_file():
        with open(root / "manifest.json", "w") as f:
            json.dump(MANIFEST, f, indent=2)
    ec = open_ecephys_cache(root)
    base = base_url.rstrip("/")
    record = _load_record(ec.root)
    done: dict = {"downloaded": [], "present": [], "sessions": []}
    failed: dict = {}
    opts = {"retries": retries, "timeout": timeout, "progress": progress}

    def get(rel: str, dest: Path, *, csv=False, session=None):
        url = f"{base}/{rel}"
        try:
            try:
                how = F.ensure_file(url, dest, root=ec.root, record=record, **opts)
            except F.RemoteMissingError:
                if session is None or api_url is None:
                    raise
                link = F.rma_download_url(api_url, session, RMA_SESSION_FILE, timeout)
                how = F.ensure_file(link, dest, root=ec.root, record=record, **opts)
            if csv and how == "downloaded":
                _check_csv(dest, url)
            done[how].append(str(dest))
        except F.DownloadError as exc:
            failed[str(dest)] = str(exc)
        finally:
            _save_record(ec.root, record)

    for name in TABLES:
        get(name, ec.path(name.split(".")[0]), csv=True)
    if str(ec.path("sessions")) in failed:
        raise F.DownloadError(f"{ec.path('sessions')}: {failed[str(ec.path('sessions'))]}")
    table = read_sessions(ec)
    if sessions is None:
        ids = [int(i) for i in table.index[table["session_type"] == NATURAL_SCENES_SESSION]]
    else:
        ids = [int(s) for s in sessions]
        absent = [s for s in ids if s not in table.index]
        if absent:
            raise F.DownloadError(f"{ec.path('sessions')}: no session {absent[0]}; sessions with natural scenes: "
                                  f"{table.index[table['session_type'] == NATURAL_SCENES_SESSION][:8].tolist()} ...")
    if templates:
        for n in range(n_scenes):
            get(f"natural_scene_templates/natural_scene_{n}.tiff", ec.scene_path(n))
    for sid in ids:
        get(f"session_{sid}/session_{sid}.nwb", ec.nwb_path(sid), session=sid)
        if str(ec.nwb_path(sid)) not in failed:
            done["sessions"].append(sid)
    if failed:
        lines = "\n  ".join(f"{k}: {v}" for k, v in failed.items())
        raise F.DownloadError(f"{len(failed)} of {len(failed) + len(done['downloaded']) + len(done['present'])} files "
                              f"failed (the others are in place; run again to retry):\n  {lines}")
    return done


__all__ = ["DEFAULT_NEUROPIXELS_URL", "MANIFEST", "TABLES", "fetch_neuropixels"]
