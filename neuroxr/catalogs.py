"""Locate and read the CSV catalogs shipped with neuroxr (``catalogs/*.csv``).

With an editable install the catalogs live in the repository's top-level ``catalogs/``
directory; an installed wheel carries them as package data in ``neuroxr/catalogs/``.
``NEUROXR_CATALOGS`` (a directory) overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import MissingDataError

_HERE = Path(__file__).resolve().parent


def find_catalog_dir() -> Path:
    """The directory holding the catalogs (``NEUROXR_CATALOGS``, repo ``catalogs/``, or package data)."""
    env = os.environ.get("NEUROXR_CATALOGS")
    candidates = [Path(env)] if env else []
    candidates += [_HERE.parent / "catalogs", _HERE / "catalogs"]
    for c in candidates:
        if c.is_dir():
            return c
    raise MissingDataError(
        f"no catalogs directory found (looked in {', '.join(str(c) for c in candidates)}); "
        "set NEUROXR_CATALOGS to the directory holding models.csv"
    )


def find_catalog(name: str) -> Path:
    """Path of the catalog ``name`` (e.g. ``'models.csv'``)."""
    p = Path(name)
    if p.suffix and p.exists():
        return p
    path = find_catalog_dir() / (name if name.endswith(".csv") else f"{name}.csv")
    if not path.exists():
        raise MissingDataError(f"catalog {path} does not exist")
    return path


def read_catalog(name: str) -> pd.DataFrame:
    """Read the catalog ``name`` (a file name in the catalogs directory, or a path) as a DataFrame."""
    path = find_catalog(name)
    return pd.read_csv(path, comment="#", keep_default_na=False, na_values=[""])
