"""Issue 14, extraction: features never reused from other inputs; hostile features files and checkpoints
are one-line errors (items 3, 6 and 8)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr import schema as S
from neuroxr.cli import main
from neuroxr.io.store import open_dataset

N_IMAGES, SIZE = 10, 12


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (N_IMAGES, SIZE, SIZE)).astype(np.uint8)
    np.save(tmp_path / "imgs.npy", images)
    np.save(tmp_path / "resp.npy", rng.normal(size=(N_IMAGES, 4)).astype(np.float32))
    return tmp_path, images


def _ingest(tmp_path, study, images_file="imgs.npy", *extra):
    argv = ["ingest", "arrays", str(study), "--images", str(tmp_path / images_file), "--responses",
            str(tmp_path / "resp.npy"), "--area", "VISp", "--cre-line", "Cux2-CreERT2", "--depth-um", "175", *extra]
    assert main(argv) == 0


def _extract(capsys, study, *extra) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["extract", str(study), "--model", "pixels", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("neuroxr extract: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _pixels_gram(study) -> np.ndarray:
    return open_dataset(study / "features" / "pixels.zarr").load()["gram"].values[0]


def test_reingested_permuted_images_are_not_skipped(arrays, capsys):
    tmp_path, images = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    assert _extract(capsys, study)[0] == 0
    rc, out, _ = _extract(capsys, study)
    assert rc == 0 and "skipped" in out  # same inputs: reused
    perm = np.random.default_rng(0).permutation(N_IMAGES)
    np.save(tmp_path / "perm.npy", images[perm])
    _ingest(tmp_path, study, "perm.npy", "--overwrite")
    rc, out, err = _extract(capsys, study)
    assert rc == 2 and "skipped" not in out
    line = _one_line_error(err)
    assert "stimuli changed" in line and "--overwrite" in line and "pixels.zarr" in line
    rc, out, _ = _extract(capsys, study, "--overwrite")
    assert rc == 0 and "done" in out
    x = images[perm].reshape(N_IMAGES, -1).astype(np.float64)
    np.testing.assert_allclose(_pixels_gram(study), x @ x.T, rtol=1e-12)


@pytest.mark.parametrize("option, key", [(["--seed", "1"], "seed"), (["--srp", "64"], "srp_components")])
def test_changed_seed_or_srp_is_not_skipped(arrays, capsys, option, key):
    tmp_path, _ = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    assert _extract(capsys, study)[0] == 0
    rc, out, err = _extract(capsys, study, *option)
    assert rc == 2 and "skipped" not in out
    line = _one_line_error(err)
    assert f"({key}:" in line and "--overwrite" in line and " ".join(option) in line
    rc, out, _ = _extract(capsys, study, *option, "--overwrite")
    assert rc == 0 and "done" in out
    rc, out, _ = _extract(capsys, study, *option)
    assert rc == 0 and "skipped" in out
    ds = open_dataset(study / "features" / "pixels.zarr")
    if key == "srp_components":
        assert ds.sizes[S.COMPONENT] == 64
    else:
        assert '"seed": 1' in ds.attrs["variants"]


def test_changed_features_file_is_not_skipped(arrays, capsys):
    tmp_path, _ = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    f = tmp_path / "mine.npy"
    feats = np.random.default_rng(1).normal(size=(N_IMAGES, 7)).astype(np.float32)
    np.save(f, feats)
    argv = ["extract", str(study), "--model", "mine", "--features", str(f), "--weights", "v1"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0 and "skipped" in capsys.readouterr().out
    np.save(f, feats * 2)
    assert main(argv) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "(sha256:" in line


# ------------------------------------------------------------------ item 6: hostile features files
def _import(capsys, study, path) -> str:
    capsys.readouterr()
    assert main(["extract", str(study), "--model", "mine", "--features", str(path)]) == 2
    return _one_line_error(capsys.readouterr().err)


def test_features_file_bad_zip_is_one_line(arrays, capsys):
    tmp_path, _ = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is no zip archive" * 20)
    line = _import(capsys, study, bad)
    assert "bad.npz" in line and "BadZipFile" not in line.split(":", 3)[1]


def _huge_header_npy(path, shape):
    """A .npy whose header claims ``shape`` float32, with a few data bytes (or sparse to the full size)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        fh.write(b"\0" * 64)


def test_features_header_claiming_879_gib_refused_before_allocation(arrays, capsys):
    tmp_path, _ = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    claim = (N_IMAGES, 879 * 2**30 // 4 // N_IMAGES)
    short = tmp_path / "short.npy"
    _huge_header_npy(short, claim)
    line = _import(capsys, study, short)
    assert "short.npy" in line and "truncated" in line
    sparse = tmp_path / "sparse.npy"
    _huge_header_npy(sparse, claim)
    try:
        os.truncate(sparse, 879 * 2**30 + 256)
    except OSError:
        pytest.skip("this filesystem cannot hold a sparse 879 GiB file")
    line = _import(capsys, study, sparse)  # refused from the header, before hashing 879 GiB or allocating
    assert "sparse.npy" in line and "GiB" in line and "memory" in line


# ------------------------------------------------------------------ item 8: pickled checkpoints
def test_pickled_checkpoint_given_to_domains_is_one_line(arrays, capsys):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    tmp_path, _ = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    whole = tmp_path / "whole.pt"
    torch.save(torchvision.models.alexnet(), whole)  # the model object, pickled
    capsys.readouterr()
    rc = main(["domains", str(study), "--model", f"alexnet-simclr@{whole}", "--model", f"alexnet-simclr@{whole}",
               "--n-splits", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "whole.pt" in lines[0] and "pickled" in lines[0] and "AlexNet" in lines[0]
    assert "state_dict()" in lines[0] and "weights_only=False" not in err


def test_damaged_checkpoint_is_one_line(tmp_path):
    pytest.importorskip("torch")
    from neuroxr.domains.simclr import load_simclr_checkpoint
    from neuroxr.errors import NeuroxrError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02 not a checkpoint" * 8)
    with pytest.raises(NeuroxrError) as info:
        load_simclr_checkpoint(bad)
    msg = str(info.value)
    assert "\n" not in msg and "bad.pt" in msg and "weights_only=False" not in msg


def test_stimuli_store_keeps_its_hash_across_reads(arrays):
    """The recorded stimuli hash is of the content: re-ingesting the same images reuses the features."""
    tmp_path, images = arrays
    study = tmp_path / "study"
    _ingest(tmp_path, study)
    from neuroxr.features.extract import extract_features

    assert extract_features(study, ["pixels"], progress=False)[0]["status"] == "done"
    _ingest(tmp_path, study, "imgs.npy", "--overwrite")
    assert extract_features(study, ["pixels"], progress=False)[0]["status"] == "skipped"
    px = xr.open_zarr(study / S.STIMULI_STORE)[S.PIXELS].values
    np.testing.assert_array_equal(px, images)


def test_cleaning_keeps_a_live_runs_spill_folder_and_removes_a_dead_ones(tmp_path):
    """Issue 14 item 5: a second `extract` must not delete the spill folder of one still running."""
    import subprocess
    import sys

    from neuroxr.features.variants import clean_features_dir
    from neuroxr.io.paths import hostname

    feats = tmp_path / "features"
    feats.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = feats / f".spill-abc123-p{sleeper.pid}@{hostname()}"
        dead_proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = feats / f".spill-def456-p{int(dead_proc.stdout)}@{hostname()}"
        unowned = feats / ".spill-old"
        for d in (live, dead, unowned):
            d.mkdir()
            (d / "layer0001.f32").write_bytes(b"\0" * 16)
        clean_features_dir(tmp_path)
        assert live.exists() and (live / "layer0001.f32").exists()
        assert not dead.exists() and not unowned.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_concurrent_extractions_of_one_model_keep_both_variants(tmp_path):
    """Issue 14 item 5: two `extract --features` runs with different weights, at once: no variant is lost."""
    import os
    import subprocess
    import sys

    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.uniform(0, 255, (12, 8, 8)).astype(np.float32))
    np.save(tmp_path / "resp.npy", rng.normal(size=(12, 5)).astype(np.float32))
    study = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cli = [sys.executable, "-m", "neuroxr"]
    subprocess.run([*cli, "ingest", "arrays", str(study), "--images", str(tmp_path / "images.npy"),
                    "--responses", str(tmp_path / "resp.npy"), "--area", "VISp"], check=True, env=env,
                   capture_output=True)
    for w in ("a", "b", "c"):
        np.save(tmp_path / f"feat_{w}.npy", rng.normal(size=(12, 40)).astype(np.float32))
    procs = [subprocess.Popen([*cli, "extract", str(study), "--model", "mine", "--features",
                               str(tmp_path / f"feat_{w}.npy"), "--weights", w], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in ("a", "b", "c")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    ds = xr.open_zarr(study / "features" / "mine.zarr")
    assert sorted(set(np.asarray(ds["weights"].values).tolist())) == ["a", "b", "c"]
