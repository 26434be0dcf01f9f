"""The simulated observatory: structure, determinism, and that its planted hierarchy is recoverable."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neuroxr.cli import main
from neuroxr.simulate import choose_driving_layers, read_simulation, simulate_images, simulate_study
from neuroxr.io.store import open_dataset
from neuroxr.responses import calc_splithalf_reliability

AREAS = ["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam"]
SMALL = dict(seed=3, n_images=60, neurons_per_area=40, n_trials=12, image_size=32, model="alexnet")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "st"
    simulate_study(path, **SMALL)
    return path


def test_structure_and_metadata(small_study):
    resp = open_dataset(small_study / "responses.zarr")
    stim = open_dataset(small_study / "stimuli.zarr")
    assert stim["pixels"].shape == (60, 32, 32) and stim["pixels"].dtype == np.float32
    px = stim["pixels"].values
    assert px.min() >= 0 and px.max() <= 255 and px.std() > 20
    assert resp["mean"].shape == (240, 60) and resp["trials"].shape == (240, 60, 12)
    np.testing.assert_array_equal(resp["image"].values, stim["image"].values)
    # the mean is the trial average; some images have fewer trials (NaN-padded)
    tr = resp["trials"].values
    np.testing.assert_allclose(resp["mean"].values, np.nanmean(tr, axis=2), rtol=1e-5, atol=1e-6)
    assert 0 < np.isnan(tr).mean() < 0.05 and np.isfinite(tr[:, :, :8]).all()
    assert len(np.unique(resp["neuron"].values)) == 240
    assert [int((resp["area"].values == a).sum()) for a in AREAS] == [40] * 6
    for c in ("cre_line", "depth_um", "cortical_layer", "container", "p_run_mod", "p_image"):
        assert c in resp.coords, c
    # container-wise cre line and depth; layer follows from them
    df = resp[["area", "cre_line", "depth_um", "container"]].to_dataframe()
    assert (df.groupby("container")[["cre_line", "depth_um", "area"]].nunique() == 1).all().all()
    p_run = resp["p_run_mod"].values
    assert np.isnan(p_run).any() and (p_run < 0.05).any() and (p_run > 0.05).any()


def test_p_image_is_the_anova_p_value(small_study):
    from scipy.stats import f_oneway

    resp = open_dataset(small_study / "responses.zarr")
    tr = resp["trials"].values[:5].astype(np.float64)
    for n in range(5):
        groups = [t[np.isfinite(t)] for t in tr[n]]
        np.testing.assert_allclose(resp["p_image"].values[n], f_oneway(*groups).pvalue, rtol=1e-6, atol=1e-12)


def test_recorded_ground_truth(small_study):
    from neuroxr.features.extract import iter_layer_activations
    from neuroxr.features.zoo import load_model

    sim = read_simulation(small_study)
    assert sim["model"] == "alexnet" and sim["weights"] == "random" and sim["weights_seed"] == 0
    depths = [sim["area_layers"][a]["depth"] for a in AREAS]
    assert depths == sorted(depths) and len(set(depths)) == 6
    stim = open_dataset(small_study / "stimuli.zarr")["pixels"].values
    layers = [(n, t) for n, t, _ in iter_layer_activations(load_model("alexnet", "random", seed=0), stim[:4])]
    assert [n for n, _ in layers] == sim["layers"]
    for a in AREAS:
        info = sim["area_layers"][a]
        assert layers[info["depth"]][0] == info["layer_name"]
    assert sim["area_layers"]["VISp"]["relative_depth"] < 0.3 < 0.8 < sim["area_layers"]["VISam"]["relative_depth"]


def test_reliabilities_spread(small_study):
    resp = open_dataset(small_study / "responses.zarr")
    r = calc_splithalf_reliability(resp["trials"], n_splits=20).values
    q10, q90 = np.nanquantile(r, [0.1, 0.9])
    assert q10 < 0.4 and q90 > 0.85
    # close to the reliability the noise was set for
    assert np.corrcoef(r, resp["target_reliability"].values)[0, 1] > 0.9


def _loo_ridge_r(K, Y, alpha=1.0):
    """Brute force: for each left-out image refit kernel ridge (unpenalised intercept) on the rest."""
    n = K.shape[0]
    pred = np.empty_like(Y)
    for i in range(n):
        tr = np.delete(np.arange(n), i)
        Ktr = K[np.ix_(tr, tr)]
        # centre the kernel on the training images (intercept), as centring the features would
        one = np.full((len(tr), len(tr)), 1 / len(tr))
        Kc = Ktr - one @ Ktr - Ktr @ one + one @ Ktr @ one
        kt = K[i, tr] - K[np.ix_(tr, tr)].mean(0) - K[i, tr].mean() + Ktr.mean()
        mu = Y[tr].mean(0)
        coef = np.linalg.solve(Kc + alpha * np.eye(len(tr)), Y[tr] - mu)
        pred[i] = kt @ coef + mu
    pc, yc = pred - pred.mean(0), Y - Y.mean(0)
    return (pc * yc).sum(0) / np.sqrt((pc ** 2).sum(0) * (yc ** 2).sum(0))


def _layer_scores(study, min_rel):
    """Mean brute-force LOO ridge r and RSA r of every layer of the generating network, per area."""
    from neuroxr.features.extract import iter_layer_activations
    from neuroxr.features.zoo import load_model

    resp = open_dataset(study / "responses.zarr")
    px = open_dataset(study / "stimuli.zarr")["pixels"].values
    sim = read_simulation(study)
    rel = calc_splithalf_reliability(resp["trials"], n_splits=20).values
    keep = rel >= min_rel
    Y = resp["mean"].values.T.astype(np.float64)[:, keep]
    area = resp["area"].values[keep]
    iu = np.triu_indices(Y.shape[0], 1)
    area_rdm = {a: (1 - np.corrcoef(Y[:, area == a]))[iu] for a in AREAS}
    ridge, rsa = [], []
    for _, _, acts in iter_layer_activations(load_model(sim["model"], "random", seed=sim["weights_seed"]), px):
        a = acts.astype(np.float64)
        z = a - a.mean(0)
        sd = z.std(0)
        z = z[:, sd > 0] / sd[sd > 0]
        r = _loo_ridge_r(z @ z.T, Y)
        ridge.append([np.nanmean(r[area == ar]) for ar in AREAS])
        layer_rdm = (1 - np.corrcoef(a))[iu]
        rsa.append([np.corrcoef(layer_rdm, area_rdm[ar])[0, 1] for ar in AREAS])
    true = np.array([sim["area_layers"][a]["depth"] for a in AREAS])
    return np.array(ridge), np.array(rsa), true


def test_planted_hierarchy_is_recovered_small(small_study):
    """Independent check (brute-force ridge, numpy RSA) on the network's own layers, small study."""
    from scipy.stats import spearmanr

    ridge, rsa, true = _layer_scores(small_study, 0.6)
    best_ridge, best_rsa = ridge.argmax(0), rsa.argmax(0)
    msg = f"true {true}, best ridge {best_ridge}, best rsa {best_rsa}"
    # at this small size (60 images, 40 neurons per area) neighbouring layers are close:
    # the driving layer is within 0.05 of the best, and the best layers deepen with the areas
    assert np.all(ridge[true, np.arange(6)] >= ridge.max(0) - 0.05), msg
    assert np.abs(best_ridge - true).mean() <= 2.5, msg
    assert spearmanr(np.arange(6), best_ridge)[0] > 0.7, msg
    assert best_rsa[-1] > best_rsa[0], msg  # RSA needs more neurons: see the slow test
    assert ridge.max(0).min() > 0.3  # strong enough to score


@pytest.mark.slow
def test_planted_hierarchy_is_recovered_full_size(tmp_path):
    """The default simulation (118 images, 200 neurons per area, 50 trials), reliability >= 0.8."""
    from scipy.stats import spearmanr

    simulate_study(tmp_path / "st")
    ridge, rsa, true = _layer_scores(tmp_path / "st", 0.8)
    best_ridge, best_rsa = ridge.argmax(0), rsa.argmax(0)
    msg = f"true {true}, best ridge {best_ridge}, best rsa {best_rsa}"
    assert np.all(np.abs(best_ridge - true) <= 2), msg
    assert np.all(ridge[true, np.arange(6)] >= ridge.max(0) - 0.02), msg
    assert spearmanr(np.arange(6), best_ridge)[0] > 0.9, msg
    assert spearmanr(np.arange(6), best_rsa)[0] > 0.8, msg


def test_deterministic_by_seed_and_cli(small_study, tmp_path, capsys):
    again = tmp_path / "again"
    rc = main(["simulate", str(again), "--seed", "3", "--n-images", "60", "--neurons-per-area", "40",
               "--n-trials", "12", "--image-size", "32"])
    assert rc == 0, capsys.readouterr().err
    for store, var in (("responses.zarr", "trials"), ("stimuli.zarr", "pixels")):
        a = open_dataset(small_study / store)[var].values
        b = open_dataset(again / store)[var].values
        np.testing.assert_array_equal(a, b)
    a, b = (open_dataset(p / "responses.zarr") for p in (small_study, again))
    for c in ("neuron", "cre_line", "depth_um", "p_run_mod"):
        np.testing.assert_array_equal(a[c].values, b[c].values)
    assert json.loads(a.attrs["simulation"]) == json.loads(b.attrs["simulation"])
    # refuses to overwrite
    assert main(["simulate", str(again), "--n-images", "60"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_images_depend_on_seed():
    a, b, c = simulate_images(10, 24, 0), simulate_images(10, 24, 0), simulate_images(10, 24, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (10, 24, 24)


def test_choose_driving_layers():
    layers = [("c1", "Conv2d"), ("r1", "ReLU"), ("p1", "MaxPool2d"), ("c2", "Conv2d"), ("r2", "ReLU"),
              ("c3", "Conv2d"), ("r3", "ReLU"), ("r4", "ReLU"), ("r5", "GELU"), ("r6", "ReLU"), ("r7", "ReLU"),
              ("output", "Linear")]
    assert choose_driving_layers(layers) == [4, 6, 7, 8, 9, 10]  # the first ReLU is skipped
    few = [("a", "Conv2d"), ("b", "ReLU"), ("c", "Linear"), ("d", "Linear"), ("e", "Linear"), ("f", "Linear"),
           ("output", "Linear")]
    got = choose_driving_layers(few)
    assert got == sorted(got) and got[0] == 0 and got[-1] == 5
