"""Studies without stimuli.zarr: features computed elsewhere, images identified by their ids (CLI end to end)."""
from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox as rt
import xarray as xr
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from neuroxr.cli import main
from neuroxr.study import open_study

N = 20


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((N, 30))
    x2 = np.tanh(x1 @ rng.standard_normal((30, 50)))
    y = x1 @ rng.standard_normal((30, 40)) + rng.standard_normal((N, 40))
    np.savez(tmp_path / "feats.npz", l1=x1.astype(np.float32), l2=x2.astype(np.float32))
    np.save(tmp_path / "resp.npy", y[:, :8].astype(np.float32))
    np.save(tmp_path / "rdm.npy", (1 - np.corrcoef(y))[None])
    return tmp_path, {"l1": x1.astype(np.float32), "l2": x2.astype(np.float32)}, y


def test_rdm_study_without_stimuli_extracts_and_scores(files, capsys):
    d, feats, y = files
    study = d / "rdm_study"
    assert main(["ingest", "rdms", str(study), "--rdms", str(d / "rdm.npy"), "--sites", "VISp"]) == 0
    assert not (study / "stimuli.zarr").exists()
    assert main(["extract", str(study), "--model", "imp", "--features", str(d / "feats.npz")]) == 0
    assert main(["score", str(study), "--metric", "rsa"]) == 0
    got = open_study(study).scores["areas"].rsa_r.load()
    neural = rt.rdm.RDMs((1 - np.corrcoef(y))[np.triu_indices(N, 1)][None])
    for name, x in feats.items():
        model = rt.rdm.calc_rdm(rt.data.Dataset(x.astype(np.float64)), method="correlation")
        ref = float(rt.rdm.compare(model, neural, method="corr")[0, 0])
        val = float(got.where(got.layer_name == name, drop=True).sel(area="VISp").item())
        assert val == pytest.approx(ref, abs=1e-6)  # float32 features, float64 Gram
    # the same file again: skipped, not rebuilt
    capsys.readouterr()
    assert main(["extract", str(study), "--model", "imp", "--features", str(d / "feats.npz")]) == 0
    assert "skipped" in capsys.readouterr().out


def test_responses_study_without_stimuli_extracts_and_scores(files):
    d, feats, y = files
    study = d / "resp_study"
    assert main(["ingest", "arrays", str(study), "--responses", str(d / "resp.npy"), "--area", "VISp",
                 "--cre-line", "Cux2-CreERT2", "--depth-um", "175"]) == 0
    assert not (study / "stimuli.zarr").exists()
    assert main(["extract", str(study), "--model", "imp", "--features", str(d / "feats.npz")]) == 0
    feat = xr.open_zarr(study / "features" / "imp.zarr")
    resp = xr.open_zarr(study / "responses.zarr")
    np.testing.assert_array_equal(feat["image"].values, resp["image"].values)
    np.testing.assert_allclose(feat["gram"].sel(layer=feat.layer_name == "l1").values[0],
                               feats["l1"].astype(np.float64) @ feats["l1"].astype(np.float64).T, rtol=1e-6)
    assert main(["score", str(study), "--metric", "ridge", "--alpha", "1.0", "--no-zscore"]) == 0
    r = open_study(study).scores.ridge_r.load()
    assert r.sizes == {"layer": 2, "neuron": 8}
    # leave-one-out ridge of scikit-learn on the raw l1 features, Pearson r per neuron
    x, target = feats["l1"].astype(np.float64), y[:, :8].astype(np.float32).astype(np.float64)
    pred = cross_val_predict(Ridge(alpha=1.0), x, target, cv=LeaveOneOut())
    ref = [np.corrcoef(pred[:, j], target[:, j])[0, 1] for j in range(8)]
    np.testing.assert_allclose(r.where(r.layer_name == "l1", drop=True).values[0], ref, atol=1e-5)


def test_features_with_other_image_ids_are_refused(files, capsys):
    d, feats, _ = files
    study = d / "resp_study"
    assert main(["ingest", "arrays", str(study), "--responses", str(d / "resp.npy"), "--area", "VISp",
                 "--cre-line", "Cux2-CreERT2", "--depth-um", "175"]) == 0
    np.save(d / "short.npy", feats["l1"][:5])
    capsys.readouterr()
    assert main(["extract", str(study), "--model", "imp", "--features", str(d / "short.npy")]) == 2
    err = capsys.readouterr().err
    assert "short.npy" in err and len(err.strip().splitlines()) == 1
