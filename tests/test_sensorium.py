"""Reading Sensorium static datasets (folder tree and zip): trials, images, behaviour, metadata, bad input."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from sensorium_fixture import MOUSE_A, image_pixels, make_sensorium

from neuroxr.errors import MissingDataError, StoreExistsError
from neuroxr.io import sensorium as SN
from neuroxr.io.store import open_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_sensorium(tmp_path_factory.mktemp("sensorium"))


def _expected(raw, tiers, image_ids):
    """(neuron, image, trial) by plain loops: trials of each image in trial_idx order."""
    sel = [i for i in range(len(raw["tiers"])) if tiers is None or raw["tiers"][i] in tiers]
    sel.sort(key=lambda i: raw["trial_idx"][i])
    per = {int(img): [i for i in sel if raw["frame_image_id"][i] == img] for img in image_ids}
    n_t = max(len(v) for v in per.values())
    out = np.full((raw["responses"].shape[1], len(image_ids), n_t), np.nan, np.float32)
    beh = np.full((len(image_ids), n_t, 3), np.nan, np.float32)
    for j, img in enumerate(image_ids):
        for t, i in enumerate(per[int(img)]):
            out[:, j, t] = raw["responses"][i]
            beh[j, t] = raw["behavior"][i]
    return out, beh, per


def test_single_mouse_test_tier(data, tmp_path):
    s = SN.ingest_sensorium(tmp_path, data["a"]["dir"], image_block=3)        # several blocks
    ds = open_dataset(tmp_path / "responses.zarr")
    assert list(ds.image.values) == [1001, 1002, 1003, 1004] and s["n_trials"] == 3
    exp, beh, per = _expected(data["a"], ("test",), ds.image.values)
    np.testing.assert_array_equal(ds.trials.values, exp)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(ds["mean"].values, np.nanmean(exp, axis=2), rtol=1e-6)
    assert np.isnan(ds.trials.values[:, 3, 2]).all()                           # 1004 shown twice
    np.testing.assert_array_equal(ds.behavior.values[0], beh)
    exp_tidx = [data["a"]["trial_idx"][per[1002][t]] for t in range(3)]
    assert ds.trial_idx.values[0, 1].tolist() == exp_tidx and ds.trial_idx.values[0, 3, 2] == -1
    st = open_dataset(tmp_path / "stimuli.zarr")
    for j, img in enumerate(st.image.values):
        np.testing.assert_array_equal(st.pixels.values[j], image_pixels(img)[0])


def test_neuron_metadata_and_ids(data, tmp_path):
    with pytest.warns(SN.SensoriumWarning):
        SN.ingest_sensorium(tmp_path, [data["a"]["dir"], data["b"]["zip"]])
    ds = open_dataset(tmp_path / "responses.zarr")
    a = ds.where(ds.dataset == "26872-17-20", drop=True)
    assert len(a.neuron) == MOUSE_A["n"]
    assert a.neuron.values.tolist() == [26872 * 10**12 + 17 * 10**9 + 20 * 10**6 + u for u in data["a"]["units"]]
    np.testing.assert_allclose(a.motor_z.values, data["a"]["xyz"][:, 2])
    assert set(a.area.values) == {"VISp"} and list(a.cortical_layer.values)[-1] == "L4"
    b = ds.sel(neuron=ds.dataset == "27204-5-13")
    assert list(b.area.values) == ["VISp", "VISp", "VISl", "VISp", "VISp"]      # V1 -> VISp, LM -> VISl
    assert set(b.specimen.values) == {27204} and list(b.unit_id.values) == data["b"]["units"].tolist()
    assert list(ds.recording.values) == ["26872-17-20", "27204-5-13"]


def test_two_mice_share_images_and_zip_equals_folder(data, tmp_path):
    with pytest.warns(SN.SensoriumWarning, match="shared by all 2 mice"):
        s = SN.ingest_sensorium(tmp_path, [data["a"]["dir"], data["b"]["zip"]])
    assert s["images_dropped"] == {"26872-17-20": 1, "27204-5-13": 1}            # 1004 and 1005
    ds = open_dataset(tmp_path / "responses.zarr")
    assert list(ds.image.values) == [1001, 1002, 1003]
    nb = ds.dataset.values == "27204-5-13"
    exp_b, beh_b, _ = _expected(data["b"], ("test",), ds.image.values)
    np.testing.assert_array_equal(ds.trials.values[nb], exp_b)                 # read from the zip
    np.testing.assert_array_equal(ds.behavior.values[1], beh_b)
    exp_a, _, _ = _expected(data["a"], ("test",), ds.image.values)
    np.testing.assert_array_equal(ds.trials.values[~nb], exp_a)
    # the zip gives what the folder gives
    with pytest.warns(SN.SensoriumWarning):
        SN.ingest_sensorium(tmp_path / "f", [data["a"]["dir"], data["b"]["dir"]])
    np.testing.assert_array_equal(open_dataset(tmp_path / "f" / "responses.zarr").trials.values, ds.trials.values)


def test_folder_of_datasets_and_mice_filter(data, tmp_path):
    SN.ingest_sensorium(tmp_path, data["root"] / "tree", mice=["27204"], tiers="train")
    ds = open_dataset(tmp_path / "responses.zarr")
    assert list(ds.image.values) == [5001, 5002, 5003, 5004, 5005] and ds.sizes["trial"] == 1
    exp, _, _ = _expected(data["b"], ("train",), ds.image.values)
    np.testing.assert_array_equal(ds.trials.values, exp)


def test_all_tiers(data, tmp_path):
    s = SN.ingest_sensorium(tmp_path, data["a"]["dir"], tiers="all")
    assert s["n_images"] == 17
    ds = open_dataset(tmp_path / "responses.zarr")
    exp, _, _ = _expected(data["a"], None, ds.image.values)
    np.testing.assert_array_equal(ds.trials.values, exp)


def test_no_shared_image_is_an_error(data, tmp_path):
    with pytest.raises(SN.SensoriumError, match="share no image"):
        SN.ingest_sensorium(tmp_path, [data["a"]["dir"], data["b"]["dir"]], tiers="train")
    assert not (tmp_path / "responses.zarr").exists()


def test_different_pixels_for_one_id_is_an_error(data, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(data["b"]["dir"], b / data["b"]["dir"].name)
    k = int(np.flatnonzero(data["b"]["frame_image_id"] == 1002)[0])
    np.save(b / data["b"]["dir"].name / "data" / "images" / f"{k}.npy", np.zeros((1, 18, 32), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SN.SensoriumWarning)
        with pytest.raises(SN.SensoriumError, match="image id 1002 differs"):
            SN.ingest_sensorium(tmp_path / "s", [data["a"]["dir"], b])
    assert not (tmp_path / "s" / "responses.zarr").exists()


def test_missing_trial_file_and_bad_tier(data, tmp_path):
    a = tmp_path / "a"
    shutil.copytree(data["a"]["dir"], a)
    n = len(data["a"]["tiers"])
    (a / "data" / "responses" / f"{n - 1}.npy").unlink()
    with pytest.raises(MissingDataError, match=f"responses/{n - 1}.npy"):
        SN.ingest_sensorium(tmp_path / "s", a, tiers="all")
    with pytest.raises(SN.SensoriumError, match=r"no trial of tiers \['tset'\].*'final_test', 'test', 'train'"):
        SN.ingest_sensorium(tmp_path / "s", data["a"]["dir"], tiers="tset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SN.SensoriumError, match="no Sensorium dataset"):
        SN.ingest_sensorium(tmp_path / "s", tmp_path / "empty")


def test_existing_study_is_kept(data, tmp_path):
    SN.ingest_sensorium(tmp_path, data["a"]["dir"])
    with pytest.raises(StoreExistsError):
        SN.ingest_sensorium(tmp_path, data["a"]["dir"], tiers="all")
    assert open_dataset(tmp_path / "responses.zarr").sizes["image"] == 4


def test_cli_ingest_extract_score(data, tmp_path, capsys):
    from neuroxr.cli import main

    st = tmp_path / "sens"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["ingest", "sensorium", str(st), "--path", str(data["a"]["dir"]), "--tier", "all"]) == 0
        assert "6 neurons" in capsys.readouterr().out
        assert main(["extract", str(st), "--model", "alexnet", "--weights", "random", "--srp", "64", "--device", "cpu",
                     "--threads", "1"]) == 0
        assert main(["score", str(st), "--metric", "pls", "--no-progress"]) == 0
    sc = open_dataset(st / "scores.zarr")
    assert sc.sizes["neuron"] == 6
    assert main(["ingest", "sensorium", str(tmp_path / "x"), "--path", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_reads_stream_in_image_blocks(data, tmp_path, monkeypatch):
    """Responses and images are read block by block (never the whole session at once)."""
    seen = {"responses": [], "images": []}
    real_r, real_i = SN._responses_block, SN._images_block

    def responses_block(mouse, table):
        seen["responses"].append(table.shape[0])
        return real_r(mouse, table)

    def images_block(mice, ids, shape, dtype):
        seen["images"].append(len(ids))
        return real_i(mice, ids, shape, dtype)

    monkeypatch.setattr(SN, "_responses_block", responses_block)
    monkeypatch.setattr(SN, "_images_block", images_block)
    SN.ingest_sensorium(tmp_path, data["a"]["dir"], tiers="all", image_block=4)
    assert sorted(seen["responses"]) == [1, 4, 4, 4, 4] and sorted(seen["images"]) == [1, 4, 4, 4, 4]
    exp, _, _ = _expected(data["a"], None, open_dataset(tmp_path / "responses.zarr").image.values)
    np.testing.assert_array_equal(open_dataset(tmp_path / "responses.zarr").trials.values, exp)
