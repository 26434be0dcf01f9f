"""The ``.nxr`` xarray accessor: the paper's tables in one line, on plain xarray objects.

Examples
--------
>>> scores = neuroxr.open_study("demo").scores               # DataTree     # doctest: +SKIP
>>> scores.ridge_r.nxr.area_means()          # (layer, area): mean over each area's neurons
>>> scores.ridge_r.nxr.max_over_layers()     # (variant, area): the "Max" table
>>> scores.ridge_r.nxr.best_layer()          # Dataset (variant, area): score, best_layer, relative_depth
>>> scores.nxr.rsa_r                         # rsa_r (layer, area) from the ``areas`` group
>>> scores.nxr.get("rsa_r")                  # the same, by name
>>> scores.nxr.table()                       # long DataFrame: model, weights, area, metric, score, ...

Plain xarray works too: ``scores.ridge_r.groupby("area").mean().groupby("variant").max()`` and
``scores["areas"].rsa_r.sel(area="VISp")``.

A model variant (model and weights) is the layer coord ``variant``; objects without it (older
or hand-made) are grouped by ``model`` and, when one model has several ``weights``, ``weights``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from . import schema as S
from .mapping.tree import VARIANT

__all__ = ["NxrDataArrayAccessor", "NxrScoresAccessor", "variant_keys"]


def variant_keys(da: xr.DataArray) -> list[str]:
    """The layer coords that tell model variants apart: ``variant``, else ``model`` [, ``weights``]."""
    if VARIANT in da.coords:
        return [VARIANT]
    if "model" not in da.coords:
        raise S.SchemaError(f"{da.name or 'scores'}: layer coordinate 'variant' (or 'model') is missing")
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

    def area_means(self, by: str = S.AREA, skipna: bool = True) -> xr.DataArray:
        """Mean over each group's neurons (layer, area); an area-level array is returned as it is."""
        da = self._obj
        if S.NEURON in da.dims:
            if by not in da.coords:
                raise S.SchemaError(f"{da.name}: neuron coordinate {by!r} is missing")
            return da.groupby(by).mean(skipna=skipna)
        return da

    def max_over_layers(self, by: str = S.AREA) -> xr.DataArray:
        """Per model variant, the maximum over layers of the area means: the paper's "Max" table.

        Returns
        -------
        DataArray (variant, area)
        """
        da = self.area_means(by) if S.LAYER in self._obj.dims else self._obj
        keys = variant_keys(da)
        return da.groupby(keys if len(keys) > 1 else keys[0]).max(skipna=True)

    def best_layer(self, by: str = S.AREA) -> xr.Dataset:
        """Per model variant and area: the best layer, its score and its (relative) depth.

        Returns
        -------
        Dataset (variant, area): ``score``, ``best_layer`` (layer_name), ``layer`` (id), ``depth``,
        ``relative_depth``, and ``model``, ``weights`` (variant).
        """
        da = self.area_means(by)
        keys = variant_keys(da)
        df = _long_frame(da, "score").dropna(subset=["score"])
        group_cols = keys + [c for c in da.dims if c != S.LAYER]
        best = df.loc[df.groupby(group_cols, sort=True)["score"].idxmax()]
        best = best.rename(columns={"layer_name": "best_layer"})
        cols = ["score", "best_layer", S.LAYER] + [c for c in ("depth", "relative_depth") if c in best]
        out = best.set_index(group_cols)[cols].to_xarray()
        if keys == [VARIANT]:
            names = _variant_frame(da).set_index(VARIANT).reindex(np.asarray(out[VARIANT].values))
            out = out.assign_coords({c: (VARIANT, names[c].to_numpy()) for c in names.columns})
        return out


def _variant_frame(da: xr.DataArray) -> pd.DataFrame:
    cols = [c for c in (VARIANT, "model", "weights") if c in da.coords]
    return pd.DataFrame({c: np.asarray(da[c].values) for c in cols}).drop_duplicates(VARIANT)


def _long_frame(da: xr.DataArray, value: str) -> pd.DataFrame:
    """(layer[, X]) -> long DataFrame with the layer coords as columns."""
    other = [d for d in da.dims if d != S.LAYER]
    vals = np.asarray(da.transpose(S.LAYER, *other).values)
    layer_df = pd.DataFrame({c: np.asarray(da[c].values) for c in da.coords if da[c].dims == (S.LAYER,)})
    layer_df[S.LAYER] = np.asarray(da[S.LAYER].values)
    if not other:
        layer_df[value] = vals
        return layer_df
    labels = np.asarray(da[other[0]].values) if other[0] in da.coords else np.arange(vals.shape[1])
    frames = [layer_df.assign(**{other[0]: lab, value: vals[:, j]}) for j, lab in enumerate(labels)]
    return pd.concat(frames, ignore_index=True)


def _variables(obj) -> dict:
    """Every data variable of a scores DataTree (all groups) or Dataset."""
    nodes = obj.subtree if isinstance(obj, xr.DataTree) else [obj]
    return {k: node[k] for node in nodes for k in node.data_vars}


class NxrScoresAccessor:
    """Domain methods of ``scores.zarr`` (the DataTree, or one of its groups as a Dataset)."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        # scores.nxr.rsa_r: the variable from whichever group holds it
        if name.startswith("_"):
            raise AttributeError(name)
        variables = _variables(object.__getattribute__(self, "_obj"))
        if name in variables:
            return variables[name]
        raise AttributeError(f"scores has no variable {name!r} (variables: {list(variables)})")

    def get(self, name: str) -> xr.DataArray:
        """The variable ``name`` from whichever group holds it (``ridge_r`` at the root, ``rsa_r`` in ``areas``)."""
        variables = _variables(self._obj)
        if name not in variables:
            raise S.SchemaError(f"scores have no variable {name!r} (variables: {list(variables)}); "
                                "score that metric with `neuroxr score --metric ...`")
        return variables[name]

    @property
    def metrics(self) -> list[str]:
        """The registered metrics whose variables these scores hold, in registry order."""
        have = _variables(self._obj)
        from .mapping.metrics import METRICS  # the registry imports the scoring engine (sklearn, numba): on use

        return [m.name for m in METRICS.values() if m.variable in have]

    def area_means(self, var: str = S.RIDGE_R) -> xr.DataArray:
        return _variables(self._obj)[var].nxr.area_means()

    def max_over_layers(self, var: str = S.RIDGE_R) -> xr.DataArray:
        return _variables(self._obj)[var].nxr.max_over_layers()

    def best_layer(self, var: str = S.RIDGE_R) -> xr.Dataset:
        return _variables(self._obj)[var].nxr.best_layer()

    def table(self, metrics=None) -> pd.DataFrame:
        """Long table ``model, weights, area, metric, score, best_layer, relative_depth`` (no intervals).

        ``neuroxr.stats.rank_models`` adds bootstrap intervals and ranks.
        """
        from .mapping.metrics import METRICS

        frames = []
        for m in metrics or [m for m in self.metrics if METRICS[m].ranked]:  # not p-values or layer properties
            best = self.best_layer(METRICS[m].variable).to_dataframe().dropna(subset=["score"]).reset_index()
            best["metric"] = m
            frames.append(best)
        cols = list(S.RANKINGS_COLUMNS)
        out = pd.concat(frames, ignore_index=True)
        return out[[c for c in cols if c in out] + [c for c in out if c not in cols]]


xr.register_dataset_accessor("nxr")(NxrScoresAccessor)
xr.register_datatree_accessor("nxr")(NxrScoresAccessor)
