"""A study is one directory of Zarr stores; :func:`open_study` opens them lazily."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from . import schema as S
from .errors import MissingDataError
from .io.store import open_dataset, resolve_path
from .mapping.tree import open_scores


@dataclass(frozen=True)
class Study:
    """Handle on a study directory.  Every property opens a plain, lazy (Dask-backed) Dataset.

    Examples
    --------
    >>> st = open_study("neuroxr-demo")              # doctest: +SKIP
    >>> st.responses["mean"]                          # DataArray (neuron, image)
    >>> st.scores.ridge_r.groupby("area").mean().groupby("variant").max()   # the Ridge Max table
    >>> st.scores["areas"].rsa_r.sel(area="VISp")
    """

    path: Path

    def store(self, *parts) -> Path:
        return Path(self.path).joinpath(*parts)

    def has(self, *parts) -> bool:
        return self.store(*parts).exists()

    @property
    def stimuli(self) -> xr.Dataset:
        return open_dataset(self.store(S.STIMULI_STORE), name="stimuli; run `neuroxr ingest` or `neuroxr simulate`")

    @property
    def responses(self) -> xr.Dataset:
        return open_dataset(self.store(S.RESPONSES_STORE), name="responses; run `neuroxr ingest` or `neuroxr simulate`")

    @property
    def rdms(self) -> xr.Dataset:
        return open_dataset(self.store(S.RDMS_STORE), name="neural RDMs; run `neuroxr ingest rdms`")

    @property
    def scores(self) -> xr.DataTree:
        """``scores.zarr`` as a DataTree: neuron-level scores at the root, area-level in ``areas``."""
        return open_scores(self.store(S.SCORES_STORE))

    def feature_models(self) -> list[str]:
        d = self.store(S.FEATURES_DIR)
        if not d.exists():
            return []
        return sorted(p.name[: -len(".zarr")] for p in d.glob("*.zarr") if not p.name.startswith("."))

    def features(self, model: str) -> xr.Dataset:
        p = self.store(S.FEATURES_DIR, f"{model}.zarr")
        if not p.exists():
            have = self.feature_models()
            raise MissingDataError(f"{p} does not exist (features of {model!r}); extracted: {have or 'none'}")
        return open_dataset(p)


def open_study(path) -> Study:
    """Open the study directory ``path`` (it must exist; a path or a ``file://`` URL)."""
    p = resolve_path(path)
    if not p.is_dir():
        raise MissingDataError(f"{p} is not a study directory; create one with `neuroxr simulate {p}` or `neuroxr ingest`")
    return Study(p)
