"""Locate and read the CSV catalogs shipped with neuroxr.

The catalogs are package data (``neuroxr/data/catalogs/*.csv``, read through
:mod:`importlib.resources`), so an installed wheel carries them; a checkout also has them at
``catalogs/`` (a link to that folder).  ``NEUROXR_CATALOGS`` (a directory) overrides both.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

from .errors import MissingDataError


def find_catalog_dir() -> Path:
    """The directory holding the catalogs (``NEUROXR_CATALOGS``, else the package data)."""
    env = os.environ.get("NEUROXR_CATALOGS")
    if env:
        if not Path(env).is_dir():
            raise MissingDataError(f"NEUROXR_CATALOGS={env} is not a directory; point it at the folder "
                                   "holding models.csv, or unset it to use the shipped catalogs")
        return Path(env)
    shipped = Path(str(resources.files("neuroxr") / "data" / "catalogs"))
    if not shipped.is_dir():
        raise MissingDataError(f"the shipped catalogs are missing ({shipped}); reinstall neuroxr, or set "
                               "NEUROXR_CATALOGS to the directory holding models.csv")
    return shipped


def find_catalog(name: str) -> Path:
    """Path of the catalog ``name`` (e.g. ``'models.csv'``, ``'taskonomy'``), or ``name`` itself when it is a file."""
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


__all__ = ["find_catalog_dir", "find_catalog", "read_catalog"]
