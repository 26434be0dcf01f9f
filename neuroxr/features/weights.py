"""Where each catalogue row's trained weights live: one answer for ``extract``, ``run --check`` and ``fetch weights``.

Every trained variant is one published file, pinned in the catalogue (``weights_tag``, ``weights_file``,
``weights_url``, ``weights_repo``, ``sha256`` / ``sha256_prefix``):

``torch-hub``
    torchvision weights, timm weights served from a URL and the Taskonomy encoders: the file
    ``$TORCH_HOME/hub/checkpoints/<weights_file>`` (``torch.hub.get_dir()``), as
    ``torch.hub.load_state_dict_from_url`` stores it.
``hf-hub``
    timm weights on the Hugging Face hub: ``<weights_file>`` of the repo ``<weights_repo>``, in the
    hub cache layout ``$HF_HUB_CACHE/models--<org>--<name>/snapshots/<commit>/<file>`` with
    ``refs/main`` naming the commit (what ``huggingface_hub`` writes and reads offline), fetched
    from ``$HF_ENDPOINT/<repo>/resolve/main/<file>``.

:func:`find_weights_spec` gives a row's :class:`WeightsSpec`; :func:`find_cached_weights` the
file already in the standard cache (no network); :func:`fetch_weights` downloads it through
:mod:`neuroxr.io.fetch` (resume, sha256 check, progress bar); :func:`describe_weights` the lines
to fill the cache by hand.  Nothing here imports torch, timm or huggingface_hub.
"""
from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDataError

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class WeightsSpec:
    """One trained variant's published file and where the standard cache keeps it."""

    model: str
    source: str
    kind: str                 #: ``torch-hub`` or ``hf-hub``
    file: str                 #: file name (torch hub) or file inside the repo (hub)
    url: str                  #: where it is downloaded from
    cache_path: Path          #: where the standard cache keeps it (hub: under snapshots/main until fetched)
    tag: str = ""             #: torchvision enum / timm pretrained tag
    repo_id: str = ""         #: hub repo (``timm/<arch>.<tag>``)
    revision: str = "main"
    sha256: str = ""          #: full sha256 where known
    sha256_prefix: str = ""   #: the start of the sha256 the file name carries

    def lines(self) -> list[str]:
        """What to put where, one ``key: value`` per line (for ``fetch weights --print``)."""
        out = [f"{self.model} ({self.source}, {self.tag or 'published'}):"]
        if self.repo_id:
            out += [f"  repo id: {self.repo_id} (revision {self.revision})", f"  file: {self.file}"]
        else:
            out.append(f"  file: {self.file}")
        out += [f"  url: {self.url}", f"  cache path: {self.cache_path}"]
        if self.repo_id:
            out.append("  (hub layout: put the file in snapshots/<commit>/ and the commit in refs/main; "
                       "any name works as <commit>, e.g. 'main')")
        out.append(f"  sha256: {self.sha256}" if self.sha256 else
                   f"  sha256 starts with: {self.sha256_prefix}" if self.sha256_prefix else
                   "  sha256: not published in the catalogue (the hub's own checksum is checked on download)")
        return out


# --------------------------------------------------------------------------- standard caches (no imports)
def _cache_home() -> str:
    return os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` without importing torch (``TORCH_HOME``, ``XDG_CACHE_HOME``)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(_cache_home(), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``), as huggingface_hub resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(_cache_home(), "huggingface")
    return Path(home).expanduser() / "hub"


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """``NEUROXR_OFFLINE`` or ``HF_HUB_OFFLINE`` set: never touch the network."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("NEUROXR_OFFLINE", "HF_HUB_OFFLINE"))


def hub_repo_dir(repo_id: str) -> Path:
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


# --------------------------------------------------------------------------- the one spec per row
def _text(row: dict, key: str) -> str:
    v = row.get(key)
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()


def has_trained_weights(row: dict) -> bool:
    """Whether a catalogue row has published trained weights (baselines, the random Taskonomy
    encoder and the SimCLR AlexNet, which needs a checkpoint file, have none)."""
    return bool(_text(row, "weights_file") and _text(row, "weights_url"))


def find_weights_spec(row: dict) -> WeightsSpec | None:
    """The published trained weights of a catalogue row, or None when it has none."""
    if not has_trained_weights(row):
        return None
    file, url, repo = _text(row, "weights_file"), _text(row, "weights_url"), _text(row, "weights_repo")
    sha = _text(row, "sha256").lower()
    prefix = _text(row, "sha256_prefix").lower()
    common = {"model": str(row["model"]), "source": str(row.get("source", "")), "file": file,
              "tag": _text(row, "weights_tag"), "sha256": sha, "sha256_prefix": prefix}
    if repo:
        revision = _text(row, "weights_revision") or "main"
        url = f"{hf_endpoint()}/{repo}/resolve/{revision}/{file}"
        return WeightsSpec(kind="hf-hub", url=url, repo_id=repo, revision=revision,
                           cache_path=hub_repo_dir(repo) / "snapshots" / revision / file, **common)
    return WeightsSpec(kind="torch-hub", url=url, cache_path=torch_hub_checkpoints() / file, **common)


def find_cached_weights(spec: WeightsSpec) -> Path | None:
    """The file of ``spec`` in the standard cache, or None (file checks only, never the network)."""
    if spec.kind == "torch-hub":
        return spec.cache_path if spec.cache_path.is_file() else None
    repo = hub_repo_dir(spec.repo_id)
    ref = repo / "refs" / spec.revision
    commit = ref.read_text().strip() if ref.is_file() else spec.revision
    p = repo / "snapshots" / commit / spec.file
    if p.is_file():
        return p
    snaps = sorted((repo / "snapshots").glob(f"*/{spec.file}")) if (repo / "snapshots").is_dir() else []
    return snaps[0] if snaps else None


def describe_missing(spec: WeightsSpec) -> str:
    """One line: what is missing, where it was looked for, how to get it."""
    where = (f"{spec.cache_path} (torch hub cache)" if spec.kind == "torch-hub" else
             f"{hub_repo_dir(spec.repo_id) / 'snapshots' / '*' / spec.file} (Hugging Face hub cache, repo {spec.repo_id})")
    return (f"{spec.model} ({spec.source}) trained weights: {where} is missing; run `neuroxr fetch weights "
            f"--model {spec.model}` on a machine that is online (or `--print` for the file, URL and cache path "
            f"to fill by hand), or give the weights as a file")


def check_digest(path: Path, spec: WeightsSpec, digest: str, url: str | None = None) -> None:
    """Raise :class:`~neuroxr.io.fetch.VerificationError` when ``digest`` (sha256 of ``path``) is not the pinned one."""
    from ..io.fetch import VerificationError

    want = spec.sha256 or spec.sha256_prefix
    if want and not digest.startswith(want):
        what = "sha256" if spec.sha256 else "sha256 prefix"
        raise VerificationError(
            f"{path}: sha256 {digest} does not match the catalogue's {what} {want} for {spec.model} "
            f"({url or spec.url}); the file is damaged or another version: delete it and run "
            f"`neuroxr fetch weights --model {spec.model}` again")


# --------------------------------------------------------------------------- downloads
def fetch_weights(spec: WeightsSpec, *, progress: bool = True, retries: int = 5, timeout: float = 60) -> tuple[Path, str]:
    """Make the file of ``spec`` present and verified in the standard cache.

    Returns ``(path, status)`` with status ``present`` (found in the cache: nothing fetched) or
    ``downloaded``.  Raises :class:`~neuroxr.errors.MissingDataError` when it is not cached and
    downloads are off (``NEUROXR_OFFLINE`` / ``HF_HUB_OFFLINE``), and
    :class:`~neuroxr.io.fetch.DownloadError` / ``VerificationError`` when the download fails or
    the file is not the pinned one (nothing of it is kept then).
    """
    have = find_cached_weights(spec)
    if have is not None:
        return have, "present"
    if is_offline():
        raise MissingDataError(describe_missing(spec) + " (downloads are off: NEUROXR_OFFLINE / HF_HUB_OFFLINE)")
    from ..io import fetch as F

    if spec.kind == "torch-hub":
        F.download_verified(spec.url, spec.cache_path, sha256=spec.sha256 or None,
                            sha256_prefix=None if spec.sha256 else (spec.sha256_prefix or None),
                            progress=progress, retries=retries, timeout=timeout, desc=spec.file,
                            hint=f"run `neuroxr fetch weights --model {spec.model}` again")
        return spec.cache_path, "downloaded"
    return _fetch_hub(spec, F, progress=progress, retries=retries, timeout=timeout), "downloaded"


def _fetch_hub(spec: WeightsSpec, F, *, progress, retries, timeout) -> Path:
    """``<endpoint>/<repo>/resolve/<rev>/<file>`` into the hub cache: blobs/<sha256>, snapshots/<commit>/<file>, refs/<rev>."""
    info = F.hub_file_info(spec.url, timeout=timeout)
    commit = info.get("commit") or spec.revision
    etag = (info.get("sha256") or "").lower()
    if spec.sha256 and etag and _HEX.match(etag) and len(etag) == 64 and etag != spec.sha256:
        raise F.VerificationError(
            f"{spec.url}: the hub announces sha256 {etag}, the catalogue pins {spec.sha256} for {spec.model}; "
            f"refused, nothing downloaded (the repo changed: pin weights_revision, or update the catalogue)")
    want = spec.sha256 or (etag if len(etag) == 64 and _HEX.match(etag) else None)
    repo = hub_repo_dir(spec.repo_id)
    blob = repo / "blobs" / (want or f"{spec.file}.incomplete-{commit}")
    # no size hint: a short or changed file is refused by its sha256, named in the message
    F.download_verified(info.get("location") or spec.url, blob, sha256=want,
                        progress=progress, retries=retries, timeout=timeout, desc=f"{spec.repo_id}/{spec.file}",
                        hint=f"run `neuroxr fetch weights --model {spec.model}` again")
    if want is None:  # no checksum anywhere: name the blob by its content
        from ..io.store import hash_file

        digest = hash_file(blob)
        final = repo / "blobs" / digest
        os.replace(blob, final)
        blob = final
    snap = repo / "snapshots" / commit / spec.file
    snap.parent.mkdir(parents=True, exist_ok=True)
    if snap.exists() or snap.is_symlink():
        snap.unlink()
    try:
        snap.symlink_to(os.path.relpath(blob, snap.parent))
    except OSError:  # no symlinks (some file systems): a copy, as huggingface_hub does then
        shutil.copyfile(blob, snap)
    ref = repo / "refs" / spec.revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snap


__all__ = [
    "WeightsSpec",
    "check_digest",
    "describe_missing",
    "fetch_weights",
    "find_cached_weights",
    "find_weights_spec",
    "has_trained_weights",
    "hf_endpoint",
    "hf_hub_cache",
    "is_offline",
    "torch_hub_checkpoints",
]
