"""SIGKILL at random points of `ingest --overwrite`, `select`, `extract`, `score` and `run`.

Each trial starts the command in its own process on a copy of the study as it was before the
command, kills it after a random delay (a fraction of how long the uninterrupted run took), then
checks that ``neuroxr verify`` passes, reruns the command, and compares every store with the
study the uninterrupted run left (``xarray.testing.assert_equal``: values, dims and coords).
Three trials run by default, 25 with ``-m slow``; most trials must be real kills (rc -9).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr.cli import main
from neuroxr.io import integrity, store
from neuroxr.mapping.tree import open_scores

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "NEUROXR_LOCK_TIMEOUT": "120"}
RUN_TOML = """
[study]
dir = "unused"
seed = 0

[ingest]
source = "simulate"
model = "alexnet"
n_images = 14
neurons_per_area = 4
n_trials = 4
image_size = 12

[select]
min_reliability = 0.0

[extract]
models = []
baselines = ["pixels"]

[score]
metrics = ["ridge", "rsa"]
"""


def _commands(inputs: Path) -> dict:
    """``{name: (argv after 'neuroxr' with STUDY as a placeholder, the step before it)}``."""
    return {
        "ingest": (["ingest", "arrays", "STUDY", "--images", inputs / "img.npy", "--responses", inputs / "resp.npy",
                    "--trials", inputs / "trials.npy", "--area", "VISp", "--overwrite"], None),
        "select": (["select", "STUDY", "--min-reliability", "0.1", "--n-splits", "20"], "ingest"),
        "extract": (["extract", "STUDY", "--model", "pixels"], "select"),
        "score": (["score", "STUDY", "--no-progress"], "extract"),
        "run": (["run", inputs / "run.toml", "--study", "STUDY"], None),
    }


def _argv(argv, study: Path) -> list[str]:
    return [str(study) if a == "STUDY" else str(a) for a in argv]


def _write_inputs(folder: Path) -> None:
    rng = np.random.default_rng(3)
    n_img, n_neu, n_tri = 14, 40, 6
    np.save(folder / "img.npy", rng.uniform(0, 255, (n_img, 12, 12)).astype("f4"))
    tr = rng.normal(size=(n_img, n_neu, n_tri)).astype("f4") + rng.normal(size=(n_img, n_neu, 1)).astype("f4")
    np.save(folder / "trials.npy", tr)
    np.save(folder / "resp.npy", tr.mean(axis=2))
    np.save(folder / "old_img.npy", rng.uniform(0, 255, (n_img, 12, 12)).astype("f4"))
    np.save(folder / "old_resp.npy", rng.normal(size=(n_img, 25)).astype("f4"))
    (folder / "run.toml").write_text(RUN_TOML)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Per command: the study before it, the study after an uninterrupted run, and how long it took."""
    root = tmp_path_factory.mktemp("kill")
    _write_inputs(root)
    before = root / "before-ingest"
    assert main(["ingest", "arrays", str(before), "--images", str(root / "old_img.npy"),
                 "--responses", str(root / "old_resp.npy"), "--area", "VISl"]) == 0
    out = {"root": root, "commands": _commands(root), "before": {"ingest": before}, "after": {}, "took": {}}
    return out


def _stage(stages, name):
    """(before, after, seconds) of ``name``, built on first use (uninterrupted runs in a subprocess)."""
    if name in stages["after"]:
        return stages["before"][name], stages["after"][name], stages["took"][name]
    argv, prev = stages["commands"][name]
    root = stages["root"]
    if name == "run":
        stages["before"][name] = root / "before-run"
        stages["before"][name].mkdir()
    elif prev is not None:
        stages["before"][name] = _stage(stages, prev)[1]
    after = root / f"after-{name}"
    shutil.copytree(stages["before"][name], after)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "neuroxr", *_argv(argv, after)], env=ENV, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    stages["after"][name], stages["took"][name] = after, time.monotonic() - t0
    return stages["before"][name], after, stages["took"][name]


def _stores(study: Path) -> dict:
    """Every contract store of a study as plain Datasets (scores: each group)."""
    out = {}
    for p in integrity.find_stores(study):
        rel = p.relative_to(study).as_posix()
        if rel.startswith("scores.parts"):
            continue
        if p.name == "scores.zarr":
            tree = open_scores(p)
            for path, node in tree.subtree_with_keys:
                out[f"{rel}/{path}"] = node.to_dataset(inherit=False).load()
        else:
            out[rel] = store.open_dataset(p).load()
    return out


def _assert_same_study(got: Path, want: Path) -> None:
    a, b = _stores(got), _stores(want)
    assert sorted(a) == sorted(b)
    for k in b:
        xr.testing.assert_equal(a[k], b[k])


def _trial(stages, name: str, rnd: random.Random, work: Path, capsys) -> bool:
    """One trial; True if the command was killed (False: it finished first)."""
    before, after, took = _stage(stages, name)
    argv, _ = stages["commands"][name]
    study = work / f"{name}-{rnd.random():.6f}"
    shutil.copytree(before, study)
    proc = subprocess.Popen([sys.executable, "-m", "neuroxr", *_argv(argv, study)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(rnd.uniform(0.15, 0.95) * took)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (-9, 0), err.decode()[-3000:]
    killed = proc.returncode == -9
    assert main(["verify", "--quiet", str(study)]) == 0, capsys.readouterr()
    assert main(_argv(argv, study)) == 0, capsys.readouterr()
    capsys.readouterr()
    _assert_same_study(study, after)
    assert main(["verify", "--quiet", str(study)]) == 0, capsys.readouterr()
    shutil.rmtree(study)
    return killed


def _trials(stages, names, seed, tmp_path, capsys):
    rnd = random.Random(seed)
    killed = [_trial(stages, name, rnd, tmp_path, capsys) for name in names]
    with capsys.disabled():
        print(f"\n{len(killed)} trials ({', '.join(names)}): {sum(killed)} killed mid-run, the rest finished first")
    assert sum(killed) >= max(1, (2 * len(killed)) // 3), f"only {sum(killed)} of {len(killed)} trials were killed"


def test_kill_trials_default(stages, tmp_path, capsys):
    _trials(stages, ["ingest", "select", "extract"], 14, tmp_path, capsys)


@pytest.mark.slow
def test_kill_trials_every_command(stages, tmp_path, capsys):
    names = ["ingest", "select", "extract", "score", "run"] * 5
    _trials(stages, names, 1414, tmp_path, capsys)
