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


def _conwell2021(df: pd.DataFrame):
    """Conwell et al. (2021): the rows marked ``in_paper`` (its torchvision and timm architectures, its 24
    Taskonomy encoders and its random Taskonomy encoder) and neuroxr's non-network baselines."""
    paper = df["in_paper"] if "in_paper" in df else pd.Series(False, index=df.index)
    return paper.fillna(False).astype(bool) | (df["family"] == "baseline")


#: named selections of the shipped catalogue (``--catalog NAME``): row filters over models.csv + taskonomy.csv
SELECTIONS = {"conwell2021": _conwell2021}


def find_selection(name):
    """The row filter of the selection ``name`` (``'conwell2021'``), or None for anything else (a path)."""
    if not isinstance(name, str):
        return None
    return SELECTIONS.get(name.strip().lower())


def read_catalog(name: str) -> pd.DataFrame:
    """Read the catalog ``name`` (a file name in the catalogs directory, or a path) as a DataFrame."""
    path = find_catalog(name)
    return pd.read_csv(path, comment="#", keep_default_na=False, na_values=[""])


__all__ = ["SELECTIONS", "find_catalog", "find_catalog_dir", "find_selection", "read_catalog"]
