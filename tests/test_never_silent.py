"""Issue 14, storage side: each numbered case a careful user tried, now an error naming what is wrong.

Cases 1 (missing data, edited metadata), 2 (a killed ``ingest --overwrite`` and the clean-up after
it), 5 (concurrent writers of ingest and select: locks), 6 (inputs that exhaust memory), 7 (values
changed on the way in) and 8 (tracebacks instead of errors: disk full, a study under a file, a
truncated ``zarr.json``, ``--layer-chunk 0``).  Every command is the command line, in process.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr.cli import main
from neuroxr.io import integrity, journal, lock, manifest, reader, store
from neuroxr.io.ingest import ingest_arrays
from neuroxr.io.lock import StoreLockedError, study_lock
from neuroxr.study import open_study

REPO = Path(__file__).resolve().parents[1]


def _cli(argv, capsys):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing an option
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small simulated study with pixel features and scores (built once, copied per test)."""
    study = tmp_path_factory.mktemp("scored") / "study"
    assert main(["simulate", str(study), "--n-images", "16", "--neurons-per-area", "5", "--n-trials", "4",
                 "--image-size", "12"]) == 0
    assert main(["extract", str(study), "--model", "pixels"]) == 0
    assert main(["score", str(study)]) == 0
    return study


@pytest.fixture
def study(scored, tmp_path):
    return Path(shutil.copytree(scored, tmp_path / "study"))


# --------------------------------------------------------------------------- case 1
def test_1_clean_study_verifies_without_any_warning(study, capsys):
    rc, out, err = _cli(["verify", study], capsys)
    assert rc == 0, out + err
    assert "warning" not in out + err and "absent" not in out + err
    assert all((p / manifest.MANIFEST).exists() for p in integrity.find_stores(study))


@pytest.mark.parametrize("store_name, variable", [("features/pixels.zarr", "gram_z"), ("responses.zarr", "mean")])
def test_1_removed_variable_fails_verify_and_score_by_name(study, capsys, store_name, variable):
    shutil.rmtree(study / store_name / variable)
    rc, out, err = _cli(["verify", study], capsys)
    assert rc == 1
    assert f"ERROR lost: {study / store_name}: variable {variable!r} is missing" in out
    rc, out, err = _cli(["score", study, "--overwrite"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert f"{study / store_name}: variable {variable!r} is missing" in _last_line(err)
    assert not (study / "scores.zarr").exists() or np.isfinite(xr.open_zarr(study / "scores.zarr").ridge_r).all()


def test_1_removed_variable_of_a_scores_group_is_named(study, capsys):
    shutil.rmtree(study / "scores.zarr" / "areas" / "rsa_r")
    rc, out, _ = _cli(["verify", study], capsys)
    assert rc == 1 and "scores.zarr: variable 'areas/rsa_r' is missing" in out
    with pytest.raises(integrity.ChunkCorruptError, match=r"variable 'areas/rsa_r' is missing"):
        open_study(study).scores  # what rank and report read


def test_1_removed_chunk_is_named(study, capsys):
    (study / "responses.zarr" / "mean" / "c" / "0" / "0").unlink()
    rc, out, _ = _cli(["verify", study], capsys)
    assert rc == 1 and "variable 'mean', chunk 'c/0/0' is missing" in out
    rc, _, err = _cli(["score", study, "--overwrite"], capsys)
    assert rc == 2 and "responses.zarr: variable 'mean', chunk 'c/0/0' is missing" in _last_line(err)


def test_1_replaced_chunk_is_named(study, capsys):
    """A chunk swapped for another valid chunk passes its own checksum but not the manifest."""
    chunks = study / "features" / "pixels.zarr" / "gram" / "c"
    files = sorted(p for p in chunks.rglob("*") if p.is_file())
    victim = files[0]
    other = store.write_dataset(xr.Dataset({"gram": (("a",), np.arange(7.0))}), study.parent / "other.zarr")
    shutil.copy(other / "gram" / "c" / "0", victim)
    rc, out, _ = _cli(["verify", study], capsys)
    assert rc == 1 and f"variable 'gram', chunk '{victim.relative_to(chunks.parent).as_posix()}'" in out


def test_1_byte_order_edited_in_consolidated_metadata_is_named(study, capsys):
    meta_path = study / "stimuli.zarr" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["consolidated_metadata"]["metadata"]["pixels"]["codecs"][0]["configuration"]["endian"] = "big"
    meta_path.write_text(json.dumps(meta))
    rc, out, _ = _cli(["verify", study], capsys)
    assert rc == 1 and "ERROR inconsistent" in out and "variable 'pixels'" in out and "'big'" in out
    with pytest.raises(integrity.ChunkCorruptError, match=r"stimuli\.zarr: variable 'pixels': the consolidated"):
        store.open_dataset(study / "stimuli.zarr")  # what every reader (extract, ...) opens it with


def test_1_store_breaking_the_contract_is_named(study, capsys):
    ds = store.open_dataset(study / "responses.zarr").load().drop_vars("area")
    store.write_dataset(ds, study / "responses.zarr", overwrite=True)  # whole and checksummed, but no 'area'
    rc, out, _ = _cli(["verify", study], capsys)
    assert rc == 1 and "ERROR schema" in out and "neuron coordinate 'area' is missing" in out


# --------------------------------------------------------------------------- case 2
class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def _kill():
    raise _Killed


def test_2_killed_ingest_overwrite_then_clean_up_never_loses_the_new_or_mixes(study, capsys, monkeypatch):
    rng = np.random.default_rng(5)
    old = {n: store.open_dataset(study / n).load() for n in ("responses.zarr", "stimuli.zarr")}
    new_img = rng.uniform(0, 255, (16, 12, 12)).astype("f4")
    new_resp = rng.normal(size=(16, 11)).astype("f4")
    real, calls = journal._finish_entry, itertools.count(1)
    monkeypatch.setattr(journal, "_finish_entry", lambda *a: real(*a) if next(calls) < 2 else _kill())
    with pytest.raises(_Killed):
        ingest_arrays(study, images=new_img, responses=new_resp, area="VISp", overwrite=True)
    monkeypatch.setattr(journal, "_finish_entry", real)
    # a failing later step and `verify --clean` finish the change; neither deletes the only new copy
    rc, _, err = _cli(["score", study, "--model", "nosuch"], capsys)
    assert rc == 2
    rc, out, _ = _cli(["verify", "--clean", study], capsys)
    assert rc == 0, out
    resp, stim = (store.open_dataset(study / n) for n in ("responses.zarr", "stimuli.zarr"))
    np.testing.assert_array_equal(resp["mean"].values, new_resp.T)
    np.testing.assert_array_equal(stim["pixels"].values, new_img)
    assert not old["responses.zarr"]["mean"].shape == resp["mean"].shape  # entirely new, not mixed
    assert [p for p in sorted(study.iterdir()) if ".tmp-" in p.name or ".old-" in p.name or "journal" in p.name] == []


# --------------------------------------------------------------------------- case 5 (ingest, select)
def _hold(study: Path, what: str):
    code = textwrap.dedent(f"""
        import sys, time
        from neuroxr.io.lock import study_lock
        with study_lock({str(study)!r}, {what!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_5_second_writer_waits_then_names_the_holder(study, capsys, monkeypatch):
    holder = _hold(study, "responses.zarr")
    try:
        monkeypatch.setenv("NEUROXR_LOCK_TIMEOUT", "0.5")
        before = store.open_dataset(study / "responses.zarr").load()
        rc, _, err = _cli(["ingest", "arrays", study, "--overwrite", "--responses",
                           _npy(study.parent, np.ones((16, 3), "f4")), "--area", "VISp"], capsys)
        assert rc == 2 and f"responses.zarr is being written by process {holder.pid}@" in _last_line(err)
        assert f"(locked by process {holder.pid}@" in err  # it said whom it waited for
        rc, _, err = _cli(["select", study, "--min-reliability", "0.1"], capsys)
        assert rc == 2 and f"process {holder.pid}@" in _last_line(err)
        xr.testing.assert_identical(store.open_dataset(study / "responses.zarr").load(), before)
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock: the next writer goes ahead at once
    monkeypatch.setenv("NEUROXR_LOCK_TIMEOUT", "0")
    rc, out, err = _cli(["select", study, "--min-reliability", "0.1"], capsys)
    assert rc == 0, err


def test_5_lock_directory_fallback_takes_over_a_dead_owner(tmp_path):
    path = lock.lock_path(tmp_path, "responses.zarr")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = path.with_name(path.name + ".d")
    stale.mkdir(parents=True)
    (stale / "owner").write_text(f"{int(dead.stdout)}@{lock.hostname()} since then\n")
    with study_lock(tmp_path, "responses.zarr", mode="mkdir", timeout=0):
        assert lock.read_owner(stale).startswith(f"{os.getpid()}@")
        # a live owner (here: the test runner itself, seen from another lock) is not taken over
        (tmp_path / "x").mkdir()
        live = lock.lock_path(tmp_path / "x", "a.zarr").with_name(lock.LOCK_PREFIX + "a.zarr.d")
        live.mkdir()
        (live / "owner").write_text(f"{os.getppid()}@{lock.hostname()} since now\n")
        with pytest.raises(StoreLockedError, match=rf"a\.zarr is being written by process {os.getppid()}@"):
            with study_lock(tmp_path / "x", "a.zarr", mode="mkdir", timeout=0.3):
                pass
    assert not stale.exists()  # released


def test_5_locks_are_reentrant_in_one_process(tmp_path):
    t0 = time.monotonic()
    with study_lock(tmp_path, ["b.zarr", "a.zarr"], timeout=0):
        with study_lock(tmp_path, "a.zarr", timeout=0):
            pass
    assert time.monotonic() - t0 >= 0  # no wait, no error


def test_5_another_thread_of_the_process_waits_for_the_lock(tmp_path):
    """Re-entry is per thread: a second thread of the same process is a second writer (it waits, or
    is refused after its timeout), so two threads never write one store at once."""
    import threading

    inside, order = threading.Event(), []

    def holder():
        with study_lock(tmp_path, "features/m.zarr", timeout=0):
            order.append("holder in")
            inside.set()
            time.sleep(0.5)
            order.append("holder out")

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    with pytest.raises(StoreLockedError, match="another thread of this process"):
        with study_lock(tmp_path, "features/m.zarr", timeout=0.05):
            pass
    with study_lock(tmp_path, "features/m.zarr", timeout=10):
        order.append("waiter in")
    t.join()
    assert order == ["holder in", "holder out", "waiter in"]


# --------------------------------------------------------------------------- case 6
def _npy(folder: Path, a: np.ndarray, name="arr.npy") -> Path:
    p = folder / name
    np.save(p, a)
    return p


def test_6_small_npz_that_inflates_past_the_cgroup_limit_is_one_line(tmp_path, capsys, monkeypatch):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, responses=np.zeros((2048, 4096)))  # 64 MiB inflated, ~70 kB on disk
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{32 << 20}\n")
    monkeypatch.setattr(reader, "CGROUP_ROOT", cg)
    rc, _, err = _cli(["ingest", "arrays", tmp_path / "s", "--responses", f"{bomb}:responses"], capsys)
    line = _last_line(err)
    assert rc == 2 and "bomb.npz" in line and "cgroup" in line and "Traceback" not in err
    assert not (tmp_path / "s" / "responses.zarr").exists()


# --------------------------------------------------------------------------- case 7
@pytest.mark.parametrize("args, expect", [
    (["--depth-um", "-50"], "depth"),
    (["--depth-um", "nan"], "depth"),
    (["--depth-um", "inf"], "depth"),
    (["--area", "VISxx"], "--allow-unknown-area"),
])
def test_7_bad_metadata_is_refused_by_name(tmp_path, capsys, args, expect):
    resp = _npy(tmp_path, np.ones((5, 3), "f4"))
    base = ["--area", "VISp"] if "--area" not in args else []
    rc, _, err = _cli(["ingest", "arrays", tmp_path / "s", "--responses", resp, *base, *args], capsys)
    assert rc == 2 and expect in _last_line(err) and "Traceback" not in err
    assert not (tmp_path / "s" / "responses.zarr").exists()


def test_7_float64_beyond_float32_is_refused_not_inf(tmp_path, capsys):
    a = np.ones((5, 3))
    a[2, 1] = 1e300
    rc, _, err = _cli(["ingest", "arrays", tmp_path / "s", "--responses", _npy(tmp_path, a), "--area", "VISp"], capsys)
    assert rc == 2 and "arr.npy" in _last_line(err) and "float32" in _last_line(err)


# --------------------------------------------------------------------------- case 8
def test_8_study_under_a_file_truncated_metadata_and_layer_chunk_zero(study, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    resp = _npy(tmp_path, np.ones((5, 3), "f4"))
    rc, _, err = _cli(["ingest", "arrays", tmp_path / "afile" / "s", "--responses", resp, "--area", "VISp"], capsys)
    assert rc == 2 and "is a file, not a directory" in _last_line(err) and "Traceback" not in err
    rc, _, err = _cli(["score", study, "--layer-chunk", "0"], capsys)
    assert rc == 2 and "--layer-chunk" in err and "ZeroDivisionError" not in err
    (study / "responses.zarr" / "zarr.json").write_text("")
    rc, _, err = _cli(["score", study, "--overwrite"], capsys)
    line = _last_line(err)
    assert rc == 2 and "responses.zarr" in line and "zarr.json is not valid JSON" in line and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="mounting a tmpfs needs root")
def test_8_disk_full_names_the_store_and_the_space_and_loses_nothing(tmp_path, capsys):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rng = np.random.default_rng(0)
        small = rng.normal(size=(8, 20)).astype("f4")
        assert main(["ingest", "arrays", str(mnt / "s"), "--responses", str(_npy(tmp_path, small)),
                     "--area", "VISp"]) == 0
        before = store.open_dataset(mnt / "s" / "responses.zarr").load()
        big = _npy(tmp_path, rng.normal(size=(64, 16384)).astype("f4"), "big.npy")  # 4 MiB, incompressible
        rc, _, err = _cli(["ingest", "arrays", mnt / "s", "--responses", big, "--area", "VISp", "--overwrite"],
                          capsys)
        line = _last_line(err)
        assert rc == 2 and "Traceback" not in err and "Errno 28" not in err, err
        assert f"{mnt / 's' / 'responses.zarr'}: no space left on the device" in line and "GiB" in line
        xr.testing.assert_identical(store.open_dataset(mnt / "s" / "responses.zarr").load(), before)
        assert [p.name for p in (mnt / "s").iterdir() if p.name.startswith(".") and "lock" not in p.name] == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
