"""Streaming extraction against a numpy/scikit-learn brute force from the full activations."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.preprocessing import StandardScaler
from sklearn.random_projection import SparseRandomProjection
from torch import nn

from neuroxr import schema as S
from neuroxr.features.extract import (extract_features, import_features, iter_layer_activations,
                                      reduce_features, reduce_model)
from neuroxr.features.zoo import LoadedModel, UnknownModelError, load_model
from neuroxr.io.store import open_dataset, write_dataset


def _rel(a, b):
    return np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300)


def _brute(x):
    x = x.astype(np.float64)
    z = StandardScaler().fit_transform(x)
    return x @ x.T, z @ z.T, x.sum(1)


def _check_against_brute(ds, ref, tol=1e-6):
    assert list(ds["layer_name"].values) == [r[0] for r in ref]
    for i, (name, mtype, acts) in enumerate(ref):
        g, gz, fs = _brute(acts)
        assert _rel(ds["gram"].values[i], g) < tol, name
        assert _rel(ds["gram_z"].values[i], gz) < tol, name
        assert _rel(ds["feature_sum"].values[i], fs) < tol, name
        assert ds["n_features"].values[i] == acts.shape[1]
        assert ds["module_type"].values[i] == mtype


@pytest.fixture(scope="module")
def visp_images(allen_visp_npz):
    return np.load(allen_visp_npz)["images"]


def _study(tmp_path, images):
    st = tmp_path / "study"
    ds = xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), images)},
                    coords={S.IMAGE: np.arange(100, 100 + len(images), dtype=np.int64)})
    write_dataset(ds, st / S.STIMULI_STORE)
    return st


def test_resnet18_small_matches_brute_force(visp_images):
    lm = load_model("resnet18", device="cpu")
    lm.input_size, lm.resize_size = 64, 0  # small inputs keep CI fast; the slow test runs 224 px on all 118 images
    px = visp_images[:10]
    ref = list(iter_layer_activations(lm, px, batch_size=4))
    ds = reduce_model(lm, px, batch_size=4, progress=False)
    _check_against_brute(ds, ref)
    # distinct layers only: no two stored layers share their Gram matrix
    flat = ds["gram"].values.reshape(ds.sizes["layer"], -1)
    assert len({row.tobytes() for row in flat}) == ds.sizes["layer"]
    names = list(ds["layer_name"].values)
    assert names[0] == "conv1" and "layer1.0.relu:2" in names and names[-1] == "fc"
    assert "output" not in names and "layer1.0" not in names  # block output == its last relu call
    rd = ds["relative_depth"].values
    assert rd[0] == 0 and rd[-1] == 1 and np.all(np.diff(rd) > 0)
    assert ds["finite"].values.all()


def test_spilled_layers_give_the_same_result(visp_images):
    lm = load_model("alexnet", device="cpu")
    lm.input_size, lm.resize_size = 96, 0
    px = visp_images[:9]
    a = reduce_model(lm, px, batch_size=4, progress=False, one_pass=False)  # batches, layers kept in memory
    b = reduce_model(lm, px, batch_size=4, ram_budget=0, progress=False)  # every layer through a temp file
    xr.testing.assert_allclose(a, b, rtol=1e-12)


class _Toy(nn.Module):
    """Identity/Dropout duplicates, a ReLU that equals its input only in the first batch, an inf layer."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.same = nn.Identity()
        self.drop = nn.Dropout(0.5)
        self.relu = nn.ReLU()
        self.scale = nn.Linear(5, 3)

    def forward(self, x):
        h = self.drop(self.same(self.lin(x.flatten(1))))
        h = self.relu(h + (x.flatten(1)[:, :1] < 0.5).float() * 0 + self._shift(x))
        out = self.scale(h)
        return out / torch.zeros_like(out) if getattr(self, "blowup", False) else out

    def _shift(self, x):
        return torch.where(x.flatten(1)[:, :1] > 0.5, -10.0, 10.0)


def _toy_loaded(model):
    return LoadedModel(model=model.eval(), name="toy", weights="random", family="baseline", source="neuroxr",
                       input_size=0, mean=(0.0,), std=(1.0,), channels=1, rescale=False)


def test_duplicates_dropped_and_partial_matches_kept():
    torch.manual_seed(0)
    model = _Toy()
    with torch.no_grad():
        model.lin.bias.fill_(0.0)
    px = np.zeros((6, 2, 3), dtype=np.float32)
    px[:3] = 0.1  # first batch: shift +10 -> relu(h + 10) == h + 10 ... differs from `lin` anyway
    px[3:] = 0.9
    rng = np.random.default_rng(0)
    px += rng.uniform(0, 0.05, px.shape).astype(np.float32)
    lm = _toy_loaded(model)
    ref = list(iter_layer_activations(lm, px, batch_size=3))
    ds = reduce_model(lm, px, batch_size=3, progress=False, one_pass=False)  # the collector's duplicate logic
    _check_against_brute(ds, ref)
    names = list(ds["layer_name"].values)
    assert "same" not in names and "drop" not in names and "lin" in names


class _Id(nn.Module):
    def forward(self, x):
        return x


class _Partial(nn.Module):
    """`b` equals `a` in the first batch only: exercises the alias -> materialise path."""

    def __init__(self):
        super().__init__()
        self.a = _Id()
        self.b = nn.ReLU()

    def forward(self, x):
        x = x.flatten(1)
        return self.b(self.a(x))


def test_layer_identical_in_first_batch_only():
    px = np.abs(np.random.default_rng(1).normal(size=(8, 3, 3))).astype(np.float32)
    px[4:] *= -1  # ReLU is the identity on the first batch, not on the second
    lm = _toy_loaded(_Partial())
    ref = list(iter_layer_activations(lm, px, batch_size=4))
    ds = reduce_model(lm, px, batch_size=4, progress=False, one_pass=False, precision="float64")
    assert [r[0] for r in ref] == ["a", "b"]
    _check_against_brute(ds, ref, tol=1e-12)


def test_nonfinite_layer_marked_and_kept():
    torch.manual_seed(0)
    model = _Toy()
    model.blowup = True
    px = np.random.default_rng(2).uniform(size=(4, 2, 3)).astype(np.float32)
    ds = reduce_model(_toy_loaded(model), px, batch_size=2, progress=False)
    fin = dict(zip(ds["layer_name"].values, ds["finite"].values))
    assert fin["lin"] and not fin["output"]


def test_srp_matches_sklearn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5000)).astype(np.float32)
    out = reduce_features(x, srp_components=300, chunk_bytes=12 * 8 * 700)  # several feature chunks
    ref = SparseRandomProjection(300, random_state=1).fit_transform(x.astype(np.float64))
    assert _rel(out["srp"], ref) < 1e-6
    small = reduce_features(x[:, :100], srp_components=300)  # p <= components: kept as is, zero padded
    np.testing.assert_array_equal(small["srp"][:, :100], x[:, :100])
    assert not small["srp"][:, 100:].any()


def test_reduce_features_constant_columns():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 40)).astype(np.float32)
    x[:, :5] = 3.7
    out = reduce_features(x, chunk_bytes=7 * 8 * 9)
    g, gz, fs = _brute(x)
    assert _rel(out["gram"], g) < 1e-12 and _rel(out["gram_z"], gz) < 1e-10 and _rel(out["feature_sum"], fs) < 1e-12


def test_study_extract_resume_variants_and_import(tmp_path, visp_images):
    px = visp_images[:6]
    st = _study(tmp_path, px)
    res = extract_features(st, ["gabor", "pixels"], progress=False)
    assert [r["status"] for r in res] == ["done", "done"]
    ds = open_dataset(st / "features" / "pixels.zarr").load()
    assert ds.attrs["settings"] and "stimuli" in ds.attrs["inputs"]
    np.testing.assert_array_equal(ds[S.IMAGE].values, np.arange(100, 106))
    np.testing.assert_array_equal(ds[S.IMAGE_J].values, np.arange(100, 106))
    x = px.reshape(6, -1).astype(np.float64)
    assert _rel(ds["gram"].values[0], x @ x.T) < 1e-12
    assert ds[S.LAYER].values[0] == S.layer_id("pixels", "random", "pixels")
    for c in S.LAYER_COORDS + S.LAYER_OPTIONAL_COORDS:
        assert c in ds.coords, c
    # resume: nothing recomputed
    assert [r["status"] for r in extract_features(st, ["gabor", "pixels"], progress=False)] == ["skipped"] * 2
    # a second variant (checkpoint) lands in the same store, under its sha256
    import torchvision

    torch.manual_seed(5)
    ck = tmp_path / "alex.pt"
    torch.save({"model_state_dict": torchvision.models.alexnet().state_dict(), "arch": "alexnet"}, ck)
    extract_features(st, ["alexnet-simclr"], progress=False)
    r = extract_features(st, ["alexnet-simclr"], weights=str(ck), progress=False)[0]
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    assert r["weights"] == sha
    both = open_dataset(st / "features" / "alexnet-simclr.zarr")
    assert set(both["weights"].values) == {"random", sha}
    assert both.indexes[S.LAYER].is_unique
    n_random = int((both["weights"] == "random").sum())
    assert n_random == int((both["weights"] == sha).sum())
    assert not list((st / "features").glob(".*"))  # no temporary stores or spill files left
    # features computed elsewhere
    feats = np.random.default_rng(0).normal(size=(6, 30)).astype(np.float32)
    np.save(tmp_path / "mine.npy", feats)
    np.savez(tmp_path / "two.npz", first=feats, second=feats[:, :7] * 2)
    import_features(st, "mine", tmp_path / "mine.npy")
    import_features(st, "two", tmp_path / "two.npz")
    got = open_dataset(st / "features" / "two.zarr").load()
    assert list(got["layer_name"].values) == ["first", "second"]
    f2 = feats[:, :7].astype(np.float64) * 2
    assert _rel(got["gram"].values[1], f2 @ f2.T) < 1e-12
    with pytest.raises(ValueError, match="expected \\(image=6"):
        np.save(tmp_path / "bad.npy", feats[:4])
        import_features(st, "bad", tmp_path / "bad.npy")


def test_extract_bad_input(tmp_path, visp_images):
    st = _study(tmp_path, visp_images[:2])
    with pytest.raises(UnknownModelError, match="did you mean"):
        extract_features(st, ["alexnt"], progress=False)
    lm = load_model("alexnet", device="cpu")
    lm.input_size, lm.resize_size = 16, 0
    with pytest.raises(ValueError, match="cannot take images"):
        reduce_model(lm, visp_images[:2], progress=False)


def test_extract_cli(tmp_path, visp_images, capsys):
    from neuroxr.cli import main

    st = _study(tmp_path, visp_images[:4])
    assert main(["extract", str(st), "--model", "pixels", "--srp", "auto"]) == 0
    assert "pixels [random" in capsys.readouterr().out
    ds = open_dataset(st / "features" / "pixels.zarr")
    assert ds.sizes[S.COMPONENT] > 961 and int(ds["n_components"].values[0]) == 961
    assert main(["extract", str(st), "--model", "resnt18"]) == 2


@pytest.mark.slow
def test_resnet18_visp_224_matches_brute_force(visp_images):
    """The issue's done-when check: all 118 VISp stimuli at 224 px, random weights."""
    lm = load_model("resnet18", device="cpu")
    ref = list(iter_layer_activations(lm, visp_images, batch_size=32))
    ds = reduce_model(lm, visp_images, batch_size=32, progress=False)
    _check_against_brute(ds, ref)
    assert ds.sizes["image"] == 118


def test_models_with_internal_reshapes_extract_per_image_layers():
    """LeViT (and Swin) reshape the batch inside attention; those outputs are not layers.

    Batches of 2 over 3 images: every stored Gram must equal the brute force from full activations.
    """
    import numpy as np

    from neuroxr.features.extract import iter_layer_activations, reduce_model
    from neuroxr.features.zoo import load_model

    px = np.random.default_rng(1).uniform(0, 255, (3, 31, 31)).astype("f4")
    lm = load_model("levit_128s")
    ds = reduce_model(lm, px, batch_size=2)
    brute = list(iter_layer_activations(lm, px, batch_size=2))
    assert ds.sizes["layer"] == len(brute) > 10
    for i in (0, len(brute) // 2, len(brute) - 1):
        X = brute[i][2].astype(np.float64)
        K = X @ X.T
        np.testing.assert_allclose(ds["gram"].values[i], K, rtol=1e-6, atol=1e-9 * np.abs(K).max())


def test_one_pass_equals_the_batched_path(visp_images):
    """All images in one batch: reduced in the hooks (no buffers) or kept then reduced, the same numbers."""
    lm = load_model("resnet18", device="cpu")
    lm.input_size, lm.resize_size = 64, 0
    px = visp_images[:8]
    one = reduce_model(lm, px, batch_size=8, progress=False)
    kept = reduce_model(lm, px, batch_size=8, ram_budget=1, progress=False)  # too small for one pass: kept, spilled
    xr.testing.assert_allclose(one, kept, rtol=1e-12)
    ref = list(iter_layer_activations(lm, px, batch_size=8))
    _check_against_brute(one, ref)
