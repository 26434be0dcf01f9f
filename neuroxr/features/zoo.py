"""The model zoo: the catalog of architectures and :func:`load_model`.

Every model comes from ``catalogs/models.csv`` (torchvision, timm, the lightly/SimCLR AlexNet
of the second study and the non-network baselines) or ``catalogs/taskonomy.csv`` (the 24
Taskonomy encoders).  Names outside the catalogs that timm or torchvision know are loaded too,
with the preprocessing timm resolves for them.

Weights
-------
``random``
    The architecture's own initialisation under ``torch.manual_seed(seed)``: deterministic.
``trained``
    torchvision / timm pretrained weights (Taskonomy: the public encoder checkpoints) from the
    local torch hub or Hugging Face cache, downloaded when online.  Absent and offline:
    :class:`~neuroxr.errors.MissingDataError` saying where to put the file.  Set
    ``NEUROXR_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to never try the network.
a path
    A local checkpoint loaded with ``torch.load(weights_only=True)``: a plain state dict, or a
    dict holding one under ``model_state_dict`` (SimCLR checkpoints of the second study) or
    ``state_dict`` (Taskonomy, Lightning).  ``weights`` records the file's sha256.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalogs import find_selection, read_catalog
from ..errors import MissingDataError, NeuroxrError
from ..io.store import hash_file
from .checkpoints import read_checkpoint
from .weights import (
    check_digest,
    describe_missing,
    fetch_weights,
    find_cached_weights,
    find_weights_spec,
    is_offline,
)

MODELS_CATALOG = "models.csv"
TASKONOMY_CATALOG = "taskonomy.csv"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TRANSFORMER_HINTS = ("vit", "deit", "swin", "beit", "convit", "coat", "levit", "cait", "xcit", "pit_",
                      "tnt", "twins", "crossvit", "eva", "maxvit", "efficientformer", "mobilevit")
_MIXER_HINTS = ("mixer", "resmlp", "gmlp", "mlp")


class UnknownModelError(NeuroxrError, KeyError):
    """A model name that neither the catalogs nor timm/torchvision know."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointMismatchError(NeuroxrError, ValueError):
    """A checkpoint whose keys or shapes do not fit the architecture."""


class CatalogError(NeuroxrError, ValueError):
    """A catalog query or row that names an unknown family, source or constructor."""


class WeightsError(NeuroxrError, ValueError):
    """A ``weights`` value that is neither ``random``, ``trained`` nor a checkpoint path."""


@dataclass
class LoadedModel:
    """A model ready for extraction, in eval mode, with its preprocessing.

    Attributes
    ----------
    model : torch.nn.Module
    name : str
        The catalog name (also the features store's name).
    weights : str
        ``'random'``, ``'trained'`` or the sha256 of the checkpoint file.
    family, source : str
        Catalog family (cnn, transformer, mlp-mixer, taskonomy, ssl, baseline) and source
        (torchvision, timm, taskonomy, lightly, neuroxr).
    input_size : int
        Side in pixels of the square the network sees: the centre crop after ``resize_size``,
        or (without it) the square the images are resized to; 0: no crop / the stimuli's own size.
    resize_size : int
        Shorter side the images are resized to (aspect kept) before the centre crop, as the
        libraries' evaluation transforms do; 0: resize straight to the ``input_size`` square.
    mean, std : tuple of float
        Per-channel normalisation after scaling pixels to [0, 1].
    interpolation : str
        ``'bilinear'`` or ``'bicubic'`` (anti-aliased resize).
    channels : int
        3 for networks (grayscale repeated), 1 for baselines.
    rescale : bool
        Scale 0..255 stimuli to [0, 1] first (False only for the ``pixels`` baseline).
    """

    model: object
    name: str
    weights: str
    family: str
    source: str
    input_size: int
    mean: tuple
    std: tuple
    interpolation: str = "bilinear"
    channels: int = 3
    rescale: bool = True
    resize_size: int = 0
    constructor: str = ""
    seed: int = 0
    device: str = "cpu"
    info: dict = field(default_factory=dict)
    weights_file: str = ""
    weights_sha256: str = ""

    def settings(self) -> dict:
        """The preprocessing and weights as a plain dict (for provenance)."""
        return {
            "model": self.name, "weights": self.weights, "family": self.family, "source": self.source,
            "constructor": self.constructor, "seed": self.seed, "input_size": self.input_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
            "channels": self.channels, "rescale": self.rescale,
            # the file the weights came from and its sha256 (trained or a checkpoint; '' for random)
            "weights_file": self.weights_file, "loaded_sha256": self.weights_sha256,
            "weights_tag": str(self.info.get("weights_tag", "")) if self.weights != "random" else "",
        }


# --------------------------------------------------------------------------- catalog
def _floats(s) -> tuple:
    return tuple(float(v) for v in str(s).split())


def _int(v) -> int:
    """A catalog integer; empty cells (NaN, None, '') are 0."""
    return 0 if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else int(v)


def read_preprocessing(row: dict) -> dict:
    """The preprocessing fields of :class:`LoadedModel` from a catalog row.

    ``input_size``, ``resize_size``, ``mean``, ``std``, ``interpolation``, ``channels`` (1 for
    the baselines, else 3) and ``rescale`` (False only for the ``pixels`` baseline).
    """
    baseline = row["source"] == "neuroxr"
    return {"input_size": _int(row.get("input_size")), "resize_size": _int(row.get("resize_size")),
            "mean": _floats(row["mean"]), "std": _floats(row["std"]),
            "interpolation": str(row.get("interpolation") or "bilinear"), "channels": 1 if baseline else 3,
            "rescale": not (baseline and row["constructor"] == "pixels")}


def list_models(family: str | None = None, source: str | None = None, catalog=None) -> pd.DataFrame:
    """The model catalog as a DataFrame, optionally restricted to one family and/or source.

    Parameters
    ----------
    family : str, optional
        ``cnn``, ``transformer``, ``mlp-mixer``, ``taskonomy``, ``ssl`` or ``baseline``.
    source : str, optional
        ``torchvision``, ``timm``, ``taskonomy``, ``lightly`` or ``neuroxr`` (baselines).
    catalog : str or path, optional
        A selection of the shipped catalogue (``conwell2021``: the paper's architectures, its
        Taskonomy encoders and random encoder, and the baselines; see :data:`neuroxr.catalogs.SELECTIONS`),
        or another models CSV with the same columns (default: ``catalogs/models.csv`` plus the
        Taskonomy encoders of ``catalogs/taskonomy.csv``).

    Returns
    -------
    DataFrame
        One row per model: ``model, family, source, constructor, input_size, resize_size,
        interpolation, mean, std, params, top1, top5, in_paper, paper_name, paper_type, task_cluster,
        weights_tag, weights_repo, weights_file, weights_url, sha256_prefix, sha256`` (Taskonomy rows
        add ``task, cluster``).
    """
    selection = find_selection(catalog)
    if catalog is None or selection is not None:
        df = pd.concat([read_catalog(MODELS_CATALOG), _taskonomy_rows()], ignore_index=True)
    else:
        df = read_catalog(catalog)
    if "in_paper" in df:
        df["in_paper"] = df["in_paper"].map(_truthy)
    if selection is not None:
        df = df[selection(df)]
    for col, val in (("family", family), ("source", source)):
        if val is not None:
            known = sorted(df[col].dropna().unique())
            if val not in known:
                raise CatalogError(f"unknown {col} {val!r}; the catalog has {', '.join(known)}")
            df = df[df[col] == val]
    return df.reset_index(drop=True)


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "y")


def _taskonomy_rows() -> pd.DataFrame:
    """The Taskonomy encoders of ``catalogs/taskonomy.csv`` as model-catalogue rows."""
    tk = read_catalog(TASKONOMY_CATALOG)
    n = len(tk)
    return pd.DataFrame({
        "model": tk["model"], "family": "taskonomy", "source": "taskonomy", "constructor": "taskonomy_encoder",
        "input_size": 0, "resize_size": 256, "interpolation": "bilinear", "mean": "0.5 0.5 0.5", "std": "0.5 0.5 0.5",
        "params": _taskonomy_params(), "top1": np.nan, "top5": np.nan,
        "in_paper": tk["in_paper"] if "in_paper" in tk else [True] * n,
        "paper_type": tk.get("paper_type", pd.Series([np.nan] * n)),
        "task_cluster": tk.get("task_cluster", pd.Series([np.nan] * n)),
        "weights_tag": [("published" if isinstance(f, str) and f else np.nan) for f in tk["encoder_file"]],
        "weights_file": tk["encoder_file"], "weights_url": tk.get("url", pd.Series([np.nan] * n)),
        "sha256": tk.get("sha256", pd.Series([np.nan] * n)),
        "task": tk["task"], "cluster": tk["cluster"],
    })


def _taskonomy_params() -> int:
    # torchvision ResNet-50 without fc (23,508,032) + compress1 (2048*8*9) + compress_bn (16)
    return 23_655_504


def find_model_row(name: str, catalog=None) -> dict | None:
    """The catalog row of ``name`` as a dict, or None."""
    df = list_models(catalog=catalog)
    hit = df[df["model"] == name]
    if len(hit):
        return hit.iloc[0].to_dict()
    return None


def suggest_models(name: str, catalog=None, n: int = 5) -> list[str]:
    names = list(list_models(catalog=catalog)["model"])
    return difflib.get_close_matches(name, names, n=n, cutoff=0.5)


def _unknown(name, catalog=None):
    near = suggest_models(name, catalog)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return UnknownModelError(
        f"unknown model {name!r} (not in the catalog, timm or torchvision){hint} "
        "List the catalog with `neuroxr models`."
    )


def resolve_model_row(name: str, catalog=None) -> dict:
    """The catalog row of ``name``, or one built from timm / torchvision for names they know.

    Raises :class:`UnknownModelError` (with the nearest catalog names) for any other name.
    """
    row = find_model_row(name, catalog)
    if row is not None:
        return row
    import timm
    import torchvision

    if name in torchvision.models.list_models():
        return {"model": name, "family": _guess_family(name), "source": "torchvision", "constructor": name,
                "input_size": 299 if name == "inception_v3" else 224, "interpolation": "bilinear",
                "resize_size": _torchvision_resize_size(name),
                "mean": " ".join(map(str, IMAGENET_MEAN)), "std": " ".join(map(str, IMAGENET_STD))}
    if timm.is_model(name):
        cfg = timm.models.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg is not None else 224
        crop_pct = getattr(cfg, "crop_pct", None) or 0.875
        return {"model": name, "family": _guess_family(name), "source": "timm", "constructor": name,
                "input_size": size, "resize_size": math.floor(size / crop_pct), "interpolation": getattr(cfg, "interpolation", "bicubic") or "bicubic",
                "mean": " ".join(map(str, getattr(cfg, "mean", IMAGENET_MEAN))),
                "std": " ".join(map(str, getattr(cfg, "std", IMAGENET_STD)))}
    raise _unknown(name, catalog)


def _torchvision_resize_size(name: str) -> int:
    """The shorter side torchvision's default weights resize to before the crop (0: no weights)."""
    from torchvision.models import get_model_weights

    try:
        return int(get_model_weights(name).DEFAULT.transforms().resize_size[0])
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return 0


def _guess_family(name: str) -> str:
    n = name.lower()
    if any(h in n for h in _MIXER_HINTS):
        return "mlp-mixer"
    if any(h in n for h in _TRANSFORMER_HINTS):
        return "transformer"
    return "cnn"


# --------------------------------------------------------------------------- builders
def _build(row: dict, seed: int):
    """Construct the architecture with its own random initialisation."""
    import torch

    src, ctor = row["source"], row["constructor"]
    torch.manual_seed(seed)
    if src in ("torchvision", "lightly"):
        from torchvision.models import get_model

        kw = {"init_weights": True} if ctor in ("googlenet", "inception_v3") else {}
        return get_model(ctor, weights=None, **kw)
    if src == "timm":
        import timm

        return timm.create_model(ctor, pretrained=False)
    if src == "taskonomy":
        from .taskonomy import build_taskonomy_encoder

        return build_taskonomy_encoder()
    if src == "neuroxr":
        from .baselines import build_baseline

        return build_baseline(ctor, seed=seed)
    raise CatalogError(f"catalog row {row['model']!r}: unknown source {src!r}")


def _offline() -> bool:
    return is_offline()


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _torchvision_state_dict_from(path: Path, what: str):
    """torchvision's builders read the weights through ``WeightsEnum.get_state_dict``: here from ``path``
    with ``torch.load(weights_only=True)`` (the builders' own call would unpickle), so their
    key fixes (DenseNet) and constructor settings (GoogLeNet, Inception-v3) still apply."""
    from torchvision.models._api import WeightsEnum

    with _PATCH_LOCK:
        original = WeightsEnum.get_state_dict
        WeightsEnum.get_state_dict = lambda self, *a, **k: read_checkpoint(path, what)
        try:
            yield
        finally:
            WeightsEnum.get_state_dict = original


def _trained_file(row: dict):
    """The verified local file of a row's pinned trained weights (fetched when online), and its sha256."""
    name, src = row["model"], row["source"]
    spec = find_weights_spec(row)
    if spec is None:
        if src == "taskonomy":
            raise MissingDataError(f"{name!r} is the randomly initialised Taskonomy encoder: it has no trained "
                                   "weights (use weights 'random')")
        raise MissingDataError(
            f"{name!r} ({src}) has no published trained weights; pass --weights PATH with a checkpoint "
            f"(e.g. one written by `neuroxr simclr`)")
    path = find_cached_weights(spec)
    if path is None:
        if is_offline():
            raise MissingDataError(describe_missing(spec) + " (downloads are off: NEUROXR_OFFLINE / HF_HUB_OFFLINE)")
        from ..io.fetch import DownloadError

        try:
            path, _ = fetch_weights(spec)
        except DownloadError as exc:
            raise MissingDataError(f"trained weights of {name!r} could not be downloaded: {exc}. "
                                   f"{describe_missing(spec)}") from None
    digest = hash_file(path)
    check_digest(path, spec, digest)
    return spec, path, digest


def _trained(row: dict, seed: int):
    """Pretrained weights from the standard cache (downloaded when online), loaded as tensors only.

    Returns the model and ``(file, sha256)`` of the file loaded (None for the baselines).
    """
    import torch

    src, ctor, name = row["source"], row["constructor"], row["model"]
    if src == "neuroxr":
        return _build(row, seed), None  # baselines have no weights
    spec, path, digest = _trained_file(row)
    what = f"trained weights of {name!r}"
    if src == "torchvision":
        from torchvision.models import get_model, get_model_weights

        enum = get_model_weights(ctor)[spec.tag or "DEFAULT"]
        torch.manual_seed(seed)
        with _torchvision_state_dict_from(path, what):
            model = get_model(ctor, weights=enum)
    elif src == "timm":
        import timm

        torch.manual_seed(seed)
        arch = f"{ctor}.{spec.tag}" if spec.tag else ctor
        try:
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointMismatchError(f"{path}: does not load into timm {arch!r} ({type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and run "
                                          f"`neuroxr fetch weights --model {name}` again") from None
    elif src == "taskonomy":
        from .taskonomy import build_taskonomy_encoder, unwrap_taskonomy_checkpoint

        model = build_taskonomy_encoder()
        sd = unwrap_taskonomy_checkpoint(read_checkpoint(path, f"Taskonomy checkpoint of {name!r}"))
        _load_state_dict(model, sd, path, name)
    else:
        raise MissingDataError(f"{name!r} ({src}) has no published trained weights; pass --weights PATH")
    return model, (str(path), digest)


def _unwrap_checkpoint(obj, path):
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                return inner, obj
        return obj, obj
    raise CheckpointMismatchError(f"{path}: expected a state dict (a dict of tensors), got {type(obj).__name__}")


def _load_state_dict(model, sd: dict, path, name: str) -> None:
    import torch

    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def _few(xs):
            return ", ".join(xs[:6]) + (f" (+{len(xs) - 6} more)" if len(xs) > 6 else "") if xs else "none"

        raise CheckpointMismatchError(
            f"{path}: checkpoint does not fit {name!r}: missing keys: {_few(missing)}; "
            f"unexpected keys: {_few(unexpected)}; shape mismatches: {_few(shapes)}. "
            "Pass a checkpoint of this architecture (or pick the matching --model)"
        )
    model.load_state_dict(sd, strict=True)


def _from_file(row: dict, path: Path, seed: int):
    if not path.exists():
        raise MissingDataError(f"weights file {path} does not exist (model {row['model']!r})")
    obj = read_checkpoint(path, f"checkpoint of {row['model']!r}")
    sd, outer = _unwrap_checkpoint(obj, path)
    arch = outer.get("arch") if isinstance(outer, dict) else None
    if isinstance(arch, str) and arch not in (row["constructor"], row["model"]):
        raise CheckpointMismatchError(
            f"{path}: checkpoint is for arch {arch!r}, but model {row['model']!r} is {row['constructor']!r}; "
            f"use --model {arch} or another checkpoint"
        )
    model = _build(row, seed)
    _load_state_dict(model, sd, path, row["model"])
    return model


def load_model(name: str, weights: str = "random", seed: int = 0, device=None, catalog=None) -> LoadedModel:
    """Build the model ``name`` with the given weights, in eval mode.

    Parameters
    ----------
    name : str
        A catalog name (``neuroxr models``), or any timm / torchvision model name.
    weights : str or path
        ``'random'`` (seeded own initialisation), ``'trained'`` (pretrained, local cache first) or
        a checkpoint path (its sha256 is recorded).
    seed : int
        Seed of ``torch.manual_seed`` before construction (random weights, baselines' RFF draw).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.

    Returns
    -------
    LoadedModel

    Raises
    ------
    UnknownModelError
        ``name`` is unknown (the message suggests the nearest catalog names).
    MissingDataError
        Trained weights are not cached and cannot be downloaded; or the path does not exist.
    CheckpointMismatchError
        The checkpoint's keys or shapes do not fit the architecture (names them).
    """
    import torch

    row = resolve_model_row(name, catalog)
    weights = str(weights)
    loaded_file = None
    if weights == "random":
        model, label = _build(row, seed), "random"
    elif weights == "trained":
        (model, loaded_file), label = _trained(row, seed), "trained"
    else:
        path = Path(weights).expanduser()
        if not path.exists() and not any(s in weights for s in ("/", "\\", ".")):
            raise WeightsError(
                f"--weights must be 'random', 'trained' or a checkpoint path, got {weights!r}")
        model = _from_file(row, path, seed)
        label = hash_file(path)
        loaded_file = (str(path), label)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(
        model=model, name=row["model"], weights=label, family=row["family"], source=row["source"],
        constructor=row["constructor"], seed=int(seed), device=str(device),
        info={k: row[k] for k in ("task", "cluster", "params", "top1", "top5", "weights_tag") if k in row
              and pd.notna(row[k])},
        weights_file=loaded_file[0] if loaded_file else "", weights_sha256=loaded_file[1] if loaded_file else "",
        **read_preprocessing(row),
    )


__all__ = [
    "CatalogError",
    "CheckpointMismatchError",
    "LoadedModel",
    "UnknownModelError",
    "WeightsError",
    "list_models",
    "load_model",
    "read_preprocessing",
    "resolve_model_row",
    "suggest_models",
]
