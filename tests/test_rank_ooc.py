"""Issue 13: ranking from scores.zarr out of core, against the in-memory pandas computation.

The store is opened lazily (dask chunks of 16 layers x 32 neurons); the ranking's group means are
dask reductions (:func:`neuroxr.stats.tables.sum_by_group`) and the neuron bootstrap reads rows by
blocks of layers (:class:`neuroxr.stats.ranking.LayerRows`).  A dask callback records the size of
every task's result: none may hold the whole (layer, neuron) array.
"""
from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.callbacks import Callback
from test_stats import make_scores

from neuroxr import stats
from neuroxr.io.store import replace_store
from neuroxr.mapping.tree import open_scores, write_scores


class _LargestResult(Callback):
    """Largest ``nbytes`` of any task result (an array or a tuple/list of arrays) while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        parts = result if isinstance(result, (tuple, list)) else [result]
        for r in parts:
            self.largest = max(self.largest, int(getattr(r, "nbytes", 0) or 0))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tree = make_scores(seed=4, n_neurons=240)
    ridge = tree["ridge_r"].values.copy()
    ridge[3, 5] = ridge[40, :7] = np.nan  # missing neurons count as absent, as pandas' mean skips them
    root = tree.to_dataset(inherit=False)
    root["ridge_r"] = (("layer", "neuron"), ridge)
    tree = xr.DataTree.from_dict({"/": root, "areas": tree["areas"].to_dataset(inherit=False)})
    path = tmp_path_factory.mktemp("ooc") / "scores.zarr"
    _, tmp = write_scores(tree, path, chunks={"layer": 16, "neuron": 32})
    replace_store(tmp, path)
    return tree, path


def _pandas_reference(tree) -> pd.DataFrame:
    """Per variant and area the max over layers of the area-mean ridge r, and area ``all``: plain pandas."""
    da = tree["ridge_r"].astype(np.float32).astype(np.float64)  # the store keeps float32
    long = pd.DataFrame({"layer": np.repeat(da["layer"].values, da.sizes["neuron"]),
                         "area": np.tile(da["area"].values, da.sizes["layer"]), "r": da.values.ravel()})
    per_layer = long.groupby(["layer", "area"])["r"].mean().unstack("area")
    variant = pd.Series(da["variant"].values, index=da["layer"].values)
    per_layer["all"] = per_layer.mean(axis=1)
    return per_layer.groupby(variant.reindex(per_layer.index).values).max()


def test_out_of_core_rank_equals_pandas_and_no_task_holds_the_array(stores):
    tree, path = stores
    lazy = open_scores(path, chunks={"layer": 16, "neuron": 32})
    assert lazy["ridge_r"].chunks is not None  # dask-backed: nothing read yet
    whole = lazy["ridge_r"].size * 8
    with dask.config.set(scheduler="synchronous"), _LargestResult() as cb:
        got = stats.rank_models(lazy, ["ridge"], n_boot=0)
    assert 0 < cb.largest < whole / 4, (cb.largest, whole)
    ref = _pandas_reference(tree)
    rows = got[got.metric == "ridge"]
    assert len(rows) == ref.notna().sum().sum()
    for _, r in rows.iterrows():
        np.testing.assert_allclose(r.score, ref.loc[r.variant, r.area], rtol=1e-12, atol=1e-14)


def test_out_of_core_bootstrap_equals_in_memory(stores):
    """The neuron bootstrap read by layer blocks gives the intervals of the in-memory arrays."""
    _, path = stores
    lazy = open_scores(path, chunks={"layer": 16, "neuron": 32})
    loaded = open_scores(path, chunks=None)  # NumPy arrays: the in-memory path
    assert loaded["ridge_r"].chunks is None
    whole = lazy["ridge_r"].size * 8
    with dask.config.set(scheduler="synchronous"), _LargestResult() as cb:
        a = stats.rank_models(lazy, n_boot=30, seed=2)
    b = stats.rank_models(loaded, n_boot=30, seed=2)
    assert cb.largest < whole / 4, (cb.largest, whole)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-14)
    assert a[(a.metric == "ridge") & (a.area == "VISp")].ci_low.notna().all()
