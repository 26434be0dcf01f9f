"""Every catalogue row's input tensor against the library's own evaluation transform.

neuroxr builds a model's input from the stored grayscale stimuli (``preprocess_images``); the
references are torchvision's ``Weights.transforms()`` of the pinned enum, timm's ``resolve_data_config`` +
``create_transform``, the published Taskonomy transform (``TF.to_tensor(TF.resize(img, 256)) * 2 - 1``,
visualpriors) and, for the rows no library defines, torchvision transforms written from the
training code (SimCLR: lightly's ImageNet normalisation at 64 px; baselines: a plain resize).

Float stimuli go through the reference as float RGB tensors (agreement to 1e-5, after clipping
the reference to the range of normalised 0..1 pixels, as PIL clips bicubic overshoot); the same
stimuli rounded to 8-bit PIL RGB images agree to within the rounding of PIL's 8-bit output.
"""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import timm
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from lightly.transforms.utils import IMAGENET_NORMALIZE
from torchvision.models import get_model_weights

from neuroxr.features.extract import preprocess_images
from neuroxr.features.zoo import LoadedModel, list_models, read_preprocessing

ROWS = list_models().to_dict("records")
#: PIL resizes 8-bit images in two 8-bit passes (rows, then columns): up to two grey levels apart
#: anywhere, half a level on average
PIL_LEVELS, PIL_MEAN_LEVELS = 2.0, 0.5


@pytest.fixture(scope="module")
def stimuli(allen_visp_npz):
    """Four of the study's stimuli (31 x 31) and the same cut to a 31 x 24 (portrait) frame."""
    images = np.load(allen_visp_npz)["images"][:4].astype(np.float32)
    return {"square": images, "portrait": np.ascontiguousarray(images[:, :, 3:27])}


def _loaded(row) -> LoadedModel:
    return LoadedModel(model=None, name=row["model"], weights="random", family=row["family"], source=row["source"],
                       constructor=row["constructor"], **read_preprocessing(row))


def _reference_transform(row):
    """The library's own evaluation transform of a row, and the normalisation's smallest std."""
    src, ctor = row["source"], row["constructor"]
    if src == "torchvision":  # the weights enum the row pins (IMAGENET1K_V1)
        t = get_model_weights(ctor)[row["weights_tag"]].transforms()
        return t, min(t.std)
    if src == "timm":  # the pretrained cfg of the tag the row pins
        cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(
            f"{ctor}.{row['weights_tag']}").to_dict())
        return timm.data.create_transform(**cfg), min(cfg["std"])
    if src == "taskonomy":
        def taskonomy(img):
            return _to_tensor(TF.resize(img, 256, antialias=True)) * 2 - 1

        return taskonomy, 0.5
    if src == "lightly":  # the SimCLR AlexNet: its training normalisation at the training size (64 px)
        mean, std = IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"]

        def simclr(img):
            return TF.normalize(_to_tensor(TF.resize(img, [64, 64], antialias=True)), mean, std)

        return simclr, min(std)
    raise AssertionError(f"no reference transform for source {src}")


def _to_tensor(img) -> torch.Tensor:
    return img if isinstance(img, torch.Tensor) else TF.to_tensor(img)


def _clip_to_pixel_range(x: torch.Tensor, ref_t, row) -> torch.Tensor:
    """Clip normalised inputs to the images of 0..1 pixels (what PIL's 8-bit resize keeps)."""
    zero, one = ref_t(torch.zeros(3, 8, 8)), ref_t(torch.ones(3, 8, 8))
    lo = torch.minimum(zero, one).amin(dim=(-2, -1))[None, :, None, None]
    hi = torch.maximum(zero, one).amax(dim=(-2, -1))[None, :, None, None]
    return torch.minimum(torch.maximum(x, lo), hi)


def _as_rgb_tensor(img01: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(img01, dtype=torch.float32)[None].expand(3, -1, -1).contiguous()


def _as_pil(img8: np.ndarray) -> PIL.Image.Image:
    return PIL.Image.fromarray(img8, mode="L").convert("RGB")


NETWORK_ROWS = [r for r in ROWS if r["source"] != "neuroxr"]


@pytest.mark.parametrize("row", NETWORK_ROWS, ids=[r["model"] for r in NETWORK_ROWS])
@pytest.mark.parametrize("frame", ["square", "portrait"])
def test_network_input_matches_library_transform(row, frame, stimuli):
    px = stimuli[frame]
    ref_t, min_std = _reference_transform(row)
    got = preprocess_images(_loaded(row), px, 255.0, device="cpu")
    ref = _clip_to_pixel_range(torch.stack([ref_t(_as_rgb_tensor(im / 255.0)) for im in px]), ref_t, row)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-5)

    px8 = np.clip(np.round(px), 0, 255).astype(np.uint8)
    got8 = preprocess_images(_loaded(row), px8, 255.0, device="cpu")
    ref8 = torch.stack([ref_t(_as_pil(im)) for im in px8])
    assert got8.shape == ref8.shape
    np.testing.assert_allclose(got8.numpy(), ref8.numpy(), rtol=0, atol=PIL_LEVELS / 255 / min_std)
    assert np.abs(got8.numpy() - ref8.numpy()).mean() < PIL_MEAN_LEVELS / 255 / min_std


def test_timm_config_of_a_built_model_is_the_pretrained_one():
    """The pretrained cfg the test reads is what timm resolves for a model built without weights."""
    for name in ("vit_tiny_patch16_224", "seresnet50", "inception_v4"):
        built = timm.data.resolve_data_config({}, model=timm.create_model(name, pretrained=False))
        cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        assert built == cfg


@pytest.mark.slow
@pytest.mark.parametrize("row", [r for r in ROWS if r["source"] == "timm"], ids=lambda r: r["model"])
def test_timm_rows_with_the_built_models_config(row, stimuli):
    model = timm.create_model(f"{row['constructor']}.{row['weights_tag']}", pretrained=False)
    t = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    px = stimuli["portrait"]
    ref = _clip_to_pixel_range(torch.stack([t(_as_rgb_tensor(im / 255.0)) for im in px]), t, row)
    np.testing.assert_allclose(preprocess_images(_loaded(row), px, 255.0, device="cpu").numpy(), ref.numpy(),
                               rtol=0, atol=1e-5)


BASELINE_ROWS = [r for r in ROWS if r["source"] == "neuroxr"]


@pytest.mark.parametrize("row", BASELINE_ROWS, ids=[r["model"] for r in BASELINE_ROWS])
def test_baseline_input_is_a_plain_resize(row, stimuli):
    """Baselines see one grayscale channel: resized straight to their square, in 0..1 (pixels: raw values)."""
    px = stimuli["portrait"]
    got = preprocess_images(_loaded(row), px, 255.0, device="cpu").numpy()
    x = torch.as_tensor(px)[:, None] / (1.0 if row["constructor"] == "pixels" else 255.0)
    if row["input_size"]:
        x = T.Resize((row["input_size"], row["input_size"]), antialias=True)(x)
    np.testing.assert_allclose(got, x.numpy(), rtol=0, atol=1e-6)


def test_every_catalogue_row_is_checked():
    assert len(NETWORK_ROWS) + len(BASELINE_ROWS) == len(ROWS) > 100
    assert {r["source"] for r in NETWORK_ROWS} == {"torchvision", "timm", "taskonomy", "lightly"}
