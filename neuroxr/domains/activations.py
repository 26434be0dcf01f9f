"""The domain study's networks: SimCLR checkpoints and their conv-layer activations to the stimuli."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MissingDataError, NeuroxrError
from ..features.hooks import iter_layer_activations
from ..features.zoo import load_model
from ..io.store import hash_file
from .simclr import CONV_LAYERS, calc_conv_activations, load_simclr_alexnet, prepare_pixels

SUPPORTED_MODELS = ("alexnet-simclr",)


def parse_model_spec(spec: str) -> tuple[str, Path]:
    """``"alexnet-simclr@path/to.ckpt"`` -> ``("alexnet-simclr", Path("path/to.ckpt"))``."""
    if "@" not in str(spec):
        raise NeuroxrError(f"--model {spec!r}: expected MODEL@CHECKPOINT, e.g. alexnet-simclr@runs/lines.pt")
    model, path = str(spec).split("@", 1)
    if model not in SUPPORTED_MODELS:
        raise NeuroxrError(f"--model {spec!r}: model {model!r} is not one of {SUPPORTED_MODELS}")
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"--model {spec!r}: checkpoint {path} does not exist; train it with `neuroxr train-ssl`")
    return model, path


def _labels_for(checkpoints: list[tuple[Path, dict]]) -> list[str]:
    names = [str(c.get("domain") or p.stem) for p, c in checkpoints]
    out = []
    for (p, _), n in zip(checkpoints, names):
        out.append(n if names.count(n) == 1 else f"{n}:{p.stem}")
    if len(set(out)) < len(out):
        out = [f"{n}#{i}" for i, n in enumerate(out)]
    return out


def _zoo_conv_activations(path, pixels, layers, batch_size):
    """conv1..conv5 (after ReLU) through the zoo, exactly as ``neuroxr extract`` sees them."""
    loaded = load_model("alexnet-simclr", weights=str(path), device="cpu")
    want = {f"features.{CONV_LAYERS[l] - 1}": l for l in layers}  # the ReLU closing each conv block
    out = {}
    for name, _mtype, a in iter_layer_activations(loaded, np.asarray(pixels), batch_size=batch_size):
        if name in want:
            out[want[name]] = a
    missing = [l for l in layers if l not in out]
    if missing:
        raise NeuroxrError(f"{path}: the zoo's alexnet-simclr did not yield layers {missing} "
                           f"(looked for {sorted(want)})")
    return {l: out[l] for l in layers}


def collect_domain_activations(pixels, checkpoints, layers=tuple(CONV_LAYERS), batch_size: int = 64,
                               backend: str = "zoo"):
    """Activations of every checkpoint's conv layers to the stimuli.

    Parameters
    ----------
    pixels : array (image, y, x)
    checkpoints : list of paths (or dict label -> path)
    layers : conv layer names (:data:`~neuroxr.domains.simclr.CONV_LAYERS`)
    backend : {"zoo", "direct"}
        ``"zoo"``: :func:`neuroxr.features.zoo.load_model` ("alexnet-simclr") and
        :func:`neuroxr.features.extract.iter_layer_activations`, the same preprocessing as
        ``neuroxr extract``; ``"direct"``: torchvision AlexNet and
        :func:`~neuroxr.domains.simclr.prepare_pixels` (centre square crop, resize to the
        checkpoint's image size, its normalisation).

    Returns
    -------
    activations : dict label -> dict layer -> ndarray (image, feature)
    info : DataFrame
        One row per network: ``label, domain, checkpoint, weights`` (file sha256), ``epochs``,
        ``steps``, ``final_loss``, ``image_size``, ``domain_dir``.
    filters : dict label -> ndarray (64, 3, 11, 11), the first-layer filters
    """
    if isinstance(checkpoints, dict):
        labels_given = list(checkpoints)
        paths = [Path(p) for p in checkpoints.values()]
    else:
        labels_given = None
        paths = [Path(p) for p in checkpoints]
    if not paths:
        raise NeuroxrError("collect_domain_activations: no checkpoints given; pass --model alexnet-simclr@CKPT")
    if backend not in ("zoo", "direct"):
        raise NeuroxrError(f"backend={backend!r} is not one of 'zoo', 'direct'")
    loaded = [(p, *load_simclr_alexnet(p)) for p in paths]
    labels = labels_given or _labels_for([(p, c) for p, _, c in loaded])
    acts, rows, filters = {}, [], {}
    for label, (p, net, ckpt) in zip(labels, loaded):
        size = int(ckpt.get("image_size", 64))
        if backend == "zoo":
            acts[label] = _zoo_conv_activations(p, pixels, layers, batch_size)
        else:
            x = prepare_pixels(pixels, image_size=size, normalize=ckpt.get("normalize"))
            acts[label] = calc_conv_activations(net, x, layers=layers, batch_size=batch_size)
        filters[label] = net.features[0].weight.detach().cpu().numpy()
        hist = ckpt.get("loss_history") or []
        rows.append({
            "label": label, "domain": ckpt.get("domain", label), "checkpoint": str(p), "weights": hash_file(p),
            "epochs": ckpt.get("epochs"), "steps": ckpt.get("steps"),
            "final_loss": float(hist[-1]) if hist else np.nan, "image_size": size,
            "domain_dir": (ckpt.get("settings") or {}).get("domain_dir"),
        })
    return acts, pd.DataFrame(rows), filters


__all__ = ["SUPPORTED_MODELS", "parse_model_spec", "collect_domain_activations"]
