"""Layer-by-layer feature extraction with streaming per-layer reductions.

Every module of a model except the pure containers (``Sequential``, ``ModuleList``,
``ModuleDict``) gets a forward hook, as in the study: a module called several times in one
forward pass (torchvision ResNet's shared ``relu``) gives one layer per call
(``layer1.0.relu``, ``layer1.0.relu:2``); the root module's output is the layer ``output``.
Layers whose outputs are identical to an earlier layer's (Dropout and Identity in eval mode,
a block whose output is its last ReLU's) are dropped, keeping the first.  Depth is the order
of execution among the kept layers.
"""
from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np

#: containers whose output is always one of their children's (never hooked, as in the study)
def _container_types():
    from torch import nn

    return (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# --------------------------------------------------------------------------- preprocessing
def find_pixel_scale(pixels) -> float:
    """255 for 0..255 stimuli (uint8, or any value above 1.5), else 1."""
    arr = pixels.data if hasattr(pixels, "dims") else pixels
    if getattr(arr, "dtype", None) == np.uint8:
        return 255.0
    mx = arr.max()
    mx = float(mx.compute() if hasattr(mx, "compute") else mx)
    return 255.0 if mx > 1.5 else 1.0


def preprocess_images(loaded, pixels: np.ndarray, scale: float = 255.0, device=None):
    """Turn stored stimuli (image, y, x) into a model's input (image, channel, H, W) tensor.

    Scales to [0, 1] (unless the model takes raw values), resizes to ``loaded.input_size``
    with its interpolation (anti-aliased), repeats grayscale to ``loaded.channels`` and
    normalises with ``loaded.mean`` / ``loaded.std``.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize

    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    if x.ndim != 3:
        raise ValueError(f"stimuli must be (image, y, x), got shape {tuple(x.shape)}")
    if loaded.rescale and scale != 1.0:
        x = x / scale
    x = x[:, None]
    size = int(loaded.input_size or 0)
    if size and tuple(x.shape[-2:]) != (size, size):
        x = resize(x, [size, size], interpolation=InterpolationMode(loaded.interpolation), antialias=True)
    if loaded.channels != 1:
        x = x.expand(-1, loaded.channels, -1, -1)
    mean = torch.tensor(loaded.mean, dtype=torch.float32)
    std = torch.tensor(loaded.std, dtype=torch.float32)
    if mean.numel() == 1:
        mean, std = mean.expand(loaded.channels), std.expand(loaded.channels)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return x.contiguous().to(device or loaded.device)


# --------------------------------------------------------------------------- hooks
def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


class _LayerHooks:
    """Forward hooks on every non-container module calling ``callback(name, type, tensor)``."""

    def __init__(self, model, callback):
        containers = _container_types()
        self.callback = callback
        self.calls = Counter()
        self.handles = []
        for qual, module in model.named_modules():
            if isinstance(module, containers):
                continue
            if hasattr(module, "inplace") and isinstance(module.inplace, bool):
                module.inplace = False  # the hooked output must not be overwritten by the next op
            self.handles.append(module.register_forward_hook(partial(self._hook, qual or "output")))

    def new_batch(self, batch_size: int | None = None):
        self.calls.clear()
        self.batch_size = batch_size

    batch_size = None

    def _hook(self, qual, module, inputs, output):
        t = _first_tensor(output)
        if t is None or not t.is_floating_point() or t.ndim == 0:
            return
        if self.batch_size is not None and t.shape[0] != self.batch_size:
            # not one row per image (e.g. Swin's window partitions, LeViT's folded attention):
            # an internal reshaping, not a layer of image representations
            return
        k = self.calls[qual]
        self.calls[qual] += 1
        self.callback(qual if k == 0 else f"{qual}:{k + 1}", type(module).__name__, t.detach())

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _batches(n: int, batch_size: int):
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def run_forward(loaded, x):
    """One forward pass in inference mode; a too-small image gives a clear error."""
    import torch

    try:
        with torch.inference_mode():
            loaded.model(x)
    except RuntimeError as exc:
        msg = str(exc)
        if any(s in msg for s in ("size", "Kernel", "kernel", "shape", "Expected", "dimension")):
            raise ValueError(
                f"model {loaded.name!r} cannot take images of {tuple(x.shape[1:])} "
                f"(input_size {loaded.input_size}): {msg.splitlines()[0]}; set another input size "
                "in the catalog (input_size column) or resize the stimuli"
            ) from exc
        raise


def iter_layer_activations(loaded, pixels: np.ndarray, batch_size: int = 32, device=None):
    """Yield every distinct layer's full activations, in depth order (brute force; memory-hungry).

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`neuroxr.features.zoo.load_model`.
    pixels : ndarray (image, y, x)
        The stored stimuli.
    batch_size : int
        Images per forward pass.

    Yields
    ------
    layer_name : str
    module_type : str
    activations : ndarray float32 (image, n_features)
        The flattened module output; layers identical to an earlier one are skipped.
    """
    import torch

    if device is not None:
        loaded.model.to(device)
        loaded.device = str(device)
    pixels = np.asarray(pixels)
    scale = find_pixel_scale(pixels)
    store: dict[str, list] = {}
    types: dict[str, str] = {}

    def keep(name, mtype, t):
        arr = t.reshape(t.shape[0], -1).to("cpu", torch.float32).numpy().copy()
        store.setdefault(name, []).append(arr)
        types.setdefault(name, mtype)

    with _LayerHooks(loaded.model, keep) as hooks:
        for sl in _batches(len(pixels), batch_size):
            hooks.new_batch(sl.stop - sl.start)
            run_forward(loaded, preprocess_images(loaded, pixels[sl], scale, device))
    kept: list[tuple[str, np.ndarray]] = []
    for name, parts in store.items():
        acts = np.concatenate(parts, axis=0)
        if any(a.shape == acts.shape and np.array_equal(a, acts, equal_nan=True) for _, a in kept):
            continue
        kept.append((name, acts))
    for name, acts in kept:
        yield name, types[name], acts


# --------------------------------------------------------------------------- streaming reductions
#: sparse random projection of the study: JL bound for the number of images with eps 0.1,
#: sklearn's SparseRandomProjection with density 'auto' (1/sqrt(p)) and random_state 1 for every
#: layer, applied to the raw (not z-scored) features; layers with p <= n_components are kept as is.
SRP_EPS = 0.1
SRP_SEED = 1


def find_srp_components(srp, n_images: int) -> int | None:
    """Number of SRP components: ``None``/0 (no projection), an int, or ``'auto'`` (JL bound, eps 0.1)."""
    if srp in (None, 0, "0", "none", "None", False):
        return None
    if str(srp).lower() == "auto":
        from sklearn.random_projection import johnson_lindenstrauss_min_dim

        return int(johnson_lindenstrauss_min_dim(int(n_images), eps=SRP_EPS))
    k = int(srp)
    if k < 1:
        raise ValueError(f"--srp must be a positive number of components or 'auto', got {srp!r}")
    return k


class _SRPCache:
    """sklearn's sparse random matrix per (n_features, seed): drawn once, reused, sliced by feature chunk."""

    def __init__(self, n_components: int, seed: int = SRP_SEED, maxsize: int = 2):
        self.k, self.seed, self.maxsize = n_components, seed, maxsize
        self._cache: dict = {}

    def matrix(self, p: int):
        """The (n_features, n_components) projection as a CSR matrix (rows sliceable by feature chunk)."""
        if p not in self._cache:
            import warnings

            from sklearn.random_projection import SparseRandomProjection

            if len(self._cache) >= self.maxsize:
                self._cache.pop(next(iter(self._cache)))
            srp = SparseRandomProjection(n_components=self.k, density="auto", random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                srp.fit(np.zeros((1, p), dtype=np.float32))  # fit draws the matrix from the feature count only
            self._cache[p] = srp.components_.T.tocsr()
        return self._cache[p]


class _Reducer:
    """Accumulates one layer's summaries over feature chunks: Gram, z-scored Gram, sums, SRP.

    The Gram matrices come from :class:`neuroxr.mapping.gram.GramAccumulator` (float64, one
    fused pass per cache-sized chunk), so the stored matrices match a float64 brute force to
    round-off (~1e-13 relative).  Products in float32 were tried: over long chunks they lose
    ~1e-6 relative (measured on resnet18).
    """

    def __init__(self, n: int, p: int, srp: _SRPCache | None, precision: str = "float64"):
        from ..mapping.gram import GramAccumulator

        if precision != "float64":
            raise ValueError(f"precision must be 'float64', got {precision!r}")
        self.n, self.p, self.precision = n, p, precision
        self._acc = GramAccumulator(n, raw=True, zscored=True, n_threads=None)
        self.srp = None
        if srp is not None:
            self.srp = np.zeros((n, srp.k))
            self._proj = srp.matrix(p) if p > srp.k else None

    def chunk_size(self, chunk_bytes: int) -> int:
        return max(1, int(chunk_bytes // (8 * self.n)))

    def add(self, x: np.ndarray, start: int):
        """Add the feature chunk ``x`` (image, c) float32 holding features ``start:start + c``."""
        self._acc.add(x)
        if self.srp is not None:
            c = x.shape[1]
            if self._proj is None:
                self.srp[:, start:start + c] = x
            else:
                self.srp += (self._proj[start:start + c].T @ np.asarray(x, dtype=np.float64).T).T

    def finish(self) -> dict:
        out = self._acc.result()
        if self.srp is not None:
            out["srp"] = self.srp.astype(np.float32)
        return out


class _Buffer:
    """One layer's activations (image, p) float32: in memory, or spilled row by row to a file."""

    def __init__(self, n: int, p: int, path=None):
        self.n, self.p, self.path = n, p, path
        self.rows = 0
        if path is None:
            self._arr = np.empty((n, p), dtype=np.float32)
            self._f = None
        else:
            self._arr = None
            self._f = open(path, "wb")

    def append(self, arr: np.ndarray):
        r = arr.shape[0]
        if self.rows + r > self.n:
            raise ValueError(f"layer produced more than {self.n} rows")
        if self._f is None:
            self._arr[self.rows:self.rows + r] = arr
        else:
            self._f.write(memoryview(np.ascontiguousarray(arr, dtype=np.float32)).cast("B"))
        self.rows += r

    def _view(self):
        if self._f is None:
            return self._arr[: self.rows]
        self._f.flush()
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(self.rows, self.p))

    def head(self, rows: int) -> np.ndarray:
        """The first ``rows`` rows (a copy when spilled)."""
        return np.array(self._view()[:rows]) if self._f is not None else self._arr[:rows]

    def chunks(self, size: int):
        """Yield ``(start, x)`` with ``x`` (image, c) float32 holding features ``start:start + c``."""
        view = self._view()
        for start in range(0, self.p, size):
            yield start, np.ascontiguousarray(view[:, start:start + size])
        del view

    def close(self):
        self._arr = None
        if self._f is not None:
            import os

            self._f.close()
            self._f = None
            try:
                os.remove(self.path)
            except OSError:
                pass


class _Collector:
    """Forward-hook callback: fingerprints each layer's output, keeps distinct layers' rows."""

    def __init__(self, n: int, ram_budget: float, tmpdir):
        self.n, self.ram_budget, self.tmpdir = n, ram_budget, tmpdir
        self.layers: dict = {}
        self.batch = -1
        self.batch_keys: dict = {}
        self.ram_used = 0
        self._w: dict = {}
        self._spills = 0

    def new_batch(self):
        self.batch += 1
        self.batch_keys = {}

    def _weights(self, p):
        import torch

        if p not in self._w:
            if len(self._w) > 4:
                self._w.pop(next(iter(self._w)))
            g = torch.Generator().manual_seed(p)
            self._w[p] = torch.randn(p, generator=g, dtype=torch.float32)
        return self._w[p]

    def _new_buffer(self, p):
        need = self.n * p * 4
        if self.ram_used + need <= self.ram_budget:
            self.ram_used += need
            return _Buffer(self.n, p)
        import os

        self._spills += 1
        return _Buffer(self.n, p, os.path.join(self.tmpdir, f"layer{self._spills:04d}.f32"))

    def __call__(self, name, mtype, t):
        import torch

        nb = t.shape[0]
        f = t.reshape(nb, -1)
        if f.dtype != torch.float32 or f.device.type != "cpu":
            f = f.to("cpu", torch.float32)
        f = f.contiguous()
        p = f.shape[1]
        # fingerprint: a fixed random projection and the norm of each image's output; layers
        # whose fingerprints agree in every batch are taken as duplicates of the first
        fp = torch.mv(f, self._weights(p))
        norm = torch.linalg.vector_norm(f, dim=1)
        key = (p, fp.numpy().tobytes(), norm.numpy().tobytes())
        L = self.layers.get(name)
        if L is None:
            L = {"type": mtype, "p": p, "alias": None, "buffer": None, "finite": True, "keys": [],
                 "rows": 0}
            self.layers[name] = L
            root = self.batch_keys.get(key)
            if root is not None and self.batch == 0:
                L["alias"] = root
            else:
                L["buffer"] = self._new_buffer(p)
        elif L["alias"] is not None:
            A = self.layers[L["alias"]]
            if len(A["keys"]) <= self.batch or A["keys"][self.batch] != key:
                other = self.batch_keys.get(key)
                if other is not None and self.layers[other]["keys"][: self.batch] == L["keys"]:
                    L["alias"] = other  # still a duplicate, of another layer that matched so far
                else:  # not a duplicate after all: materialise from the layer it matched so far
                    L["buffer"] = self._new_buffer(p)
                    L["buffer"].append(A["buffer"].head(L["rows"]))
                    L["alias"] = None
        if L["alias"] is None:
            if L["p"] != p:
                raise ValueError(f"layer {name!r} changed size between batches ({L['p']} -> {p} features)")
            L["buffer"].append(f.numpy())
        L["rows"] += nb
        L["keys"].append(key)
        self.batch_keys.setdefault(key, name if L["alias"] is None else L["alias"])

    def close(self):
        for L in self.layers.values():
            if L["buffer"] is not None:
                L["buffer"].close()


def _layer_dataset(model, weights, family, source, names, types, results, finite, image, srp_k=None,
                   n_features=None):
    """Stack per-layer results into the features Dataset (layer, image, image_j[, component])."""
    import xarray as xr

    from .. import schema as S

    L = len(names)
    depth = np.arange(L)
    rel = depth / (L - 1) if L > 1 else np.zeros(L)
    data = {
        "gram": ((S.LAYER, S.IMAGE, S.IMAGE_J), np.stack([r["gram"] for r in results])),
        "gram_z": ((S.LAYER, S.IMAGE, S.IMAGE_J), np.stack([r["gram_z"] for r in results])),
        "feature_sum": ((S.LAYER, S.IMAGE), np.stack([r["feature_sum"] for r in results])),
    }
    coords = {
        S.LAYER: [S.layer_id(model, weights, n) for n in names],
        "model": (S.LAYER, np.array([model] * L, dtype=str)),
        "layer_name": (S.LAYER, np.array(names, dtype=str)),
        "depth": (S.LAYER, depth.astype(np.int64)),
        "relative_depth": (S.LAYER, rel.astype(np.float64)),
        "weights": (S.LAYER, np.array([weights] * L, dtype=str)),
        "family": (S.LAYER, np.array([family] * L, dtype=str)),
        "n_features": (S.LAYER, np.asarray(n_features, dtype=np.int64)),
        "module_type": (S.LAYER, np.array(types, dtype=str)),
        "source": (S.LAYER, np.array([source] * L, dtype=str)),
        "finite": (S.LAYER, np.asarray(finite, dtype=bool)),
        S.IMAGE: np.asarray(image, dtype=np.int64),
        S.IMAGE_J: np.asarray(image, dtype=np.int64),
    }
    if srp_k is not None:
        data[S.SRP] = ((S.LAYER, S.IMAGE, S.COMPONENT), np.stack([r["srp"] for r in results]))
        coords[S.COMPONENT] = np.arange(srp_k, dtype=np.int64)
        coords["n_components"] = (S.LAYER, np.minimum(np.asarray(n_features), srp_k).astype(np.int64))
    coords[S.LAYER] = np.array(coords[S.LAYER], dtype=str)
    return xr.Dataset(data, coords=coords)


def reduce_features(features: np.ndarray, srp_components=None, srp_seed: int = SRP_SEED,
                    chunk_bytes: int = 8 << 20, precision: str = "float64", _srp_cache=None) -> dict:
    """Per-layer summaries of one full feature matrix (image, n_features), computed by feature chunks.

    Returns a dict of ``gram`` (image, image_j) = X X^T, ``gram_z`` = Z Z^T (Z z-scored per feature,
    ddof 0, constant features 0), ``feature_sum`` (image,) and, with ``srp_components``, ``srp``
    (image, component) float32.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    n, p = x.shape
    cache = _srp_cache or (_SRPCache(srp_components, srp_seed) if srp_components else None)
    red = _Reducer(n, p, cache, precision)
    size = red.chunk_size(chunk_bytes)
    for start in range(0, p, size):
        red.add(np.asarray(x[:, start:start + size], dtype=np.float32), start)
    return red.finish()


def reduce_model(loaded, pixels, image=None, *, batch_size: int = 32, srp=None, srp_seed: int = SRP_SEED,
                 ram_budget: float = 1 << 30, tmpdir=None, chunk_bytes: int = 8 << 20,
                 precision: str = "float64", progress=None, device=None):
    """Run ``loaded`` over the stimuli and reduce every distinct layer as it streams past.

    Parameters
    ----------
    loaded : LoadedModel
    pixels : ndarray or DataArray (image, y, x)
        The stimuli; a lazy DataArray is read one batch at a time.
    image : array of int, optional
        The ``image`` coordinate (default: ``pixels``' own, or 0..n-1).
    batch_size : int
        Images per forward pass (peak memory ~ one batch of the largest layers).
    srp : int, 'auto' or None
        Number of sparse-random-projection components to store as ``srp`` (layer, image, component).
    ram_budget : float
        Bytes of layer activations held in memory until the last batch; layers beyond it are
        spilled to files in ``tmpdir`` and read back by feature chunks.

    Returns
    -------
    Dataset
        ``gram``, ``gram_z`` (layer, image, image_j) float64, ``feature_sum`` (layer, image) float64,
        optional ``srp`` (layer, image, component) float32, with the layer coords of the contract.
    """
    import shutil
    import tempfile

    from tqdm.auto import tqdm

    if device is not None:
        loaded.model.to(device)
        loaded.device = str(device)
    n = int(pixels.shape[0])
    if image is None:
        image = pixels[pixels.dims[0]].values if hasattr(pixels, "dims") and pixels.dims[0] in pixels.coords else np.arange(n)
    srp_k = find_srp_components(srp, n)
    scale = find_pixel_scale(pixels)
    work = tempfile.mkdtemp(prefix=".spill-", dir=tmpdir)
    collector = _Collector(n, ram_budget, work)
    try:
        with _LayerHooks(loaded.model, collector) as hooks:
            for sl in tqdm(list(_batches(n, batch_size)), desc=f"{loaded.name} forward", unit="batch",
                           disable=progress is False or None if progress is None else not progress, leave=False):
                batch = pixels[sl]
                batch = np.asarray(batch.values if hasattr(batch, "values") else batch)
                hooks.new_batch(len(batch))
                collector.new_batch()
                run_forward(loaded, preprocess_images(loaded, batch, scale))
        names, types, results, finite, nfeat = [], [], [], [], []
        cache = _SRPCache(srp_k, srp_seed) if srp_k else None
        roots = [(k, L) for k, L in collector.layers.items() if L["alias"] is None]
        for name, L in tqdm(roots, desc=f"{loaded.name} layers", unit="layer",
                            disable=None if progress is None else not progress, leave=False):
            buf = L["buffer"]
            if buf.rows != n:  # produced in some batches only (conditional branch): not a layer of all images
                buf.close()
                continue
            red = _Reducer(n, L["p"], cache, precision)
            for start, x in buf.chunks(red.chunk_size(chunk_bytes)):
                red.add(x, start)
            buf.close()
            names.append(name)
            types.append(L["type"])
            results.append(red.finish())
            finite.append(bool(all(np.isfinite(v).all() for v in results[-1].values())))
            nfeat.append(L["p"])
    finally:
        collector.close()
        shutil.rmtree(work, ignore_errors=True)
    if not names:
        raise ValueError(f"model {loaded.name!r} produced no layer outputs on these stimuli")
    return _layer_dataset(loaded.name, loaded.weights, loaded.family, loaded.source, names, types, results,
                          finite, image, srp_k, nfeat)


# --------------------------------------------------------------------------- study level
def _features_path(study, model):
    from .. import schema as S

    return S.study_path(study, S.FEATURES_DIR, f"{model}.zarr")


def _store_settings(srp_k, srp_seed):
    return {"srp_components": srp_k, "srp_eps": SRP_EPS if srp_k else None, "srp_seed": srp_seed if srp_k else None,
            "srp_density": "auto" if srp_k else None, "precision": "float64"}


def _existing(path):
    """The finished store at ``path`` (loaded), or None.  Temporary stores are never looked at."""
    from ..io.store import open_dataset

    if not path.exists():
        return None
    return open_dataset(path).load()


def _write_variant(path, ds, settings, inputs, overwrite):
    """Add one (model, weights) variant to the model's store: concat with what is there, atomic rewrite."""
    import json

    import xarray as xr

    from .. import schema as S
    from ..io.store import check_settings, provenance, read_settings, write_dataset

    old = None if overwrite else _existing(path)
    variants = {}
    if old is not None:
        have = read_settings(old)
        check_settings({k: have.get(k) for k in settings}, settings, path)
        variants = json.loads(old.attrs.get("variants", "{}"))
        label = str(ds["weights"].values[0])
        old = old.isel({S.LAYER: np.flatnonzero(np.asarray(old["weights"].values) != label)})
        if old.sizes.get(S.LAYER, 0):
            if not np.array_equal(old[S.IMAGE].values, ds[S.IMAGE].values):
                raise ValueError(f"{path}: image ids differ from the stimuli's; use --overwrite to rebuild it")
            ds = xr.concat([old, ds], dim=S.LAYER, data_vars="all", coords="different", compat="equals",
                           join="outer")
    variants.update(inputs.pop("variant"))
    ds.attrs = provenance(settings, inputs)
    ds.attrs["variants"] = json.dumps(variants, sort_keys=True, default=str)
    write_dataset(ds, path, overwrite=True)
    return path


def _clean_features_dir(study):
    """Remove what a killed run left (temporary stores, spill directories); run before any task starts."""
    import shutil

    from .. import schema as S
    from ..io.store import clean_stale

    d = S.study_path(study, S.FEATURES_DIR)
    clean_stale(d)
    for p in d.glob(".spill-*") if d.exists() else []:
        shutil.rmtree(p, ignore_errors=True)


def has_variant(study, model: str, weights: str) -> bool:
    """True when ``STUDY/features/<model>.zarr`` already holds the layers of ``weights``."""
    path = _features_path(study, model)
    if not path.exists():
        return False
    from ..io.store import open_dataset

    ds = open_dataset(path)
    return weights in set(np.asarray(ds["weights"].values).tolist())


def _weights_label(weights):
    w = str(weights)
    if w in ("random", "trained"):
        return w
    from pathlib import Path

    from ..io.store import hash_file

    p = Path(w).expanduser()
    if not p.exists():
        from ..errors import MissingDataError

        raise MissingDataError(f"weights file {p} does not exist")
    return hash_file(p)


def extract_model(study, model: str, weights="random", seed: int = 0, srp=None, srp_seed: int = SRP_SEED,
                  batch_size: int = 32, device=None, catalog=None, overwrite: bool = False,
                  ram_budget: float = 1 << 30, progress=None) -> dict:
    """Extract one model into ``STUDY/features/<model>.zarr`` (skipped when already there).

    Returns a dict ``{"model", "weights", "status": "done"|"skipped", "layers", "nonfinite": [...]}``.
    """
    from .. import schema as S
    from ..io.store import hash_array
    from ..study import open_study
    from .zoo import load_model

    st = open_study(study)
    label = _weights_label(weights)
    path = _features_path(study, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and has_variant(study, model, label):
        return {"model": model, "weights": label, "status": "skipped", "layers": None, "nonfinite": []}
    stim = st.stimuli
    S.validate_stimuli(stim, st.store(S.STIMULI_STORE))
    pixels = stim[S.PIXELS]
    srp_k = find_srp_components(srp, pixels.shape[0])
    loaded = load_model(model, weights=weights, seed=seed, device=device, catalog=catalog)
    ds = reduce_model(loaded, pixels, image=stim[S.IMAGE].values, batch_size=batch_size, srp=srp_k,
                      srp_seed=srp_seed, ram_budget=ram_budget, tmpdir=path.parent, progress=progress)
    inputs = {"stimuli": hash_array(pixels), "variant": {label: {**loaded.settings(), "weights_sha256":
              None if label in ("random", "trained") else label, "layers": int(ds.sizes[S.LAYER])}}}
    _write_variant(path, ds, _store_settings(srp_k, srp_seed if srp_k else None), inputs, overwrite)
    bad = [str(n) for n, ok in zip(ds["layer_name"].values, ds["finite"].values) if not ok]
    if bad:
        import warnings

        warnings.warn(f"{model} ({label}): {len(bad)} layer(s) with NaN or infinite activations, kept and "
                      f"marked finite=False: {', '.join(bad[:5])}", RuntimeWarning, stacklevel=2)
    return {"model": model, "weights": label, "status": "done", "layers": int(ds.sizes[S.LAYER]), "nonfinite": bad}


def extract_features(study, models=None, weights="random", seed: int = 0, srp=None, catalog=None,
                     family=None, client=None, overwrite: bool = False, batch_size: int = 32,
                     device=None, srp_seed: int = SRP_SEED, progress=None) -> list[dict]:
    """Extract the per-layer summaries of several models into ``STUDY/features/<model>.zarr``.

    Parameters
    ----------
    study : path
        Study directory with ``stimuli.zarr`` (``pixels`` (image, y, x)).
    models : list of str, optional
        Model names; default: every row of ``catalog`` (optionally one ``family``).
    weights : 'random', 'trained' or path
    seed : int
        Seed of the random initialisation.
    srp : int, 'auto' or None
        Also store the sparse random projection ``srp`` (layer, image, component).
    catalog : path, optional
        A models CSV (default: the shipped catalog).
    family : str, optional
        Restrict the catalog to one family.
    client : distributed.Client, optional
        Run one Dask task per model on the cluster; otherwise models run here, one after another.
    overwrite : bool
        Rebuild the stores instead of skipping (model, weights) pairs already extracted.

    Returns
    -------
    list of dict
        One summary per model (``status`` ``done`` or ``skipped``, number of layers, non-finite layers).
    """
    from tqdm.auto import tqdm

    from .zoo import _row_for, list_models

    if not models:
        models = list(list_models(family=family, catalog=catalog)["model"])
    elif family is not None:
        keep = set(list_models(family=family, catalog=catalog)["model"])
        models = [m for m in models if m in keep]
    for m in models:  # fail early on unknown names, before any model runs
        _row_for(m, catalog)
    _clean_features_dir(study)
    kw = dict(weights=weights, seed=seed, srp=srp, srp_seed=srp_seed, batch_size=batch_size, device=device,
              catalog=catalog, overwrite=overwrite)
    if client is not None:
        from ..cluster import gather, gpu_resources

        res = gpu_resources(client)  # GPU workers (`dask worker --resources GPU=1`) take the models
        futures = [client.submit(extract_model, study, m, progress=False, pure=False, key=f"extract-{m}",
                                 resources=res, **kw)
                   for m in models]
        return gather(client, futures, what="feature extraction")
    out = []
    for m in tqdm(models, desc="models", unit="model", disable=None if progress is None else not progress):
        out.append(extract_model(study, m, progress=progress, **kw))
    return out


# --------------------------------------------------------------------------- features from elsewhere
def _read_feature_file(path):
    """Layers of a features file: .npy (image, ...), .npz (one array per layer), .nc (variables with an image dim)."""
    from pathlib import Path

    from .. import schema as S
    from ..errors import MissingDataError

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
        import xarray as xr

        ds = xr.open_dataset(path, engine="h5netcdf")
        layers = []
        for name, da in ds.data_vars.items():
            if S.IMAGE not in da.dims:
                continue
            da = da.transpose(S.IMAGE, ...)
            ids = da[S.IMAGE].values if S.IMAGE in da.coords else None
            layers.append((str(name), da.values, ids))
        if not layers:
            raise ValueError(f"{path}: no variable has an {S.IMAGE!r} dim (found {list(ds.data_vars)})")
        return layers
    raise ValueError(f"{path}: unknown features format {suffix!r}; use .npy, .npz or .nc")


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
    from .. import schema as S
    from ..io.store import hash_array, hash_file
    from ..study import open_study

    st = open_study(study)
    stim = st.stimuli
    image = stim[S.IMAGE].values
    n = len(image)
    label = str(weights) if weights else hash_file(path)
    out_path = _features_path(study, model)
    if not overwrite and has_variant(study, model, label):
        return {"model": model, "weights": label, "status": "skipped", "layers": None, "nonfinite": []}
    srp_k = find_srp_components(srp, n)
    cache = _SRPCache(srp_k, srp_seed) if srp_k else None
    names, types, results, nfeat = [], [], [], []
    for name, arr, ids in _read_feature_file(path):
        arr = np.asarray(arr, dtype=np.float32)
        if ids is not None:
            pos = {int(v): i for i, v in enumerate(ids)}
            missing = [int(i) for i in image if int(i) not in pos]
            if missing:
                raise ValueError(f"{path}: variable {name!r} lacks images {missing[:5]} of the study's stimuli")
            arr = arr[[pos[int(i)] for i in image]]
        if arr.ndim < 2 or arr.shape[0] != n:
            raise ValueError(
                f"{path}: layer {name!r} has shape {arr.shape}; expected (image={n}, features...) "
                "samples first, one row per stimulus in the study's image order"
            )
        x = arr.reshape(n, -1)
        names.append(name)
        types.append("imported")
        results.append(reduce_features(x, srp_k, srp_seed, _srp_cache=cache))
        nfeat.append(x.shape[1])
    finite = [bool(all(np.isfinite(v).all() for v in r.values())) for r in results]
    ds = _layer_dataset(model, label, family, source, names, types, results, finite, image, srp_k, nfeat)
    inputs = {"stimuli": hash_array(stim[S.PIXELS]), "features_file": str(path),
              "variant": {label: {"features_file": str(path), "sha256": hash_file(path)}}}
    _write_variant(out_path, ds, _store_settings(srp_k, srp_seed if srp_k else None), inputs, overwrite)
    return {"model": model, "weights": label, "status": "done", "layers": len(names),
            "nonfinite": [n_ for n_, ok in zip(names, finite) if not ok]}
