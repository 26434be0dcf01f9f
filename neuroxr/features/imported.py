"""Features computed elsewhere (.npy, .npz, netCDF) stored as the layers of a model."""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import MissingDataError
from ..io.labelled import open_labelled
from ..io.npy import inspect_numpy_file, read_numpy_file
from ..io.reader import check_allocation
from ..io.store import hash_array, hash_file, open_dataset
from ..schema import SchemaError
from ..study import open_study
from .reduce import (
    SRP_SEED,
    FeatureError,
    SRPCache,
    build_layer_dataset,
    find_srp_components,
    reduce_features,
)
from .variants import (
    find_features_path,
    find_up_to_date,
    make_store_settings,
    skipped_result,
    store_bytes,
    write_variant,
)

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5")


def _npz_keys(path: Path) -> list[str]:
    """The array names of a ``.npz`` file (its zip directory only)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [n.removesuffix(".npy") for n in z.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise SchemaError(f"{path}: not a readable .npz file ({exc}); it is truncated or corrupt: "
                          f"write it again with numpy.savez") from None


def _netcdf_layers(path: Path):
    ds = open_labelled(path)
    names = [str(k) for k, da in ds.data_vars.items() if S.IMAGE in da.dims]
    if not names:
        raise FeatureError(f"{path}: no variable has an {S.IMAGE!r} dim (found {list(ds.data_vars)})")
    for name in names:
        da = ds[name].transpose(S.IMAGE, ...)
        check_allocation(int(da.nbytes), f"{path}: variable {name!r} (shape {da.shape}, {da.dtype})")
        ids = da[S.IMAGE].values if S.IMAGE in da.coords else None
        yield name, da.values, ids


def _check_netcdf(path: Path) -> None:
    ds = open_labelled(path)
    for name, da in ds.data_vars.items():
        check_allocation(int(da.nbytes), f"{path}: variable {name!r} (shape {da.shape}, {da.dtype})")


def check_feature_file(path) -> None:
    """Check a features file from its headers alone (every array's size against the bytes present and
    the memory available), before it is hashed or read; raises naming the file and array."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"features file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        inspect_numpy_file(path)
    elif suffix == ".npz":
        for key in _npz_keys(path):
            inspect_numpy_file(path, key)
    elif suffix in NETCDF_SUFFIXES:
        _check_netcdf(path)
    else:
        raise FeatureError(f"{path}: unknown features format {suffix!r}; use .npy, .npz or .nc")


def iter_feature_file(path):
    """Yield ``(layer name, array (image, ...), image ids or None)`` from a features file, one layer at a time.

    .npy (one layer), .npz (one array per layer), netCDF (each variable with an ``image`` dim).
    Every array goes through the hardened reader (:mod:`neuroxr.io.npy`, :mod:`neuroxr.io.labelled`):
    headers are checked against the bytes present and the memory this process may use before
    anything is allocated, so a damaged file or an absurd header is a one-line error naming it.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"features file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        yield path.stem, read_numpy_file(path), None
    elif suffix == ".npz":
        for key in _npz_keys(path):
            yield key, read_numpy_file(path, key), None
    elif suffix in NETCDF_SUFFIXES:
        yield from _netcdf_layers(path)
    else:
        raise FeatureError(f"{path}: unknown features format {suffix!r}; use .npy, .npz or .nc")


def read_feature_file(path):
    """Layers of a features file as a list of ``(name, array, image ids or None)`` (see :func:`iter_feature_file`)."""
    return list(iter_feature_file(path))


def _reduce_layer(path, name, arr, ids, image, srp_k, srp_seed, cache):
    """One imported layer in the study's image order, reduced; returns (result, n_features)."""
    n = len(image)
    if ids is not None:
        pos = {int(v): i for i, v in enumerate(ids)}
        missing = [int(i) for i in image if int(i) not in pos]
        if missing:
            raise FeatureError(f"{path}: variable {name!r} lacks images {missing[:5]} of the study's stimuli")
        arr = np.asarray(arr)[[pos[int(i)] for i in image]]
    if arr.ndim < 2 or arr.shape[0] != n:
        raise FeatureError(
            f"{path}: layer {name!r} has shape {arr.shape}; expected (image={n}, features...) "
            "samples first, one row per stimulus in the study's image order"
        )
    x = np.asarray(arr, dtype=np.float32).reshape(n, -1)
    return reduce_features(x, srp_k, srp_seed, srp_cache=cache), x.shape[1]


def study_image_ids(study) -> tuple[np.ndarray, str]:
    """The study's image ids and what identifies its images for the stale-features check.

    From ``stimuli.zarr`` (ids and the pixels' content hash) when there is one; else, for a study of
    responses or RDMs without stimuli, from the ``image`` coordinate of ``responses.zarr`` (or
    ``rdms.zarr``), identified by the hash of those ids (``"image ids:" + sha256``).
    """
    st = open_study(study)
    if st.has(S.STIMULI_STORE):
        stim = st.stimuli
        return stim[S.IMAGE].values, hash_array(stim[S.PIXELS])
    for store in (S.RESPONSES_STORE, S.RDMS_STORE):
        if st.has(store):
            ds = open_dataset(st.store(store), chunks={})
            if S.IMAGE not in ds.coords:
                raise SchemaError(f"{st.store(store)}: no {S.IMAGE!r} coordinate to match imported features to; "
                                  f"ingest the responses again with `neuroxr ingest`")
            ids = np.asarray(ds[S.IMAGE].values)
            return ids, "image ids:" + hash_array(ids)
    raise MissingDataError(f"{st.path}: no {S.STIMULI_STORE}, {S.RESPONSES_STORE} or {S.RDMS_STORE} to take the "
                           f"image ids from; run `neuroxr ingest arrays` (or `ingest rdms`) first")


def import_features(study, model: str, path, weights=None, family: str = "baseline", source: str = "imported",
                    srp=None, srp_seed: int = SRP_SEED, overwrite: bool = False) -> dict:
    """Import features computed elsewhere as the layers of ``model``.

    Parameters
    ----------
    path : .npy (image, feature...), .npz (one array per layer, samples first) or netCDF
        (each variable with an ``image`` dim is a layer; matched to the stimuli by ``image`` id).
    weights : str, optional
        Label of the variant (default: the file's sha256).

    The study needs no ``stimuli.zarr``: without one the images are those of ``responses.zarr``'s
    (or ``rdms.zarr``'s) ``image`` coordinate (:func:`study_image_ids`), and scoring works as usual.
    Skipped when the store holds the variant built from the same file (sha256), stimuli and SRP
    settings; a changed one is a :class:`~neuroxr.features.variants.StaleFeaturesError`
    (``overwrite`` rebuilds).
    """
    t0 = time.perf_counter()
    image, stimuli = study_image_ids(study)
    check_feature_file(path)  # headers and sizes before the file is hashed or read
    sha = hash_file(path)
    label = str(weights) if weights else sha
    out_path = find_features_path(study, model)
    srp_k = find_srp_components(srp, len(image))
    settings = make_store_settings(srp_k, srp_seed if srp_k else None)
    rerun = f"neuroxr extract {study} --model {model} --features {path}"
    if not overwrite and find_up_to_date(out_path, label, stimuli=stimuli, settings=settings, variant={"sha256": sha},
                                         rerun=rerun):
        return skipped_result(model, label)
    cache = SRPCache(srp_k, srp_seed) if srp_k else None
    names, results, nfeat = [], [], []
    for name, arr, ids in iter_feature_file(path):
        res, p = _reduce_layer(path, name, arr, ids, image, srp_k, srp_seed, cache)
        names.append(name)
        results.append(res)
        nfeat.append(p)
    finite = [bool(all(np.isfinite(v).all() for v in r.values())) for r in results]
    ds = build_layer_dataset(model, label, family, source, names, ["imported"] * len(names), results, finite, image,
                             srp_k, nfeat)
    inputs = {"stimuli": stimuli, "features_file": str(path),
              "variant": {label: {"features_file": str(path), "sha256": sha}}}
    write_variant(out_path, ds, settings, inputs, overwrite)
    return {"model": model, "weights": label, "status": "done", "layers": len(names),
            "nonfinite": [n_ for n_, ok in zip(names, finite) if not ok], "seconds": time.perf_counter() - t0,
            "bytes": store_bytes(out_path)}


__all__ = ["check_feature_file", "import_features", "iter_feature_file", "read_feature_file", "study_image_ids"]
