"""Exchange with rsatoolbox and BrainIO: RDMs against rsatoolbox's own calc_rdm, netCDF round trips."""
from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox as rt
import xarray as xr

from neuroxr import exchange as X
from neuroxr.cli import main
from neuroxr.features.extract import iter_layer_activations
from neuroxr.features.zoo import load_model
from neuroxr.io.brainio import read_brainio_assembly
from neuroxr.study import open_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("exchange") / "s"
    assert main(["simulate", str(d), "--n-images", "14", "--neurons-per-area", "6", "--n-trials", "4",
                 "--image-size", "24"]) == 0
    assert main(["extract", str(d), "--model", "pixels", "--model", "gabor"]) == 0
    assert main(["score", str(d)]) == 0
    return d


def _rsatoolbox_rdm(x):
    return rt.rdm.calc_rdm(rt.data.Dataset(np.asarray(x, dtype=np.float64)), method="correlation").get_matrices()


def test_neural_rdms_equal_rsatoolbox_calc_rdm(study):
    got = X.calc_study_rdms(study, "neural")
    resp = open_study(study).responses.load()
    assert list(got["area"].values) == [a for a in ["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam"]
                                        if a in set(resp["area"].values)]
    for a in got["area"].values:
        y = resp["mean"].where(resp["area"] == a, drop=True).transpose("image", "neuron").values
        np.testing.assert_allclose(got.sel(area=a).values, _rsatoolbox_rdm(y)[0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got["image"].values, resp["image"].values)


def test_model_rdms_from_grams_equal_rsatoolbox_on_the_activations(study):
    got = X.calc_study_rdms(study, "model", "gabor")
    pix = open_study(study).stimuli["pixels"].values
    acts = {name: a for name, _, a in iter_layer_activations(load_model("gabor", device="cpu"), pix)}
    assert list(got["layer_name"].values) == list(acts)
    for name, a in acts.items():
        ref = _rsatoolbox_rdm(a)[0]  # float64 features; the store's Gram is float64 of float32 features
        np.testing.assert_allclose(got.where(got.layer_name == name, drop=True).values[0], ref, rtol=0, atol=1e-9)


def test_rsatoolbox_round_trip_keeps_values_and_labels(study):
    for which in ("neural", "model"):
        da = X.calc_study_rdms(study, which)
        r = X.to_rsatoolbox(da)
        assert r.n_rdm == da.shape[0] and r.n_cond == da.shape[1]
        assert list(r.pattern_descriptors["image"]) == da["image"].values.tolist()
        if which == "model":
            assert list(r.rdm_descriptors["layer"]) == da["layer_name"].values.tolist()
            assert list(r.rdm_descriptors["variant"]) == da["variant"].values.tolist()
            assert set(r.rdm_descriptors["model"]) == {"pixels", "gabor"}
        else:
            assert list(r.rdm_descriptors["area"]) == da["area"].values.tolist()
        back = X.from_rsatoolbox(r)
        np.testing.assert_allclose(back.values, da.values, rtol=0, atol=1e-15)
        assert back.dims == da.dims
        np.testing.assert_array_equal(back[da.dims[0]].values, da[da.dims[0]].values)


def test_ingest_rdms_reads_rsatoolbox_hdf5_and_refuses_pickles(study, tmp_path, capsys):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((9, 30))
    r = rt.rdm.calc_rdm(rt.data.Dataset(data), method="correlation")
    r2 = rt.rdm.concat([r, rt.rdm.calc_rdm(rt.data.Dataset(data[:, :15]), method="correlation")])
    r2.rdm_descriptors["site"] = ["V1", "V4"]
    r2.pattern_descriptors["image"] = list(range(10, 19))
    r2.save(str(tmp_path / "r.hdf5"), file_type="hdf5")
    r2.save(str(tmp_path / "r.pkl"), file_type="pkl")
    dest = tmp_path / "rdm_study"
    assert main(["ingest", "rdms", str(dest), "--rdms", str(tmp_path / "r.hdf5")]) == 0
    ds = open_study(dest).rdms.load()
    assert ds["site"].values.tolist() == ["V1", "V4"]
    assert ds["image"].values.tolist() == list(range(10, 19))
    np.testing.assert_allclose(ds["rdm"].values, r2.get_matrices(), rtol=0, atol=1e-12)
    capsys.readouterr()
    assert main(["ingest", "rdms", str(tmp_path / "p"), "--rdms", str(tmp_path / "r.pkl")]) == 2
    err = capsys.readouterr().err
    assert "--allow-pickle" in err and len(err.strip().splitlines()) == 1
    assert main(["ingest", "rdms", str(tmp_path / "p"), "--rdms", str(tmp_path / "r.pkl"), "--allow-pickle"]) == 0
    np.testing.assert_allclose(open_study(tmp_path / "p").rdms["rdm"].values, r2.get_matrices(), atol=1e-12)


def test_export_brainio_round_trips_responses_and_scores(study, tmp_path, capsys):
    out = tmp_path / "bio"
    assert main(["export", str(study), str(out), "--format", "brainio"]) == 0
    name = study.name
    nc = out / f"{name}.responses.nc"
    raw = xr.open_dataset(nc, engine="h5netcdf")
    assert list(raw.data_vars) == ["responses"] and raw["responses"].dims == ("presentation", "neuroid")
    assert {"stimulus_id", "repetition", "neuroid_id", "region"} <= set(raw.coords)
    assert raw.attrs["identifier"] and raw.attrs["stimulus_set_identifier"] == f"neuroxr.{name}"
    resp = open_study(study).responses.load()
    back = read_brainio_assembly(nc)  # neuroxr's own BrainIO reader: presentations of a stimulus -> trials
    np.testing.assert_allclose(back["mean"].values, resp["mean"].values, rtol=1e-6)
    np.testing.assert_array_equal(back["area"].values, resp["area"].values)
    t_ref = resp["trials"].transpose("neuron", "image", "trial").values
    np.testing.assert_array_equal(back["trials"].values, t_ref)
    ridge = xr.open_dataset(out / f"{name}.scores.ridge_r.nc", engine="h5netcdf")["ridge_r"]
    ref = open_study(study).scores.ridge_r.load()
    assert ridge.dims == ("layer", "neuroid")
    np.testing.assert_array_equal(ridge.values, ref.values)
    np.testing.assert_array_equal(ridge["region"].values, ref["area"].values)
    rsa = xr.open_dataset(out / f"{name}.scores.rsa_r.nc", engine="h5netcdf")["rsa_r"]
    assert rsa.dims == ("layer", "region")
    # nothing is overwritten silently
    capsys.readouterr()
    assert main(["export", str(study), str(out), "--format", "brainio"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_export_rsatoolbox_files_load_in_rsatoolbox(study, tmp_path):
    out = tmp_path / "rsa"
    assert main(["export", str(study), str(out), "--format", "rsatoolbox"]) == 0
    neural = rt.rdm.load_rdm(str(out / "neural_rdms.hdf5"))
    np.testing.assert_allclose(neural.get_matrices(), X.calc_study_rdms(study, "neural").values, atol=1e-15)
    model = rt.rdm.load_rdm(str(out / "model_rdms.gabor.hdf5"))
    ref = X.calc_study_rdms(study, "model", "gabor")
    assert list(model.rdm_descriptors["layer"]) == ref["layer_name"].values.tolist()
    np.testing.assert_allclose(model.get_matrices(), ref.values, atol=1e-15)
