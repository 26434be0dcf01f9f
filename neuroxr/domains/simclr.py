"""SimCLR training of an AlexNet on one image domain (lightly + PyTorch).

Settings follow Prasad et al. (2022), talmolab/domain_rep ``train_simclr/``:

- backbone: torchvision AlexNet ``features`` + ``avgpool`` (9216-d output, flattened);
- projection head: :class:`lightly.models.modules.SimCLRProjectionHead` (9216 -> 9216 -> 128,
  2 layers, batch norm);
- loss: :class:`lightly.loss.NTXentLoss` at temperature 0.1;
- optimiser: LARS (:class:`lightly.utils.lars.LARS`), lr 4.8, momentum 0.9, weight decay 1e-6;
- schedule: :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` (factor 0.5, patience 10,
  threshold 0.1 relative) on the epoch loss, checked every 10 epochs (as their Lightning
  scheduler config ``frequency: 10``);
- augmentations (:func:`make_simclr_transform`, lightly's SimCLR view without colour jitter
  and blur): random resized crop (scale 0.08-1), horizontal and vertical flips
  (p 0.5 each; the paper's text — the released collate function left the vertical flip at
  lightly's default 0), random grayscale (p 0.2), ImageNet normalisation;
- batch 4096, 600 epochs.

The checkpoint is a plain ``torch.save`` dict readable with ``weights_only=True``:
``model_state_dict`` (a whole ``torchvision.models.alexnet()`` state dict: the trained
backbone lives in ``features``, the classifier keeps its initialisation), ``arch``,
``framework`` (``"lightly-simclr"``), ``domain``, ``epochs``, ``steps``, ``image_size``,
``normalize`` (mean/std lists), ``loss_history`` (one float per epoch), ``step_losses`` and
``settings``.
"""
from __future__ import annotations

import math
import os
import random
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import MissingDataError, NeuroxrError, StoreExistsError
from ..features.checkpoints import read_checkpoint
from .naturalness import list_domain_images

__all__ = [
    "IMAGENET_NORMALIZE",
    "CONV_LAYERS",
    "SimCLRAlexNet",
    "build_simclr_model",
    "make_simclr_transform",
    "train_simclr",
    "load_simclr_checkpoint",
    "load_simclr_alexnet",
    "prepare_pixels",
    "calc_conv_activations",
]

IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
#: the study's layers: conv1..conv5 after their ReLU = ``alexnet.features[:k]`` (domain_rep LAYER_MAPPING)
CONV_LAYERS = {"conv1": 2, "conv2": 5, "conv3": 8, "conv4": 10, "conv5": 12}


class _ImageFolderDataset:
    """Image files of one domain folder, returned as RGB PIL images through ``transform``."""

    def __init__(self, files, transform):
        self.files = list(files)
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path = self.files[i]
        if Path(path).suffix.lower() == ".npy":
            arr = np.squeeze(np.load(path))
            if arr.dtype != np.uint8:
                lo, hi = float(arr.min()), float(arr.max())
                arr = ((arr - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
            im = Image.fromarray(arr).convert("RGB")
        else:
            with Image.open(path) as f:
                im = f.convert("RGB")
        return self.transform(im)


def build_simclr_model(embedding_dim: int = 128, hidden_dim: int = 9216, seed: int | None = 0):
    """A :class:`SimCLRAlexNet` with freshly initialised weights (seeded when ``seed`` is given)."""
    if seed is not None:
        torch.manual_seed(int(seed))
    return SimCLRAlexNet(embedding_dim=embedding_dim, hidden_dim=hidden_dim)


class SimCLRAlexNet(torch.nn.Module):
    """AlexNet backbone (``features`` + ``avgpool``, flattened to 9216) + SimCLR projection head."""

    def __init__(self, embedding_dim: int = 128, hidden_dim: int = 9216):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.alexnet = torchvision.models.alexnet(weights=None)
        self.projection_head = SimCLRProjectionHead(256 * 6 * 6, int(hidden_dim), int(embedding_dim))

    def embed(self, x):
        """Backbone output (batch, 9216)."""
        h = self.alexnet.avgpool(self.alexnet.features(x))
        return h.flatten(start_dim=1)

    def forward(self, x):
        return self.projection_head(self.embed(x))


def make_simclr_transform(image_size: int = 64, vf_prob: float = 0.5, hf_prob: float = 0.5,
                          random_gray_scale: float = 0.2, min_scale: float = 0.08,
                          normalize: dict | None = IMAGENET_NORMALIZE, resize: int | None = 64):
    """Two-view SimCLR transform with only crop, flips and grayscale (no colour jitter, no blur).

    Every image is first resized to ``resize x resize`` (64, as domain_rep's dataset transform
    ``Resize((64, 64))`` before lightly's collate; None: as it is).
    Each view: ``RandomResizedCrop(image_size, scale=(min_scale, 1))``, horizontal and vertical
    flips, ``RandomGrayscale``, to tensor, normalisation: the transforms of lightly's
    ``SimCLRViewTransform`` without its (switched-off) jitter, rotation and blur, wrapped in
    lightly's ``MultiViewTransform``.
    """
    from lightly.transforms.multi_view_transform import MultiViewTransform

    steps = [] if not resize else [T.Resize((int(resize), int(resize)), antialias=True)]
    steps += [
        T.RandomResizedCrop(int(image_size), scale=(float(min_scale), 1.0), antialias=True),
        T.RandomHorizontalFlip(p=hf_prob),
        T.RandomVerticalFlip(p=vf_prob),
        T.RandomGrayscale(p=random_gray_scale),
        T.ToTensor(),
    ]
    if normalize:
        steps.append(T.Normalize(mean=normalize["mean"], std=normalize["std"]))
    view = T.Compose(steps)
    return MultiViewTransform([view, view])


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def train_simclr(domain_dir, out, *, epochs: int = 600, batch_size: int = 4096, image_size: int = 64,
                 lr: float = 4.8, momentum: float = 0.9, weight_decay: float = 1e-6,
                 temperature: float = 0.1, embedding_dim: int = 128, hidden_dim: int = 9216,
                 vf_prob: float = 0.5, plateau_factor: float = 0.5, plateau_patience: int = 10,
                 plateau_threshold: float = 0.1, plateau_every: int = 10, max_steps: int | None = None,
                 seed: int = 0, num_workers: int = 0, device: str | None = None,
                 domain: str | None = None, checkpoint_every: int = 50, progress: bool = True,
                 overwrite: bool = False, resize: int | None = 64) -> dict:
    """Train a SimCLR AlexNet on the images of ``domain_dir`` and save a checkpoint to ``out``.

    Parameters
    ----------
    domain_dir : path
        Folder of images (searched recursively), one domain.
    out : path
        Checkpoint file written (atomically) every ``checkpoint_every`` epochs and at the end.
    epochs, batch_size, image_size, lr, momentum, weight_decay, temperature, embedding_dim,
    hidden_dim, vf_prob :
        The study's settings by default (see the module docstring).  ``batch_size`` is lowered
        to the number of images when the domain is smaller (the last partial batch is
        dropped, as in the study).
    plateau_factor, plateau_patience, plateau_threshold, plateau_every :
        ReduceLROnPlateau on the mean epoch loss, stepped every ``plateau_every`` epochs.
    max_steps : int, optional
        Stop after this many optimiser steps (tests, smoke runs).
    resize : int, optional
        Every image is resized to ``resize x resize`` before the augmentations (64, the paper's).
    seed : int
        Seeds the initialisation, the batch order and the augmentations.
    device : str, optional
        ``"cuda"`` when available, else ``"cpu"``.

    Returns
    -------
    dict
        The saved checkpoint (``model_state_dict`` etc.).
    """
    from lightly.loss import NTXentLoss
    from lightly.utils.lars import LARS

    out = Path(out)
    files, domain, bs, dev = _check_training_inputs(domain_dir, out, image_size, batch_size, domain, device,
                                                    overwrite)
    model = build_simclr_model(embedding_dim=embedding_dim, hidden_dim=hidden_dim, seed=seed).to(dev)
    ds = _ImageFolderDataset(files, make_simclr_transform(image_size=image_size, vf_prob=vf_prob,
                                                                resize=resize))
    gen = torch.Generator().manual_seed(int(seed))
    loader = DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=int(num_workers),
                        generator=gen, pin_memory=dev.type == "cuda", persistent_workers=num_workers > 0)
    optim = LARS(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optim, mode="min", factor=plateau_factor, patience=plateau_patience, threshold=plateau_threshold,
        threshold_mode="rel")
    settings = {
        "domain_dir": str(domain_dir), "n_images": len(files), "epochs": int(epochs), "batch_size": bs,
        "batch_size_asked": int(batch_size), "image_size": int(image_size), "lr": lr, "momentum": momentum,
        "weight_decay": weight_decay, "temperature": temperature, "embedding_dim": int(embedding_dim),
        "hidden_dim": int(hidden_dim), "vf_prob": vf_prob, "hf_prob": 0.5, "random_gray_scale": 0.2,
        "min_scale": 0.08, "resize": None if not resize else int(resize), "plateau_factor": plateau_factor,
        "plateau_patience": int(plateau_patience),
        "plateau_threshold": plateau_threshold, "plateau_every": int(plateau_every),
        "max_steps": None if max_steps is None else int(max_steps), "seed": int(seed), "device": str(dev),
    }
    # seed the augmentations (torchvision transforms draw from torch's global generator)
    torch.manual_seed(int(seed) + 1)
    np.random.seed(int(seed) % (2**32))
    random.seed(int(seed))

    run = _SimCLRRun(model, loader, NTXentLoss(temperature=temperature), optim, dev,
                     {"domain": str(domain), "image_size": int(image_size), "settings": settings,
                      "domain_dir": domain_dir})
    total = epochs * len(loader) if max_steps is None else min(epochs * len(loader), int(max_steps))
    with tqdm(total=total, desc=f"SimCLR {domain}", unit="step", disable=not progress) as bar:
        model.train()
        for epoch in range(int(epochs)):
            stop, nb = run.run_epoch(epoch, bar, max_steps)
            if nb and (epoch + 1) % max(1, int(plateau_every)) == 0:
                sched.step(run.loss_history[-1])
            if checkpoint_every and run.epochs_done % int(checkpoint_every) == 0 and not stop:
                _atomic_save(run.checkpoint(), out)
            if stop:
                break
    ckpt = run.checkpoint()
    _atomic_save(ckpt, out)
    return ckpt


def _check_training_inputs(domain_dir, out: Path, image_size, batch_size, domain, device, overwrite):
    """The domain's image files, its name, the batch size and the torch device; clear errors first."""
    if out.exists() and not overwrite:
        raise StoreExistsError(f"{out} already exists; pass --overwrite (overwrite=True) to replace the checkpoint")
    if int(image_size) < 63:
        raise NeuroxrError(f"--image-size {image_size}: AlexNet needs images of at least 63 px (its last max-pool "
                           "leaves nothing below that); the study uses 64")
    files = list_domain_images(domain_dir)
    if len(files) < 2:
        raise MissingDataError(f"{domain_dir}: SimCLR needs at least 2 images, found {len(files)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return files, domain or Path(domain_dir).name, int(min(batch_size, len(files))), torch.device(device)


class _SimCLRRun:
    """One training run's optimiser steps, loss and learning-rate histories, and its checkpoint."""

    def __init__(self, model, loader, criterion, optim, dev, meta: dict):
        self.model, self.loader, self.criterion, self.optim, self.dev = model, loader, criterion, optim, dev
        self.meta = meta
        self.loss_history: list[float] = []
        self.step_losses: list[float] = []
        self.lr_history: list[float] = []
        self.steps = 0
        self.epochs_done = 0

    def _step(self, views) -> float:
        x0, x1 = views[0].to(self.dev, non_blocking=True), views[1].to(self.dev, non_blocking=True)
        loss = self.criterion(self.model(x0), self.model(x1))
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        val = float(loss.detach().cpu())
        if not math.isfinite(val):
            raise NeuroxrError(f"SimCLR on {self.meta['domain_dir']}: loss became {val} at step {self.steps}; "
                               "lower --lr or raise --batch-size")
        return val

    def run_epoch(self, epoch: int, bar, max_steps) -> tuple[bool, int]:
        """One pass over the loader (or up to ``max_steps``): (stopped early, batches run)."""
        running, nb, stop = 0.0, 0, False
        for views in self.loader:
            val = self._step(views)
            running += val
            nb += 1
            self.steps += 1
            self.step_losses.append(val)
            bar.update(1)
            bar.set_postfix(loss=f"{val:.4f}", epoch=epoch + 1, lr=f"{self.optim.param_groups[0]['lr']:.3g}")
            if max_steps is not None and self.steps >= max_steps:
                stop = True
                break
        if nb:
            self.loss_history.append(running / nb)
        self.lr_history.append(float(self.optim.param_groups[0]["lr"]))
        self.epochs_done = epoch + 1
        return stop, nb

    def checkpoint(self) -> dict:
        sd = {k: v.detach().cpu().clone() for k, v in self.model.alexnet.state_dict().items()}
        return {
            "model_state_dict": sd, "arch": "alexnet", "framework": "lightly-simclr", "domain": self.meta["domain"],
            "epochs": int(self.epochs_done), "steps": int(self.steps), "image_size": self.meta["image_size"],
            "normalize": {k: list(v) for k, v in IMAGENET_NORMALIZE.items()},
            "loss_history": [float(x) for x in self.loss_history],
            "step_losses": [float(x) for x in self.step_losses],
            "lr_history": [float(x) for x in self.lr_history], "settings": self.meta["settings"],
        }


def load_simclr_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`train_simclr` (``weights_only=True``) and check it."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: checkpoint does not exist; train one with `neuroxr train-ssl DOMAIN_DIR --out {path}`")
    ckpt = read_checkpoint(path, "SimCLR checkpoint")
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt:
        raise NeuroxrError(f"{path}: not a neuroxr SimCLR checkpoint (no 'model_state_dict'); "
                           "write one with `neuroxr train-ssl`")
    if ckpt.get("arch", "alexnet") != "alexnet":
        raise NeuroxrError(f"{path}: arch={ckpt.get('arch')!r}; only 'alexnet' SimCLR checkpoints are supported")
    return ckpt


def load_simclr_alexnet(path):
    """A ``torchvision.models.alexnet`` in eval mode with a SimCLR checkpoint's weights, and the checkpoint dict."""
    ckpt = load_simclr_checkpoint(path)
    net = torchvision.models.alexnet(weights=None)
    missing, unexpected = net.load_state_dict(ckpt["model_state_dict"], strict=False)
    if any(k.startswith("features.") for k in missing) or unexpected:
        raise NeuroxrError(f"{path}: model_state_dict does not fit torchvision AlexNet "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return net, ckpt


def prepare_pixels(pixels, image_size: int = 64, normalize: dict | None = IMAGENET_NORMALIZE):
    """Stimuli (image, y, x) -> float tensor (image, 3, image_size, image_size).

    Centre square crop, bilinear resize (antialiased) to ``image_size``, values scaled to 0..1
    (divided by 255 when the maximum exceeds 1.5), grayscale copied to 3 channels, then the
    checkpoint's normalisation (the one used in training).
    """
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 3:
        raise NeuroxrError(f"prepare_pixels: pixels must be (image, y, x), got shape {arr.shape}")
    if np.nanmax(arr) > 1.5:
        arr = arr / 255.0
    h, w = arr.shape[1:]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    arr = arr[:, y0:y0 + s, x0:x0 + s]
    t = torch.from_numpy(np.ascontiguousarray(arr))[:, None]
    t = F.interpolate(t, size=(int(image_size), int(image_size)), mode="bilinear", align_corners=False,
                      antialias=True)
    t = t.expand(-1, 3, -1, -1).clone()
    if normalize:
        mean = torch.tensor(normalize["mean"], dtype=t.dtype)[None, :, None, None]
        std = torch.tensor(normalize["std"], dtype=t.dtype)[None, :, None, None]
        t = (t - mean) / std
    return t


def calc_conv_activations(net, images, layers=tuple(CONV_LAYERS), batch_size: int = 64) -> dict:
    """Flattened activations of AlexNet's conv layers after ReLU.

    Parameters
    ----------
    net : torchvision AlexNet
    images : tensor (image, 3, y, x)
        From :func:`prepare_pixels`.
    layers : names in :data:`CONV_LAYERS`

    Returns
    -------
    dict layer -> ndarray (image, feature), float32
    """
    bad = [l for l in layers if l not in CONV_LAYERS]
    if bad:
        raise NeuroxrError(f"calc_conv_activations: unknown layers {bad}; choose from {list(CONV_LAYERS)}")
    ends = {CONV_LAYERS[l]: l for l in layers}
    out = {l: [] for l in layers}
    with torch.no_grad():
        for i in range(0, images.shape[0], int(batch_size)):
            h = images[i:i + int(batch_size)]
            for k, mod in enumerate(net.features[: max(ends)], start=1):
                h = mod(h)
                if k in ends:
                    out[ends[k]].append(h.flatten(start_dim=1).cpu().numpy().astype(np.float32))
    return {l: np.concatenate(v) for l, v in out.items()}
