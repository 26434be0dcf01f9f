"""The CREMI domain: electron-microscopy tiles cut from the challenge's HDF5 volumes.

Prasad et al. (2022) use the CREMI volumes (https://cremi.org; ``sample_A/B/C``, each 125 z
slices of 1250 x 1250 px at 4 x 4 x 40 nm) as the least natural domain: every z slice of the raw
volume (HDF5 dataset ``volumes/raw``, dims (z, y, x), uint8) is cut into a grid of
non-overlapping 125 x 125 px tiles, 10 x 10 = 100 per slice.  The tiles are written as PNG
files, a plain image folder like every other domain; SimCLR training resizes every image to
64 x 64 before its augmentations (:func:`neuroxr.domains.simclr.make_simclr_transform`), as the
paper does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MissingDataError, NeuroxrError, StoreExistsError

__all__ = ["CREMI_KEY", "CREMI_TILE", "CREMI_TILES_PER_SLICE", "iter_cremi_tiles", "tile_cremi"]

#: the raw EM volume inside a CREMI HDF5 file
CREMI_KEY = "volumes/raw"
#: tile side in pixels
CREMI_TILE = 125
#: tiles per z slice (a 10 x 10 grid of a 1250 x 1250 slice)
CREMI_TILES_PER_SLICE = 100


def _open_volume(h5, path: Path, key: str):
    if key not in h5:
        raise MissingDataError(f"{path}: no dataset {key!r} (found {sorted(h5.keys())}); CREMI files keep the raw "
                               f"EM volume at {CREMI_KEY!r}; pass key=... for another layout")
    vol = h5[key]
    if vol.ndim != 3:
        raise NeuroxrError(f"{path}:{key} has shape {vol.shape}; expected a (z, y, x) volume")
    return vol


def iter_cremi_tiles(path, key: str = CREMI_KEY, tile: int = CREMI_TILE, per_slice: int = CREMI_TILES_PER_SLICE):
    """Yield ``(z, y0, x0, tile array)`` of every slice's grid tiles, row by row.

    Each slice gets the ``floor(ny / tile) x floor(nx / tile)`` non-overlapping grid starting at
    (0, 0), truncated to its first ``per_slice`` tiles (row-major); a 1250 x 1250 slice gives
    exactly 100 tiles of 125 x 125.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: CREMI file does not exist; download sample_A/B/C from https://cremi.org")
    tile, per_slice = int(tile), int(per_slice)
    with h5py.File(path, "r") as h5:
        vol = _open_volume(h5, path, key)
        nz, ny, nx = vol.shape
        gy, gx = ny // tile, nx // tile
        if gy * gx == 0:
            raise NeuroxrError(f"{path}:{key}: slices of {ny} x {nx} px are smaller than one {tile} px tile")
        corners = [(i * tile, j * tile) for i in range(gy) for j in range(gx)][:per_slice]
        for z in range(nz):
            sl = np.asarray(vol[z])
            for y0, x0 in corners:
                yield z, y0, x0, sl[y0:y0 + tile, x0:x0 + tile]


def tile_cremi(paths, out_dir, key: str = CREMI_KEY, tile: int = CREMI_TILE,
               per_slice: int = CREMI_TILES_PER_SLICE, overwrite: bool = False) -> Path:
    """Cut CREMI volumes into tiles: ``out_dir/<file stem>_z<z>_y<y0>_x<x0>.png`` (8-bit grayscale).

    Parameters
    ----------
    paths : path or list of paths
        CREMI HDF5 files (``sample_A_20160501.hdf`` ...).
    out_dir : path
        The domain's image folder (created; must be empty unless ``overwrite``).
    key, tile, per_slice :
        As in :func:`iter_cremi_tiles`.

    Returns
    -------
    Path of ``out_dir``.
    """
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise NeuroxrError("tile_cremi: no CREMI files given")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise StoreExistsError(f"{out} already exists and is not empty; pass overwrite=True to replace its tiles")
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        for z, y0, x0, t in iter_cremi_tiles(p, key=key, tile=tile, per_slice=per_slice):
            arr = np.asarray(t)
            if arr.dtype != np.uint8:
                lo, hi = float(arr.min()), float(arr.max())
                arr = np.clip(np.rint((arr - lo) / (hi - lo if hi > lo else 1.0) * 255), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(out / f"{p.stem}_z{z:04d}_y{y0:04d}_x{x0:04d}.png")
    return out
