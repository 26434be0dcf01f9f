"""score_layers / score_study: exact against scikit-learn and scipy, lazy, resumable, crash-safe."""
from __future__ import annotations

import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import pdist
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from neuroxr import schema as S
from neuroxr.errors import MissingDataError, NeuroxrError, SettingsMismatchError
from neuroxr.io import store
from neuroxr.mapping import graph, kernels, open_scores, score

AREAS = ("VISp", "VISl")


# ----------------------------------------------------------------------------------------------
# helpers: features stores from random matrices X (gram computed here, independently)
# ----------------------------------------------------------------------------------------------
def make_features(Xs: dict, model="m", weights="trained", family="cnn", images=None, srp=None) -> xr.Dataset:
    """A ``features/<model>.zarr`` Dataset from raw feature matrices ``{layer_name: X (image, feature)}``."""
    names = list(Xs)
    mats = [np.asarray(X, dtype=np.float64) for X in Xs.values()]
    n = mats[0].shape[0]
    images = np.arange(n) if images is None else np.asarray(images)
    with np.errstate(invalid="ignore"):
        zs = [StandardScaler().fit_transform(X) if np.isfinite(X).all() else X for X in mats]
    L = len(names)
    ds = xr.Dataset(
        {"gram": (("layer", "image", "image_j"), np.stack([X @ X.T for X in mats])),
         "gram_z": (("layer", "image", "image_j"), np.stack([Z @ Z.T for Z in zs])),
         "feature_sum": (("layer", "image"), np.stack([X.sum(1) for X in mats]))},
        coords={"layer": [S.layer_id(model, weights, nm) for nm in names], "image": images, "image_j": images,
                "model": ("layer", [model] * L), "layer_name": ("layer", names), "depth": ("layer", np.arange(L)),
                "relative_depth": ("layer", np.arange(L) / max(1, L - 1)), "weights": ("layer", [weights] * L),
                "family": ("layer", [family] * L), "n_features": ("layer", [X.shape[1] for X in mats]),
                "module_type": ("layer", ["Conv2d"] * L), "source": ("layer", ["test"] * L),
                "finite": ("layer", [bool(np.isfinite(X).all()) for X in mats])},
    )
    if srp is not None:
        ds["srp"] = (("layer", "image", "component"), np.stack([np.asarray(srp[k]) for k in names]).astype(np.float32))
    return ds


def make_responses(Y, areas=AREAS, images=None, trials=None, selected=None) -> xr.Dataset:
    """responses.zarr Dataset from Y (image, neuron)."""
    n, N = Y.shape
    images = np.arange(n) if images is None else np.asarray(images)
    ds = xr.Dataset({"mean": (("neuron", "image"), np.asarray(Y, dtype=np.float32).T)},
                    coords={"neuron": 1000 + np.arange(N), "image": images,
                            "area": ("neuron", np.array(areas)[np.arange(N) % len(areas)]),
                            "cre_line": ("neuron", ["Cux2-CreERT2"] * N), "depth_um": ("neuron", np.full(N, 175.0)),
                            "splithalf_r": ("neuron", np.linspace(0, 1, N))})
    if trials is not None:
        ds["trials"] = (("neuron", "image", "trial"), trials)
    if selected is not None:
        ds["selected"] = (("neuron",), np.asarray(selected, dtype=bool))
    return ds


def make_data(seed=0, n=30, N=14, ps=(5, 12, 80), shared=3):
    rng = np.random.default_rng(seed)
    Xs = {f"l{i}": rng.standard_normal((n, p)) * (1 + i) + 0.3 * i for i, p in enumerate(ps)}
    Y = Xs["l1"][:, :shared] @ rng.standard_normal((shared, N)) + rng.standard_normal((n, N))
    return Xs, Y.astype(np.float32).astype(np.float64)


def sklearn_loo_r(X, Y, alpha, zscore=True):
    Z = StandardScaler().fit_transform(X) if zscore else X
    m = RidgeCV(alphas=[alpha], fit_intercept=True, store_cv_results=True, scoring="neg_mean_squared_error")
    pred = m.fit(Z, Y).cv_results_[..., 0]
    return np.array([np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])])


def rsa_reference(X, Yarea):
    a = pdist(X, "correlation")
    b = pdist(Yarea, "correlation")
    return np.corrcoef(a, b)[0, 1]


def write_study(root: Path, models: dict, Y, **resp_kw) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    store.write_dataset(make_responses(Y, **resp_kw), root / S.RESPONSES_STORE)
    for name, feats in models.items():
        store.write_dataset(feats, root / S.FEATURES_DIR / f"{name}.zarr")
    return root


# ----------------------------------------------------------------------------------------------
# score_layers
# ----------------------------------------------------------------------------------------------
def test_score_layers_matches_sklearn_and_scipy():
    Xs, Y = make_data()
    feats = make_features(Xs)
    resp = make_responses(Y)
    ds = score.score_layers(feats, resp, ("ridge", "rsa"), alpha=1.0, neuron_chunk=5, layer_chunk=2).compute()
    rsa = ds["areas"].rsa_r
    assert ds.ridge_r.dims == ("layer", "neuron") and rsa.dims == ("layer", "area")
    want = xr.DataArray([[rsa_reference(X, Y[:, resp.area.values == a]) for a in AREAS] for X in Xs.values()],
                        dims=("layer", "area"), coords={"layer": ds.layer.values, "area": list(AREAS)})
    xr.testing.assert_allclose(rsa.reset_coords(drop=True), want, atol=1e-10, rtol=0)
    for i, X in enumerate(Xs.values()):
        np.testing.assert_allclose(ds.ridge_r[i].values, sklearn_loo_r(X, Y, 1.0), atol=1e-8)
    # contract coords copied, to both groups; the model variant is one label
    for c in S.LAYER_COORDS + ("n_features", "variant"):
        assert c in ds.coords and c in ds["areas"].coords
    assert set(ds.variant.values) == {"m:trained"}
    for c in S.NEURON_COORDS + ("splithalf_r",):
        assert ds[c].dims == ("neuron",)


def test_score_layers_raw_features_and_alpha_grid():
    Xs, Y = make_data(seed=1)
    feats = make_features(Xs)
    grid = (0.1, 3.0, 100.0)
    ds = score.score_layers(feats, make_responses(Y), ("ridge",), alphas=grid, zscore=False).compute()
    for i, X in enumerate(Xs.values()):
        m = RidgeCV(alphas=grid, alpha_per_target=True, store_cv_results=True,
                    scoring="neg_mean_squared_error").fit(X, Y)
        np.testing.assert_array_equal(ds.ridge_alpha[i].values, m.alpha_)
        want = [sklearn_loo_r(X, Y[:, [j]], m.alpha_[j], zscore=False)[0] for j in range(Y.shape[1])]
        np.testing.assert_allclose(ds.ridge_r[i].values, want, atol=1e-8)


@pytest.mark.parametrize("redo", [1e-6, 2.0])
def test_direct_and_algebraic_pearson_paths_agree(monkeypatch, redo):
    """redo=2: every neuron takes the direct (centred prediction) path; both match scikit-learn."""
    monkeypatch.setattr(kernels, "REDO_RTOL", redo)
    Xs, Y = make_data(seed=3)
    grid = (1e-2, 1.0, 1e5)
    ds = score.score_layers(make_features(Xs), make_responses(Y), ("ridge",), alphas=grid).compute()
    for i, X in enumerate(Xs.values()):
        want = [sklearn_loo_r(X, Y[:, [j]], ds.ridge_alpha[i, j].item())[0] for j in range(Y.shape[1])]
        np.testing.assert_allclose(ds.ridge_r[i].values, want, atol=1e-8)


def test_srp_ridge_and_pls_against_references():
    from sklearn.random_projection import SparseRandomProjection

    from neuroxr.mapping import pls

    Xs, Y = make_data(seed=2, ps=(40, 300))
    srp = {k: SparseRandomProjection(n_components=20, random_state=0).fit_transform(X).astype(np.float32)
           for k, X in Xs.items()}
    feats = make_features(Xs, srp=srp)
    opts = {"kind": "kfold", "n_splits": 3, "n_components": 4, "seed": 0}
    ds = score.score_layers(feats, make_responses(Y), ("ridge", "srp-ridge", "pls"), pls_options=opts).compute()
    splits = pls.make_splits(Y.shape[0], kind="kfold", n_splits=3, seed=0)
    for i, k in enumerate(Xs):
        S_ = srp[k].astype(np.float64)
        np.testing.assert_allclose(ds.srp_ridge_r[i].values, sklearn_loo_r(S_, Y, 1.0), atol=1e-8)
        np.testing.assert_allclose(ds.ridge_r[i].values, sklearn_loo_r(Xs[k], Y, 1.0), atol=1e-8)  # distinct graphs
        np.testing.assert_allclose(ds.pls_r[i].values,
                                   pls.cross_validated_pls(S_, Y, splits, n_components=4).mean(0), atol=1e-10)


def test_srp_missing_says_how_to_extract():
    Xs, Y = make_data()
    with pytest.raises(MissingDataError, match="--srp"):
        score.score_layers(make_features(Xs), make_responses(Y), ("srp-ridge",))


class _NoCompute:
    """A dask scheduler that fails if anything is computed (like xarray's raise_if_dask_computes)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        raise RuntimeError("dask computed something while building the graph")


def test_building_the_graph_computes_nothing(tmp_path):
    Xs, Y = make_data()
    srp = {k: X[:, :4] for k, X in Xs.items()}
    trials = np.repeat(Y.T[:, :, None], 4, axis=2).astype(np.float32)
    root = write_study(tmp_path / "st", {"m": make_features(Xs, srp=srp)}, Y, trials=trials)
    feats = store.open_dataset(root / "features" / "m.zarr")
    resp = store.open_dataset(root / S.RESPONSES_STORE)
    sched = _NoCompute()
    with dask.config.set(scheduler=sched):
        ds = score.score_layers(feats, resp, ("ridge", "rsa", "srp-ridge", "pls"), alphas=(1.0, 10.0))
    assert sched.calls == 0
    assert all(isinstance(v.data, dask.array.Array) for node in ds.subtree for v in node.data_vars.values())
    assert "rsa_ceiling" in ds["areas"]
    got = ds.compute()  # and the graph does compute, to the reference numbers
    np.testing.assert_allclose(got.ridge_r[0].values,
                               [sklearn_loo_r(Xs["l0"], Y[:, [j]], got.ridge_alpha[0, j].item())[0]
                                for j in range(Y.shape[1])], atol=1e-6)


def test_constant_neuron_and_constant_layer_give_nan():
    Xs, Y = make_data()
    Xs["const"] = np.full((Y.shape[0], 7), 3.0)
    Y[:, 2] = 5.0
    ds = score.score_layers(make_features(Xs), make_responses(Y), ("ridge", "rsa")).compute()
    assert np.isnan(ds.ridge_r.sel(layer="m|trained|const")).all()
    assert np.isnan(ds.ridge_r.isel(neuron=2)).all()
    assert np.isfinite(ds.ridge_r.drop_sel(layer="m|trained|const").drop_isel(neuron=2)).all()
    assert np.isnan(ds["areas"].rsa_r.sel(layer="m|trained|const")).all()
    counts = score.count_nan_scores(ds)
    assert counts["ridge_r"]["nan_layers"] == 1 and counts["ridge_r"]["nan_neurons"] == 1


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_image_sets_differ_names_the_ids():
    Xs, Y = make_data()
    feats = make_features(Xs, images=np.arange(Y.shape[0]) + 3)
    with pytest.raises(S.SchemaError, match=r"missing from the features.*\[0, 1, 2\]"):
        score.score_layers(feats, make_responses(Y), ("ridge",))


def test_images_in_another_order_are_aligned():
    Xs, Y = make_data()
    perm = np.random.default_rng(0).permutation(Y.shape[0])
    feats = make_features({k: X[perm] for k, X in Xs.items()}, images=perm)
    a = score.score_layers(feats, make_responses(Y), ("ridge", "rsa")).compute()
    b = score.score_layers(make_features(Xs), make_responses(Y), ("ridge", "rsa")).compute()
    xr.testing.assert_allclose(a.ridge_r, b.ridge_r, atol=1e-10, rtol=0)
    xr.testing.assert_allclose(a["areas"].rsa_r, b["areas"].rsa_r, atol=1e-10, rtol=0)


def test_nan_layer_raises_naming_it_or_is_skipped():
    Xs, Y = make_data()
    Xs["l1"][3, 2] = np.nan
    feats = make_features(Xs)
    with pytest.raises(NeuroxrError, match=r"m\|trained\|l1.*skip"):
        score.score_layers(feats, make_responses(Y), ("ridge",))
    ds = score.score_layers(feats, make_responses(Y), ("ridge",), nan_layers="skip").compute()
    assert np.isnan(ds.ridge_r[1]).all() and np.isfinite(ds.ridge_r[0]).all()


def test_empty_area_and_bad_alpha():
    Xs, Y = make_data()
    with pytest.raises(NeuroxrError, match="VISam.*0 neuron"):
        score.score_layers(make_features(Xs), make_responses(Y), ("rsa",), areas=["VISp", "VISam"])
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(NeuroxrError, match="alpha"):
            score.score_layers(make_features(Xs), make_responses(Y), ("ridge",), alpha=bad)


# ----------------------------------------------------------------------------------------------
# score_study: store, resume, append, settings, crash safety
# ----------------------------------------------------------------------------------------------
def test_score_study_writes_contract_store_and_appends(tmp_path):
    Xs, Y = make_data()
    rng = np.random.default_rng(5)
    Xb = {"a": rng.standard_normal((Y.shape[0], 9)), "b": rng.standard_normal((Y.shape[0], 30))}
    selected = np.arange(Y.shape[1]) != 0
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y, selected=selected)
    logs = []
    path = score.score_study(root, log=logs.append)
    sc = store.open_dataset(path).load()  # loaded: the store is replaced below
    S.validate_scores(sc, path)
    assert sc.sizes["layer"] == 3 and sc.sizes["neuron"] == selected.sum()
    np.testing.assert_allclose(sc.ridge_r[2].values, sklearn_loo_r(Xs["l2"], Y[:, selected], 1.0), atol=1e-6)
    # the paper's one-liner on the opened store, as-is
    tab = sc.ridge_r.groupby("area").mean().groupby("variant").max()
    assert set(tab.dims) == {"variant", "area"}
    tree = open_scores(path)
    S.validate_scores(tree, path)
    assert list(tree["areas"].rsa_r.area.values) == list(AREAS)
    assert tree["areas"].rsa_r.sel(area="VISp").dims == ("layer",)
    settings = store.read_settings(sc)
    assert settings["alphas"] == [1.0] and settings["metrics"] == ["ridge", "rsa"]
    # resume: nothing to do
    logs.clear()
    score.score_study(root, log=logs.append)
    assert any("skipped" in m for m in logs) and not any("scoring" in m for m in logs)
    # append a model
    store.write_dataset(make_features(Xb, model="z", family="baseline"), root / "features" / "z.zarr")
    logs.clear()
    score.score_study(root, log=logs.append)
    assert [m.split(":")[0] for m in logs if "scoring" in m] == ["z"]
    sc2 = store.open_dataset(path)
    assert sc2.sizes["layer"] == 5 and set(sc2.model.values) == {"m", "z"}
    np.testing.assert_allclose(sc2.ridge_r.sel(layer=sc.layer).values, sc.ridge_r.values)
    np.testing.assert_allclose(sc2.ridge_r.sel(layer="z|trained|b").values,
                               sklearn_loo_r(Xb["b"], Y[:, selected], 1.0), atol=1e-6)


def test_score_study_refuses_other_settings_and_overwrites(tmp_path):
    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    score.score_study(root, metrics=("ridge",))
    with pytest.raises(SettingsMismatchError, match="alphas"):
        score.score_study(root, metrics=("ridge",), alpha=2.0)
    with pytest.raises(SettingsMismatchError, match="zscore"):
        score.score_study(root, metrics=("ridge",), zscore=False)
    path = score.score_study(root, metrics=("ridge",), alpha=2.0, overwrite=True)
    sc = store.open_dataset(path)
    assert store.read_settings(sc)["alphas"] == [2.0]
    np.testing.assert_allclose(sc.ridge_r[0].values, sklearn_loo_r(Xs["l0"], Y, 2.0), atol=1e-6)


def test_crash_while_scoring_leaves_no_half_written_part(tmp_path, monkeypatch):
    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"a": make_features(Xs, model="a")}, Y)
    score.score_study(root, metrics=("ridge",))
    store.write_dataset(make_features(Xs, model="b"), root / "features" / "b.zarr")
    real = graph._loo_scores
    calls = {"n": 0}

    def flaky(R, Yb, n_out, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(R, Yb, n_out, **kw)

    monkeypatch.setattr(graph, "_loo_scores", flaky)
    with pytest.raises(KeyboardInterrupt):
        score.score_study(root, metrics=("ridge",), layer_chunk=1, neuron_chunk=4)
    assert not (root / "scores.parts" / "b.zarr").exists()
    sc = store.open_dataset(root / "scores.zarr")
    assert set(sc.model.values) == {"a"}  # the old store is intact
    monkeypatch.setattr(graph, "_loo_scores", real)
    sc = store.open_dataset(score.score_study(root, metrics=("ridge",)))
    assert set(sc.model.values) == {"a", "b"}
    assert sorted(p.name for p in (root / "scores.parts").iterdir() if not p.name.startswith(".")) == \
        ["a.zarr", "b.zarr"]


def test_rsa_ceiling_and_neural_rdms(tmp_path):
    from neuroxr.rsa import calc_rdm_noise_ceiling

    Xs, Y = make_data(N=12)
    rng = np.random.default_rng(3)
    trials = (Y.T[:, :, None] + rng.standard_normal((Y.shape[1], Y.shape[0], 6))).astype(np.float32)
    trials[:, :4, 5] = np.nan  # fewer trials for some images
    resp = make_responses(Y, trials=trials)
    ds = score.score_layers(make_features(Xs), resp, ("rsa",)).compute()
    labels, ceil, _ = calc_rdm_noise_ceiling(trials, resp.area.values)
    want = xr.DataArray(ceil, dims="area", coords={"area": labels}).sel(area=list(AREAS))
    xr.testing.assert_allclose(ds["areas"].rsa_ceiling.reset_coords(drop=True), want, atol=1e-12, rtol=0)
    # ingested RDMs: each site takes the place of an area
    site_rdms = xr.DataArray(np.stack([1 - np.corrcoef(Y[:, :6]), 1 - np.corrcoef(Y[:, 6:])]),
                             dims=("site", "image", "image_j"),
                             coords={"site": ["s1", "s2"], "image": np.arange(Y.shape[0]),
                                     "image_j": np.arange(Y.shape[0])})
    only = score.score_layers(make_features(Xs), None, ("rsa",), rdms=site_rdms).compute()
    assert list(only["areas"].area.values) == ["s1", "s2"]
    np.testing.assert_allclose(float(only["areas"].rsa_r.sel(area="s1")[1]), rsa_reference(Xs["l1"], Y[:, :6]),
                               atol=1e-10)
    both = score.score_layers(make_features(Xs), resp, ("rsa",), rdms=site_rdms).compute()
    np.testing.assert_allclose(both["areas"].rsa_site_r.values, only["areas"].rsa_r.values, atol=1e-12)
    # through the study directory
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    store.write_dataset(site_rdms.to_dataset(name="rdm"), root / S.RDMS_STORE)
    sc = open_scores(score.score_study(root, metrics=("rsa",)))
    np.testing.assert_allclose(sc["areas"].rsa_site_r.values, only["areas"].rsa_r.values, atol=1e-6)


def test_cli_score(tmp_path, capsys):
    from neuroxr.cli import main

    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    assert main(["score", str(root), "--metric", "ridge", "--alphas", "0.5,5", "--no-progress"]) == 0
    sc = store.open_dataset(root / "scores.zarr")
    assert store.read_settings(sc)["alphas"] == [0.5, 5.0] and "ridge_alpha" in sc
    assert main(["score", str(root), "--metric", "ridge", "--alpha", "3"]) == 2
    assert "alphas" in capsys.readouterr().err
    assert main(["score", str(root), "--metric", "ridge", "--alpha", "-1", "--overwrite"]) == 2


def test_real_allen_visp_pixels_match_sklearn(allen_visp_npz):
    """Real recordings: ridge on z-scored raw pixels, every neuron, against scikit-learn."""
    d = np.load(allen_visp_npz)
    X = d["images"].reshape(len(d["images"]), -1).astype(np.float64)
    Y = d["responses"].astype(np.float64)
    feats = make_features({"pixels": X}, model="pixels", family="baseline", images=d["image_index"])
    resp = make_responses(Y, images=d["image_index"])
    ds = score.score_layers(feats, resp, ("ridge", "rsa")).compute()
    np.testing.assert_allclose(ds.ridge_r[0].values, sklearn_loo_r(X, Y, 1.0), atol=1e-8)
    assert abs(float(np.nanmean(ds.ridge_r))) < 0.05  # the README's "about 0.00" for pixels


def test_score_study_on_a_distributed_cluster(tmp_path):
    """The same graph runs on a dask.distributed cluster (in-process workers here)."""
    distributed = pytest.importorskip("distributed")
    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        path = score.score_study(root, metrics=("ridge", "rsa"), client=client, progress=False)
    sc = store.open_dataset(path)
    np.testing.assert_allclose(sc.ridge_r[1].values, sklearn_loo_r(Xs["l1"], Y, 1.0), atol=1e-6)


def test_string_coords_of_extract_stores_open_after_scoring(tmp_path):
    """Features stores hold object/variable-width string coords (as `neuroxr extract` writes them);
    scores.zarr must still open with the default (auto-chunked) open_dataset."""
    Xs, Y = make_data()
    feats = make_features(Xs)
    feats = feats.assign_coords({c: ("layer", np.asarray(feats[c].values, dtype=object))
                                 for c in ("model", "layer_name", "weights", "family", "module_type", "source")})
    feats = feats.assign_coords(layer=np.asarray(feats.layer.values, dtype=object))
    root = write_study(tmp_path / "st", {"m": feats}, Y)
    sc = store.open_dataset(score.score_study(root, metrics=("ridge",)))
    assert sc.model.dtype.kind == "U" and list(sc.layer_name.values) == list(Xs)


def test_torch_backend_scores_like_sklearn():
    pytest.importorskip("torch")
    Xs, Y = make_data(seed=9)
    ds = score.score_layers(make_features(Xs), make_responses(Y), ("ridge",), alphas=(0.5, 20.0), backend="torch")
    ds = ds.compute()
    for i, X in enumerate(Xs.values()):
        want = [sklearn_loo_r(X, Y[:, [j]], ds.ridge_alpha[i, j].item())[0] for j in range(Y.shape[1])]
        np.testing.assert_allclose(ds.ridge_r[i].values, want, atol=1e-8)


def test_parts_in_an_older_layout_are_rescored(tmp_path):
    """A part without the tree layout (no 'variant', rsa_r at the root) is scored again, not assembled."""
    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    want = open_scores(score.score_study(root)).load()
    part = root / "scores.parts" / "m.zarr"
    flat = xr.open_zarr(part).load().drop_vars("variant")
    flat["rsa_r"] = want["areas"].rsa_r.reset_coords(drop=True).drop_vars("area")
    shutil.rmtree(part)
    flat.to_zarr(part, zarr_format=3)
    with pytest.raises(SettingsMismatchError, match="older neuroxr"):
        score.assemble_scores(root)
    logs = []
    got = open_scores(score.score_study(root, log=logs.append))
    assert [m for m in logs if "scoring" in m]
    xr.testing.assert_identical(got["areas"].rsa_r.load(), want["areas"].rsa_r)
