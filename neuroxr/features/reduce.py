"""Streaming per-layer reductions: Gram matrices, feature sums and the sparse random projection.

A model's layers stream past :class:`LayerCollector` batch by batch (held in memory, or
spilled to files past a RAM budget), or are reduced in their hooks in one pass
(:mod:`.onepass`, chosen by :func:`neuroxr.features.run.reduce_model`); layers whose outputs are identical to an earlier
layer's (Dropout and Identity in eval mode, a block whose output is its last ReLU's) are
dropped, keeping the first.  Each kept layer is then reduced by feature chunks
(:class:`LayerReducer`), so memory stays at one chunk per layer.  Depth is the order of
execution among the kept layers.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import xarray as xr
from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim

from .. import schema as S
from ..errors import NeuroxrError
from ..io.reader import available_memory
from ..mapping.gram import PRECISIONS, GramAccumulator


class FeatureError(NeuroxrError, ValueError):
    """Features that cannot be reduced: wrong shape, sizes changing between batches, bad settings."""


#: sparse random projection of the study: JL bound for the number of images with eps 0.1,
#: sklearn's SparseRandomProjection with density 'auto' (1/sqrt(p)) and random_state 1 for every
#: layer, applied to the raw (not z-scored) features; layers with p <= n_components are kept as is.
SRP_EPS = 0.1
SRP_SEED = 1
#: the activations kept in memory until the last batch: this share of the available memory, at least 1 GiB
RAM_SHARE = 0.25
MIN_RAM_BUDGET = 1 << 30
#: the Gram products of a model's extraction (:class:`neuroxr.mapping.gram.GramAccumulator`):
#: "mixed", the raw Gram (RSA's) with float32 products centred and summed in float64 (~1e-8
#: relative, RSA r within 2e-7 of float64 products), the z-scored Gram (ridge's) with float64
#: products.  "float32" for both is faster again, but moved leave-one-out ridge r at alpha 1 by
#: 4e-5 on resnet50 (``benchmarks/bench_extract.py`` prints the differences per model).
#: The default is "float64" products for both, so RSA and ridge equal their float64 references to
#: the last digits (1e-8 and better); ``NEUROXR_GRAM_PRODUCTS=mixed`` (or ``float32``) trades that
#: for speed, and every features store records the products it used (``gram_products``).
MODEL_PRECISION = os.environ.get("NEUROXR_GRAM_PRODUCTS", "float64")
if MODEL_PRECISION not in ("float64", "mixed", "float32"):
    raise NeuroxrError(f"NEUROXR_GRAM_PRODUCTS={MODEL_PRECISION!r}: choose float64, mixed or float32")


def default_ram_budget() -> float:
    """Bytes of activations an extraction may hold: :data:`RAM_SHARE` of the memory available to this
    process (host and cgroup limit), at least :data:`MIN_RAM_BUDGET`."""
    return max(float(MIN_RAM_BUDGET), RAM_SHARE * available_memory())


def find_srp_components(srp, n_images: int) -> int | None:
    """Number of SRP components: ``None``/0 (no projection), an int, or ``'auto'`` (JL bound, eps 0.1)."""
    if srp in (None, 0, "0", "none", "None", False):
        return None
    if str(srp).lower() == "auto":
        return int(johnson_lindenstrauss_min_dim(int(n_images), eps=SRP_EPS))
    k = int(srp)
    if k < 1:
        raise FeatureError(f"--srp must be a positive number of components or 'auto', got {srp!r}")
    return k


class SRPCache:
    """sklearn's sparse random matrix per (n_features, seed): drawn once, reused, sliced by feature chunk."""

    def __init__(self, n_components: int, seed: int = SRP_SEED, maxsize: int = 2):
        self.k, self.seed, self.maxsize = n_components, seed, maxsize
        self._cache: dict = {}

    def matrix(self, p: int):
        """The (n_features, n_components) projection as a CSR matrix (rows sliceable by feature chunk)."""
        if p not in self._cache:
            if len(self._cache) >= self.maxsize:
                self._cache.pop(next(iter(self._cache)))
            srp = SparseRandomProjection(n_components=self.k, density="auto", random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                srp.fit(np.zeros((1, p), dtype=np.float32))  # fit draws the matrix from the feature count only
            self._cache[p] = srp.components_.T.tocsr()
        return self._cache[p]


class LayerReducer:
    """Accumulates one layer's summaries over feature chunks: Gram, z-scored Gram, sums, SRP.

    The Gram matrices come from :class:`neuroxr.mapping.gram.GramAccumulator` (one fused pass
    per cache-sized chunk): with ``precision="float64"`` products they match a float64 brute
    force to round-off (~1e-13 relative); with ``"float32"`` (each chunk centred in float64,
    multiplied in float32, summed in float64) to ~1e-8 relative, about twice as fast; ``"mixed"``
    (:data:`MODEL_PRECISION`) multiplies only the raw Gram in float32.
    """

    def __init__(self, n: int, p: int, srp: SRPCache | None, precision: str = "float64", n_threads: int = 1,
                 backend: str = "auto"):
        if precision not in PRECISIONS:
            raise FeatureError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.n, self.p, self.precision = n, p, precision
        # n_threads: the caller's thread budget (features.threads), BLAS kept at one thread there;
        # backend: the accumulator's ("torch:<device>" takes the layer as a tensor on that device)
        self._acc = GramAccumulator(n, raw=True, zscored=True, n_threads=n_threads, precision=precision,
                                    backend=backend)
        self.srp = None
        if srp is not None:
            self.srp = np.zeros((n, srp.k))
            self._proj = srp.matrix(p) if p > srp.k else None

    def chunk_size(self, chunk_bytes: int) -> int:
        return max(1, int(chunk_bytes // (8 * self.n)))

    def add(self, x: np.ndarray, start: int):
        """Add the feature chunk ``x`` (image, c) float32 holding features ``start:start + c`` (an array,
        or a torch tensor for a torch backend)."""
        self._acc.add(x)
        if self.srp is not None:
            c = x.shape[1]
            if isinstance(x, torch.Tensor):
                x = x.cpu().numpy()
            if self._proj is None:
                self.srp[:, start:start + c] = x
            else:
                self.srp += (self._proj[start:start + c].T @ np.asarray(x, dtype=np.float64).T).T

    def finish(self) -> dict:
        out = self._acc.result()
        if self.srp is not None:
            out["srp"] = self.srp.astype(np.float32)
        return out


class ActivationBuffer:
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
            raise FeatureError(f"layer produced more than {self.n} rows")
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
            self._f.close()
            self._f = None
            try:
                os.remove(self.path)
            except OSError:
                pass


def as_rows(t, device="cpu") -> torch.Tensor:
    """A layer's output (image, ...) as a contiguous float32 tensor (image, features) on ``device``
    (``None``: where it is)."""
    f = t.reshape(t.shape[0], -1)
    if f.dtype != torch.float32 or (device is not None and f.device.type != device):
        f = f.to(device or f.device, torch.float32)
    return f.contiguous()


class Fingerprints:
    """Fingerprint of a layer's output: a fixed random projection and the norm of each image's row."""

    def __init__(self):
        self._w: dict = {}

    def _weights(self, p, device):
        if (p, device) not in self._w:
            if len(self._w) > 4:
                self._w.pop(next(iter(self._w)))
            g = torch.Generator().manual_seed(p)
            self._w[p, device] = torch.randn(p, generator=g, dtype=torch.float32).to(device)
        return self._w[p, device]

    def key(self, f: torch.Tensor) -> tuple:
        """``(p, projection bytes, norm bytes)`` of ``f`` (image, p) float32, on any device."""
        fp = torch.mv(f, self._weights(f.shape[1], f.device))
        norm = torch.linalg.vector_norm(f, dim=1)
        return f.shape[1], fp.cpu().numpy().tobytes(), norm.cpu().numpy().tobytes()


class LayerCollector:
    """Forward-hook callback: fingerprints each layer's output, keeps distinct layers' rows."""

    def __init__(self, n: int, ram_budget: float, tmpdir):
        self.n, self.ram_budget, self.tmpdir = n, ram_budget, tmpdir
        self.layers: dict = {}
        self.batch = -1
        self.batch_keys: dict = {}
        self.ram_used = 0
        self._fingerprints = Fingerprints()
        self.spills = 0

    def new_batch(self):
        self.batch += 1
        self.batch_keys = {}

    def _new_buffer(self, p):
        need = self.n * p * 4
        if self.ram_used + need <= self.ram_budget:
            self.ram_used += need
            return ActivationBuffer(self.n, p)
        self.spills += 1
        return ActivationBuffer(self.n, p, os.path.join(self.tmpdir, f"layer{self.spills:04d}.f32"))

    def __call__(self, name, mtype, t):
        nb = t.shape[0]
        f = as_rows(t)
        p = f.shape[1]
        # layers whose fingerprints agree in every batch are taken as duplicates of the first
        key = self._fingerprints.key(f)
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
                raise FeatureError(f"layer {name!r} changed size between batches ({L['p']} -> {p} features)")
            L["buffer"].append(f.numpy())
        L["rows"] += nb
        L["keys"].append(key)
        self.batch_keys.setdefault(key, name if L["alias"] is None else L["alias"])

    def close(self):
        for L in self.layers.values():
            if L["buffer"] is not None:
                L["buffer"].close()


def build_layer_dataset(model, weights, family, source, names, types, results, finite, image, srp_k=None,
                   n_features=None):
    """Stack per-layer results into the features Dataset (layer, image, image_j[, component])."""
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


def read_batch(pixels, sl) -> np.ndarray:
    """``pixels[sl]`` as a NumPy array; lazy (dask) stimuli are read in this thread, not in a pool of
    their own beside the model's threads (the thread budget of :mod:`.threads`)."""
    data = getattr(pixels[sl], "data", pixels[sl])
    if hasattr(data, "compute"):
        data = data.compute(scheduler="synchronous")
    return np.asarray(data)


def reduce_features(features: np.ndarray, srp_components=None, srp_seed: int = SRP_SEED,
                    chunk_bytes: int = 8 << 20, precision: str = "float64", srp_cache=None) -> dict:
    """Per-layer summaries of one full feature matrix (image, n_features), computed by feature chunks.

    Returns a dict of ``gram`` (image, image_j) = X X^T, ``gram_z`` = Z Z^T (Z z-scored per feature,
    ddof 0, constant features 0), ``feature_sum`` (image,) and, with ``srp_components``, ``srp``
    (image, component) float32.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    n, p = x.shape
    cache = srp_cache or (SRPCache(srp_components, srp_seed) if srp_components else None)
    red = LayerReducer(n, p, cache, precision)
    size = red.chunk_size(chunk_bytes)
    for start in range(0, p, size):
        red.add(np.asarray(x[:, start:start + size], dtype=np.float32), start)
    return red.finish()


__all__ = ["SRP_EPS", "SRP_SEED", "FeatureError", "SRPCache", "LayerReducer", "LayerCollector",
           "ActivationBuffer", "find_srp_components", "build_layer_dataset", "reduce_features",
           "default_ram_budget", "read_batch", "as_rows", "Fingerprints", "RAM_SHARE", "MIN_RAM_BUDGET",
           "MODEL_PRECISION"]
