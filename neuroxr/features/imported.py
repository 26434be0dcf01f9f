"""Features computed elsewhere (.npy, .npz, netCDF) stored as the layers of a model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema as S
from ..errors import MissingDataError
from ..io.store import hash_array, hash_file
from ..study import open_study
from .reduce import SRP_SEED, FeatureError, SRPCache, build_layer_dataset, find_srp_components, reduce_features
from .variants import find_features_path, has_variant, make_store_settings, skipped_result, write_variant


def read_feature_file(path):
    """Layers of a features file: .npy (image, ...), .npz (one array per layer), .nc (variables with an image dim)."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"features file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        return [(path.stem, arr, None)]
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return [(k, z[k], None) for k in z.files]
    if suffix in (".nc", ".nc4", ".netcdf", ".h5", ".hdf5"):
        ds = xr.open_dataset(path, engine="h5netcdf")
        layers = []
        for name, da in ds.data_vars.items():
            if S.IMAGE not in da.dims:
                continue
            da = da.transpose(S.IMAGE, ...)
            ids = da[S.IMAGE].values if S.IMAGE in da.coords else None
            layers.append((str(name), da.values, ids))
        if not layers:
            raise FeatureError(f"{path}: no variable has an {S.IMAGE!r} dim (found {list(ds.data_vars)})")
        return layers
    raise FeatureError(f"{path}: unknown features format {suffix!r}; use .npy, .npz or .nc")


def import_features(study, model: str, path, weights=None, family: str = "baseline", source: str = "imported",
                    srp=None, srp_seed: int = SRP_SEED, overwrite: bool = False) -> dict:
    """Import features computed elsewhere as the layers of ``model``.

    Parameters
    ----------
    path : .npy (image, feature...), .npz (one array per layer, samples first) or netCDF
        (each variable with an ``image`` dim is a layer; matched to the stimuli by ``image`` id).
    weights : str, optional
        Label of the variant (default: the file's sha256).
    """
    st = open_study(study)
    stim = st.stimuli
    image = stim[S.IMAGE].values
    n = len(image)
    label = str(weights) if weights else hash_file(path)
    out_path = find_features_path(study, model)
    if not overwrite and has_variant(study, model, label):
        return skipped_result(model, label)
    srp_k = find_srp_components(srp, n)
    cache = SRPCache(srp_k, srp_seed) if srp_k else None
    names, types, results, nfeat = [], [], [], []
    for name, arr, ids in read_feature_file(path):
        arr = np.asarray(arr, dtype=np.float32)
        if ids is not None:
            pos = {int(v): i for i, v in enumerate(ids)}
            missing = [int(i) for i in image if int(i) not in pos]
            if missing:
                raise FeatureError(f"{path}: variable {name!r} lacks images {missing[:5]} of the study's stimuli")
            arr = arr[[pos[int(i)] for i in image]]
        if arr.ndim < 2 or arr.shape[0] != n:
            raise FeatureError(
                f"{path}: layer {name!r} has shape {arr.shape}; expected (image={n}, features...) "
                "samples first, one row per stimulus in the study's image order"
            )
        x = arr.reshape(n, -1)
        names.append(name)
        types.append("imported")
        results.append(reduce_features(x, srp_k, srp_seed, srp_cache=cache))
        nfeat.append(x.shape[1])
    finite = [bool(all(np.isfinite(v).all() for v in r.values())) for r in results]
    ds = build_layer_dataset(model, label, family, source, names, types, results, finite, image, srp_k, nfeat)
    inputs = {"stimuli": hash_array(stim[S.PIXELS]), "features_file": str(path),
              "variant": {label: {"features_file": str(path), "sha256": hash_file(path)}}}
    write_variant(out_path, ds, make_store_settings(srp_k, srp_seed if srp_k else None), inputs, overwrite)
    return {"model": model, "weights": label, "status": "done", "layers": len(names),
            "nonfinite": [n_ for n_, ok in zip(names, finite) if not ok]}


__all__ = ["import_features", "read_feature_file"]
