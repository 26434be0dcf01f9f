"""The study store: atomic writes, refusal to overwrite, checksums, lazy opening."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr.errors import MissingDataError, SettingsMismatchError, StoreExistsError
from neuroxr.io import store


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
