"""Shared fixtures.  Tests never touch the network."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_allen_visp() -> Path | None:
    env = os.environ.get("NEUROXR_ALLEN_VISP")
    if env:
        return Path(env)
    for parent in [REPO, *REPO.parents]:
        cand = parent / "shared" / "data" / "allen_visp"
        if (cand / "allen_visp.npz").exists():
            return cand
    return None


ALLEN_VISP = _find_allen_visp()


def locate_allen_visp(folder: Path | None = None) -> Path:
    """``allen_visp.npz`` of the shared real VISp recordings (``../shared/data/allen_visp`` beside
    the repository, or ``$NEUROXR_ALLEN_VISP``).  When they are absent the test is skipped, or
    fails when the environment variable ``CI`` is set (CI must run every test)."""
    folder = ALLEN_VISP if folder is None else folder
    if folder is None or not (folder / "allen_visp.npz").exists():
        msg = (f"shared Allen VISp recordings not found ({folder or REPO.parent / 'shared/data/allen_visp'}; "
               "set NEUROXR_ALLEN_VISP)")
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI is set, so tests needing them fail instead of skipping")
        pytest.skip(msg)
    return folder / "allen_visp.npz"


@pytest.fixture(scope="session")
def allen_visp_npz() -> Path:
    """Path of the shared real VISp recordings (see :func:`locate_allen_visp`)."""
    return locate_allen_visp()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
