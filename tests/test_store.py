"""The study store: atomic writes, refusal to overwrite, checksums, lazy opening."""
from __future__ import annotations

import errno
import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr.errors import MissingDataError, NeuroxrError, SettingsMismatchError, StoreExistsError, StoreWriteError
from neuroxr.io import integrity, journal, store
from neuroxr.io.ingest import ingest_arrays


def _ds(seed=0):
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"ridge_r": (("layer", "neuron"), rng.standard_normal((3, 5)).astype("f4"))},
        coords={"layer": ["a|random|x", "b|random|yy", "c|trained|zzz"], "model": ("layer", ["a", "b", "c"]),
                "neuron": np.arange(5), "area": ("neuron", ["VISp"] * 3 + ["VISl"] * 2)},
    )


def test_roundtrip_is_lazy_and_labelled(tmp_path):
    ds = _ds()
    store.write_dataset(ds, tmp_path / "s.zarr", chunks={"neuron": 2})
    back = store.open_dataset(tmp_path / "s.zarr")
    assert back.ridge_r.chunks is not None  # dask-backed
    np.testing.assert_array_equal(back.ridge_r.values, ds.ridge_r.values)
    got = back.ridge_r.groupby("area").mean().groupby("model").max()
    want = ds.ridge_r.groupby("area").mean().groupby("model").max()
    np.testing.assert_allclose(got.values, want.values)


def test_refuses_to_overwrite_and_keeps_old(tmp_path):
    p = tmp_path / "s.zarr"
    store.write_dataset(_ds(0), p)
    with pytest.raises(StoreExistsError, match="already exists"):
        store.write_dataset(_ds(1), p)
    np.testing.assert_array_equal(store.open_dataset(p).ridge_r.values, _ds(0).ridge_r.values)
    store.write_dataset(_ds(1), p, overwrite=True)
    np.testing.assert_array_equal(store.open_dataset(p).ridge_r.values, _ds(1).ridge_r.values)
    assert not list(tmp_path.glob(".*"))  # no temporary stores left behind


def test_failed_write_leaves_old_store(tmp_path):
    p = tmp_path / "s.zarr"
    store.write_dataset(_ds(0), p)
    bad = _ds(1).assign(obj=("neuron", np.array([object()] * 5, dtype=object)))
    with pytest.raises(Exception):
        store.write_dataset(bad, p, overwrite=True)
    np.testing.assert_array_equal(store.open_dataset(p).ridge_r.values, _ds(0).ridge_r.values)
    assert not list(tmp_path.glob(".*"))


def test_corrupted_chunk_is_detected(tmp_path):
    p = tmp_path / "s.zarr"
    store.write_dataset(_ds(), p, chunks={"neuron": 2})
    chunk = sorted(glob.glob(str(p / "ridge_r" / "c" / "*" / "*")))[0]
    raw = bytearray(Path(chunk).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(chunk).write_bytes(bytes(raw))
    with pytest.raises(Exception, match="checksum"):
        store.open_dataset(p).ridge_r.values


def test_missing_store_names_it(tmp_path):
    with pytest.raises(MissingDataError, match="nothere.zarr"):
        store.open_dataset(tmp_path / "nothere.zarr", name="scores")


def test_check_settings_names_the_difference():
    store.check_settings({"alpha": 1.0, "seed": 0}, {"alpha": 1.0, "seed": 0}, "x")
    with pytest.raises(SettingsMismatchError, match="alpha=1.0.*alpha=10.0"):
        store.check_settings({"alpha": 1.0}, {"alpha": 10.0}, "scores.zarr")


def test_hash_array_same_for_dask_and_numpy():
    import dask.array as da

    a = np.random.default_rng(0).standard_normal((50, 7))
    assert store.hash_array(a) == store.hash_array(da.from_array(a, chunks=(8, 7)))
    assert store.hash_array(a) != store.hash_array(a + 1e-12)


# --------------------------------------------------------------------------- transactions
def _two_stores(study: Path, seed: int):
    store.write_dataset(_ds(seed), study / "a.zarr", overwrite=True)
    store.write_dataset(_ds(seed + 100), study / "b.zarr", overwrite=True)


def _values(study: Path):
    return [store.open_dataset(study / n)["ridge_r"].values for n in ("a.zarr", "b.zarr")]


def _hidden(study: Path):
    return sorted(p.name for p in study.iterdir() if p.name.startswith("."))


def _assert_state(study: Path, seed: int):
    a, b = _values(study)
    np.testing.assert_array_equal(a, _ds(seed)["ridge_r"].values)
    np.testing.assert_array_equal(b, _ds(seed + 100)["ridge_r"].values)


def test_transaction_replaces_every_store(tmp_path):
    _two_stores(tmp_path, 0)
    with pytest.raises(StoreExistsError, match="a.zarr already exists"):
        with store.transaction() as tx:
            tx.write(_ds(1), tmp_path / "a.zarr")
    with store.transaction(overwrite=True) as tx:
        tx.write(_ds(1), tmp_path / "a.zarr")
        tx.write(_ds(101), tmp_path / "b.zarr")
    _assert_state(tmp_path, 1)
    assert _hidden(tmp_path) == []


def test_error_inside_the_block_replaces_nothing(tmp_path):
    _two_stores(tmp_path, 0)
    with pytest.raises(RuntimeError):
        with store.transaction(overwrite=True) as tx:
            tx.write(_ds(1), tmp_path / "a.zarr")
            raise RuntimeError("the second store failed")
    _assert_state(tmp_path, 0)
    assert _hidden(tmp_path) == []


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no clean-up catches it."""


def test_kill_between_the_two_replaces_is_rolled_forward(tmp_path, monkeypatch):
    _two_stores(tmp_path, 0)
    real, calls = journal._finish_entry, []

    def killed_after_first(*args):
        calls.append(args)
        if len(calls) == 2:
            raise _Killed
        return real(*args)

    monkeypatch.setattr(journal, "_finish_entry", killed_after_first)
    with pytest.raises(_Killed):
        with store.transaction(overwrite=True) as tx:
            tx.write(_ds(1), tmp_path / "a.zarr")
            tx.write(_ds(101), tmp_path / "b.zarr")
    monkeypatch.setattr(journal, "_finish_entry", real)
    assert len(calls) == 2  # the kill happened between the two replaces
    # on disk right now: a is new, b old, and the journal says what is left to do
    journals = [tmp_path / p for p in _hidden(tmp_path) if p.startswith(".neuroxr-journal-")]
    assert len(journals) == 1
    found = {(p.store, p.kind) for p in integrity.verify_study(tmp_path)}
    assert (str(journals[0]), "stale") in found and not any(k == "stale" and ".tmp-" in s for s, k in found)
    # clean-up never removes what the journal names: it finishes the change instead
    assert store.clean_stale(tmp_path) == journals
    _assert_state(tmp_path, 1)
    assert _hidden(tmp_path) == []


def test_kill_before_the_journal_leaves_the_old_stores(tmp_path, monkeypatch):
    _two_stores(tmp_path, 0)

    def killed(*args):
        raise _Killed

    monkeypatch.setattr(journal, "write_journal", killed)
    with pytest.raises(_Killed):
        with store.transaction(overwrite=True) as tx:
            tx.write(_ds(1), tmp_path / "a.zarr")
            tx.write(_ds(101), tmp_path / "b.zarr")
    _assert_state(tmp_path, 0)  # the next open reads the old stores: nothing was journalled


def test_sigkill_during_ingest_overwrite_leaves_a_whole_study(tmp_path):
    """A real SIGKILL after the first of the two stores of `ingest --overwrite` was swapped."""
    rng = np.random.default_rng(0)
    old_img, new_img = rng.uniform(0, 255, (2, 6, 8, 8)).astype("f4")
    old_resp, new_resp = rng.normal(size=(2, 6, 4)).astype("f4")
    study = tmp_path / "study"
    ingest_arrays(study, images=old_img, responses=old_resp)
    np.save(tmp_path / "img.npy", new_img)
    np.save(tmp_path / "resp.npy", new_resp)
    script = textwrap.dedent(f"""
        import os, signal
        from neuroxr.io import journal
        from neuroxr.io.ingest import ingest_arrays
        real, calls = journal._finish_entry, []
        def kill_after_first(*args):
            calls.append(args)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        journal._finish_entry = kill_after_first
        ingest_arrays({str(study)!r}, images={str(tmp_path / 'img.npy')!r}, responses={str(tmp_path / 'resp.npy')!r},
                      overwrite=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=240)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it was killed, not finished
    resp = store.open_dataset(study / "responses.zarr")  # rolls the journal forward
    stim = store.open_dataset(study / "stimuli.zarr")
    np.testing.assert_array_equal(resp["mean"].values, new_resp.T)
    np.testing.assert_array_equal(stim["pixels"].values, new_img)
    assert [p for p in integrity.verify_study(study) if p.is_error or p.kind == "stale"] == []


# --------------------------------------------------------------------------- errors, not tracebacks
def test_disk_full_names_the_store_and_replaces_nothing(tmp_path, monkeypatch):
    store.write_dataset(_ds(0), tmp_path / "a.zarr")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    with pytest.raises(StoreWriteError, match=r"a\.zarr: no space left on the device .* GiB are free"):
        store.write_dataset(_ds(1), tmp_path / "a.zarr", overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(store.open_dataset(tmp_path / "a.zarr")["ridge_r"].values, _ds(0)["ridge_r"].values)
    assert _hidden(tmp_path) == []


def test_study_under_a_file_and_truncated_metadata_are_named(tmp_path):
    (tmp_path / "f").write_text("not a directory")
    with pytest.raises(StoreWriteError, match=r"f/study/a\.zarr: cannot be written, \S*/f is a file"):
        store.write_dataset(_ds(0), tmp_path / "f" / "study" / "a.zarr")
    path = store.write_dataset(_ds(0), tmp_path / "b.zarr")
    (path / "zarr.json").write_text("")
    with pytest.raises(NeuroxrError, match=r"b\.zarr: cannot be read as a Zarr store.*neuroxr verify"):
        store.open_dataset(path)


def test_failed_write_leaves_no_chunk_written_after_the_clean_up(tmp_path):
    """A failing chunk raises while another is still being computed: that one must not land in a
    temporary store that was already removed (the threaded scheduler does not wait for it)."""
    import time

    import dask
    import dask.array as da

    def slow():
        time.sleep(0.5)
        return np.ones((4, 3), "f4")

    def bad():
        raise RuntimeError("chunk failed")

    parts = [da.from_delayed(dask.delayed(f)(), shape=(4, 3), dtype="f4") for f in (slow, bad)]
    ds = xr.Dataset({"x": (("a", "b"), da.concatenate(parts))})
    with pytest.raises(RuntimeError, match="chunk failed"):
        store.write_dataset(ds, tmp_path / "x.zarr", chunks={"a": 4})
    time.sleep(1.0)
    assert list(tmp_path.iterdir()) == []
