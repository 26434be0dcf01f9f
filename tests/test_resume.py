"""Crash-safe resume: SIGKILL `neuroxr extract` / `neuroxr score` at random (seeded) points, resume,
and check the stores equal those of an uninterrupted run exactly.

Kill points are drawn two ways, alternately: at the moment a unit's temporary store appears
(plus a random delay of 0-300 ms, so the kill lands mid-write) and at a uniformly random time
during the run.  After every kill, before resuming, the visible stores must all be whole
(every chunk passes its checksum) and a visible ``scores.zarr`` must already equal the
reference (it is only ever replaced whole).

CI runs a few trials of each; the full 24 (12 extract + 12 score) are marked slow:
``pytest -m slow -s tests/test_resume.py`` (``NEUROXR_RESUME_TRIALS=N`` for N of each).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr import schema as S
from neuroxr.io import integrity

NEUROXR = str(Path(sys.executable).parent / "neuroxr")
VOLATILE_ATTRS = ("created",)  # timestamps: the only attributes allowed to differ


# ------------------------------------------------------------------------------ helpers
def _strip(ds: xr.Dataset, volatile=VOLATILE_ATTRS) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in volatile}
    return ds


def _stores(study: Path) -> list[str]:
    return sorted(str(p.relative_to(study)) for p in integrity.find_stores(study)
                  if p.parent.name != "scores.parts")


def assert_studies_equal(got: Path, want: Path, names=None, volatile=VOLATILE_ATTRS) -> None:
    """Every store of ``want`` exists in ``got`` and is identical (values, dims, coords, dtypes,
    attributes except timestamps and the other ``volatile`` ones)."""
    names = names or _stores(want)
    assert [n for n in names if n not in _stores(got)] == []
    for name in names:
        a = _strip(xr.open_zarr(got / name).load(), volatile)
        b = _strip(xr.open_zarr(want / name).load(), volatile)
        try:
            xr.testing.assert_identical(a, b)
        except AssertionError as exc:
            raise AssertionError(f"{name} differs after resume: {exc}") from None


def _has_tmp(study: Path) -> bool:
    for _, dirs, _ in os.walk(study):
        if any(".tmp-" in d for d in dirs):
            return True
    return False


def run_cli(args, timeout=600):
    res = subprocess.run([NEUROXR, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"neuroxr {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}"
    return res


def kill_at(args, study: Path, mode: str, rng, duration: float) -> tuple[bool, float]:
    """Start ``neuroxr ARGS``, SIGKILL it at a point chosen by ``mode``; (killed?, seconds)."""
    proc = subprocess.Popen([NEUROXR, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.monotonic()
    if mode == "tmp":  # when a unit is being written, plus 0-300 ms
        jitter = float(rng.uniform(0.0, 0.3))
        while proc.poll() is None and not _has_tmp(study) and time.monotonic() - t0 < 300:
            time.sleep(0.003)
        deadline = time.monotonic() + jitter
    else:  # uniformly random over the run
        deadline = t0 + float(rng.uniform(0.05, 0.9)) * duration
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.003)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if killed:  # the kill itself ended it (not a run that finished or failed on its own)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    return killed, time.monotonic() - t0


def check_after_kill(study: Path, reference: Path) -> None:
    """What a reader sees after a crash: only whole stores, never a half-written one."""
    errors = [p for p in integrity.verify_study(study) if p.is_error]
    assert errors == [], errors
    if (study / S.SCORES_STORE).exists():  # replaced whole, so it is the final one already
        assert_studies_equal(study, reference, [S.SCORES_STORE])


# ------------------------------------------------------------------------------ studies
N_IMAGES = 14


def make_base_study(root: Path) -> Path:
    """Responses (areas, cre lines) and small random stimuli: no features, no scores."""
    import pandas as pd

    from neuroxr.io.arrays import ingest_arrays

    rng = np.random.default_rng(0)
    study = root / "base"
    imgs = rng.random((N_IMAGES, 24, 24)).astype("f4")
    latent = imgs.reshape(N_IMAGES, -1) @ rng.standard_normal((24 * 24, 5))
    n = 36
    resp = latent @ rng.standard_normal((5, n)) + rng.standard_normal((N_IMAGES, n))
    meta = pd.DataFrame({"area": np.array(["VISp", "VISl", "VISam"])[np.arange(n) % 3],
                         "cre_line": "Cux2-CreERT2", "depth_um": 175.0})
    ingest_arrays(study, images=imgs, responses=resp, neurons=meta)
    return study


def write_synthetic_features(study: Path, n_models=6, n_layers=5, n_features=20) -> None:
    """Features stores in the layout `neuroxr score` reads (gram, gram_z, feature_sum)."""
    from neuroxr.io import store

    for m in range(n_models):
        rng = np.random.default_rng([1, m])
        X = rng.standard_normal((n_layers, N_IMAGES, n_features)) + rng.random(n_features)
        Z = (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)
        model = f"synth{m}"
        names = [f"l{i}" for i in range(n_layers)]
        ds = xr.Dataset(
            {"gram": ((S.LAYER, S.IMAGE, S.IMAGE_J), np.einsum("lif,ljf->lij", X, X)),
             "gram_z": ((S.LAYER, S.IMAGE, S.IMAGE_J), np.einsum("lif,ljf->lij", Z, Z)),
             "feature_sum": ((S.LAYER, S.IMAGE), X.sum(2))},
            coords={S.LAYER: [S.layer_id(model, "random", n) for n in names], "model": (S.LAYER, [model] * n_layers),
                    "layer_name": (S.LAYER, names), "depth": (S.LAYER, np.arange(n_layers)),
                    "relative_depth": (S.LAYER, np.linspace(0, 1, n_layers)),
                    "weights": (S.LAYER, ["random"] * n_layers), "family": (S.LAYER, ["baseline"] * n_layers),
                    "n_features": (S.LAYER, np.full(n_layers, n_features)),
                    S.IMAGE: np.arange(N_IMAGES), S.IMAGE_J: np.arange(N_IMAGES)},
            attrs=store.provenance({"synthetic": True}, {}),
        )
        store.write_dataset(ds, study / S.FEATURES_DIR / f"{model}.zarr")


def _extract_available() -> bool:
    from neuroxr.cli import build_parser

    try:
        build_parser().parse_args(["extract", "x", "--model", "pixels"])
        return True
    except SystemExit:
        return False


EXTRACT_MODELS = ["pixels", "gabor"]  # CI: two baselines
# slow: and a small network (64 layers); NEUROXR_RESUME_EXTRACT_MODELS=a,b overrides
EXTRACT_MODELS_SLOW = os.environ.get("NEUROXR_RESUME_EXTRACT_MODELS", "pixels,gabor,squeezenet1_1").split(",")


def extract_args(study: Path, models=EXTRACT_MODELS) -> list[str]:
    args = ["extract", str(study)]
    for m in models:
        args += ["--model", m]
    return args + ["--weights", "random"]


def extract_args_slow(study: Path) -> list[str]:
    return extract_args(study, EXTRACT_MODELS_SLOW)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def score_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-score")
    base = make_base_study(root)
    write_synthetic_features(base)
    ref = root / "ref"
    shutil.copytree(base, ref)
    t0 = time.monotonic()
    run_cli(["score", str(ref)])
    return root, base, ref, time.monotonic() - t0


def _extract_setup(tmp_path_factory, make_args):
    if not _extract_available():
        pytest.skip("`neuroxr extract` is not available yet")
    root = tmp_path_factory.mktemp("resume-extract")
    base = make_base_study(root)
    ref = root / "ref"
    shutil.copytree(base, ref)
    t0 = time.monotonic()
    run_cli(make_args(ref))
    return root, base, ref, time.monotonic() - t0


@pytest.fixture(scope="module")
def extract_setup(tmp_path_factory):
    return _extract_setup(tmp_path_factory, extract_args)


@pytest.fixture(scope="module")
def extract_setup_slow(tmp_path_factory):
    return _extract_setup(tmp_path_factory, extract_args_slow)


_FASTEST: dict = {}  # fastest complete run seen per setup: the uniform kill times scale with it


def _trial(setup, i, seed, make_args):
    root, base, ref, duration = setup
    duration = min(duration, _FASTEST.get(str(root), duration))
    rng = np.random.default_rng([seed, i])
    study = root / f"trial{i}"
    if study.exists():
        shutil.rmtree(study)
    shutil.copytree(base, study)
    mode = "tmp" if i % 2 == 0 else "uniform"
    killed, when = kill_at(make_args(study), study, mode, rng, duration)
    if not killed:  # it finished first: a complete run, whose time bounds the next draws
        _FASTEST[str(root)] = min(duration, when)
    check_after_kill(study, ref)
    run_cli(make_args(study))  # resume
    assert_studies_equal(study, ref)
    assert [p for p in integrity.verify_study(study) if p.is_error] == []
    shutil.rmtree(study)
    return killed, when


def _score_args(study):
    return ["score", str(study)]


# ------------------------------------------------------------------------------ tests
def test_score_reference_is_complete(score_setup):
    _, _, ref, _ = score_setup
    ds = xr.open_zarr(ref / S.SCORES_STORE)
    assert ds.sizes[S.LAYER] == 30 and ds.sizes[S.NEURON] == 36
    assert np.isfinite(ds[S.RIDGE_R].values).all()


def _parts(study: Path) -> list[str]:
    d = study / "scores.parts"
    return sorted(p.name for p in d.glob("*.zarr") if not p.name.startswith(".")) if d.exists() else []


def test_score_killed_between_parts_resumes_the_rest(score_setup):
    """SIGKILL once the first parts are whole: the kill happened (-9), some parts exist and not all."""
    root, base, ref, _ = score_setup
    study = root / "between"
    shutil.copytree(base, study)
    proc = subprocess.Popen([NEUROXR, *_score_args(study)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and not _parts(study) and time.monotonic() - t0 < 300:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _parts(study)
    assert 1 <= len(done) < 6, done
    check_after_kill(study, ref)
    run_cli(_score_args(study))
    assert len(_parts(study)) == 6
    assert_studies_equal(study, ref)
    shutil.rmtree(study)


@pytest.mark.parametrize("i", range(2))
def test_score_killed_and_resumed_ci(score_setup, i):
    _trial(score_setup, i, 2024, _score_args)


SLOW_TRIALS = int(os.environ.get("NEUROXR_RESUME_TRIALS", "12"))


def _report(what, outcomes):
    killed = [round(t, 2) for k, t in outcomes if k]
    print(f"\n{what}: {len(outcomes)} trials, {len(killed)} killed mid-run at (s) {killed}; all resumed identical")


@pytest.mark.slow
def test_score_killed_and_resumed_12_trials(score_setup):
    outcomes = [_trial(score_setup, 100 + i, 7, _score_args) for i in range(SLOW_TRIALS)]
    _report("score", outcomes)
    assert sum(k for k, _ in outcomes) >= 0.6 * len(outcomes), outcomes  # most really were killed mid-run


@pytest.mark.parametrize("i", range(2))
def test_extract_killed_and_resumed_ci(extract_setup, i):
    _trial(extract_setup, i, 2024, extract_args)


@pytest.mark.slow
def test_extract_killed_and_resumed_12_trials(extract_setup_slow):
    outcomes = [_trial(extract_setup_slow, 100 + i, 7, extract_args_slow) for i in range(SLOW_TRIALS)]
    _report("extract", outcomes)
    assert sum(k for k, _ in outcomes) >= 0.6 * len(outcomes), outcomes


def test_assert_studies_equal_detects_a_change(score_setup, tmp_path):
    """The comparison itself can fail: one changed value in scores.zarr is caught."""
    _, _, ref, _ = score_setup
    other = tmp_path / "other"
    shutil.copytree(ref, other)
    ds = xr.open_zarr(other / S.SCORES_STORE).load()
    ds[S.RIDGE_R][0, 0] = ds[S.RIDGE_R][0, 0] + 1e-6
    from neuroxr.io import store

    store.write_dataset(ds, other / S.SCORES_STORE, overwrite=True)
    with pytest.raises(AssertionError, match="scores.zarr differs"):
        assert_studies_equal(other, ref)


# ------------------------------------------------------------------------------ store-level units
def _tiny(v):
    return xr.Dataset({"x": ("i", np.full(3, float(v)))})


def test_replace_store_swaps_whole_stores(tmp_path):
    from neuroxr.io import store

    p = tmp_path / "s.zarr"
    store.write_dataset(_tiny(1), p)
    store.write_dataset(_tiny(2), p, overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(p).x.values, [2.0] * 3)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["s.zarr"]


def test_clean_stale_restores_a_store_moved_aside_by_a_killed_run(tmp_path):
    """Killed between `store -> .store.old-*` and `.store.tmp-* -> store`: the old store comes back."""
    from neuroxr.io import store

    p = tmp_path / "responses.zarr"
    store.write_dataset(_tiny(1), p)
    os.replace(p, tmp_path / ".responses.zarr.old-1a2b3c4d")
    store.write_dataset(_tiny(2), tmp_path / ".responses.zarr.tmp-5e6f7a8b")
    removed = store.clean_stale(tmp_path)
    assert [q.name for q in removed] == [".responses.zarr.tmp-5e6f7a8b"]
    np.testing.assert_array_equal(xr.open_zarr(p).x.values, [1.0] * 3)
    # with the store in place, an .old- copy is just stale
    store.write_dataset(_tiny(3), tmp_path / ".responses.zarr.old-00000000")
    store.clean_stale(tmp_path)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["responses.zarr"]
    np.testing.assert_array_equal(xr.open_zarr(p).x.values, [1.0] * 3)


def test_clean_stale_leaves_running_writers_alone(tmp_path):
    """Another worker's temporary store (live pid) survives; a dead writer's is removed."""
    import socket

    from neuroxr.io import store

    live = store.tmp_sibling(tmp_path / "a.zarr")  # this process: alive
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    dead = tmp_path / f".b.zarr.tmp-0123abcd-p{dead_proc.pid}@{socket.gethostname()}"
    foreign = tmp_path / ".c.zarr.tmp-4567abcd-p1@some-other-node.cluster"
    legacy = tmp_path / ".d.zarr.tmp-89abcdef"
    for p in (live, dead, foreign, legacy):
        p.mkdir()
    removed = store.clean_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead.name, legacy.name])
    assert live.exists() and foreign.exists()
    old = time.time() - 7 * 3600
    os.utime(foreign, (old, old))
    assert [p.name for p in store.clean_stale(tmp_path)] == [foreign.name]
    kinds = {p.store: p.kind for p in integrity.verify_study(tmp_path)}
    assert kinds == {str(live): "in-progress"}
