"""The labelled scores model: ``scores.zarr`` as an :class:`xarray.DataTree`.

- root group: neuron-level scores (``ridge_r``, ``srp_ridge_r``, ``pls_r``, ``ridge_alpha`` ...),
  dims (layer, neuron), with the layer coords (``model``, ``layer_name``, ``depth``,
  ``relative_depth``, ``weights``, ``family``, ``variant`` ...) and the neuron coords (``area``,
  ``cre_line`` ...).  ``xr.open_zarr("scores.zarr").ridge_r`` reads it as a plain Dataset.
- group ``areas``: area-level scores (``rsa_r`` (layer, area), ``rsa_ceiling`` (area),
  ``rsa_site_r`` (layer, site)), with ``area`` an index of area names and the same layer coords:
  ``open_scores(p)["areas"].rsa_r.sel(area="VISp")``.
- group ``layers``: properties of each layer that need no responses (``effective_dim`` (layer,)),
  with the same layer coords: ``open_scores(p)["layers"].effective_dim``.

``variant`` labels one model variant, ``"<model>:<weights label>"`` (see :func:`label_weights`),
so ``ridge_r.groupby("area").mean().groupby("variant").max()`` is the paper's Max table.
"""
from __future__ import annotations

import re
import shutil
import warnings

import dask
import numpy as np
import xarray as xr

from .. import schema as S
from ..io.integrity import open_checked_store
from ..io.store import default_compressors, replace_store, resolve_path, tmp_sibling
from ..errors import MissingDataError
from ..runtime import WARNINGS_LOCK

__all__ = [
    "AREAS_GROUP",
    "VARIANT",
    "label_weights",
    "label_variants",
    "build_scores_tree",
    "open_scores",
    "write_scores",
    "concat_scores",
    "group_of",
]

#: the group of area-level variables
AREAS_GROUP = S.AREAS_GROUP
#: the group of per-layer variables (no neuron or area dim)
LAYERS_GROUP = S.LAYERS_GROUP
#: the groups below the root, in order
CHILD_GROUPS = (AREAS_GROUP, LAYERS_GROUP)
#: the layer coordinate naming a model variant (model and weights)
VARIANT = S.VARIANT
#: stored chunk sizes of scores stores
SCORES_CHUNKS = {S.LAYER: 256, S.NEURON: 8192}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def label_weights(weights: str) -> str:
    """``trained``/``random`` as they are, a sha256 value as its first 12 hex digits, others as given."""
    w = str(weights)
    return w[:12] if _SHA256.match(w.lower()) else w


def label_variants(models, weights) -> np.ndarray:
    """The ``variant`` labels ``"<model>:<weights label>"`` (layer,) of the layer coords."""
    return np.array([f"{m}:{label_weights(w)}" for m, w in zip(np.asarray(models).tolist(),
                                                              np.asarray(weights).tolist())], dtype=str)


def with_variant(obj):
    """``obj`` (Dataset or DataArray along ``layer``) with the ``variant`` coord from ``model`` and ``weights``."""
    if VARIANT in obj.coords or "model" not in obj.coords or "weights" not in obj.coords:
        return obj
    return obj.assign_coords({VARIANT: (S.LAYER, label_variants(obj["model"].values, obj["weights"].values))})


def build_scores_tree(neuron_vars: dict, area_vars: dict, *, layer_coords: xr.Coordinates,
                      attrs: dict | None = None, layer_vars: dict | None = None) -> xr.DataTree:
    """The scores tree from labelled DataArrays: ``{name: DataArray}`` per group.

    ``neuron_vars`` (layer, neuron) go to the root, ``area_vars`` ((layer,) area / site) to
    ``areas``, ``layer_vars`` (layer,) to ``layers``; every group gets ``layer_coords``
    (``layer`` and the coords along it) and ``variant``.
    """
    root = with_variant(xr.Dataset(neuron_vars).assign_coords(layer_coords))
    root.attrs.update(attrs or {})
    groups = {"/": root}
    if area_vars:
        groups[AREAS_GROUP] = with_variant(xr.Dataset(area_vars).assign_coords(layer_coords))
    if layer_vars:
        groups[LAYERS_GROUP] = with_variant(xr.Dataset(layer_vars).assign_coords(layer_coords))
    return xr.DataTree.from_dict(groups)


def group_of(tree: xr.DataTree, name: str) -> str:
    """The group (``"/"`` or ``"areas"``) holding the variable ``name``."""
    for path, node in tree.subtree_with_keys:
        if name in node.data_vars:
            return "/" if path == "." else path
    raise MissingDataError(f"scores have no variable {name!r}")


def _open_group(path, group: str | None, chunks):
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(open_checked_store(path), group=group, chunks=chunks, consolidated=False)
    lazy = [k for k in ds.coords if ds[k].chunks is not None]
    loaded = dask.compute(*[ds[k].variable for k in lazy], scheduler="synchronous") if lazy else ()
    return ds.assign_coords(dict(zip(lazy, loaded)))


def open_scores(path, *, chunks="auto") -> xr.DataTree:
    """Open a scores store (``STUDY/scores.zarr`` or a part) lazily as a DataTree.

    Every chunk is checked as it is read (:func:`neuroxr.io.integrity.open_checked_store`);
    coordinates are loaded.
    """
    path = resolve_path(path)
    if not path.exists():
        raise MissingDataError(f"{path} does not exist (scores); run `neuroxr score` first")
    root = _open_group(path, None, chunks)
    groups = {"/": root}
    for name in CHILD_GROUPS:
        if (path / name).exists():
            groups[name] = _open_group(path, name, chunks)
    return xr.DataTree.from_dict(groups)


def _group_encoding(ds: xr.Dataset, chunks: dict) -> dict:
    comp = default_compressors()
    enc = {name: {"compressors": comp} for name in ds.variables}
    for name, var in ds.data_vars.items():
        if var.ndim and var.dtype.kind not in "OUS":
            enc[name]["chunks"] = tuple(min(chunks.get(d, s), s) or 1 for d, s in zip(var.dims, var.shape))
    return enc


def prepare_for_writing(tree: xr.DataTree, chunks: dict = SCORES_CHUNKS) -> tuple[xr.DataTree, dict]:
    """Float32 scores chunked as stored, no inherited encodings; and the per-group encoding."""
    groups, encoding = {}, {}
    for path, node in tree.subtree_with_keys:
        key = "/" if path == "." else f"/{path}"
        ds = node.to_dataset(inherit=False).copy()
        for v in ds.variables.values():
            v.encoding = {}
        for k in ds.data_vars:
            v = ds[k].variable.astype(np.float32)
            ds[k] = v.chunk({d: chunks.get(d, -1) for d in v.dims})
        groups[key] = ds
        encoding[key] = _group_encoding(ds, chunks)
    return xr.DataTree.from_dict(groups), encoding


def write_scores(tree: xr.DataTree, path, *, compute: bool = True, chunks: dict = SCORES_CHUNKS):
    """Write ``tree`` into a temporary sibling of ``path``.

    Returns ``(delayed or None, tmp)``: once computed, move it in place with
    :func:`neuroxr.io.store.replace_store` (or call :func:`replace_scores`).
    """
    path = resolve_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    tree, encoding = prepare_for_writing(tree, chunks)
    with WARNINGS_LOCK, warnings.catch_warnings():  # catch_warnings is process-wide: one thread at a time
        warnings.simplefilter("ignore")
        delayed = tree.to_zarr(tmp, mode="w", encoding=encoding, consolidated=True, zarr_format=3,
                               compute=compute)
    return (None if compute else delayed), tmp


def replace_scores(tree: xr.DataTree, path, *, chunks: dict = SCORES_CHUNKS):
    """Write ``tree`` to ``path`` atomically (temporary sibling, then one replace)."""
    _, tmp = write_scores(tree, path, compute=True, chunks=chunks)
    try:
        replace_store(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return resolve_path(path)


#: what a layer coordinate holds for the layers of a model that does not have it
_MISSING = {"f": np.nan, "c": np.nan, "i": -1, "u": 0, "b": False, "U": "", "S": b"", "O": ""}


def _with_all_layer_coords(parts: list) -> list:
    """Give every part each layer coordinate some part has (e.g. ``n_components`` of an SRP model),
    filled with the dtype's missing value, so they concatenate along ``layer``."""
    kinds = {}
    for p in parts:
        for c, v in p.coords.items():
            if v.dims == (S.LAYER,):
                kinds.setdefault(c, v.dtype)
    out = []
    for p in parts:
        add = {c: (S.LAYER, np.full(p.sizes[S.LAYER], _MISSING.get(dt.kind, ""), dtype=dt if dt.kind != "U" else object))
               for c, dt in kinds.items() if c not in p.coords}
        out.append(p.assign_coords(add) if add else p)
    return out


def concat_scores(trees, attrs: dict | None = None) -> xr.DataTree:
    """Concatenate scores trees along ``layer`` (group by group; area and neuron coords as in the first)."""
    trees = list(trees)
    groups = {}
    for key in ("/", *CHILD_GROUPS):
        parts = [t[key].to_dataset(inherit=False) if key != "/" else t.to_dataset(inherit=False)
                 for t in trees if key == "/" or key in t.children]
        parts = _with_all_layer_coords([p for p in parts if p.data_vars])
        if not parts:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            groups[key] = xr.concat(parts, dim=S.LAYER, data_vars="minimal", coords="minimal",
                                    compat="override", join="outer", combine_attrs="drop")
    groups.setdefault("/", xr.Dataset())
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(attrs or {})
    return out
