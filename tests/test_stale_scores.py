"""A study's scores are never silently wrong (issue 14, scoring side).

- item 3: features are fingerprinted by content: identical rebuilt features are not rescored,
  changed ones are even when every attribute (the creation time included) is the old one;
- item 1: a features store without ``gram_z`` or responses without ``mean`` is an error naming
  the store and the variable (not all-NaN scores); a penalty like 1e-320 is refused;
- item 5: two writers of one study's scores never interleave: the second waits for the scores
  lock, then stops naming the holder, and the scores hold every layer.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from neuroxr import schema as S
from neuroxr.errors import NeuroxrError
from neuroxr.io import store
from neuroxr.io.lock import StoreLockedError
from neuroxr.mapping import guard, kernels, score

REPO = Path(__file__).resolve().parents[1]
N, NEURONS = 24, 10


def _features(Xs: dict, model="m") -> xr.Dataset:
    names, L = list(Xs), len(Xs)
    zs = [StandardScaler().fit_transform(X) for X in Xs.values()]
    return xr.Dataset(
        {"gram": (("layer", "image", "image_j"), np.stack([X @ X.T for X in Xs.values()])),
         "gram_z": (("layer", "image", "image_j"), np.stack([Z @ Z.T for Z in zs])),
         "feature_sum": (("layer", "image"), np.stack([X.sum(1) for X in Xs.values()]))},
        coords={"layer": [S.layer_id(model, "trained", nm) for nm in names], "image": np.arange(N),
                "image_j": np.arange(N), "model": ("layer", [model] * L), "layer_name": ("layer", names),
                "depth": ("layer", np.arange(L)), "relative_depth": ("layer", np.arange(L) / max(1, L - 1)),
                "weights": ("layer", ["trained"] * L), "family": ("layer", ["cnn"] * L),
                "n_features": ("layer", [X.shape[1] for X in Xs.values()]), "finite": ("layer", [True] * L)},
        attrs={"created": "2026-01-01T00:00:00", "settings": '{"srp": null}', "inputs": '{"stimuli": "abc"}'})


def _responses(Y) -> xr.Dataset:
    return xr.Dataset({"mean": (("neuron", "image"), Y.T.astype(np.float32))},
                      coords={"neuron": np.arange(NEURONS), "image": np.arange(N),
                              "area": ("neuron", np.array(["VISp", "VISl"])[np.arange(NEURONS) % 2]),
                              "cre_line": ("neuron", ["Cux2"] * NEURONS), "depth_um": ("neuron", np.full(NEURONS, 175.0))})


def _data(seed=0, ps=(15, 40)):
    rng = np.random.default_rng(seed)
    Xs = {f"l{i}": rng.standard_normal((N, p)) for i, p in enumerate(ps)}
    Y = (Xs["l0"][:, :3] @ rng.standard_normal((3, NEURONS)) + rng.standard_normal((N, NEURONS)))
    return Xs, Y.astype(np.float32).astype(np.float64)


def _sklearn_r(X, Y, alpha=1.0):
    pred = RidgeCV(alphas=[alpha], store_cv_results=True, scoring="neg_mean_squared_error").fit(StandardScaler().fit_transform(X), Y).cv_results_[..., 0]
    return np.array([np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])])


@pytest.fixture
def study(tmp_path):
    Xs, Y = _data()
    root = tmp_path / "study"
    store.write_dataset(_responses(Y), root / S.RESPONSES_STORE)
    store.write_dataset(_features(Xs), root / S.FEATURES_DIR / "m.zarr")
    return root, Xs, Y


# ------------------------------------------------------------------------------ item 3
def test_identical_rebuilt_features_are_not_rescored(study):
    root, Xs, _ = study
    score.score_study(root, metrics=("ridge",))
    rebuilt = _features(Xs)
    rebuilt.attrs["created"] = "2026-12-01T12:00:00"  # a new time, the same content
    shutil.rmtree(root / S.FEATURES_DIR / "m.zarr")
    store.write_dataset(rebuilt, root / S.FEATURES_DIR / "m.zarr")
    logs = []
    score.score_study(root, metrics=("ridge",), log=logs.append)
    assert any("m: already scored" in m for m in logs), logs


def test_changed_features_with_old_time_are_rescored(study):
    root, _, Y = study
    score.score_study(root, metrics=("ridge",))
    Xs2, _ = _data(seed=5)
    shutil.rmtree(root / S.FEATURES_DIR / "m.zarr")
    store.write_dataset(_features(Xs2), root / S.FEATURES_DIR / "m.zarr")  # same attrs, same time
    logs = []
    score.score_study(root, metrics=("ridge",), log=logs.append)
    assert not any("already scored" in m for m in logs), logs
    got = store.open_dataset(root / S.SCORES_STORE).ridge_r.load()
    for i, X in enumerate(Xs2.values()):
        np.testing.assert_allclose(got[i].values, _sklearn_r(X, Y), atol=1e-6)


def test_fingerprint_ignores_time_and_sees_content(tmp_path):
    Xs, _ = _data()
    a, b, c = (tmp_path / f"{k}.zarr" for k in "abc")
    store.write_dataset(_features(Xs), a)
    late = _features(Xs)
    late.attrs["created"] = "2030-01-01"
    store.write_dataset(late, b)
    Xs["l1"] = Xs["l1"].copy()
    Xs["l1"][0, 0] += 1e-9
    store.write_dataset(_features(Xs), c)
    assert guard.fingerprint_store(a) == guard.fingerprint_store(b) != guard.fingerprint_store(c)


# ------------------------------------------------------------------------------ item 1
def test_missing_gram_z_is_an_error_naming_store_and_variable(study):
    root = study[0]
    shutil.rmtree(root / S.FEATURES_DIR / "m.zarr" / "gram_z")
    # the store's manifest (checked on open) or the scoring guard names it, whichever sees it first
    with pytest.raises(NeuroxrError, match=r"m\.zarr.*'gram_z'"):
        score.score_study(root, metrics=("ridge",))
    assert not (root / S.SCORES_STORE).exists()


def test_missing_mean_is_an_error_naming_store_and_variable(study):
    root = study[0]
    shutil.rmtree(root / S.RESPONSES_STORE / "mean")
    with pytest.raises(NeuroxrError, match=r"responses\.zarr.*'mean'"):
        score.score_study(root, metrics=("ridge",))


def test_cli_missing_gram_z_one_line_nonzero(study):
    root = study[0]
    shutil.rmtree(root / S.FEATURES_DIR / "m.zarr" / "gram_z")
    proc = subprocess.run([sys.executable, "-m", "neuroxr", "score", str(root), "--metric", "ridge"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "gram_z" in proc.stderr, proc.stderr


@pytest.mark.parametrize("alpha", [1e-320, 0.0])
def test_subnormal_alpha_refused(study, alpha):
    with pytest.raises(NeuroxrError, match="alpha"):
        score.score_study(study[0], metrics=("ridge",), alpha=alpha)


def test_alpha_tiny_against_gram_scale_refused():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 1000))
    K = (X @ X.T)[None] * 1e6  # trace / n ~ 1e9
    with pytest.raises(kernels.AlphaScaleError, match=r"trace/n"):
        kernels.calc_residual_operators(K, (1e-10,))
    R = kernels.calc_residual_operators(K, (1e-3,))  # above the floor: finite
    assert np.isfinite(R).all()


# ------------------------------------------------------------------------------ item 5
HOLD = textwrap.dedent("""
    import sys, time
    from neuroxr.mapping.guard import scores_lock
    with scores_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_second_writer_waits_then_names_the_holder(study):
    root = study[0]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root), "30"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        with pytest.raises(StoreLockedError, match=rf"{holder.pid}@{socket.gethostname()}"):
            score.score_study(root, metrics=("ridge",), lock_timeout=1.0)
        assert time.monotonic() - t >= 1.0
        assert not (root / S.SCORES_STORE).exists()
    finally:
        holder.kill()
        holder.wait()
    score.score_study(root, metrics=("ridge",), lock_timeout=5.0)  # released with its process
    assert (root / S.SCORES_STORE).exists()


def test_two_concurrent_score_runs_leave_whole_scores(study):
    root, Xs, Y = study
    for k in range(2, 6):  # more models: the runs overlap
        Xk, _ = _data(seed=k)
        store.write_dataset(_features(Xk, model=f"m{k}"), root / S.FEATURES_DIR / f"m{k}.zarr")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmds = [[sys.executable, "-m", "neuroxr", "score", str(root), "--metric", "ridge", "--alpha", a] for a in ("1", "10")]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cmds]
    outs = [p.communicate(timeout=600) for p in procs]
    rcs = [p.returncode for p in procs]
    assert sorted(rcs)[0] == 0 and sorted(rcs)[1] != 0, (rcs, outs)
    loser = outs[rcs.index(next(r for r in rcs if r != 0))][1]
    assert "alpha" in loser and "Traceback" not in loser, loser
    sc = store.open_dataset(root / S.SCORES_STORE).load()
    assert sc.sizes["layer"] == 2 * 5
    winner_alpha = float(cmds[rcs.index(0)][-1])
    assert store.read_settings(sc)["alphas"] == [winner_alpha]
    got = sc.ridge_r.sel(layer=S.layer_id("m", "trained", "l1")).values
    np.testing.assert_allclose(got, _sklearn_r(Xs["l1"], Y, winner_alpha), atol=1e-6)
