"""`ingest arrays` / `ingest rdms`: the shared VISp recordings, labelled inputs, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neuroxr.cli import main
from neuroxr.errors import StoreExistsError
from neuroxr.io import arrays, store
from neuroxr.io.arrays import build_responses_dataset, ingest_arrays, ingest_rdms, read_brainio_assembly
from neuroxr.io.store import open_dataset
from neuroxr.schema import SchemaError


def _no_tmp(study):
    return [p.name for p in study.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- shared VISp data
def test_cli_ingest_shared_visp(allen_visp_npz, tmp_path, capsys):
    study = tmp_path / "st"
    rc = main(["ingest", "arrays", str(study), "--images", f"{allen_visp_npz}:images",
               "--responses", f"{allen_visp_npz}:responses", "--area", "VISp",
               "--cre-line", "Cux2-CreERT2", "--depth-um", "275"])
    assert rc == 0
    raw = np.load(allen_visp_npz)
    resp = open_dataset(study / "responses.zarr")
    stim = open_dataset(study / "stimuli.zarr")
    assert resp["mean"].dims == ("neuron", "image") and resp["mean"].shape == (211, 118)
    assert stim["pixels"].dims == ("image", "y", "x") and stim["pixels"].shape == (118, 31, 31)
    assert resp["mean"].dtype == np.float32 and stim["pixels"].dtype == np.float32
    np.testing.assert_array_equal(resp["mean"].values, raw["responses"].T)
    np.testing.assert_array_equal(stim["pixels"].values, raw["images"])
    np.testing.assert_array_equal(resp["image"].values, np.arange(118))
    np.testing.assert_array_equal(stim["image"].values, resp["image"].values)
    assert set(resp["area"].values) == {"VISp"} and set(resp["cre_line"].values) == {"Cux2-CreERT2"}
    assert set(resp["cortical_layer"].values) == {"L4"}  # 275 um: 200-300 is L4
    assert resp.attrs["neuroxr_version"] and "Cux2-CreERT2" in resp.attrs["settings"]
    # a second ingest without --overwrite is refused with a one-line error; the store is intact
    rc = main(["ingest", "arrays", str(study), "--responses", f"{allen_visp_npz}:responses"])
    assert rc == 2
    assert "already exists" in capsys.readouterr().err
    np.testing.assert_array_equal(open_dataset(study / "responses.zarr")["mean"].values, raw["responses"].T)
    assert not _no_tmp(study)


# --------------------------------------------------------------------------- plain arrays
def _trials(rng, n_img=12, n_neu=7, n_tr=6):
    t = rng.normal(size=(n_img, n_neu, n_tr)).astype("f4")
    t[3, :, 4:] = np.nan  # image 3 shown only 4 times
    return t


def test_trials_and_metadata_csv(tmp_path, rng):
    t = _trials(rng)
    np.save(tmp_path / "trials.npy", t)
    ids = np.array([50, 10, 30, 20, 40, 70, 60])
    meta = pd.DataFrame({
        "cell_specimen_id": ids[::-1],  # rows in another order: matched by id
        "area": ["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam", "VISp"][::-1],
        "cre_line": ["Cux2-CreERT2", "Rorb-IRES2-Cre", "Nr5a1-Cre", "Rbp4-Cre_KL100", "Ntsr1-Cre_GN220",
                     "Sst-IRES-Cre", "Emx1-IRES-Cre"][::-1],
        "imaging_depth": [150, 250, 400, 375, 550, 199.9, 300][::-1],
        "p_run_mod_ns": np.linspace(0, 0.2, 7),
    })
    meta.to_csv(tmp_path / "meta.csv", index=False)
    np.save(tmp_path / "ids.npy", ids)
    ingest_arrays(tmp_path / "st", trials=tmp_path / "trials.npy", neurons=tmp_path / "meta.csv",
                  neuron_ids=tmp_path / "ids.npy")
    ds = open_dataset(tmp_path / "st" / "responses.zarr")
    assert ds["trials"].dims == ("neuron", "image", "trial") and ds["trials"].shape == (7, 12, 6)
    np.testing.assert_array_equal(ds["neuron"].values, ids)
    np.testing.assert_allclose(ds["mean"].values, np.nanmean(t, axis=2).T, rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(ds["trials"].values), np.isnan(t.transpose(1, 0, 2)))
    ref = meta.set_index("cell_specimen_id").loc[ids]
    np.testing.assert_array_equal(ds["area"].values, ref["area"].to_numpy())
    np.testing.assert_array_equal(ds["depth_um"].values, ref["imaging_depth"].to_numpy())
    np.testing.assert_array_equal(ds["p_run_mod"].values, ref["p_run_mod_ns"].to_numpy())
    # depth < 200 L2/3, 200-300 L4, 300-500 L5, >= 500 L6; Nr5a1 / Scnn1a L4
    assert list(ds["cortical_layer"].values) == ["L2/3", "L4", "L4", "L5", "L6", "L2/3", "L5"]
    assert not _no_tmp(tmp_path / "st")


def test_rgb_images_become_grayscale_with_range_kept(tmp_path, rng):
    rgb = rng.uniform(0, 255, size=(5, 8, 9, 3)).astype("f4")
    np.save(tmp_path / "rgb.npy", rgb)
    np.save(tmp_path / "r.npy", rng.normal(size=(5, 3)))
    ingest_arrays(tmp_path / "st", images=tmp_path / "rgb.npy", responses=tmp_path / "r.npy")
    px = open_dataset(tmp_path / "st" / "stimuli.zarr")["pixels"].values
    want = rgb @ np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709 luminance
    np.testing.assert_allclose(px, want, rtol=1e-5)


def test_netcdf_and_zarr_inputs_are_transposed_by_name(tmp_path, rng):
    vals = rng.normal(size=(4, 6))  # neuron x image: the store's order, not samples first
    da = xr.DataArray(vals, dims=("unit", "stimulus"), coords={"unit": [7, 8, 9, 10],
                      "region": ("unit", ["V4", "V4", "IT", "IT"])}, name="resp")
    da.to_dataset().to_netcdf(tmp_path / "r.nc", engine="h5netcdf")
    ingest_arrays(tmp_path / "a", responses=f"{tmp_path / 'r.nc'}:resp")
    ds = open_dataset(tmp_path / "a" / "responses.zarr")
    np.testing.assert_allclose(ds["mean"].values, vals, rtol=1e-6)
    np.testing.assert_array_equal(ds["area"].values, ["V4", "V4", "IT", "IT"])
    # an existing xarray Zarr (another study's responses store) is read as labelled too
    ingest_arrays(tmp_path / "b", responses=tmp_path / "a" / "responses.zarr")
    back = open_dataset(tmp_path / "b" / "responses.zarr")
    np.testing.assert_array_equal(back["mean"].values, ds["mean"].values)
    np.testing.assert_array_equal(back["neuron"].values, [7, 8, 9, 10])


def test_brainio_assembly_repetitions_become_trials(tmp_path, rng):
    stim = np.array(["img_b", "img_a", "img_c", "img_a", "img_b", "img_c", "img_a"])
    rep = np.array([0, 0, 0, 1, 1, 1, 2])
    x = rng.normal(size=(len(stim), 3, 2))  # presentation x neuroid x time_bin
    asm = xr.DataArray(
        x, dims=("presentation", "neuroid", "time_bin"),
        coords={"stimulus_id": ("presentation", stim), "repetition": ("presentation", rep),
                "neuroid_id": ("neuroid", ["Chabo_1", "Chabo_2", "Tito_1"]),
                "region": ("neuroid", ["V4", "IT", "IT"]), "animal": ("neuroid", ["Chabo", "Chabo", "Tito"]),
                "time_bin_start": ("time_bin", [70, 120])},
    )
    asm.to_netcdf(tmp_path / "asm.nc", engine="h5netcdf")
    ds = read_brainio_assembly(tmp_path / "asm.nc")
    df = pd.DataFrame(x.mean(2), columns=[0, 1, 2]).assign(stim=stim)
    want = df.groupby("stim", sort=False).mean()  # first-appearance order: img_b, img_a, img_c
    np.testing.assert_array_equal(ds["stimulus_id"].values, ["img_b", "img_a", "img_c"])
    np.testing.assert_allclose(ds["mean"].values, want.to_numpy().T, rtol=1e-6)
    assert ds["trials"].shape == (3, 3, 3)
    assert np.isnan(ds["trials"].values[:, 0, 2]).all()  # img_b shown twice
    np.testing.assert_array_equal(ds["area"].values, ["V4", "IT", "IT"])
    np.testing.assert_array_equal(ds["neuroid_id"].values, ["Chabo_1", "Chabo_2", "Tito_1"])
    # and through ingest
    ingest_arrays(tmp_path / "st", responses=tmp_path / "asm.nc")
    st = open_dataset(tmp_path / "st" / "responses.zarr")
    np.testing.assert_allclose(st["mean"].values, want.to_numpy().T, rtol=1e-6)
    assert "trials" in st


def test_dask_inputs_stay_lazy_and_bad_chunks_abort_the_write(tmp_path, rng):
    import dask.array as da

    t = rng.normal(size=(300, 10, 4)).astype("f4")
    ok = build_responses_dataset(trials=da.from_array(t, chunks=(70, 10, 4)))
    assert ok["mean"].chunks is not None and ok["trials"].chunks is not None
    arrays.write_responses_dataset(ok, tmp_path / "r.zarr")
    back = open_dataset(tmp_path / "r.zarr")
    np.testing.assert_allclose(back["mean"].values, t.mean(2).astype("f4"), rtol=1e-6)
    bad = t.copy()
    bad[250, 3, 1] = np.inf
    lazy = build_responses_dataset(trials=da.from_array(bad, chunks=(70, 10, 4)), source="exp42")
    with pytest.raises(SchemaError, match=r"exp42.*'trials'.*\(250, 3, 1\)"):
        arrays.write_responses_dataset(lazy, tmp_path / "r.zarr", overwrite=True)
    np.testing.assert_allclose(open_dataset(tmp_path / "r.zarr")["mean"].values, t.mean(2), rtol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def files(tmp_path, rng):
    np.save(tmp_path / "img.npy", rng.uniform(0, 255, size=(10, 6, 6)).astype("f4"))
    np.save(tmp_path / "img9.npy", rng.uniform(0, 255, size=(9, 6, 6)).astype("f4"))
    np.save(tmp_path / "resp.npy", rng.normal(size=(10, 4)).astype("f4"))
    np.save(tmp_path / "resp9.npy", rng.normal(size=(9, 4)).astype("f4"))
    return tmp_path


@pytest.mark.parametrize("bad, match", [
    (np.zeros(10), r"bad\.npy.*'responses'.*2 dims.*\(10,\)"),
    (np.array([["a"] * 4] * 10), r"bad\.npy.*'responses'.*dtype <U1"),
    (np.where(np.eye(10, 4) > 0, np.nan, 1.0), r"bad\.npy.*'mean'.*non-finite.*\(0, 0\).*nan"),
    (np.full((10, 4), np.inf), r"bad\.npy.*'mean'.*non-finite.*inf"),
])
def test_bad_responses_are_refused_and_nothing_is_lost(files, bad, match):
    study = files / "st"
    ingest_arrays(study, images=files / "img.npy", responses=files / "resp.npy")
    before = open_dataset(study / "responses.zarr")["mean"].values
    np.save(files / "bad.npy", bad)
    with pytest.raises(SchemaError, match=match):
        ingest_arrays(study, images=files / "img.npy", responses=files / "bad.npy", overwrite=True)
    np.testing.assert_array_equal(open_dataset(study / "responses.zarr")["mean"].values, before)
    assert not _no_tmp(study)


def test_image_counts_must_agree(files):
    with pytest.raises(SchemaError, match=r"img9\.npy: 9 images but the responses .*resp\.npy.* 10"):
        ingest_arrays(files / "st", images=files / "img9.npy", responses=files / "resp.npy")
    assert not (files / "st" / "stimuli.zarr").exists() and not (files / "st" / "responses.zarr").exists()
    ingest_arrays(files / "st", images=files / "img.npy", responses=files / "resp.npy")
    # new responses without images are checked against the existing stimuli.zarr
    with pytest.raises(SchemaError, match=r"9 images but .*stimuli\.zarr has 10"):
        ingest_arrays(files / "st", responses=files / "resp9.npy", overwrite=True)
    assert open_dataset(files / "st" / "responses.zarr").sizes["image"] == 10
    # trials and responses disagree
    np.save(files / "tr.npy", np.ones((9, 4, 3)))
    with pytest.raises(SchemaError, match=r"resp\.npy.*10 images x 4 neurons.*tr\.npy.*9 images x 4"):
        ingest_arrays(files / "st2", responses=files / "resp.npy", trials=files / "tr.npy")


def test_metadata_rows_must_match(files):
    pd.DataFrame({"area": ["VISp"] * 3}).to_csv(files / "m3.csv", index=False)
    with pytest.raises(SchemaError, match=r"m3\.csv.*3 metadata rows for 4 neurons"):
        ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "m3.csv")
    pd.DataFrame({"neuron": [1, 2, 3, 5], "area": ["VISp"] * 4}).to_csv(files / "mid.csv", index=False)
    np.save(files / "ids.npy", np.array([1, 2, 3, 4]))
    with pytest.raises(SchemaError, match=r"mid\.csv.*no metadata row for neuron ids \[4\]"):
        ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "mid.csv",
                      neuron_ids=files / "ids.npy")
    pd.DataFrame({"depth_um": [100, "deep", 3, 4]}).to_csv(files / "md.csv", index=False)
    with pytest.raises(SchemaError, match=r"md\.csv.*'depth_um'.*'deep'"):
        ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "md.csv")
    assert not (files / "st").exists() or not list((files / "st").iterdir())


def test_duplicate_neuron_ids(files):
    np.save(files / "ids.npy", np.array([3, 1, 3, 2]))
    with pytest.raises(SchemaError, match=r"duplicate neuron ids.*\[3\]"):
        ingest_arrays(files / "st", responses=files / "resp.npy", neuron_ids=files / "ids.npy")
    pd.DataFrame({"cell_specimen_id": [5, 5, 6, 7]}).to_csv(files / "m.csv", index=False)
    with pytest.raises(SchemaError, match=r"m\.csv.*'cell_specimen_id' has duplicate neuron ids.*\[5\]"):
        ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "m.csv")


def test_missing_key_and_file(files):
    np.savez(files / "z.npz", a=np.ones((10, 4)), b=np.ones(3))
    with pytest.raises(SchemaError, match=r"z\.npz: no array 'c'; it holds \['a', 'b'\]"):
        ingest_arrays(files / "st", responses=f"{files / 'z.npz'}:c")
    with pytest.raises(SchemaError, match=r"z\.npz: holds arrays"):
        ingest_arrays(files / "st", responses=files / "z.npz")
    with pytest.raises(FileNotFoundError, match="nope.npy does not exist"):
        ingest_arrays(files / "st", responses=files / "nope.npy")


def test_existing_store_is_kept_when_writing_fails(files, monkeypatch):
    study = files / "st"
    ingest_arrays(study, images=files / "img.npy", responses=files / "resp.npy")
    before = open_dataset(study / "stimuli.zarr")["pixels"].values
    calls = []
    real = store.start_write

    def flaky(ds, path, **kw):  # the second store fails half-way
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(ds, path, **kw)

    monkeypatch.setattr(store, "start_write", flaky)
    np.save(files / "img2.npy", np.zeros((10, 6, 6), "f4"))
    with pytest.raises(OSError):
        ingest_arrays(study, images=files / "img2.npy", responses=files / "resp.npy", overwrite=True)
    np.testing.assert_array_equal(open_dataset(study / "stimuli.zarr")["pixels"].values, before)
    assert not _no_tmp(study)


# --------------------------------------------------------------------------- RDMs
def _rdms(rng, n_site=2, n=6):
    x = rng.normal(size=(n_site, n, 20))
    return np.stack([1 - np.corrcoef(xi) for xi in x])


def test_ingest_rdms_csv_upper_triangle(tmp_path, rng, capsys):
    r = _rdms(rng)
    rows = [(i, j) for i in range(6) for j in range(i + 1, 6)]  # row-major above the diagonal
    pd.DataFrame({"V4": [r[0, i, j] for i, j in rows], "IT": [r[1, i, j] for i, j in rows]}).to_csv(
        tmp_path / "rdms.csv", index=False)
    np.save(tmp_path / "img.npy", rng.uniform(size=(6, 5, 5)))
    rc = main(["ingest", "rdms", str(tmp_path / "st"), "--rdms", str(tmp_path / "rdms.csv"),
               "--images", str(tmp_path / "img.npy")])
    assert rc == 0, capsys.readouterr().err
    ds = open_dataset(tmp_path / "st" / "rdms.zarr")
    assert ds["rdm"].dims == ("site", "image", "image_j")
    np.testing.assert_array_equal(ds["site"].values, ["V4", "IT"])
    np.testing.assert_allclose(ds["rdm"].values, r, atol=1e-12)
    np.testing.assert_array_equal(ds["image"].values, np.arange(6))
    assert open_dataset(tmp_path / "st" / "stimuli.zarr").sizes["image"] == 6


def test_ingest_rdms_array_and_bad_input(tmp_path, rng):
    r = _rdms(rng, 3, 7)
    np.save(tmp_path / "r.npy", r)
    ingest_rdms(tmp_path / "st", tmp_path / "r.npy", sites="A,B,C")
    np.testing.assert_allclose(open_dataset(tmp_path / "st" / "rdms.zarr")["rdm"].values, r)
    with pytest.raises(StoreExistsError):
        ingest_rdms(tmp_path / "st", tmp_path / "r.npy")
    asym = r.copy()
    asym[1, 2, 5] += 0.5
    np.save(tmp_path / "asym.npy", asym)
    with pytest.raises(SchemaError, match=r"asym\.npy.*site #1 is not symmetric: \[2,5\]"):
        ingest_rdms(tmp_path / "st", tmp_path / "asym.npy", overwrite=True)
    pd.DataFrame({"V4": np.ones(7)}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SchemaError, match=r"bad\.csv: 7 rows is not an upper triangle"):
        ingest_rdms(tmp_path / "st2", tmp_path / "bad.csv")
    # image counts differ from the study's responses
    np.save(tmp_path / "resp.npy", rng.normal(size=(8, 3)))
    ingest_arrays(tmp_path / "st3", responses=tmp_path / "resp.npy")
    with pytest.raises(SchemaError, match=r"rdms\.zarr has 7 images but .*responses\.zarr has 8"):
        ingest_rdms(tmp_path / "st3", tmp_path / "r.npy")
    np.testing.assert_allclose(open_dataset(tmp_path / "st" / "rdms.zarr")["rdm"].values, r)


def test_written_store_is_chunked_by_neuron(tmp_path, rng):
    ds = build_responses_dataset(mean=rng.normal(size=(5000, 4)))
    arrays.write_responses_dataset(ds, tmp_path / "r.zarr")
    import zarr

    assert zarr.open_group(tmp_path / "r.zarr", mode="r")["mean"].chunks == (2048, 4)


# --------------------------------------------------------------------------- metadata validation
@pytest.mark.parametrize("column, values, match", [
    ("depth_um", [175.0, -50.0, 275.0, 375.0], r"m\.csv: column 'depth_um' of neuron #1 is -50\.0; .*finite and >= 0"),
    ("depth_um", [175.0, 275.0, np.nan, 375.0], r"m\.csv: column 'depth_um' of neuron #2 is nan"),
    ("depth_um", [175.0, 275.0, 375.0, np.inf], r"m\.csv: column 'depth_um' of neuron #3 is inf"),
    ("area", ["VISp", "VISl", "VISxx", "VISp"], r"m\.csv: column 'area' of neuron #2 is 'VISxx', not a known "
                                                r"area.*--allow-unknown-area"),
])
def test_bad_metadata_is_refused(files, column, values, match):
    meta = pd.DataFrame({"area": ["VISp"] * 4, "depth_um": [175.0] * 4})
    meta[column] = values
    meta.to_csv(files / "m.csv", index=False)
    with pytest.raises(SchemaError, match=match):
        ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "m.csv")
    assert not (files / "st").exists() or not list((files / "st").iterdir())


def test_unknown_area_kept_when_allowed_and_unknown_depths_pass(files, capsys):
    pd.DataFrame({"area": ["VISp", "VISxx", "VISl", "V4"]}).to_csv(files / "m.csv", index=False)
    out = ingest_arrays(files / "st", responses=files / "resp.npy", neurons=files / "m.csv", allow_unknown_area=True)
    ds = open_dataset(out["responses.zarr"])
    assert ds["area"].values.tolist() == ["VISp", "VISxx", "VISl", "V4"]
    assert np.isnan(ds["depth_um"].values).all()  # no depths given: unknown, as the stores record it
    # a store re-ingested keeps its unknown depths
    ingest_arrays(files / "st2", responses=out["responses.zarr"], allow_unknown_area=True)
    argv = ["ingest", "arrays", str(files / "st3"), "--responses", str(files / "resp.npy"), "--neurons",
            str(files / "m.csv")]
    assert main(argv) == 2
    assert "'VISxx', not a known area" in capsys.readouterr().err
    assert main([*argv, "--allow-unknown-area"]) == 0
    assert main(["ingest", "arrays", str(files / "st4"), "--responses", str(files / "resp.npy"),
                 "--depth-um", "-50"]) == 2
    assert "--depth-um -50.0: the imaging depth must be finite and >= 0" in capsys.readouterr().err
    with pytest.raises(SchemaError, match="--area/--cre-line/--depth-um: column 'area' of neuron #0 is 'VISxx'"):
        ingest_arrays(files / "st5", responses=files / "resp.npy", area="VISxx")
