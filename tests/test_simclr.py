"""SimCLR training (tiny, CPU): checkpoint format, augmentations, activations, zoo loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from neuroxr.cli import main
from neuroxr.domains.simclr import (
    CONV_LAYERS,
    calc_conv_activations,
    load_simclr_alexnet,
    make_simclr_transform,
    prepare_pixels,
    train_simclr,
)
from neuroxr.domains.synthetic import make_line_drawings, write_image_folder
from neuroxr.errors import NeuroxrError, StoreExistsError

TINY = dict(epochs=2, batch_size=4, hidden_dim=32, max_steps=3, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ssl")
    dom = write_image_folder(make_line_drawings(8, size=32, seed=0), d / "lines")
    ckpt = train_simclr(dom, d / "lines.pt", seed=0, **TINY)
    return dom, d / "lines.pt", ckpt


def test_augmentations_are_only_crop_flips_grayscale():
    t = make_simclr_transform(64)
    assert len(t.transforms) == 2
    view = t.transforms[0]
    names = [type(x).__name__ for x in view.transforms]
    # every image resized to 64 x 64 first (domain_rep's dataset transform), then the augmentations
    assert names == ["Resize", "RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomGrayscale",
                     "ToTensor", "Normalize"]
    assert tuple(view.transforms[0].size) == (64, 64)
    crop, hf, vf, gray = view.transforms[1:5]
    assert crop.scale == (0.08, 1.0) and tuple(crop.size) == (64, 64)
    assert hf.p == 0.5 and vf.p == 0.5 and gray.p == 0.2
    from PIL import Image

    v0, v1 = t(Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)))
    assert tuple(v0.shape) == (3, 64, 64) and tuple(v1.shape) == (3, 64, 64)
    assert not torch.equal(v0, v1)  # two independent random views


def test_tiny_run_writes_a_weights_only_checkpoint(tiny_run):
    dom, path, ckpt = tiny_run
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["arch"] == "alexnet" and raw["framework"] == "lightly-simclr"
    assert raw["domain"] == "lines" and raw["image_size"] == 64
    assert raw["steps"] == 3 and raw["epochs"] == 2  # 2 batches per epoch of 8 images, stopped after 3 steps
    assert len(raw["step_losses"]) == 3 and np.all(np.isfinite(raw["step_losses"]))
    assert len(raw["loss_history"]) == 2
    assert raw["loss_history"][0] == pytest.approx(np.mean(raw["step_losses"][:2]))
    assert raw["settings"]["lr"] == 4.8 and raw["settings"]["temperature"] == 0.1
    assert raw["settings"]["momentum"] == 0.9 and raw["settings"]["weight_decay"] == 1e-6
    # the whole torchvision AlexNet state dict: it loads strictly
    net = torchvision.models.alexnet(weights=None)
    net.load_state_dict(raw["model_state_dict"], strict=True)
    # training moved the backbone away from its (seeded) initialisation; the classifier is untouched
    torch.manual_seed(0)
    from neuroxr.domains.simclr import SimCLRAlexNet

    init = SimCLRAlexNet(hidden_dim=32).alexnet.state_dict()
    assert not torch.equal(init["features.0.weight"], raw["model_state_dict"]["features.0.weight"])
    assert torch.equal(init["classifier.1.weight"], raw["model_state_dict"]["classifier.1.weight"])


def test_conv_activations_match_torchvision_feature_extractor(tiny_run):
    from torchvision.models.feature_extraction import create_feature_extractor

    _, path, _ = tiny_run
    net, ckpt = load_simclr_alexnet(path)
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 70, 90)).astype(np.uint8)
    x = prepare_pixels(pixels, 64, ckpt["normalize"])
    assert tuple(x.shape) == (5, 3, 64, 64)
    got = calc_conv_activations(net, x, batch_size=2)
    nodes = {f"features.{k - 1}": name for name, k in CONV_LAYERS.items()}
    ref_net = torchvision.models.alexnet(weights=None)
    ref_net.load_state_dict(ckpt["model_state_dict"])
    ref_net.eval()
    with torch.no_grad():
        ref = create_feature_extractor(ref_net, return_nodes=nodes)(x)
    for name in CONV_LAYERS:
        np.testing.assert_allclose(got[name], ref[name].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
        assert (got[name] >= 0).all()  # after ReLU
    assert got["conv1"].shape == (5, 64 * 15 * 15)


def test_zoo_loads_the_checkpoint(tiny_run):
    zoo = pytest.importorskip("neuroxr.features.zoo")
    extract = pytest.importorskip("neuroxr.features.extract")
    _, path, _ = tiny_run
    loaded = zoo.load_model("alexnet-simclr", weights=str(path), device="cpu")
    from neuroxr.io.store import hash_file

    assert loaded.weights == hash_file(path)
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64)).astype(np.float32)
    layers = dict((n, a) for n, _, a in extract.iter_layer_activations(loaded, pixels, batch_size=3))
    net, ckpt = load_simclr_alexnet(path)
    direct = calc_conv_activations(net, prepare_pixels(pixels, 64, ckpt["normalize"]))
    np.testing.assert_allclose(layers["features.1"], direct["conv1"], rtol=1e-4, atol=1e-4)


def test_cli_train_ssl_and_errors(tmp_path, capsys):
    dom = write_image_folder(make_line_drawings(4, size=24, seed=5), tmp_path / "d")
    out = tmp_path / "c.pt"
    args = ["train-ssl", str(dom), "--out", str(out), "--epochs", "1", "--batch-size", "4", "--hidden-dim", "16",
            "--max-steps", "1", "--no-progress"]
    assert main(args) == 0
    assert "1 epoch, 1 step," in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite
    with pytest.raises(StoreExistsError):
        train_simclr(dom, out, **TINY)
    with pytest.raises(NeuroxrError, match="63 px"):
        train_simclr(dom, tmp_path / "x.pt", image_size=32, **TINY)
