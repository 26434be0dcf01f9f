"""The domain study on the data model: statistics against scipy/statsmodels/scikit-learn, the
Gram-based PLS per split against scikit-learn, the CREMI tiler against h5py + numpy slicing, and
`neuroxr run pipelines/prasad2022.toml` end to end on the shared VISp recordings."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from scipy import stats
from sklearn.cross_decomposition import PLSRegression
from statsmodels.stats.multitest import multipletests

from neuroxr.domains.predictivity import calc_domain_differences
from neuroxr.domains.scoring import calc_gram_pls_splits
from neuroxr.domains.separability import classify_domains
from neuroxr.errors import MissingDataError, NeuroxrError
from neuroxr.mapping.pls import make_splits

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- Mann-Whitney
def _pred(rng, means: dict, n_splits=12, layers=("conv1", "conv2"), areas=("VISp", "VISl")):
    rows = []
    for m, mu in means.items():
        for layer in layers:
            for a in areas:
                for s, v in enumerate(rng.normal(mu, 0.02, n_splits)):
                    rows.append({"model": m, "layer": layer, "area": a, "split": s, "score": v,
                                 "metric": "pls_consistency"})
    return pd.DataFrame(rows)


def test_mann_whitney_is_one_sided_towards_the_more_natural_domain(rng):
    # listed less natural first: the test must still put the more natural domain's network first
    pred = _pred(rng, {"sketch": 0.30, "real": 0.40, "quickdraw": 0.45})
    nat = {"sketch": 0.5, "real": 2.0, "quickdraw": 0.1}
    res = calc_domain_differences(pred, naturalness=nat, correction="holm")
    assert len(res) == 3 * 2 * 2
    assert (res["alternative"] == "greater").all()
    assert (res["naturalness_a"] > res["naturalness_b"]).all()
    for r in res.itertuples():
        sel = pred[(pred["layer"] == r.layer) & (pred["area"] == r.area)]
        xa = sel.loc[sel["model"] == r.model_a, "score"]
        xb = sel.loc[sel["model"] == r.model_b, "score"]
        ref = stats.mannwhitneyu(xa, xb, alternative="greater")
        assert r.u == ref.statistic and r.p == pytest.approx(ref.pvalue, rel=1e-12)
    np.testing.assert_allclose(res["p_adj"], multipletests(res["p"], method="holm")[1])
    # real (natural) beats sketch: significant; quickdraw (least natural) beats both: one-sided p near 1
    rs = res[(res["model_a"] == "real") & (res["model_b"] == "sketch")]
    assert (rs["p_adj"] < 0.01).all()
    rq = res[(res["model_a"] == "real") & (res["model_b"] == "quickdraw")]
    assert (rq["p"] > 0.9).all()
    bonf = calc_domain_differences(pred, naturalness=nat, correction="bonferroni")
    np.testing.assert_allclose(bonf["p_adj"], np.minimum(bonf["p"] * len(bonf), 1.0))


def test_mann_whitney_without_naturalness_is_two_sided_and_errors_are_clear(rng):
    pred = _pred(rng, {"a": 0.3, "b": 0.4}, layers=("conv1",), areas=("VISp",))
    res = calc_domain_differences(pred)
    ref = stats.mannwhitneyu(pred["score"][:12], pred["score"][12:], alternative="two-sided")
    assert res["alternative"].item() == "two-sided" and res["p"].item() == pytest.approx(ref.pvalue)
    with pytest.raises(NeuroxrError, match="no naturalness for networks"):
        calc_domain_differences(pred, naturalness={"a": 1.0})
    with pytest.raises(NeuroxrError, match="correction"):
        calc_domain_differences(pred, correction="sidak-ish")


# --------------------------------------------------------------------------- SVM grouped by image
def test_svm_folds_keep_an_images_pair_together(rng):
    from sklearn.model_selection import (
        StratifiedGroupKFold,
        StratifiedKFold,
        cross_val_score,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    n = 60
    A = rng.normal(size=(n, 40))
    same = {"a": {"conv1": A}, "b": {"conv1": A.copy()}}
    res = classify_domains(same, n_folds=5, seed=0)
    acc = res[res["fold"] == "mean"]["accuracy"].item()
    assert abs(acc - 0.5) < 0.1  # identical networks: chance
    # the trap the grouping avoids: ungrouped folds put an image's twin in training
    X = np.concatenate([A, A])
    y = np.repeat([0, 1], n)
    est = make_pipeline(StandardScaler(), LinearSVC(max_iter=5000, random_state=0))
    leaky = cross_val_score(est, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    assert leaky < 0.4
    # networks that differ clearly (a shift in half the units) are told apart
    B = A + np.r_[np.full(20, 1.5), np.zeros(20)]
    diff = classify_domains({"a": {"conv1": A}, "b": {"conv1": B}}, n_folds=5, seed=0)
    assert diff[diff["fold"] == "mean"]["accuracy"].item() > 0.9
    # and the numbers are scikit-learn's with groups = image
    ref = cross_val_score(est, np.concatenate([A, B]), y, groups=np.tile(np.arange(n), 2),
                          cv=StratifiedGroupKFold(5, shuffle=True, random_state=0))
    np.testing.assert_allclose(diff[diff["fold"] != "mean"]["accuracy"], ref)


# --------------------------------------------------------------------------- PLS from the Gram matrix
def _zscore(X):
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    Z[:, sd == 0] = 0.0
    return Z


def _sk_pred(Z, Y, tr, te, k):
    ym, ys = Y[tr].mean(0), Y[tr].std(0, ddof=1)
    return PLSRegression(k, scale=False).fit(Z[tr], (Y[tr] - ym) / ys).predict(Z[te]) * ys + ym


def test_gram_pls_per_split_matches_sklearn(rng):
    n, p, m = 36, 250, 6
    X = rng.normal(size=(n, p))
    X[:, 3] = 2.0  # a constant feature
    Y = X[:, :4] @ rng.normal(size=(4, m)) + rng.normal(size=(n, m))
    Y1, Y2 = Y + rng.normal(size=Y.shape), Y + rng.normal(size=Y.shape)
    Z = _zscore(X)
    splits = make_splits(n, kind="random", n_splits=4, test_size=0.5, seed=3)
    r, c = calc_gram_pls_splits(Z @ Z.T, Y, splits, n_components=5, Y1=Y1, Y2=Y2)
    assert r.shape == c.shape == (m, 4)
    for s, (tr, te) in enumerate(splits):
        pred = _sk_pred(Z, Y, tr, te, 5)
        ref = [stats.pearsonr(pred[:, j], Y[te][:, j])[0] for j in range(m)]
        np.testing.assert_allclose(r[:, s], ref, atol=1e-8)
        p1, p2 = _sk_pred(Z, Y1, tr, te, 5), _sk_pred(Z, Y2, tr, te, 5)
        for j in range(m):
            mr = stats.pearsonr(p1[:, j], p2[:, j])[0]
            rr = stats.pearsonr(Y1[te][:, j], Y2[te][:, j])[0]
            sb = (2 * mr / (1 + mr)) * (2 * rr / (1 + rr))
            want = stats.pearsonr(p1[:, j], Y2[te][:, j])[0] / np.sqrt(sb) if sb > 0 else np.nan
            np.testing.assert_allclose(c[j, s], want, atol=1e-8)
    # a constant layer scores NaN, never an error
    assert np.isnan(calc_gram_pls_splits(np.zeros((n, n)), Y, splits, 5)).all()


# --------------------------------------------------------------------------- CREMI
def test_cremi_tiler_against_h5py_and_numpy_slicing(tmp_path, rng):
    h5py = pytest.importorskip("h5py")
    from PIL import Image

    from neuroxr.domains.cremi import tile_cremi

    vol = rng.integers(0, 256, size=(3, 260, 380), dtype=np.uint8)
    f = tmp_path / "sample_A.hdf"
    with h5py.File(f, "w") as h5:
        h5.create_dataset("volumes/raw", data=vol)
        h5.create_dataset("volumes/labels/neuron_ids", data=np.zeros((3, 4, 4), np.uint64))
    out = tile_cremi(f, tmp_path / "cremi")
    files = sorted(out.glob("*.png"))
    assert len(files) == 3 * 2 * 3  # per slice the 125 px grid: 2 rows x 3 columns
    for z in range(3):
        for i in range(2):
            for j in range(3):
                y0, x0 = 125 * i, 125 * j
                got = np.asarray(Image.open(out / f"sample_A_z{z:04d}_y{y0:04d}_x{x0:04d}.png"))
                np.testing.assert_array_equal(got, vol[z, y0:y0 + 125, x0:x0 + 125])
    # 100 tiles per slice of a full 1250 x 1250 slice, and at most per_slice
    big = tmp_path / "big.hdf"
    with h5py.File(big, "w") as h5:
        h5.create_dataset("volumes/raw", data=np.zeros((1, 1250, 1250), np.uint8))
    assert len(list(tile_cremi(big, tmp_path / "big").glob("*.png"))) == 100
    assert len(list(tile_cremi(f, tmp_path / "few", per_slice=2).glob("*.png"))) == 3 * 2
    with pytest.raises(MissingDataError, match="volumes/raw"):
        tile_cremi(f, tmp_path / "k", key="volumes/missing")
    with pytest.raises(NeuroxrError, match="not empty"):
        tile_cremi(f, out)


# --------------------------------------------------------------------------- recordings
def test_recordings_readers_absent_or_unknown_are_one_line_errors(tmp_path, monkeypatch):
    from neuroxr.domains.pipeline import _recordings
    from neuroxr.domains.study import ingest_recording

    monkeypatch.setitem(sys.modules, "neuroxr.io.sensorium", None)  # the reader missing
    with pytest.raises(MissingDataError, match=r"neuroxr\.io\.sensorium\.ingest_sensorium"):
        ingest_recording("sensorium", {"path": str(tmp_path)}, tmp_path / "s")
    monkeypatch.setitem(sys.modules, "neuroxr.io.allen.ecephys", None)
    with pytest.raises(MissingDataError, match="ingest_neuropixels"):
        ingest_recording("allen-neuropixels", {"cache_dir": str(tmp_path)}, tmp_path / "n")
    with pytest.raises(MissingDataError, match="file not found"):
        ingest_recording("allen-2p", {"images": str(tmp_path / "no.npz") + ":images"}, tmp_path / "a")
    with pytest.raises(NeuroxrError, match="unknown recordings"):
        _recordings({"recordings": {"use": ["allen-2p"], "allen-2p": {}, "mouse-fmri": {}}})
    cfg = tomllib.loads((REPO / "pipelines" / "prasad2022.toml").read_text())
    assert set(_recordings(cfg)) == {"allen-2p"}
    cfg["recordings"]["use"] = ["allen-2p", "allen-neuropixels", "sensorium"]
    assert list(_recordings(cfg)) == ["allen-2p", "allen-neuropixels", "sensorium"]


# --------------------------------------------------------------------------- end to end
def _tiny_config(study: Path, visp: Path) -> str:
    """pipelines/prasad2022.toml with the training shrunk to one step and the splits to three."""
    cfg = (REPO / "pipelines" / "prasad2022.toml").read_text()
    cfg = cfg.replace('study = "studies/prasad2022"', f'study = "{study}"')
    cfg = cfg.replace("../shared/data/allen_visp/allen_visp.npz", str(visp))
    over = {
        "[synthetic]\n": "[synthetic]\nn_images = 8\nsize = 32\nseed = 0\n",
        "[naturalness]": "[naturalness]\nn_samples = 8\ncrop = 32\nseed = 0\n",
        "[train]": "[train]\nepochs = 1\nbatch_size = 4\nhidden_dim = 16\nmax_steps = 1\nseed = 0\nnum_workers = 0\n",
        "[compare]": "[compare]\nn_splits = 3\nn_components = 5\nsvm_folds = 3\nseed = 0\n",
    }
    lines, skip = [], False
    for line in cfg.splitlines(keepends=True):
        head = line.split("#")[0].strip()
        if head.startswith("["):
            skip = False
            for k, v in over.items():
                if head == k.strip():
                    lines.append(v)
                    skip = True
            if skip:
                continue
        if skip and "=" in head:
            continue
        lines.append(line)
    text = "".join(lines)
    # two synthetic domains only
    text = text.replace('spectral-p1 = { kind = "spectral", p = 1.0 }\n', "")
    text = text.replace('spectral-p3 = { kind = "spectral", p = 3.0 }\n', "")
    return text


def test_prasad2022_pipeline_end_to_end_on_the_shared_visp_recordings(tmp_path, allen_visp_npz, capsys):
    from neuroxr.cli import main
    from neuroxr.features.hooks import iter_layer_activations
    from neuroxr.features.zoo import load_model
    from neuroxr.io.store import open_dataset
    from neuroxr.study import open_study

    study = tmp_path / "st"
    cfg = tmp_path / "prasad2022.toml"
    cfg.write_text(_tiny_config(study, allen_visp_npz))
    parsed = tomllib.loads(cfg.read_text())
    assert parsed["train"]["max_steps"] == 1 and set(parsed["synthetic"]["domains"]) == {"spectral-p2", "lines"}
    assert main(["run", str(cfg)]) in (0, None)
    out = capsys.readouterr().out
    assert "Table 1" in out and "pls_allen-2p" in out and "spectral-p2" in out and "lines" in out

    # the study's own store: naturalness, networks, Table 1 (domain, recording)
    top = open_dataset(study / "domains.zarr").load()
    assert list(top["recording"].values) == ["allen-2p"]
    assert top["pls"].dims == ("domain", "recording") and np.isfinite(top["pls"]).all()
    assert top["naturalness"].sel(domain="spectral-p2") > top["naturalness"].sel(domain="lines")
    table = pd.read_csv(study / "reports" / "domains" / "table1.csv")
    assert list(table["domain"]) == ["spectral-p2", "lines"]  # most natural first
    assert list(table.columns[:3]) == ["domain", "naturalness", "p_mean"]

    # the recording's study: features store (one variant per network), scores.zarr with the labels
    rec = study / "recordings" / "allen-2p"
    npz = np.load(allen_visp_npz)
    feats = open_dataset(rec / "features" / "alexnet-simclr.zarr")
    sha = {d: str(w) for d, w in zip(top["domain"].values, top["network_weights"].values)}
    assert set(np.asarray(feats["weights"].values).astype(str)) == set(sha.values())
    sc = open_study(rec).scores.to_dataset()
    assert sc["pls_split_r"].dims == ("layer", "neuron", "split") and sc.sizes["split"] == 3
    assert sc.sizes["neuron"] == npz["responses"].shape[1] and set(sc["area"].values) == {"VISp"}
    assert {"model", "layer_name", "weights", "variant", "relative_depth"} <= set(sc.coords)

    # pls_split_r of conv1 (after ReLU) of one network against scikit-learn on its activations
    ckpt = study / "checkpoints" / "lines.pt"
    pixels = np.asarray(open_dataset(rec / "stimuli.zarr")["pixels"].values)
    acts = {name: a for name, _, a in iter_layer_activations(load_model("alexnet-simclr", weights=str(ckpt)),
                                                                     pixels, batch_size=64)}
    X = np.asarray(acts["features.1"], dtype=np.float64).reshape(len(pixels), -1)
    Z = _zscore(X)
    Y = npz["responses"].astype(np.float64)
    sel = (np.asarray(sc["weights"].values).astype(str) == sha["lines"]) & (
        np.asarray(sc["layer_name"].values).astype(str) == "features.1")
    got = np.asarray(sc["pls_split_r"].isel(layer=int(np.flatnonzero(sel)[0])).values)
    splits = make_splits(len(pixels), kind="random", n_splits=3, test_size=0.5, seed=0)
    for s, (tr, te) in enumerate(splits):
        pred = _sk_pred(Z, Y, tr, te, 5)
        ref = np.array([stats.pearsonr(pred[:, j], Y[te][:, j])[0] for j in range(Y.shape[1])])
        np.testing.assert_allclose(got[:, s], ref, atol=2e-4)

    # the recording's domains.zarr: labelled tests, norms, distances, SVM
    dz = open_dataset(rec / "domains.zarr").load()
    assert dz["predictivity"].dims == ("domain", "layer", "area", "split")
    # the statistics' scores are the paper's PLS: PLSRegression(scale=True) on the raw activations,
    # median over the area's neurons, per split
    for s, (tr, te) in enumerate(splits):
        pred = PLSRegression(5, scale=True).fit(X[tr], Y[tr]).predict(X[te])
        med = np.median([stats.pearsonr(pred[:, j], Y[te][:, j])[0] for j in range(Y.shape[1])])
        got_s = dz["predictivity"].sel(domain="lines", layer="conv1", area="VISp", split=s).item()
        assert got_s == pytest.approx(med, abs=1e-6)
    assert "predictivity_scores" in dz  # the data model's Gram PLS beside it
    assert list(dz["pair"].values) == ["spectral-p2>lines"] and (dz["mw_alternative"] == "greater").all()
    # norms come from the features store's Gram diagonal: equal to numpy's norm of the activations
    np.testing.assert_allclose(dz["norm"].sel(domain="lines", layer="conv1"), np.linalg.norm(X, axis=1), rtol=1e-5)
    assert dz["svm_accuracy"].dims == ("layer", "svm_fold") and dz["distance"].sizes["image"] == len(pixels)
    mw = pd.read_csv(rec / "reports" / "domains" / "mannwhitney.csv")
    pr = pd.read_csv(rec / "reports" / "domains" / "predictivity.csv")
    for r in mw.itertuples():
        q = pr[(pr["layer"] == r.layer) & (pr["area"] == r.area)]
        ref = stats.mannwhitneyu(q.loc[q["model"] == r.model_a, "score"], q.loc[q["model"] == r.model_b, "score"],
                                 alternative="greater")
        assert r.p == pytest.approx(ref.pvalue)
    for fig in ("first_layer_filters", "norm_distributions", "distances", "predictivity_by_layer"):
        assert (rec / "reports" / "domains" / f"{fig}.png").stat().st_size > 2000, fig
    assert (study / "reports" / "domains" / "naturalness.png").exists()


def test_cli_tile_cremi(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    from neuroxr.cli import main

    f = tmp_path / "sample_B.hdf"
    with h5py.File(f, "w") as h5:
        h5.create_dataset("volumes/raw", data=np.arange(2 * 250 * 250, dtype=np.uint32).reshape(2, 250, 250) % 251)
    assert main(["tile-cremi", str(f), "--out", str(tmp_path / "c")]) == 0
    assert "8 tiles" in capsys.readouterr().out
    assert main(["tile-cremi", str(tmp_path / "missing.hdf"), "--out", str(tmp_path / "d")]) != 0


def test_recordings_call_the_neuropixels_and_sensorium_readers(tmp_path):
    """[recordings.sensorium] / [recordings.allen-neuropixels] reach the readers with their settings
    (TOML lists as tuples), giving the same stores as calling the readers directly."""
    from ecephys_fixture import make_ecephys_cache
    from sensorium_fixture import make_sensorium

    from neuroxr.domains.study import ingest_recording
    from neuroxr.io.allen.ecephys import ingest_neuropixels
    from neuroxr.io.sensorium import ingest_sensorium
    from neuroxr.io.store import open_dataset

    sens = make_sensorium(tmp_path / "sensorium")
    ingest_recording("sensorium", {"path": str(sens["a"]["dir"]), "tiers": ["test"]}, tmp_path / "s1", log=print)
    ingest_sensorium(tmp_path / "s2", sens["a"]["dir"], tiers=("test",))
    cache = tmp_path / "ecephys"
    make_ecephys_cache(cache)
    ingest_recording("allen-neuropixels", {"cache_dir": str(cache), "window": [0.0, 0.25]}, tmp_path / "n1",
                     log=print)
    ingest_neuropixels(tmp_path / "n2", cache, window=(0.0, 0.25))
    for a, b in (("s1", "s2"), ("n1", "n2")):
        got, ref = open_dataset(tmp_path / a / "responses.zarr"), open_dataset(tmp_path / b / "responses.zarr")
        np.testing.assert_array_equal(got["mean"].values, ref["mean"].values)
        np.testing.assert_array_equal(got["neuron"].values, ref["neuron"].values)
