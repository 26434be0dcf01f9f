"""Provenance: every store records the neuroxr version, its settings, seeds and hashes of its
inputs; `neuroxr info` shows them; a rerun with other settings refuses and names the setting."""
from __future__ import annotations

import hashlib
import json
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr import schema as S
from neuroxr.cli import main

VERSION = version("neuroxr")


def _attrs(path: Path) -> dict:
    return dict(xr.open_zarr(path).attrs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prov-files")
    rng = np.random.default_rng(0)
    imgs = rng.random((14, 24, 24)).astype("f4")
    resp = (imgs.reshape(14, -1) @ rng.standard_normal((576, 30)) + rng.standard_normal((14, 30))).astype("f4")
    np.save(tmp / "imgs.npy", imgs)
    np.savez(tmp / "data.npz", responses=resp, other=np.zeros(3))
    return tmp


@pytest.fixture(scope="module")
def scored(files, tmp_path_factory):
    """A study ingested from files, with synthetic features, scored with alpha 1."""
    from test_resume import write_synthetic_features

    study = tmp_path_factory.mktemp("prov") / "study"
    assert main(["ingest", "arrays", str(study), "--images", str(files / "imgs.npy"),
                 "--responses", f"{files / 'data.npz'}:responses", "--area", "VISp",
                 "--cre-line", "Cux2-CreERT2", "--depth-um", "175"]) == 0
    write_synthetic_features(study, n_models=2, n_layers=3)
    assert main(["score", str(study), "--alpha", "1.0", "--metric", "ridge", "--no-progress"]) == 0
    return study


def test_ingest_records_version_settings_and_input_hashes(scored, files):
    for store in (S.RESPONSES_STORE, S.STIMULI_STORE):
        a = _attrs(scored / store)
        assert a["neuroxr_version"] == VERSION
        settings = json.loads(a["settings"])
        assert settings["area"] == "VISp" and settings["cre_line"] == "Cux2-CreERT2"
        assert float(settings["depth_um"]) == 175.0
        inputs = json.loads(a["inputs"])
        assert inputs["responses"]["sha256"] == _sha256(files / "data.npz")
        assert inputs["responses"]["key"] == "responses"
        assert inputs["images"]["sha256"] == _sha256(files / "imgs.npy")


def test_score_records_settings_and_hashes_of_its_inputs(scored):
    a = _attrs(scored / S.SCORES_STORE)
    assert a["neuroxr_version"] == VERSION
    settings = json.loads(a["settings"])
    assert settings["alphas"] == [1.0] and settings["metrics"] == ["ridge"] and settings["zscore"] is True
    # the responses it was computed from, hashed independently (sha256 of the float32 bytes)
    mean = xr.open_zarr(scored / S.RESPONSES_STORE)["mean"].values
    assert settings["responses"] == hashlib.sha256(np.ascontiguousarray(mean).tobytes()).hexdigest()[:16]
    assert settings["n_neurons"] == mean.shape[0]
    assert sorted(json.loads(a["inputs"])) == ["synth0", "synth1"]  # one fingerprint per features store


def test_info_shows_provenance(scored, files, capsys):
    assert main(["info", str(scored)]) == 0
    text = capsys.readouterr().out
    assert f"neuroxr_version: {VERSION}" in text
    assert _sha256(files / "data.npz") in text and _sha256(files / "imgs.npy") in text
    assert '"alphas": [1.0]' in text
    assert main(["info", str(scored), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    prov = info["scores"]["provenance"]
    assert prov["neuroxr_version"] == VERSION and prov["settings"]["alphas"] == [1.0]
    assert info["responses"]["provenance"]["inputs"]["responses"]["sha256"] == _sha256(files / "data.npz")


@pytest.mark.parametrize("argv, setting", [
    (["--alpha", "10"], "alphas"),
    (["--alpha", "1.0", "--no-zscore"], "zscore"),
])
def test_rerun_with_other_settings_refuses_and_names_it(scored, tmp_path, capsys, argv, setting):
    study = tmp_path / "s"
    shutil.copytree(scored, study)
    before = xr.open_zarr(study / S.SCORES_STORE).load()
    rc = main(["score", str(study), "--metric", "ridge", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"{setting}=" in err and "scores.zarr" in err and "Traceback" not in err
    after = xr.open_zarr(study / S.SCORES_STORE).load()
    xr.testing.assert_identical(before, after)  # nothing mixed in
    # --overwrite replaces it, recording the new setting
    assert main(["score", str(study), "--metric", "ridge", "--no-progress", "--overwrite", *argv]) == 0
    new = json.loads(_attrs(study / S.SCORES_STORE)["settings"])
    assert new != json.loads(before.attrs["settings"])


def test_rerun_with_same_settings_keeps_results(scored, tmp_path):
    study = tmp_path / "s"
    shutil.copytree(scored, study)
    before = xr.open_zarr(study / S.SCORES_STORE).load()
    assert main(["score", str(study), "--alpha", "1.0", "--metric", "ridge", "--no-progress"]) == 0
    after = xr.open_zarr(study / S.SCORES_STORE).load()
    np.testing.assert_array_equal(after[S.RIDGE_R].values, before[S.RIDGE_R].values)
    assert after.attrs["settings"] == before.attrs["settings"]


@pytest.mark.slow
def test_simulated_study_records_its_seed(tmp_path):
    study = tmp_path / "sim"
    assert main(["simulate", str(study), "--seed", "3", "--n-images", "12", "--neurons-per-area", "4",
                 "--n-trials", "4", "--image-size", "32"]) == 0
    for store in (S.RESPONSES_STORE, S.STIMULI_STORE):
        settings = json.loads(_attrs(study / store)["settings"])
        assert settings["seed"] == 3
