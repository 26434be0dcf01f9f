"""``neuroxr plan``: FLOPs, layers and bytes against a real forward, real extraction and a real store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from neuroxr import planner as P
from neuroxr.cli import main
from neuroxr.features.hooks import run_forward
from neuroxr.features.preprocess import preprocess_images
from neuroxr.features.run import reduce_model
from neuroxr.features.variants import store_bytes
from neuroxr.features.zoo import LoadedModel, load_model, resolve_model_row

PIX = np.random.default_rng(0).integers(0, 256, (5, 40, 48), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROXR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_flops_equal_torch_counter_on_a_real_cpu_forward(name):
    lm = load_model(name, weights="random", device="cpu")
    x = preprocess_images(lm, PIX[:1], 255.0)
    with FlopCounterMode(display=False) as fc:
        run_forward(lm, x)
    sz = P.size_model(resolve_model_row(name), PIX.shape[1:])
    assert sz.input_shape == tuple(x.shape[1:])
    assert sz.flops_per_image == fc.get_total_flops() > 0
    assert sz.params == sum(p.numel() for p in lm.model.parameters())


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "squeezenet1_1", "mobilenet_v2", "vit_tiny_patch16_224"])
def test_layers_equal_a_real_extraction(name):
    """The kept layers and their features: those of a real forward through neuroxr's hooks and its
    duplicate filter (alexnet's no-op avgpool, Dropout, ResNet block outputs, Flatten views)."""
    lm = load_model(name, weights="random", device="cpu")
    ds = reduce_model(lm, PIX, batch_size=2)  # batches: every layer seen, fingerprinted, deduplicated
    real = list(zip(ds["layer_name"].values.tolist(), ds["n_features"].values.tolist()))
    sz = P.size_model(resolve_model_row(name), PIX.shape[1:])
    assert [(n, p) for n, _, p in sz.layers] == real
    assert sz.hooked > len(real)  # duplicates were there to drop


class _InPlace(nn.Module):
    """A child's output changed in place and returned: a new layer, though the same tensor object."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.drop = nn.Dropout(0.5)
        self.ident = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        y = self.conv(x)
        z = self.drop(y)  # eval: y itself, a duplicate of conv
        y.mul_(2.0).add_(1.0)
        w = self.ident(torch.flatten(z, 1).reshape(z.shape))  # a view of y, changed since conv: a new layer
        return self.pool(w)


def test_in_place_changes_and_identities_match_the_real_filter():
    torch.manual_seed(0)
    lm = LoadedModel(model=_InPlace().eval(), name="inplace", weights="random", family="cnn", source="neuroxr",
                     input_size=12, mean=(0.5,) * 3, std=(0.25,) * 3)
    ds = reduce_model(lm, PIX, batch_size=2)
    real = list(zip(ds["layer_name"].values.tolist(), ds["n_features"].values.tolist()))
    _, _, layers, _ = P.size_module(_InPlace(), (3, 12, 12))
    assert [(n, p) for n, _, p in layers] == real
    assert [n for n, _ in real] == ["conv", "ident", "pool"]  # the changed tensor is a layer of its own


def _simulate(study, n=10):
    assert main(["simulate", str(study), "--n-images", str(n), "--neurons-per-area", "4", "--n-trials", "4",
                 "--image-size", "32"]) == 0


@pytest.mark.parametrize("srp", [None, "7"])
def test_bytes_equal_the_store_extract_writes(tmp_path, srp, capsys):
    study = tmp_path / "s"
    _simulate(study)
    args = ["extract", str(study), "--model", "squeezenet1_1", "--threads", "1"] + (["--srp", srp] if srp else [])
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "neuroxr extract: plan: squeezenet1_1 [random]: 64 layers kept" in err  # printed before it runs
    assert err.index("images on cpu") < err.index("plan: squeezenet1_1") < err.index("forward")
    assert err.index("plan: squeezenet1_1") < err.index("squeezenet1_1 [random]: done")
    path = study / "features" / "squeezenet1_1.zarr"
    ds = xr.open_zarr(path)
    plan = P.plan_variants([("squeezenet1_1", "random")], 10, (32, 32), srp=srp)[0]
    assert plan.error is None
    assert plan.bytes["data"] == sum(int(v.nbytes) for v in ds.data_vars.values())  # xarray's count
    assert len(plan.layers) == ds.sizes["layer"]
    assert [p for _, _, p in plan.layers] == ds["n_features"].values.tolist()
    on_disk = store_bytes(path)
    # zstd makes the data smaller; the coords and per-variable JSON are within the plan's metadata allowance
    assert 0.5 * plan.bytes["data"] < on_disk <= plan.bytes["total"]


def test_makespan_longest_first():
    assert P.makespan([5.0, 1.0, 1.0], 1) == 7.0
    assert P.makespan([5.0, 1.0, 1.0], 3) == 5.0
    assert P.makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0  # LPT's schedule (the optimum is 6)


def test_calibration_is_measured_once_and_cached(monkeypatch):
    calls = []

    def fake(threads, device):
        calls.append(threads)
        return {"forward_flops_per_s": 1e10, "gram_per_s": 1e9, "init_params_per_s": 1e8, "threads": threads,
                "measured": True}

    monkeypatch.setattr(P, "measure_calibration", fake)
    assert P.load_calibration(3, measure=False) is None
    a = P.load_calibration(3)
    b = P.load_calibration(3)
    assert a == b and calls == [3]
    assert json.loads(P.calibration_path().read_text())


def test_plan_cli_prints_every_variant_and_the_totals(tmp_path, capsys):
    study = tmp_path / "s"
    _simulate(study, n=8)
    capsys.readouterr()
    out_json = tmp_path / "plan.json"
    assert main(["plan", str(study), "--model", "alexnet", "--model", "pixels", "--weights", "random",
                 "--weights", "trained", "--no-time", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("alexnet [") for line in out) == 2
    assert any(line.startswith("total: 4 model variants planned") for line in out)
    assert any("on a GPU" in line and "assumed" in line for line in out)
    got = json.loads(out_json.read_text())
    alex = next(v for v in got["variants"] if v["model"] == "alexnet")
    lm = load_model("alexnet", weights="random", device="cpu")
    x = preprocess_images(lm, np.zeros((1, 32, 32), np.uint8), 255.0)
    with FlopCounterMode(display=False) as fc:
        run_forward(lm, x)
    assert alex["gflops_per_image"] * 1e9 == pytest.approx(fc.get_total_flops(), rel=1e-12)
    assert alex["n_images"] == 8


def test_plan_without_models_is_a_one_line_error(tmp_path, capsys):
    assert main(["plan", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and len(err.strip().splitlines()) == 1


def test_run_logs_the_plan_before_ingest(tmp_path):
    from neuroxr.pipeline.config import load_settings
    from neuroxr.pipeline.run import DEMO_SMALL

    lines = []
    settings = load_settings(DEMO_SMALL)
    assert P.log_pipeline_plan(settings, tmp_path / "study", [], lines.append)
    planned = [line for line in lines if "layers kept" in line]
    assert [line.split(" [")[0] for line in planned] == ["plan: alexnet", "plan: pixels", "plan: gabor"]
    n = DEMO_SMALL["ingest"]["n_images"]
    assert all(f"x {n};" in line for line in planned)
    assert any("no time predicted" in line for line in lines)  # no calibration in this cache


def test_sizing_in_processes_gives_the_same_plan():
    models = ["alexnet", "resnet18", "squeezenet1_1", "mobilenet_v2", "vgg11", "pixels", "gabor", "googlenet"]
    pairs = [(m, "random") for m in models]
    one = P.plan_variants(pairs, 10, (32, 32), use_cache=False, jobs=1)
    two = P.plan_variants(pairs, 10, (32, 32), use_cache=False, jobs=2)
    assert [v.to_dict() for v in one] == [v.to_dict() for v in two]
    assert all(v.error is None for v in one)
