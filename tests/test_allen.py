"""Reading an AllenSDK Brain Observatory cache: trial responses, metadata, bad input."""
from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest

from allen_fixture import ExperimentSpec, default_experiments, make_allen_cache
from neuroxr import schema as S
from neuroxr.errors import MissingDataError, StoreExistsError
from neuroxr.io import allen as A

SESSION_B = [e for e in default_experiments() if e.session_type == "three_session_B"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_allen_cache(tmp_path_factory.mktemp("allen_cache"))


@pytest.fixture(scope="module")
def study(cache, tmp_path_factory):
    st = tmp_path_factory.mktemp("study")
    with pytest.warns(A.AllenDataWarning, match="501000002"):      # the cell without metadata
        A.ingest_allen(st, cache, block=3)                           # small blocks: several per experiment
    return st


@pytest.fixture
def copy(cache, tmp_path):
    dst = tmp_path / "cache"
    shutil.copytree(cache, dst)
    return dst


def _reference(cache, exp_id, response):
    """Trials of one experiment by plain loops over the raw h5py / np.load arrays."""
    with h5py.File(cache / "ophys_experiment_data" / f"{exp_id}.nwb", "r") as f:
        frames = f["stimulus/presentation/natural_scenes_stimulus/data"][()]
        fd = f["stimulus/presentation/natural_scenes_stimulus/frame_duration"][()]
        ids = f["processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids"][()]
        dff = f["processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data"][()]
    ev = np.load(cache / "ophys_experiment_events" / f"{exp_id}_events.npz")["ev"]
    x = ev if response == "events" else dff
    order = np.argsort(fd[:, 0], kind="stable")
    per_image = {i: [] for i in range(118)}
    for p in order:
        if frames[p] < 0:
            continue
        s, e = int(fd[p, 0]), int(fd[p, 1])
        w = x[:, s:e].astype(np.float64)
        per_image[int(frames[p])].append(w.sum(1) if response == "events" else w.mean(1))
    n_t = max(len(v) for v in per_image.values())
    out = np.full((len(ids), 118, n_t), np.nan)
    for i, v in per_image.items():
        for t, r in enumerate(v):
            out[:, i, t] = r
    return ids.astype(np.int64), out


def _open(p):
    from neuroxr.io.store import open_dataset

    return open_dataset(p)


def test_trials_match_independent_computation(cache, study):
    ds = _open(study / S.RESPONSES_STORE)
    assert ds.trials.dims == ("neuron", "image", "trial") and ds.trials.dtype == np.float32
    assert ds["mean"].dims == ("neuron", "image") and ds["mean"].dtype == np.float32
    assert ds.sizes["trial"] == 50 and ds.sizes["image"] == 118
    for spec in SESSION_B:
        ids, want = _reference(cache, spec.id, "events")
        got = ds.trials.sel(neuron=ids).values
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ds["mean"].sel(neuron=ids).values, np.nanmean(want, axis=2), rtol=1e-5, atol=1e-6)


def test_dff_trials_match_independent_computation(cache, tmp_path):
    A.ingest_allen(tmp_path, cache, response="dff", areas=["VISal"])
    ds = _open(tmp_path / S.RESPONSES_STORE)
    ids, want = _reference(cache, 501000003, "dff")
    np.testing.assert_allclose(ds.trials.sel(neuron=ids).values, want, rtol=1e-5, atol=1e-6)
    assert "dF/F" in ds.attrs["response"]


def test_missing_presentations_are_nan_padded(study):
    ds = _open(study / S.RESPONSES_STORE)
    sub = ds.trials.where(ds.experiment == 501000003, drop=True)
    n_valid = sub.notnull().sum("trial").values
    assert (n_valid[:, 5] == 48).all()                       # two presentations of image 5 dropped
    assert (np.delete(n_valid, 5, axis=1) == 50).all()
    assert np.isnan(sub.isel(image=5, trial=[48, 49]).values).all()


def test_metadata_from_json(cache, study):
    ds = _open(study / S.RESPONSES_STORE)
    cells = {c["cell_specimen_id"]: c for c in json.loads((cache / "cell_specimens.json").read_text())}
    exps = {e["id"]: e for e in json.loads((cache / "ophys_experiments.json").read_text())}
    # the session-A experiment is not ingested; the neuron ids are the NWB cell_specimen_ids
    want_ids = []
    for spec in SESSION_B:
        with h5py.File(cache / "ophys_experiment_data" / f"{spec.id}.nwb", "r") as f:
            want_ids += f["processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids"][()].tolist()
    assert ds.neuron.values.tolist() == want_ids
    assert set(ds.experiment.values.tolist()) == {e.id for e in SESSION_B}
    for nid in ds.neuron.values:
        n = ds.sel(neuron=nid)
        e = exps[int(n.experiment)]
        assert int(n.container) == e["experiment_container_id"]
        c = cells.get(int(nid))
        if c is None:                                         # no record: experiment-level metadata
            assert str(n.area.values) == e["targeted_structure"]["acronym"]
            assert float(n.depth_um) == e["imaging_depth"]
            assert np.isnan(float(n.p_run_mod)) and np.isnan(float(n.p_image))
        else:
            assert str(n.area.values) == c["area"]
            assert str(n.cre_line.values) == c["tld1_name"]
            assert float(n.depth_um) == c["imaging_depth"]
            assert float(n.p_run_mod) == pytest.approx(c["p_run_mod_ns"])
            assert float(n.p_image) == pytest.approx(c["p_ns"])
        assert str(n.cortical_layer.values) == S.cortical_layer(float(n.depth_um), str(n.cre_line.values))
    assert int(np.isnan(ds.p_image.values).sum()) == 1
    S.validate_responses(ds)
    assert json.loads(ds.attrs["settings"])["response"] == "events"


def test_stimuli_are_the_template_stack(cache, study):
    st = _open(study / S.STIMULI_STORE)
    with h5py.File(cache / "ophys_experiment_data/501000001.nwb", "r") as f:
        stack = f["stimulus/templates/natural_scenes_image_stack/data"][()]
    assert st.pixels.dims == ("image", "y", "x")
    np.testing.assert_array_equal(st.pixels.values, stack)
    np.testing.assert_array_equal(st.image.values, np.arange(118))


def test_reliability_and_selection_apply_unchanged(study, tmp_path):
    R = pytest.importorskip("neuroxr.responses")
    st = tmp_path / "st"
    shutil.copytree(study, st)
    ds = _open(st / S.RESPONSES_STORE)
    r = R.calc_splithalf_reliability(ds.trials, n_splits=20)
    assert r.chunks is not None                               # stays lazy on the ingested store
    r = r.compute().values
    assert r.shape == (ds.sizes["neuron"],) and np.isfinite(r).all() and (np.abs(r) <= 1).all()
    assert np.median(r) > 0.3                                 # fixture cells are image-tuned
    sel = R.select_study(st, min_reliability=0.5, cre_lines="excitatory", exclude_running=True,
                         image_selective=True, n_splits=20)
    back = _open(st / S.RESPONSES_STORE)
    want = ((back.splithalf_r.values >= 0.5) & np.array([S.is_excitatory(c) for c in back.cre_line.values])
            & (np.isnan(back.p_run_mod.values) | (back.p_run_mod.values > 0.05)) & (back.p_image.values < 0.05))
    np.testing.assert_array_equal(sel.values, want)
    assert 0 < want.sum() < ds.sizes["neuron"]


def test_filters(cache, tmp_path):
    ds = A.ingest_allen(tmp_path / "a", cache, areas=["VISp", "VISl"], cre_lines=["Cux2"])
    assert set(ds.area.values.tolist()) == {"VISp"} and set(ds.experiment.values.tolist()) == {501000001}
    ds = A.ingest_allen(tmp_path / "b", cache, containers=[511000003])
    assert set(ds.container.values.tolist()) == {511000003}
    with pytest.raises(A.AllenCacheError, match="no three_session_B experiment matches"):
        A.ingest_allen(tmp_path / "c", cache, areas=["VISam"])
    with pytest.raises(A.AllenCacheError, match="session types there"):
        A.ingest_allen(tmp_path / "d", cache, session="three_session_C")


def test_manifest_locations(cache, tmp_path):
    parent = tmp_path / "home"
    shutil.copytree(cache, parent / "brain_observatory")     # BrainObservatoryCache() default location
    for where in (parent, parent / "brain_observatory", parent / "brain_observatory" / "manifest.json"):
        c = A.open_allen_cache(where)
        assert c.nwb_path(5).name == "5.nwb" and c.nwb_path(5).parent.parent == (parent / "brain_observatory").resolve()
        assert c.events_path(5) == (parent / "brain_observatory/ophys_experiment_events/5_events.npz").resolve()
    with pytest.raises(MissingDataError, match="fetch allen"):
        A.open_allen_cache(tmp_path / "nothing")


def test_simplified_json_records(copy, tmp_path):
    """Records as AllenSDK's get_ophys_experiments(simple=True) returns them are read too."""
    recs = json.loads((copy / "ophys_experiments.json").read_text())
    simple = [{"id": r["id"], "imaging_depth": r["imaging_depth"], "targeted_structure": r["targeted_structure"]["acronym"],
               "cre_line": r["specimen"]["donor"]["transgenic_lines"][0]["name"],
               "experiment_container_id": r["experiment_container_id"], "session_type": r["stimulus_name"]}
              for r in recs]
    (copy / "ophys_experiments.json").write_text(json.dumps(simple))
    df = A.read_experiments(copy)
    assert df.loc[501000002, "area"] == "VISl" and df.loc[501000002, "cre_line"] == "Rorb-IRES2-Cre"
    assert df.loc[501000004, "session_type"] == "three_session_A"


# ------------------------------------------------------------------------------------------ bad input
def _ingest_warns(copy, tmp_path, match, **kw):
    with pytest.warns(A.AllenDataWarning) as rec:
        ds = A.ingest_allen(tmp_path / "study", copy, **kw)
    msgs = [str(w.message) for w in rec]
    assert any(all(m in s for m in match) for s in msgs), msgs
    return ds


def test_missing_nwb_group_is_skipped_with_warning(copy, tmp_path):
    with h5py.File(copy / "ophys_experiment_data/501000002.nwb", "a") as f:
        del f["stimulus/presentation/natural_scenes_stimulus/frame_duration"]
    ds = _ingest_warns(copy, tmp_path, ["501000002", "frame_duration"])
    assert 501000002 not in ds.experiment.values and {501000001, 501000003} <= set(ds.experiment.values.tolist())
    assert "501000002" in json.loads(ds.attrs["inputs"])["skipped"]


def test_missing_cell_ids_is_skipped(copy, tmp_path):
    with h5py.File(copy / "ophys_experiment_data/501000001.nwb", "a") as f:
        del f["processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids"]
    ds = _ingest_warns(copy, tmp_path, ["501000001", "cell_specimen_ids"])
    assert 501000001 not in ds.experiment.values


def test_truncated_hdf5_is_skipped(copy, tmp_path):
    p = copy / "ophys_experiment_data/501000003.nwb"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    ds = _ingest_warns(copy, tmp_path, ["501000003", "truncated"])
    assert 501000003 not in ds.experiment.values


def test_truncated_events_is_skipped(copy, tmp_path):
    p = copy / "ophys_experiment_events/501000001_events.npz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    ds = _ingest_warns(copy, tmp_path, ["501000001", "truncated"])
    assert 501000001 not in ds.experiment.values
    # dF/F does not need the events file
    ds = A.ingest_allen(tmp_path / "dff", copy, response="dff", areas=["VISp"])
    assert set(ds.experiment.values.tolist()) == {501000001}


def test_other_session_type_in_nwb_is_skipped(copy, tmp_path):
    with h5py.File(copy / "ophys_experiment_data/501000003.nwb", "a") as f:
        del f["general/session_type"]
        f["general/session_type"] = np.bytes_("three_session_C2")
    _ingest_warns(copy, tmp_path, ["501000003", "three_session_C2"])


def test_half_downloaded_cache(copy, tmp_path):
    p = copy / "ophys_experiment_data/501000002.nwb"
    p.rename(p.with_name(p.name + ".part"))                  # an interrupted fetch
    (copy / "ophys_experiment_data/501000003.nwb").unlink()    # never fetched
    with pytest.warns(A.AllenDataWarning) as rec:
        ds = A.ingest_allen(tmp_path / "s", copy)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "501000002" in msgs and "partial download" in msgs
    assert "501000003" in msgs and "fetch allen" in msgs
    assert set(ds.experiment.values.tolist()) == {501000001}


def test_json_records_without_fields(copy, tmp_path):
    recs = json.loads((copy / "ophys_experiments.json").read_text())
    del recs[0]["id"]                                         # 501000001 unusable
    del recs[1]["targeted_structure"]                         # 501000002: area from cell records
    (copy / "ophys_experiments.json").write_text(json.dumps(recs))
    cells = json.loads((copy / "cell_specimens.json").read_text())
    for c in cells:
        if c["experiment_container_id"] == 511000003:
            del c["p_ns"], c["area"]
    (copy / "cell_specimens.json").write_text(json.dumps(cells + [{"area": "VISp"}]))
    with pytest.warns(A.AllenDataWarning) as rec:
        ds = A.ingest_allen(tmp_path / "s", copy)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "record 0 has no 'id'" in msgs and "without 'cell_specimen_id'" in msgs
    assert 501000001 not in ds.experiment.values
    e2 = ds.where(ds.experiment == 501000002, drop=True)
    known = ~np.isnan(e2.p_image.values)
    assert (e2.area.values[known] == "VISl").all()            # from cell_specimens.json
    assert (e2.area.values[~known] == "unknown").all()        # neither record knows it
    e3 = ds.where(ds.experiment == 501000003, drop=True)
    assert np.isnan(e3.p_image.values).all() and (e3.area.values == "VISal").all()   # experiment record


def test_truncated_or_missing_json_is_a_clear_error(copy, tmp_path):
    t = (copy / "cell_specimens.json").read_text()
    (copy / "cell_specimens.json").write_text(t[: len(t) // 2])
    with pytest.raises(A.AllenCacheError, match="cell_specimens.json.*not valid JSON.*fetch allen"):
        A.ingest_allen(tmp_path / "s", copy)
    (copy / "ophys_experiments.json").unlink()
    with pytest.raises(MissingDataError, match="ophys_experiments.json"):
        A.ingest_allen(tmp_path / "s", copy)
    assert not (tmp_path / "s" / S.RESPONSES_STORE).exists()


def test_nothing_already_ingested_is_lost(copy, tmp_path):
    st = tmp_path / "study"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.AllenDataWarning)
        A.ingest_allen(st, copy, areas=["VISp"])
    before = _open(st / S.RESPONSES_STORE).trials.values.copy()
    with pytest.raises(StoreExistsError):
        A.ingest_allen(st, copy)
    # a chunk corrupt in the middle of a file is only found while reading: clear error, old store intact
    p = copy / "ophys_experiment_data/501000003.nwb"
    with h5py.File(p, "r") as f:
        info = f["processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data"].id.get_chunk_info(0)
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\x00garbage" * (info.size // 8))
    with pytest.raises(A.AllenCacheError, match="501000003.*nothing was written"):
        A.ingest_allen(st, copy, response="dff", overwrite=True)
    np.testing.assert_array_equal(_open(st / S.RESPONSES_STORE).trials.values, before)
    # every experiment broken: clear error, old store intact
    for e in (501000001, 501000002, 501000003):
        (copy / f"ophys_experiment_events/{e}_events.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(A.AllenCacheError, match="none of the 3 selected"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", A.AllenDataWarning)
            A.ingest_allen(st, copy, overwrite=True)
    np.testing.assert_array_equal(_open(st / S.RESPONSES_STORE).trials.values, before)


def test_duplicate_cells_across_experiments_kept_once(tmp_path):
    exps = [ExperimentSpec(9001, 9101, "VISp", "Cux2-CreERT2", 175, n_cells=4, first_cell_id=5000),
            ExperimentSpec(9002, 9102, "VISpm", "Cux2-CreERT2", 175, n_cells=4, first_cell_id=5002)]
    c = make_allen_cache(tmp_path / "c", exps, n_trials=3, image_shape=(4, 4))
    with pytest.warns(A.AllenDataWarning, match="duplicate"):
        ds = A.ingest_allen(tmp_path / "s", c)
    assert ds.neuron.values.tolist() == [5000, 5001, 5002, 5003, 5004, 5005]
    _, want = _reference(c, 9002, "events")
    np.testing.assert_allclose(ds.trials.sel(neuron=[5004, 5005]).values, want[2:], rtol=1e-5, atol=1e-6)


def test_cli_ingest(cache, tmp_path, capsys):
    from neuroxr.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.AllenDataWarning)
        assert main(["ingest", "allen", str(tmp_path / "s"), "--cache", str(cache), "--response", "dff",
                     "--areas", "VISl"]) == 0
    assert "8 neurons from 1 experiments" in capsys.readouterr().out
    ds = _open(tmp_path / "s" / S.RESPONSES_STORE)
    assert json.loads(ds.attrs["settings"])["response"] == "dff"
    assert main(["ingest", "allen", str(tmp_path / "s"), "--cache", str(cache)]) == 2     # exists: one-line error
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_large_simulated_cache_ingests_in_bounded_memory(tmp_path):
    """A small run of benchmarks/bench_allen_ingest.py (the full 60,000-neuron run is the benchmark)."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_allen_ingest.py"
    out = subprocess.run([sys.executable, str(bench), "--neurons", "4000", "--experiments", "2",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4000 x 118 x 50" in out.stdout and "under the 4 GB budget" in out.stdout
    assert "stores identical (trials, NaN-aware): True" in out.stdout


def test_window_responses_property():
    """window_operator + group_trials against a brute-force loop, on random tables (hypothesis)."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    @hyp.settings(max_examples=60, deadline=None)
    @hyp.given(seed=st.integers(0, 10_000), n_img=st.integers(1, 5), n_pres=st.integers(1, 30),
               n_frames=st.integers(1, 60), response=st.sampled_from(["events", "dff"]))
    def check(seed, n_img, n_pres, n_frames, response):
        rng = np.random.default_rng(seed)
        frames = rng.integers(-1, n_img, n_pres)
        start = rng.integers(-3, n_frames + 3, n_pres)
        end = start + rng.integers(0, 6, n_pres)             # empty, overlapping and out-of-range windows
        x = rng.normal(size=(3, n_frames))
        x[rng.random(x.shape) < 0.05] = np.nan
        W, ok = A.window_operator(start, end, n_frames, response)
        idx = A.group_trials(frames, n_img)
        r = (W.T @ x.T).T
        got = np.where((idx >= 0) & ok[np.maximum(idx, 0)], r[:, np.maximum(idx, 0)], np.nan)
        for i in range(n_img):
            pres = [p for p in range(n_pres) if frames[p] == i]
            assert idx.shape[1] >= len(pres)
            for t in range(idx.shape[1]):
                if t >= len(pres):
                    assert np.isnan(got[:, i, t]).all()
                    continue
                s, e = start[pres[t]], end[pres[t]]
                if s < 0 or e > n_frames or e <= s:
                    assert np.isnan(got[:, i, t]).all()
                    continue
                w = x[:, s:e]
                want = w.sum(1) if response == "events" else w.mean(1)
                np.testing.assert_allclose(got[:, i, t], want, rtol=1e-12, atol=1e-12)

    check()
