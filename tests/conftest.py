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


@pytest.fixture(scope="session")
def allen_visp_npz() -> Path:
    """Path of the shared real VISp recordings (skips cleanly when absent)."""
    if ALLEN_VISP is None or not (ALLEN_VISP / "allen_visp.npz").exists():
        pytest.skip("shared Allen VISp recordings not found (set NEUROXR_ALLEN_VISP)")
    return ALLEN_VISP / "allen_visp.npz"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
