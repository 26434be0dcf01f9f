"""The ``.nxr`` xarray accessor: the paper's tables in one line, on plain Datasets and DataArrays.

Examples
--------
>>> scores = neuroxr.open_study("demo").scores                        # doctest: +SKIP
>>> scores.ridge_r.nxr.area_means()          # (layer, area): mean over each area's neurons
>>> scores.ridge_r.nxr.max_over_layers()     # (model, area): the "Max" table
>>> scores.ridge_r.nxr.best_layer()          # Dataset (model, area): score, best_layer, relative_depth
>>> scores.nxr.rsa_r                         # rsa_r with its area labels as the ``area`` index
>>> scores.nxr.table()                       # long DataFrame: model, weights, area, metric, score, ...

Plain xarray works too: ``scores.ridge_r.groupby("area").mean().groupby("model").max()``.

Models are told apart by ``model`` and, when one model name has several ``weights``
(trained and random), by ``weights`` as well: the result then has both dims.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from . import schema as S

AREA_NAME = "area_name"
_METRIC_OF_VAR = {"ridge_r": "ridge", "rsa_r": "rsa", "srp_ridge_r": "srp-ridge", "pls_r": "pls"}


def _labelled(da: xr.DataArray) -> xr.DataArray:
    """Give an (…, area) score its area labels (stored as ``area_name``) as the ``area`` index."""
    if S.AREA in da.dims and AREA_NAME in da.coords and S.AREA not in da.indexes:
        da = da.assign_coords({S.AREA: np.asarray(da[AREA_NAME].values).astype(str)}).drop_vars(AREA_NAME)
    return da


def _model_keys(da: xr.DataArray) -> list[str]:
    if "model" not in da.coords:
        raise S.SchemaError(f"{da.name or 'scores'}: layer coordinate 'model' is missing")
    if "weights" in da.coords:
        pairs = pd.DataFrame({"m": np.asarray(da["model"].values), "w": np.asarray(da["weights"].values)})
        if (pairs.groupby("m").w.nunique() > 1).any():
            return ["model", "weights"]
    return ["model"]


@xr.register_dataarray_accessor("nxr")
class NxrDataArrayAccessor:
    """Domain methods of a score DataArray (``ridge_r`` (layer, neuron), ``rsa_r`` (layer, area), ...)."""

    def __init__(self, obj: xr.DataArray):
        self._obj = obj

    @property
    def labelled(self) -> xr.DataArray:
        """The array with area labels as the ``area`` index (for ``rsa_r``)."""
        return _labelled(self._obj)

    def area_means(self, by: str = S.AREA, skipna: bool = True) -> xr.DataArray:
        """Mean over each group's neurons (layer, area); arrays with an area dim are returned labelled."""
        da = _labelled(self._obj)
        if S.NEURON in da.dims:
            if by not in da.coords:
                raise S.SchemaError(f"{da.name}: neuron coordinate {by!r} is missing")
            return da.groupby(by).mean(skipna=skipna)
        return da

    def max_over_layers(self, by: str = S.AREA) -> xr.DataArray:
        """Per model (and weights), the maximum over layers of the area means: the paper's "Max" table.

        Returns
        -------
        DataArray (model[, weights], area)
        """
        da = self.area_means(by) if S.LAYER in self._obj.dims else self._obj
        keys = _model_keys(da)
        return da.groupby(keys if len(keys) > 1 else keys[0]).max(skipna=True)

    def best_layer(self, by: str = S.AREA) -> xr.Dataset:
        """Per model (and weights) and area: the best layer, its score and its (relative) depth.

        Returns
        -------
        Dataset (model[, weights], area): ``score``, ``best_layer`` (layer_name), ``layer`` (id),
        ``depth``, ``relative_depth``.
        """
        da = self.area_means(by)
        keys = _model_keys(da)
        df = _long_frame(da, "score")
        group_cols = keys + [c for c in da.dims if c != S.LAYER]
        df = df.dropna(subset=["score"])
        best = df.loc[df.groupby(group_cols, sort=True)["score"].idxmax()]
        best = best.rename(columns={"layer_name": "best_layer"})
        cols = ["score", "best_layer", S.LAYER] + [c for c in ("depth", "relative_depth") if c in best]
        return best.set_index(group_cols)[cols].to_xarray()


def _long_frame(da: xr.DataArray, value: str) -> pd.DataFrame:
    """(layer, X) -> long DataFrame with the layer coords as columns."""
    other = [d for d in da.dims if d != S.LAYER]
    vals = np.asarray(da.transpose(S.LAYER, *other).values)
    layer_df = pd.DataFrame({c: np.asarray(da[c].values) for c in da.coords if da[c].dims == (S.LAYER,)})
    layer_df[S.LAYER] = np.asarray(da[S.LAYER].values)
    if not other:
        layer_df[value] = vals
        return layer_df
    labels = np.asarray(da[other[0]].values) if other[0] in da.coords else np.arange(vals.shape[1])
    frames = []
    for j, lab in enumerate(labels):
        f = layer_df.copy()
        f[other[0]] = lab
        f[value] = vals[:, j]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


@xr.register_dataset_accessor("nxr")
class NxrDatasetAccessor:
    """Domain methods of ``scores.zarr``."""

    def __init__(self, obj: xr.Dataset):
        self._obj = obj

    def __getattr__(self, name):
        # scores.nxr.rsa_r -> labelled rsa_r; scores.nxr.ridge_r -> ridge_r
        if name.startswith("_"):
            raise AttributeError(name)
        obj = object.__getattribute__(self, "_obj")
        if name in obj.data_vars:
            return _labelled(obj[name])
        raise AttributeError(f"scores has no variable {name!r} (variables: {list(obj.data_vars)})")

    @property
    def metrics(self) -> list[str]:
        return [m for v, m in _METRIC_OF_VAR.items() if v in self._obj.data_vars]

    def area_means(self, var: str = S.RIDGE_R) -> xr.DataArray:
        return _labelled(self._obj[var]).nxr.area_means()

    def max_over_layers(self, var: str = S.RIDGE_R) -> xr.DataArray:
        return _labelled(self._obj[var]).nxr.max_over_layers()

    def best_layer(self, var: str = S.RIDGE_R) -> xr.Dataset:
        return _labelled(self._obj[var]).nxr.best_layer()

    def table(self, metrics=None) -> pd.DataFrame:
        """Long table ``model, weights, area, metric, score, best_layer, relative_depth`` (no intervals).

        ``neuroxr.stats.rank_models`` adds bootstrap intervals and ranks.
        """
        metrics = metrics or self.metrics
        var_of = {m: v for v, m in _METRIC_OF_VAR.items()}
        frames = []
        for m in metrics:
            best = self.best_layer(var_of[m]).to_dataframe().dropna(subset=["score"]).reset_index()
            if "weights" not in best:
                w = pd.DataFrame({"model": np.asarray(self._obj["model"].values),
                                  "weights": np.asarray(self._obj["weights"].values)}).drop_duplicates("model")
                best = best.merge(w, on="model", how="left")
            best["metric"] = m
            frames.append(best)
        cols = list(S.RANKINGS_COLUMNS)
        out = pd.concat(frames, ignore_index=True)
        return out[[c for c in cols if c in out] + [c for c in out if c not in cols]]
