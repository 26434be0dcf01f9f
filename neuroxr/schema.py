r"""Names of the neuroxr data model and validators that raise clear errors.

Every store of a study is a plain xarray Dataset written to Zarr.  The names
below are the contract of ``DESIGN.md``: users' scripts and acceptance checks
read them, so they never change.

===========================  ==========  ==========================  ===============================
store                        variable    dims                        notes
===========================  ==========  ==========================  ===============================
``stimuli.zarr``             ``pixels``  (image, y, x)               grayscale as recorded
``responses.zarr``           ``mean``    (neuron, image)             float32, trial-averaged
\                            ``trials``  (neuron, image, trial)      optional, NaN-padded
``rdms.zarr``                ``rdm``     (site, image, image_j)      ingested neural RDMs
``features/<model>.zarr``    ...         (layer, image, ...)         per-layer summaries
\                            ``srp``     (layer, image, component)   sparse random projection
``scores.zarr`` (root)       ``ridge_r`` (layer, neuron)             leave-one-out Pearson r
``scores.zarr`` ``areas``    ``rsa_r``   (layer, area)               model-vs-area RDM Pearson
===========================  ==========  ==========================  ===============================

``scores.zarr`` is an :class:`xarray.DataTree` store (:func:`neuroxr.mapping.open_scores`):

- the root group holds the neuron-level scores (``ridge_r``, ``srp_ridge_r``, ``pls_r``,
  ``ridge_alpha`` ...), dims (layer, neuron), with the layer coords :data:`LAYER_COORDS` and
  :data:`VARIANT`, and the neuron coords (``area``, ``cre_line``, ``depth_um`` ...);
  ``xr.open_zarr("scores.zarr")`` opens it as a plain Dataset;
- the group ``areas`` (:data:`AREAS_GROUP`) holds the area-level scores (``rsa_r`` (layer, area),
  ``rsa_ceiling`` (area), ``rsa_site_r`` (layer, site) for ingested RDMs), with ``area`` an index
  of area names and the same layer coords.

``variant`` (layer) is ``"<model>:<weights label>"``, the weights label being ``trained``,
``random`` or the first 12 hex digits of a sha256: one label per model variant.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# --- dims -----------------------------------------------------------------
IMAGE = "image"
IMAGE_J = "image_j"  # second image axis of n x n matrices (Gram matrices, RDMs)
NEURON = "neuron"
TRIAL = "trial"
AREA = "area"
LAYER = "layer"
SITE = "site"
COMPONENT = "component"
Y, X = "y", "x"

# --- stores ---------------------------------------------------------------
STIMULI_STORE = "stimuli.zarr"
RESPONSES_STORE = "responses.zarr"
RDMS_STORE = "rdms.zarr"
FEATURES_DIR = "features"
SCORES_STORE = "scores.zarr"
REPORTS_DIR = "reports"
RANKINGS_CSV = "rankings.csv"

# --- variables ------------------------------------------------------------
PIXELS = "pixels"
MEAN = "mean"
TRIALS = "trials"
RDM = "rdm"
SRP = "srp"
RIDGE_R = "ridge_r"
RSA_R = "rsa_r"
#: the group of scores.zarr holding the area-level scores
AREAS_GROUP = "areas"
#: the group of scores.zarr holding per-layer properties needing no responses (``effective_dim``)
LAYERS_GROUP = "layers"

# --- coordinates ----------------------------------------------------------
NEURON_COORDS = ("area", "cre_line", "depth_um")
NEURON_OPTIONAL_COORDS = (
    "cortical_layer", "container", "experiment", "p_run_mod", "p_image", "splithalf_r", "selected",
)
LAYER_COORDS = ("model", "layer_name", "depth", "relative_depth", "weights", "family")
#: layer coord of scores.zarr: one label per model variant, "<model>:<weights label>"
VARIANT = "variant"
LAYER_OPTIONAL_COORDS = ("n_features", "module_type", "source")
RANKINGS_COLUMNS = ("model", "weights", "area", "metric", "score", "best_layer", "relative_depth")

AREAS = ("VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam")
FAMILIES = ("cnn", "transformer", "mlp-mixer", "taskonomy", "ssl", "baseline")
EXCITATORY_CRE_LINES = (
    "Emx1", "Slc17a7", "Cux2", "Rorb", "Scnn1a", "Nr5a1", "Rbp4", "Fezf2", "Tlx3", "Ntsr1",
)


class SchemaError(ValueError):
    """A dataset, array or file does not follow the neuroxr data model.

    The message names the file (when known), the variable and the offending value.
    """


def _where(source) -> str:
    return f"{source}: " if source else ""


def is_excitatory(cre_line) -> bool:
    """True when ``cre_line`` (e.g. ``'Cux2-CreERT2'``) starts with an excitatory driver name."""
    if cre_line is None or (isinstance(cre_line, float) and np.isnan(cre_line)):
        return False
    s = str(cre_line)
    return any(s == c or s.startswith(c + "-") or s.startswith(c + "_") for c in EXCITATORY_CRE_LINES)


def cortical_layer(depth_um, cre_line=None) -> str:
    """Cortical layer from imaging depth: <200 L2/3, 200-300 L4, 300-500 L5, >=500 L6.

    Nr5a1 and Scnn1a lines are L4 whatever the depth.
    """
    if cre_line is not None and str(cre_line).split("-")[0] in ("Nr5a1", "Scnn1a"):
        return "L4"
    if depth_um is None or not np.isfinite(depth_um):
        return "unknown"
    if depth_um < 200:
        return "L2/3"
    if depth_um < 300:
        return "L4"
    if depth_um < 500:
        return "L5"
    return "L6"


def check_finite(values, name: str, source=None) -> None:
    """Raise :class:`SchemaError` if ``values`` holds NaN or inf, naming the first bad index."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SchemaError(
            f"{_where(source)}variable {name!r} has {int(bad.sum())} non-finite values "
            f"(first at index {idx}: {arr[idx]!r}); clean or drop them before ingesting"
        )


def check_dims(da, expected: tuple, name: str, source=None) -> None:
    if tuple(da.dims) != tuple(expected):
        raise SchemaError(
            f"{_where(source)}variable {name!r} has dims {tuple(da.dims)}, expected {tuple(expected)}"
        )


def validate_stimuli(ds, source=None) -> None:
    """Check a stimuli Dataset: ``pixels`` (image, y, x), int ``image`` coord, unique."""
    if PIXELS not in ds:
        raise SchemaError(f"{_where(source)}no variable {PIXELS!r} (found {list(ds.data_vars)})")
    check_dims(ds[PIXELS], (IMAGE, Y, X), PIXELS, source)
    _check_index(ds, IMAGE, source)


def validate_responses(ds, source=None) -> None:
    """Check a responses Dataset: ``mean`` (neuron, image), optional ``trials``, neuron coords."""
    if MEAN not in ds:
        raise SchemaError(f"{_where(source)}no variable {MEAN!r} (found {list(ds.data_vars)})")
    check_dims(ds[MEAN], (NEURON, IMAGE), MEAN, source)
    if TRIALS in ds:
        check_dims(ds[TRIALS], (NEURON, IMAGE, TRIAL), TRIALS, source)
    _check_index(ds, IMAGE, source)
    _check_index(ds, NEURON, source)
    for c in NEURON_COORDS:
        if c not in ds.coords:
            raise SchemaError(f"{_where(source)}neuron coordinate {c!r} is missing")


def validate_scores(scores, source=None) -> None:
    """Check scores: a DataTree (root + ``areas``) or one group as a Dataset.

    Every group needs the layer coords of the contract and ``variant``; ``ridge_r`` must be
    (layer, neuron) at the root, ``rsa_r`` (layer, area) in ``areas`` with an ``area`` index of names.
    """
    groups = {"/": scores}
    if hasattr(scores, "children"):
        groups = {"/": scores.to_dataset()}
        groups.update({k: v.to_dataset() for k, v in scores.children.items()})
    for name, ds in groups.items():
        where = f"{_where(source)}group {name!r}: "
        if not ds.data_vars:
            continue
        for c in LAYER_COORDS + (VARIANT,):
            if c not in ds.coords:
                raise SchemaError(f"{where}layer coordinate {c!r} is missing; rescore with `neuroxr score`")
        if RIDGE_R in ds:
            check_dims(ds[RIDGE_R], (LAYER, NEURON), RIDGE_R, source)
        if RSA_R in ds:
            check_dims(ds[RSA_R], (LAYER, AREA), RSA_R, source)
            if AREA not in ds.indexes or np.asarray(ds[AREA].values).dtype.kind not in "UO":
                raise SchemaError(f"{where}{RSA_R!r} needs an 'area' index of area names (e.g. 'VISp'); "
                                  "rescore with `neuroxr score`")


def _check_index(ds, dim, source):
    if dim not in ds.coords:
        raise SchemaError(f"{_where(source)}coordinate {dim!r} is missing")
    vals = np.asarray(ds[dim].values)
    if vals.dtype.kind not in "iu":
        raise SchemaError(f"{_where(source)}coordinate {dim!r} must be integers, got dtype {vals.dtype}")
    uniq, counts = np.unique(vals, return_counts=True)
    if (counts > 1).any():
        raise SchemaError(
            f"{_where(source)}coordinate {dim!r} has duplicate ids, e.g. {uniq[counts > 1][:5].tolist()}"
        )


def layer_id(model: str, weights: str, layer_name: str) -> str:
    """The ``layer`` index value of one (model, weights, layer) entry: ``'model|weights|layer_name'``."""
    return f"{model}|{weights}|{layer_name}"


def study_path(study, *parts) -> Path:
    return Path(study).joinpath(*parts)
