"""CSV tables: plain numeric tables, neuron metadata tables and RDM upper triangles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..errors import MissingDataError
from ..schema import SchemaError
from .reader import check_allocation

SUFFIXES = (".csv", ".txt", ".tsv")

#: metadata column / coordinate names mapped to the neuron coords of the contract
META_ALIASES = {
    "region": "area", "targeted_structure": "area", "brain_area": "area",
    "cre": "cre_line", "creline": "cre_line", "cre-line": "cre_line",
    "depth": "depth_um", "imaging_depth": "depth_um", "depth_um": "depth_um",
    "experiment_container_id": "container", "container_id": "container",
    "p_run_mod_ns": "p_run_mod", "p_ns": "p_image", "reliability": "splithalf_r",
}


def csv_sep(path: Path) -> str:
    """The separator of a text table, from its first line: tab, semicolon or comma."""
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    if "\t" in head:
        return "\t"
    if ";" in head and "," not in head:
        return ";"
    return ","


def read_csv_table(path, *, header="infer", what="a CSV table") -> pd.DataFrame:
    """Read a text table with the separator of :func:`csv_sep`; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist ({what})")
    # every value takes at least 2 bytes of text ("0,") and 8 in memory
    check_allocation(4 * path.stat().st_size, f"{path} ({what}, {path.stat().st_size} bytes of text)")
    try:
        return pd.read_csv(path, sep=csv_sep(path), header=header)
    except Exception as exc:  # pandas raises many kinds for damaged text
        raise SchemaError(f"{path}: cannot be read as {what} ({exc})") from exc


def read_numeric_table(path) -> np.ndarray:
    """A headerless numeric CSV/TSV/TXT as an array (rows first)."""
    return read_csv_table(path, header=None, what="a table").to_numpy()


def normalise_meta(df: pd.DataFrame, source=None) -> pd.DataFrame:
    """Metadata columns renamed to the contract's neuron coords (``region`` -> ``area``, ...)."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    ren = {c: META_ALIASES[c.lower()] for c in df.columns
           if c.lower() in META_ALIASES and c != META_ALIASES[c.lower()]}
    for c, new in ren.items():
        if new in df.columns:
            raise SchemaError(f"{source}: both columns {c!r} and {new!r} given; keep one")
    return df.rename(columns=ren)


def read_neuron_table(spec) -> pd.DataFrame:
    """Read a neuron metadata CSV (one row per neuron); column names mapped to the contract."""
    path = Path(spec)
    return normalise_meta(read_csv_table(path, what="neuron metadata, a CSV table"), source=path)


def read_rdm_csv(path, sites=None) -> tuple[np.ndarray, list]:
    """RDMs from a CSV: one column per site, rows the upper triangle above the diagonal, row-major.

    Returns
    -------
    rdm : ndarray (site, image, image)
    sites : list of str
    """
    path = Path(path)
    df = read_csv_table(path, what="RDMs, a CSV table")
    m = len(df)
    n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    if n * (n - 1) // 2 != m or m == 0:
        raise SchemaError(
            f"{path}: {m} rows is not an upper triangle n(n-1)/2 of any image count; "
            f"give the entries above the diagonal, row by row"
        )
    bad = [c for c in df.columns if df[c].dtype.kind not in "iuf"]
    if bad:
        raise SchemaError(f"{path}: column {bad[0]!r} is not numeric (e.g. {df[bad[0]].iloc[0]!r})")
    vals = df.to_numpy(dtype=np.float64)
    S.check_finite(vals, "rdm", path)
    iu = np.triu_indices(n, k=1)
    rdm = np.zeros((vals.shape[1], n, n))
    rdm[:, iu[0], iu[1]] = vals.T
    rdm[:, iu[1], iu[0]] = vals.T
    names = [str(c) for c in df.columns]
    if sites is not None:
        if len(sites) != len(names):
            raise SchemaError(f"{path}: {len(sites)} site names {list(sites)} for {len(names)} columns {names}")
        names = list(sites)
    return rdm, names


__all__ = ["csv_sep", "read_csv_table", "read_numeric_table", "normalise_meta", "read_neuron_table",
           "read_rdm_csv", "META_ALIASES", "SUFFIXES"]
