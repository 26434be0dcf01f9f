"""The domain study end to end (tiny): synthetic domains -> SimCLR -> `neuroxr domains`, and its parts
against independent references (scipy, sklearn, numpy)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.spatial import distance
from sklearn.cross_decomposition import PLSRegression

from neuroxr.cli import main
from neuroxr.domains.compare import (
    calc_activation_distances,
    calc_activation_norms,
    calc_domain_differences as run_mannwhitney,
    calc_domain_predictivity,
    classify_domains,
    parse_model_spec,
)
from neuroxr.domains.simclr import train_simclr
from neuroxr.domains.synthetic import make_synthetic_domains
from neuroxr.errors import NeuroxrError
from neuroxr.io.store import write_dataset
from neuroxr.mapping.pls import make_splits

REPO = Path(__file__).resolve().parents[1]


def _write_study(path: Path, n_images=30, size=40, per_area=8, n_trials=6, seed=0):
    """A small study whose neurons respond to coarse image structure (known signal)."""
    rng = np.random.default_rng(seed)
    from neuroxr.domains.synthetic import make_spectral_images

    px = make_spectral_images(n_images, size=size, p=2.0, seed=seed).astype(np.float32)
    coarse = px.reshape(n_images, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(n_images, -1)
    coarse = (coarse - coarse.mean(0)) / (coarse.std(0) + 1e-9)
    areas = ["VISp", "VISl"]
    n = per_area * len(areas)
    drive = np.maximum(coarse @ rng.normal(size=(coarse.shape[1], n)) / 4, 0)
    trials = drive.T[:, :, None] + 0.5 * rng.normal(size=(n, n_images, n_trials))
    ids = np.arange(n_images) * 2 + 5
    write_dataset(xr.Dataset({"pixels": (("image", "y", "x"), px)}, coords={"image": ids}), path / "stimuli.zarr")
    write_dataset(xr.Dataset(
        {"mean": (("neuron", "image"), trials.mean(2).astype(np.float32)),
         "trials": (("neuron", "image", "trial"), trials.astype(np.float32))},
        coords={"neuron": np.arange(n) + 100, "image": ids, "area": ("neuron", np.repeat(areas, per_area)),
                "cre_line": ("neuron", np.full(n, "Cux2-CreERT2")), "depth_um": ("neuron", np.full(n, 175.0)),
                "container": ("neuron", np.arange(n) % 3)}), path / "responses.zarr")
    return path


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    study = _write_study(root / "study")
    doms = make_synthetic_domains(root / "images", domains={"spectral-p2": {"kind": "spectral", "p": 2.0},
                                                            "lines": {"kind": "lines"}}, n_images=8, size=32)
    ckpts = {}
    for name, d in doms.items():
        ckpts[name] = root / f"{name}.pt"
        train_simclr(d, ckpts[name], epochs=1, batch_size=4, hidden_dim=16, max_steps=2, progress=False, seed=1)
    return study, ckpts, doms


def test_cli_domains_end_to_end(tiny_study, capsys):
    study, ckpts, doms = tiny_study
    args = ["domains", str(study), "--model", f"alexnet-simclr@{ckpts['spectral-p2']}",
            "--model", f"alexnet-simclr@{ckpts['lines']}", "--n-splits", "3", "--n-components", "5",
            "--layer", "conv1", "--layer", "conv5", "--no-progress"]
    assert main(args) == 0
    out = study / "reports" / "domains"
    for name in ("predictivity", "predictivity_summary", "mannwhitney", "norms", "svm", "distances",
                 "distances_per_image", "networks", "naturalness"):
        assert (out / f"{name}.csv").exists(), name
    for fig in ("predictivity_by_layer", "naturalness_vs_predictivity", "first_layer_filters",
                "norm_distributions", "distances"):
        assert (out / f"{fig}.png").stat().st_size > 2000, fig
    pred = pd.read_csv(out / "predictivity.csv")
    assert set(pred["model"]) == {"spectral-p2", "lines"} and set(pred["layer"]) == {"conv1", "conv5"}
    assert set(pred["area"]) == {"VISp", "VISl"} and set(pred["split"]) == {0, 1, 2}
    assert (pred["metric"] == "pls_consistency").all() and (pred["n_neurons"] == 8).all()
    summ = pd.read_csv(out / "predictivity_summary.csv")
    # naturalness came from the domain folders recorded in the checkpoints
    nat = dict(zip(summ["model"], summ["naturalness"]))
    assert nat["spectral-p2"] > nat["lines"]
    svm = pd.read_csv(out / "svm.csv")
    assert (svm["chance"] == 0.5).all() and (svm["n_samples"] == 2 * 30).all()  # 2 networks x 30 images
    # the tests are one-sided: the more natural domain's network first, H1 "it predicts better"
    mw = pd.read_csv(out / "mannwhitney.csv")
    assert (mw["model_a"] == "spectral-p2").all() and (mw["alternative"] == "greater").all()
    for r in mw.itertuples():
        q = pred[(pred["layer"] == r.layer) & (pred["area"] == r.area)]
        ref = stats.mannwhitneyu(q.loc[q["model"] == r.model_a, "score"], q.loc[q["model"] == r.model_b, "score"],
                                 alternative="greater")
        assert r.p == pytest.approx(ref.pvalue)
    nets = pd.read_csv(out / "networks.csv")
    assert len(nets["weights"].iloc[0]) == 64  # sha256 of the checkpoint file
    assert "spectral-p2" in capsys.readouterr().out
    # bad specs are one-line errors
    assert main(["domains", str(study), "--model", "alexnet-simclr@/nope.pt", "--model", "x@y"]) == 2
    assert main(["domains", str(study), "--model", f"alexnet-simclr@{ckpts['lines']}"]) == 2


def test_predictivity_matches_sklearn_scipy_reference(tiny_study, rng):
    study, _, _ = tiny_study
    from neuroxr.study import open_study

    resp = open_study(study).responses
    n_img = resp.sizes["image"]
    X = rng.normal(size=(n_img, 50))
    got = calc_domain_predictivity({"m": {"conv1": X}}, resp, n_splits=2, n_components=3, seed=4)
    splits = make_splits(n_img, kind="random", n_splits=2, test_size=0.5, seed=4)
    T = np.asarray(resp["trials"].values, dtype=float)
    area = np.asarray(resp["area"].values)
    for area_name in ("VISp", "VISl"):
        cols = area == area_name
        Y1 = T[cols][:, :, 0::2].mean(2).T
        Y2 = T[cols][:, :, 1::2].mean(2).T
        for s, (tr, te) in enumerate(splits):
            p1 = PLSRegression(3).fit(X[tr], Y1[tr]).predict(X[te])
            p2 = PLSRegression(3).fit(X[tr], Y2[tr]).predict(X[te])
            c = []
            for j in range(Y1.shape[1]):
                r = stats.pearsonr(p1[:, j], Y2[te][:, j])[0]
                m = stats.pearsonr(p1[:, j], p2[:, j])[0]
                q = stats.pearsonr(Y1[te][:, j], Y2[te][:, j])[0]
                sb = (2 * m / (1 + m)) * (2 * q / (1 + q))
                c.append(r / np.sqrt(sb) if sb > 0 else np.nan)
            row = got[(got["area"] == area_name) & (got["split"] == s)]
            assert row["score"].item() == pytest.approx(np.nanmedian(c), abs=1e-9)


def _acts(rng, n=24):
    shift_b = np.r_[np.full(15, 1.0), np.zeros(15)]
    shift_c = np.r_[np.zeros(15), np.full(15, 1.0)]
    return {"a": {"conv1": rng.normal(size=(n, 30)), "conv2": rng.normal(size=(n, 12))},
            "b": {"conv1": rng.normal(size=(n, 30)) + shift_b, "conv2": rng.normal(size=(n, 12))},
            "c": {"conv1": rng.normal(size=(n, 30)) + shift_c, "conv2": rng.normal(size=(n, 12))}}


def test_norms_and_distances_against_numpy_scipy(rng):
    acts = _acts(rng)
    norms = calc_activation_norms(acts, image_ids=np.arange(24) + 7)
    row = norms[(norms["model"] == "b") & (norms["layer"] == "conv2") & (norms["image"] == 10)]
    assert row["norm"].item() == pytest.approx(np.sqrt((acts["b"]["conv2"][3] ** 2).sum()))
    per, summ = calc_activation_distances(acts)
    assert len(summ) == 3 * 2  # pairs x layers
    for a, b in itertools.combinations("abc", 2):
        d = [distance.euclidean(acts[a]["conv1"][i], acts[b]["conv1"][i]) for i in range(24)]
        r = summ[(summ["model_a"] == a) & (summ["model_b"] == b) & (summ["layer"] == "conv1")]
        assert r["mean"].item() == pytest.approx(np.mean(d))
        assert r["median"].item() == pytest.approx(np.median(d))
        assert r["total"].item() == pytest.approx(np.linalg.norm(acts[a]["conv1"] - acts[b]["conv1"]))


def test_svm_against_sklearn_and_separable_case(rng):
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    acts = _acts(rng)
    res = classify_domains(acts, n_folds=4, seed=2)
    X = np.concatenate([acts[m]["conv1"] for m in "abc"])
    y = np.repeat([0, 1, 2], 24)
    ref = cross_val_score(make_pipeline(StandardScaler(), LinearSVC(max_iter=5000, random_state=2)), X, y,
                          groups=np.tile(np.arange(24), 3),  # an image's three activations in one fold
                          cv=StratifiedGroupKFold(4, shuffle=True, random_state=2), scoring="accuracy")
    got = res[(res["layer"] == "conv1") & (res["fold"] != "mean")]["accuracy"].to_numpy()
    np.testing.assert_allclose(got, ref)
    # conv1 differs in mean between networks: well above chance; conv2 is the same distribution
    m = res[res["fold"] == "mean"].set_index("layer")
    assert m.loc["conv1", "accuracy"] > 0.8
    assert m.loc["conv2", "accuracy"] < 0.7
    with pytest.raises(NeuroxrError, match="two networks"):
        classify_domains({"a": acts["a"]})


def test_mann_whitney_against_scipy():
    df = pd.DataFrame({
        "model": ["x"] * 5 + ["y"] * 5, "layer": "conv1", "area": "VISp", "split": list(range(5)) * 2,
        "score": [0.1, 0.2, 0.3, 0.25, 0.15, 0.5, 0.45, 0.6, 0.55, 0.4], "metric": "pls_consistency"})
    res = run_mannwhitney(df)  # no naturalness: two-sided
    ref = stats.mannwhitneyu(df["score"][:5], df["score"][5:], alternative="two-sided")
    assert res["u"].item() == ref.statistic and res["p"].item() == pytest.approx(ref.pvalue)
    assert res["p_adj"].item() == pytest.approx(ref.pvalue)
    # y's domain is the more natural: one-sided, y first
    res = run_mannwhitney(df, naturalness={"x": 0.2, "y": 1.5})
    ref = stats.mannwhitneyu(df["score"][5:], df["score"][:5], alternative="greater")
    assert res["model_a"].item() == "y" and res["p"].item() == pytest.approx(ref.pvalue)


def test_parse_model_spec(tmp_path):
    f = tmp_path / "a.pt"
    f.write_bytes(b"x")
    assert parse_model_spec(f"alexnet-simclr@{f}") == ("alexnet-simclr", f)
    with pytest.raises(NeuroxrError, match="MODEL@CHECKPOINT"):
        parse_model_spec(str(f))
    with pytest.raises(NeuroxrError, match="not one of"):
        parse_model_spec(f"resnet50@{f}")


def test_pipeline_config_parses_and_names_known_sections():
    import tomllib

    cfg = tomllib.loads((REPO / "pipelines" / "prasad2022.toml").read_text())
    assert cfg["pipeline"]["kind"] == "prasad2022"
    assert cfg["compare"]["n_splits"] == 100 and cfg["compare"]["n_components"] == 25
    assert cfg["train"]["lr"] == 4.8 and cfg["train"]["batch_size"] == 4096 and cfg["train"]["epochs"] == 600
    assert cfg["data"]["synthetic"] is True


@pytest.mark.slow
def test_run_domains_pipeline_tiny(tmp_path):
    pytest.importorskip("neuroxr.simulate")
    from neuroxr.domains.pipeline import run_domains_pipeline

    cfg = {
        "pipeline": {"kind": "prasad2022", "study": str(tmp_path / "st")},
        "data": {"synthetic": True},
        "synthetic": {"n_images": 8, "size": 32, "seed": 0,
                      "domains": {"spectral-p2": {"kind": "spectral", "p": 2.0}, "lines": {"kind": "lines"}}},
        "study": {"simulate": True},
        "simulate": {"seed": 0, "n_images": 24, "neurons_per_area": 6, "n_trials": 6, "image_size": 64},
        "naturalness": {"n_samples": 8, "crop": 32},
        "train": {"epochs": 1, "batch_size": 4, "hidden_dim": 16, "max_steps": 1, "seed": 0},
        "compare": {"n_splits": 2, "n_components": 3, "layers": ["conv1", "conv3"], "areas": ["VISp", "VISl"],
                    "svm_folds": 3},
    }
    res = run_domains_pipeline(cfg, log=lambda m: None)
    out = tmp_path / "st" / "reports" / "domains"
    assert (out / "naturalness.csv").exists() and (out / "naturalness.png").exists()
    assert (out / "table1.csv").exists()
    rec = tmp_path / "st" / "recordings" / "simulated" / "reports" / "domains"  # no [recordings]: simulated
    assert (rec / "predictivity.csv").exists() and (rec / "naturalness_vs_predictivity.png").exists()
    assert (pd.read_csv(rec / "predictivity.csv")["metric"] == "pls_consistency").all()  # trials: consistency
    assert set(res["checkpoints"]) == {"spectral-p2", "lines"}
    mtimes = {k: p.stat().st_mtime for k, p in res["checkpoints"].items()}
    run_domains_pipeline(cfg, log=lambda m: None)  # rerun: checkpoints with the same settings are reused
    assert {k: p.stat().st_mtime for k, p in res["checkpoints"].items()} == mtimes


def test_predictivity_specimen_pooling_and_no_trials_fallback(tmp_path, rng):
    from neuroxr.mapping.pls import calc_pls_consistency, cross_validated_pls, split_trial_halves
    from neuroxr.study import open_study

    resp = open_study(_write_study(tmp_path / "s", n_images=24, per_area=6)).responses
    X = rng.normal(size=(24, 40))
    area = np.asarray(resp["area"].values)
    cols = area == "VISp"
    splits = make_splits(24, kind="random", n_splits=2, seed=0)
    got = calc_domain_predictivity({"m": {"conv1": X}}, resp, areas=["VISp"], n_splits=2, n_components=3,
                                   pool="specimen")
    Y1, Y2 = split_trial_halves(np.asarray(resp["trials"].values)[cols])
    ref = calc_pls_consistency(X, Y1, Y2, splits, n_components=3,
                               groups=np.asarray(resp["container"].values)[cols], pool=True)
    np.testing.assert_allclose(got["score"], np.nanmedian(ref, axis=1))
    # without trials: the plain held-out r, median over neurons
    got = calc_domain_predictivity({"m": {"conv1": X}}, resp.drop_vars("trials"), areas=["VISp"], n_splits=2,
                                   n_components=3)
    assert (got["metric"] == "pls_r").all()
    r = cross_validated_pls(X, np.asarray(resp["mean"].values, dtype=float)[cols].T, splits, n_components=3)
    np.testing.assert_allclose(got["score"], np.nanmedian(r, axis=1))
    with pytest.raises(NeuroxrError, match="pool"):
        calc_domain_predictivity({"m": {"conv1": X}}, resp, n_splits=2, pool="area")
