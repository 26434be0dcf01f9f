"""Integrity: corrupted chunks are reported by store, variable and chunk key, never used."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr.cli import main
from neuroxr.errors import NeuroxrError
from neuroxr.io import integrity, store


def _ds(seed=0):
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"ridge_r": (("layer", "neuron"), rng.standard_normal((4, 10)).astype("f4")),
         "rsa_r": (("layer", "area"), rng.standard_normal((4, 2)))},
        coords={"layer": np.arange(4), "neuron": np.arange(10), "area": ["VISp", "VISl"]},
    )


def _flip(path: Path, offset=None) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if offset is None else offset] ^= 0x5A
    path.write_bytes(bytes(raw))


@pytest.fixture
def written(tmp_path):
    p = tmp_path / "study" / "things.zarr"
    store.write_dataset(_ds(), p, chunks={"layer": 2, "neuron": 4})
    return p


def test_clean_store_verifies(written):
    assert integrity.verify_store(written) == []
    assert integrity.verify_study(written.parent) == []


def test_check_chunk_bytes_agrees_with_independent_crc32c():
    import crc32c  # the `crc32c` package, independent of google_crc32c used by zarr

    payload = np.random.default_rng(1).bytes(1000)
    good = payload + np.uint32(crc32c.crc32c(payload)).astype("<u4").tobytes()
    integrity.check_chunk_bytes(good, store="s", variable="v", chunk="c/0")
    bad = bytearray(good)
    bad[10] ^= 1
    with pytest.raises(integrity.ChunkCorruptError, match=r"s: variable 'v', chunk 'c/0' is corrupted"):
        integrity.check_chunk_bytes(bytes(bad), store="s", variable="v", chunk="c/0")
    with pytest.raises(integrity.ChunkCorruptError, match="truncated"):
        integrity.check_chunk_bytes(b"ab", store="s", variable="v", chunk="c/0")


@pytest.mark.parametrize("key", ["c/0/1", "c/1/2"])
def test_flipped_chunk_is_named_by_verify(written, key):
    _flip(written / "ridge_r" / key)
    problems = integrity.verify_store(written)
    assert [(p.variable, p.chunk, p.kind) for p in problems] == [("ridge_r", key, "corrupt")]
    assert str(written) in problems[0].message and "checksum" in problems[0].message
    # the whole study too, and only the damaged chunk
    assert [(p.store, p.chunk) for p in integrity.verify_study(written.parent)] == [(str(written), key)]


def test_lazy_read_names_the_chunk_and_other_chunks_still_read(written):
    _flip(written / "ridge_r" / "c" / "1" / "0")
    ds = store.open_dataset(written)
    with pytest.raises(integrity.ChunkCorruptError) as info:
        ds.ridge_r.values
    err = info.value
    assert (err.store, err.variable, err.chunk) == (str(written), "ridge_r", "c/1/0")
    assert "things.zarr" in str(err) and "'c/1/0'" in str(err)
    assert isinstance(err, NeuroxrError)
    # untouched chunks are intact and equal to what was written
    np.testing.assert_array_equal(ds.ridge_r.isel(layer=slice(0, 2)).values, _ds().ridge_r.values[:2])
    np.testing.assert_array_equal(ds.rsa_r.values, _ds().rsa_r.values)


def test_error_survives_pickling():
    import pickle

    e = integrity.ChunkCorruptError("msg", "s.zarr", "v", "c/0")
    back = pickle.loads(pickle.dumps(e))
    assert (str(back), back.store, back.variable, back.chunk) == ("msg", "s.zarr", "v", "c/0")


def test_truncated_and_deleted_chunks(written):
    (written / "ridge_r" / "c" / "0" / "0").write_bytes(b"\x01\x02")
    (written / "rsa_r" / "c" / "1" / "0").unlink()
    problems = {(p.variable, p.chunk): p for p in integrity.verify_store(written)}
    assert problems[("ridge_r", "c/0/0")].kind == "corrupt"
    assert "truncated" in problems[("ridge_r", "c/0/0")].message
    lost = problems[("rsa_r", "c/1/0")]  # written, so recorded in the manifest: an error, not a fill value
    assert lost.kind == "lost" and lost.is_error and "rsa_r" in lost.message and "c/1/0" in lost.message


def test_absent_chunk_without_manifest_is_a_warning(written):
    (written / "neuroxr_manifest.json").unlink()
    (written / "rsa_r" / "c" / "1" / "0").unlink()
    problems = {(p.variable, p.chunk): p for p in integrity.verify_store(written)}
    assert problems[("rsa_r", "c/1/0")].kind == "missing" and not problems[("rsa_r", "c/1/0")].is_error
    assert problems[(None, None)].kind == "no-manifest"


def test_broken_metadata_is_an_error(written):
    (written / "rsa_r" / "zarr.json").write_text("{not json")
    kinds = {p.kind for p in integrity.verify_store(written)}
    assert "metadata" in kinds
    assert [p.kind for p in integrity.verify_store(written.parent / "nothere.zarr")] == ["metadata"]


def test_stale_units_listed_and_cleaned(written, capsys):
    stale = written.parent / "features" / ".resnet18.zarr.tmp-deadbeef"
    stale.mkdir(parents=True)
    problems = integrity.verify_study(written.parent)
    assert [(p.kind, p.store) for p in problems] == [("stale", str(stale))]
    assert main(["verify", str(written.parent), "--clean", "--quiet"]) == 0
    assert not stale.exists() and written.exists()


def test_cli_verify_exit_status_and_json(written, capsys):
    assert main(["verify", str(written.parent)]) == 0
    assert "passed" in capsys.readouterr().out
    _flip(written / "rsa_r" / "c" / "0" / "0")
    assert main(["verify", f"file://{written.parent}", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert [(p["variable"], p["chunk"], p["kind"]) for p in out["problems"]] == [("rsa_r", "c/0/0", "corrupt")]
    assert main(["verify", "--store", str(written)]) == 1


def test_resolve_path_urls(tmp_path):
    assert store.resolve_path(f"file://{tmp_path}/a%20b") == tmp_path / "a b"
    assert store.resolve_path(Path(f"file://{tmp_path}") / "features") == tmp_path / "features"
    assert store.resolve_path("file://localhost/x/y") == Path("/x/y")
    assert store.resolve_path("rel").is_absolute()
    with pytest.raises(NeuroxrError, match="s3://.*atomic rename"):
        store.resolve_path("s3://bucket/study")


def test_file_url_roundtrip(tmp_path):
    url = f"file://{tmp_path}/u.zarr"
    store.write_dataset(_ds(3), url)
    assert (tmp_path / "u.zarr").is_dir()
    xr.testing.assert_identical(store.open_dataset(url).compute(), _ds(3))
