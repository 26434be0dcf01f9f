"""Reading a Neuropixels ``EcephysProjectCache``: spike counts, unit filters, metadata, stimuli, bad input."""
from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from ecephys_fixture import (
    CHANNELS,
    KEPT_7001,
    KEPT_7002,
    N_SCENES,
    SPECIMENS,
    UNITS_7001,
    make_ecephys_cache,
)

from neuroxr.errors import InvalidArgumentError, MissingDataError, StoreExistsError
from neuroxr.io.allen import ecephys as E
from neuroxr.io.allen.cache import AllenDataWarning
from neuroxr.io.store import open_dataset


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_ecephys_cache(tmp_path_factory.mktemp("ecephys_cache"))


@pytest.fixture(scope="module")
def study(made, tmp_path_factory):
    st = tmp_path_factory.mktemp("np_study")
    summary = E.ingest_neuropixels(st, made["root"], block=2)       # small blocks: several reads per session
    return st, summary


@pytest.fixture
def copy(made, tmp_path):
    dst = tmp_path / "cache"
    shutil.copytree(made["root"], dst)
    return dst


def _reference(root, session_id, window=(0.0, 0.25)):
    """Counts by plain loops over the raw h5py arrays of the session file: {unit: (image, trial)}."""
    with h5py.File(root / f"session_{session_id}" / f"session_{session_id}.nwb", "r") as f:
        ids = f["units/id"][()]
        st = f["units/spike_times"][()]
        idx = f["units/spike_times_index"][()].astype(int)
        start = f["intervals/natural_scenes_presentations/start_time"][()]
        frame = f["intervals/natural_scenes_presentations/frame"][()].astype(int)
    order = np.argsort(start, kind="stable")
    out = {}
    for k, uid in enumerate(ids):
        spikes = st[(idx[k - 1] if k else 0):idx[k]]
        per = {i: [] for i in range(N_SCENES)}
        for p in order:
            if frame[p] >= 0:
                t = start[p]
                per[frame[p]].append(int(((spikes >= t + window[0]) & (spikes < t + window[1])).sum()))
        out[int(uid)] = per
    return out


def _as_array(per, n_trials):
    a = np.full((N_SCENES, n_trials), np.nan)
    for i, v in per.items():
        a[i, :len(v)] = v
    return a


def test_spike_counts_match_independent_computation(made, study):
    st, summary = study
    ds = open_dataset(st / "responses.zarr")
    assert list(ds.neuron.values) == KEPT_7001 + KEPT_7002
    assert summary["n_neurons"] == 7 and summary["n_images"] == N_SCENES and summary["sessions"] == [7001, 7002]
    ref = {**_reference(made["root"], 7001), **_reference(made["root"], 7002)}
    n_t = ds.sizes["trial"]
    assert n_t == 3
    trials = ds.trials.values
    for k, uid in enumerate(ds.neuron.values):
        exp = _as_array(ref[int(uid)], n_t)
        np.testing.assert_array_equal(trials[k], exp.astype(np.float32))
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(ds["mean"].values[k], np.nanmean(exp, axis=1), rtol=1e-6)


def test_counts_against_the_fixture_spike_trains(made, study):
    """Same counts from the arrays the fixture generated (not re-read from the file)."""
    ds = open_dataset(study[0] / "responses.zarr")
    onsets, frames = made["onsets"][7001], made["frames"][7001]
    uid = 950001
    sp = made["spikes"][uid]
    k = list(ds.neuron.values).index(uid)
    for img in (0, 7):
        times = onsets[frames == img]                 # onsets are in time order already
        exp = [((sp >= t) & (sp < t + 0.25)).sum() for t in times]
        np.testing.assert_array_equal(ds.trials.values[k, img, :len(exp)], exp)


def test_presentation_with_no_spikes_is_zero_not_nan(study):
    ds = open_dataset(study[0] / "responses.zarr")
    silent = ds.trials.sel(neuron=950009).values
    assert np.nansum(silent) == 0 and np.isfinite(silent[:, :3][np.arange(N_SCENES) != 4]).all()


def test_short_scene_is_nan_padded(study):
    ds = open_dataset(study[0] / "responses.zarr")
    t = ds.trials.sel(neuron=950001).values
    assert np.isnan(t[4, 2]) and np.isfinite(t[4, :2]).all()
    assert np.isfinite(ds.trials.sel(neuron=960001).values).all()          # session 7002 shows it 3 times


def test_each_quality_filter_removes_its_unit(study):
    _, summary = study
    f = summary["units_failed"]
    assert f["amplitude_cutoff"] == 2           # 950003 (0.2) and 950011 (NaN)
    assert f["presence_ratio"] == 1 and f["isi_violations"] == 1 and f["quality"] == 1
    assert f["out_of_brain"] == 1 and f["area"] == 1                       # 950007, 950008 (LGd)
    assert f["invalid_channel"] == 1                                       # 950012
    ds = open_dataset(study[0] / "responses.zarr")
    for uid in (950003, 950004, 950005, 950006, 950007, 950008, 950011, 950012):
        assert uid not in ds.neuron.values
    assert 950010 in ds.neuron.values            # exactly at the thresholds: <=, >=, <= keep it


def test_filters_agree_with_pandas_on_units_csv(made):
    """The AllenSDK comparisons written out independently on the cached units table."""
    u = pd.read_csv(made["root"] / "units.csv").set_index("id")
    ch = pd.read_csv(made["root"] / "channels.csv").set_index("id")
    with h5py.File(made["root"] / "session_7001" / "session_7001.nwb", "r") as f:
        el = f["general/extracellular_ephys/electrodes"]
        invalid = set(el["id"][()][~el["valid_data"][()]].tolist())
    ok = ((u.amplitude_cutoff <= 0.1) & (u.presence_ratio >= 0.95) & (u.isi_violations <= 0.5)
          & (u.quality == "good") & ~u.ecephys_channel_id.isin(invalid) & ch.ecephys_structure_acronym.reindex(u.ecephys_channel_id).notna().to_numpy()
          & ch.ecephys_structure_acronym.reindex(u.ecephys_channel_id).isin(["VISp", "VISl", "VISal", "VISpm",
                                                                              "VISrl", "VISam"]).to_numpy())
    assert sorted(u.index[ok]) == sorted(KEPT_7001 + KEPT_7002)


def test_unit_metadata(made, study):
    ds = open_dataset(study[0] / "responses.zarr")
    for uid in KEPT_7001:
        n = ds.sel(neuron=uid)
        assert str(n.area.values) == CHANNELS[UNITS_7001[uid][0]][1]
        assert int(n.session) == 7001 and int(n.specimen) == SPECIMENS[7001]
        assert int(n.channel) == UNITS_7001[uid][0]
        assert float(n.presence_ratio) == UNITS_7001[uid][3]
    assert str(ds.sel(neuron=960001).area.values) == "VISal"
    assert set(ds.cre_line.values) == {"unknown"} and np.isnan(ds.depth_um.values).all()
    assert "Sst-IRES-Cre" in str(ds.sel(neuron=950001).genotype.values)


def test_stimuli_are_the_tiff_templates(made, study):
    st = open_dataset(study[0] / "stimuli.zarr")
    np.testing.assert_array_equal(st.pixels.values, made["scenes"])
    assert list(st.image.values) == list(range(N_SCENES))


def test_window_option(made, tmp_path):
    E.ingest_neuropixels(tmp_path, made["root"], window=(0.05, 0.2), sessions=[7002])
    ds = open_dataset(tmp_path / "responses.zarr")
    ref = _reference(made["root"], 7002, (0.05, 0.2))
    for k, uid in enumerate(ds.neuron.values):
        np.testing.assert_array_equal(ds.trials.values[k], _as_array(ref[int(uid)], 3))


def test_all_areas_and_no_quality_filter(made, tmp_path):
    off = {k: None for k in E.QUALITY_DEFAULTS}
    off["in_brain"] = False
    s = E.ingest_neuropixels(tmp_path, made["root"], areas="all", quality=off, sessions=[7001])
    assert s["n_neurons"] == len(UNITS_7001)
    ds = open_dataset(tmp_path / "responses.zarr")
    assert "LGd" in set(ds.area.values)


def test_scenes_from_2p_cache_are_compared(made, copy, tmp_path):
    from allen_fixture import make_allen_cache

    cache2p = make_allen_cache(tmp_path / "twop")
    with h5py.File(next((cache2p / "ophys_experiment_data").glob("*.nwb")), "r") as f:
        stack = f["stimulus/templates/natural_scenes_image_stack/data"][()]
    shutil.rmtree(copy / "natural_scene_templates")
    with pytest.warns(AllenDataWarning, match="never presented"):      # 118 scenes there, 12 shown
        E.ingest_neuropixels(tmp_path / "a", copy, scenes_from_2p=cache2p)  # no TIFFs: the 2p stack is used
    np.testing.assert_array_equal(open_dataset(tmp_path / "a" / "stimuli.zarr").pixels.values, stack[:N_SCENES])
    with pytest.raises(E.AllenCacheError, match="differ"):                 # TIFFs there and different: refused
        E.ingest_neuropixels(tmp_path / "b", made["root"], scenes_from_2p=cache2p)
    assert not (tmp_path / "b" / "responses.zarr").exists()


def test_missing_templates_is_a_clear_error(copy, tmp_path):
    (copy / "natural_scene_templates" / "natural_scene_0.tiff").unlink()
    with pytest.raises(MissingDataError, match="natural_scene_0.tiff"):
        E.ingest_neuropixels(tmp_path, copy)


def test_truncated_nwb_is_a_clear_error(copy, tmp_path):
    p = copy / "session_7001" / "session_7001.nwb"
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(E.AllenCacheError, match="session_7001.nwb.*truncated"):
        E.ingest_neuropixels(tmp_path, copy)
    assert not (tmp_path / "responses.zarr").exists()


def test_session_without_natural_scenes(copy, tmp_path):
    from ecephys_fixture import UNITS_7002, write_session_nwb

    write_session_nwb(copy / "session_7003" / "session_7003.nwb", 7003, UNITS_7002, np.zeros(1), np.zeros(1),
                      {u: np.zeros(1) for u in UNITS_7002}, with_presentations=False)
    with pytest.raises(E.AllenCacheError, match="natural_scenes_presentations"):
        E.ingest_neuropixels(tmp_path, copy, sessions=[7003])


def test_bad_window_and_unknown_session(made, tmp_path):
    with pytest.raises(InvalidArgumentError, match="window"):
        E.ingest_neuropixels(tmp_path, made["root"], window=(0.25, 0.0))
    with pytest.raises(E.AllenCacheError, match="no session 1234"):
        E.ingest_neuropixels(tmp_path, made["root"], sessions=[1234])


def test_existing_study_is_not_overwritten(made, study):
    with pytest.raises(StoreExistsError):
        E.ingest_neuropixels(study[0], made["root"])


def test_count_spikes_property():
    rng = np.random.default_rng(3)
    for _ in range(20):
        st = rng.uniform(0, 10, rng.integers(0, 50))
        on = rng.uniform(0, 10, 7)
        w = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(0.15, 0.5)))
        exp = [((st >= t + w[0]) & (st < t + w[1])).sum() for t in on]
        np.testing.assert_array_equal(E.count_spikes(rng.permutation(st), on, w), exp)


def test_cli_ingest_extract_score(made, tmp_path, capsys):
    from neuroxr.cli import main

    st = tmp_path / "np"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["ingest", "allen-neuropixels", str(st), "--cache", str(made["root"]), "--window", "0,0.25"]) == 0
        assert "7 units from 2 sessions" in capsys.readouterr().out
        assert main(["extract", str(st), "--model", "alexnet", "--weights", "random", "--srp", "64", "--device", "cpu",
                     "--threads", "1"]) == 0
        assert main(["score", str(st), "--metric", "pls", "--no-progress"]) == 0
    sc = open_dataset(st / "scores.zarr")
    assert sc.sizes["neuron"] == 7 and np.isfinite(sc[next(iter(sc.data_vars))].values).any()
    assert main(["ingest", "allen-neuropixels", str(tmp_path / "x"), "--cache", str(made["root"]),
                 "--window", "0.3,0.1"]) == 2
    assert "window" in capsys.readouterr().err


def test_area_from_nwb_electrodes_when_channels_csv_lacks_the_channel(copy, tmp_path):
    import pandas as pd

    ch = pd.read_csv(copy / "channels.csv")
    ch[ch.id != 850002].to_csv(copy / "channels.csv", index=False)        # VISl channel only in the NWB
    E.ingest_neuropixels(tmp_path, copy, sessions=[7001])
    ds = open_dataset(tmp_path / "responses.zarr")
    with h5py.File(copy / "session_7001" / "session_7001.nwb", "r") as f:
        loc = dict(zip(f["general/extracellular_ephys/electrodes/id"][()],
                       [v.decode() for v in f["general/extracellular_ephys/electrodes/location"][()]]))
    assert str(ds.sel(neuron=950002).area.values) == loc[850002] == "VISl"


def test_metrics_from_nwb_when_units_csv_is_absent(copy, tmp_path):
    (copy / "units.csv").unlink()
    s = E.ingest_neuropixels(tmp_path, copy)
    assert s["n_neurons"] == 7 and s["units_failed"]["quality"] == 1
