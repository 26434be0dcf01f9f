"""Model zoo: catalog, load_model weights (random / trained offline / checkpoint), errors."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from neuroxr import schema as S
from neuroxr.errors import MissingDataError
from neuroxr.features.zoo import (
    CheckpointMismatchError,
    UnknownModelError,
    list_models,
    load_model,
)


def test_catalog_rows_and_columns():
    df = list_models()
    nets = df[df.source.isin(["torchvision", "timm"])]
    assert len(nets[nets.in_paper]) == 108  # the paper's 31 torchvision + 77 timm architectures (test_catalogue)
    assert df.model.is_unique
    assert set(df.family) <= set(S.FAMILIES)
    for col in ("model", "family", "source", "constructor", "input_size", "interpolation", "mean", "std", "params"):
        assert col in df.columns and df[col].notna().all(), col
    assert (df.loc[df.source == "torchvision", "top1"].astype(float) > 40).all()
    assert {"alexnet", "vgg16", "resnet18", "inception_v3", "vit_small_patch16_224", "mixer_b16_224",
            "alexnet-simclr", "pixels", "gabor", "gist", "rff"} <= set(df.model)
    assert len(list_models(family="taskonomy")) == 25  # 24 encoders and the one random encoder
    assert list(list_models(source="lightly").model) == ["alexnet-simclr"]


def test_catalog_params_match_the_architectures():
    df = list_models().set_index("model")
    for name in ("resnet18", "alexnet-simclr", "autoencoding"):
        m = load_model(name, device="cpu").model
        assert sum(p.numel() for p in m.parameters()) == int(df.loc[name, "params"]), name


def test_taskonomy_clusters_and_encoder_shape():
    tk = list_models(family="taskonomy")
    tk = tk[tk.model != "taskonomy_random"]
    assert set(tk.cluster) == {"2D", "3D", "semantic", "geometric"}
    assert tk.set_index("model").loc["denoising", "cluster"] == "2D"
    m = load_model("curvature", device="cpu").model
    with torch.no_grad():
        out = m(torch.zeros(1, 3, 256, 256))
    assert tuple(out.shape) == (1, 8, 16, 16)


def test_unknown_family_and_model_suggest():
    with pytest.raises(ValueError, match="unknown family"):
        list_models(family="rnn")
    with pytest.raises(UnknownModelError, match="resnet18"):
        load_model("resnt18")


def test_random_weights_are_seeded():
    a = load_model("resnet18", seed=3, device="cpu").model.state_dict()
    b = load_model("resnet18", seed=3, device="cpu").model.state_dict()
    c = load_model("resnet18", seed=4, device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_loaded_model_fields():
    lm = load_model("vit_tiny_patch16_224", device="cpu")
    assert lm.weights == "random" and lm.family == "transformer" and lm.source == "timm"
    assert lm.input_size == 224 and lm.interpolation == "bicubic" and len(lm.mean) == 3
    assert not lm.model.training


def test_simclr_checkpoint_loads_and_records_sha(tmp_path):
    import torchvision

    torch.manual_seed(11)
    net = torchvision.models.alexnet()
    path = tmp_path / "simclr.pt"
    torch.save({"model_state_dict": net.state_dict(), "arch": "alexnet", "epoch": 3}, path)
    lm = load_model("alexnet-simclr", weights=str(path), device="cpu")
    assert lm.weights == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lm.input_size == 64 and lm.family == "ssl" and lm.source == "lightly"
    sd = lm.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())
    plain = tmp_path / "plain.pt"
    torch.save(net.state_dict(), plain)
    assert torch.equal(load_model("alexnet", weights=str(plain), device="cpu").model.features[0].weight,
                       net.features[0].weight)


def test_checkpoint_that_does_not_fit(tmp_path):
    import torchvision

    path = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: features\.0\.weight.*unexpected keys: conv1"):
        load_model("alexnet", weights=str(path), device="cpu")
    with pytest.raises(MissingDataError, match="does not exist"):
        load_model("alexnet", weights=str(tmp_path / "nope.pt"))


def test_trained_weights_offline_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NEUROXR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingDataError, match=re.escape(str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"))):
        load_model("resnet18", weights="trained")
    with pytest.raises(MissingDataError, match=r"normal \(taskonomy\) trained weights: .*normal_encoder-f5e2c773"):
        load_model("normal", weights="trained")
    with pytest.raises(MissingDataError, match="Hugging Face"):
        load_model("resmlp_12_224", weights="trained")
    with pytest.raises(MissingDataError, match="--weights PATH"):
        load_model("alexnet-simclr", weights="trained")


def test_models_cli(capsys):
    from neuroxr.cli import main

    assert main(["models", "--family", "mlp-mixer"]) == 0
    out = capsys.readouterr().out
    assert "resmlp_12_224" in out and "resnet18" not in out
    assert main(["models", "--family", "nope"]) == 2


def _smoke(name):
    from neuroxr.features.extract import reduce_model

    px = np.random.default_rng(0).uniform(0, 255, (2, 31, 31)).astype(np.float32)
    ds = reduce_model(load_model(name, device="cpu"), px, batch_size=2, progress=False)
    # baselines (pixels, gabor, gist, rff) are one layer; every network has several
    min_layers = 1 if set(ds["family"].values) == {"baseline"} else 2
    assert ds.sizes["layer"] >= min_layers and ds["finite"].values.all()
    assert (np.diagonal(ds["gram"].values, axis1=1, axis2=2) >= 0).all()


@pytest.mark.parametrize("name", ["squeezenet1_1", "efficientnet_b0", "vit_tiny_patch16_224", "resmlp_12_224"])
def test_catalogue_sample_extracts(name):
    _smoke(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(list_models()["model"]))
def test_whole_catalogue_extracts(name):
    _smoke(name)
