"""What an extraction will cost, before anything is extracted: layers, features, FLOPs, bytes, time.

Every model variant is built on PyTorch's ``meta`` device (parameters and activations carry
shapes and dtypes but no storage, so nothing is initialised, allocated or downloaded) and one
forward pass of a meta batch goes through neuroxr's own layer hooks
(:class:`~neuroxr.features.hooks.LayerHooks`) under :class:`torch.utils.flop_counter.FlopCounterMode`.
That gives, per model:

* the layers extraction keeps and each one's features per image.  Extraction drops a layer whose
  output is identical to an earlier one's (by a fingerprint of the values,
  :mod:`neuroxr.features.reduce`); on the meta device there are no values, so the plan finds the
  same duplicates structurally: the very same tensor (Dropout and Identity in eval mode, a block
  whose output is its last ReLU's), a contiguous view of an earlier output with the same
  number of elements (``Flatten``), or a module that is the identity when its output has its
  input's shape (adaptive pooling to the size it gets, Dropout).  What it cannot see are layers
  equal by coincidence of their values: with random weights, a zero-initialised BatchNorm in a
  residual branch (LeViT) or a ReLU after a BatchNorm that keeps its non-negative input
  (DenseNet's first dense layer) repeat a layer, and Swin's last stage copies its one attention
  window; there the plan counts 1 to 29 layers more than extraction keeps (checked: torchvision
  alexnet, resnet18, squeezenet1_1, mobilenet_v2, vgg11, googlenet, efficientnet_b0 and timm's
  vit_tiny match exactly; levit_128s, swin_tiny and densenet121 do not);
* the forward FLOPs per image (torch's own counter: the same number a real forward gives);
* the bytes the features store will hold, from its layout (:func:`neuroxr.features.reduce.build_layer_dataset`):
  per layer ``gram`` and ``gram_z`` (image, image_j) float64, ``feature_sum`` (image) float64,
  and with ``--srp`` ``srp`` (image, component) float32, plus the coordinates.  The store
  compresses them (zstd), so the plan is an upper bound of the data written, plus a few kB of
  metadata per variable.

The time model, per variant on ``n`` images::

    t = build + forward + gram
      = params / init_rate + FLOPs x n / forward_rate + n^2 x activations / gram_rate

``activations`` is the sum of the kept layers' features (each is reduced to two n x n Gram
matrices, raw and z-scored).  The three rates come from a calibration measured once on this
machine at a given thread budget and cached in ``~/.cache/neuroxr/calibration.json``
(:func:`load_calibration`); the GPU's are stated assumptions (:data:`GPU_ASSUMED`) unless a
calibration measured on a GPU is in the cache.  ``N workers``: the variants spread over N
workers of this machine's speed, each taking the longest remaining variant first (the
makespan of that schedule).  The SRP's projection time is not modelled (its bytes are).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import schema as S
from .errors import MissingDataError, NeuroxrError

#: what the GPU prediction assumes unless a calibration measured on a GPU is cached: an
#: H100/H200-class card, float32 forward passes at 20 TFLOP/s effective (about a third of
#: peak, usual for batch-32 inference), float64 Gram products at 10 TFLOP/s (n^2 p / 0.5e13 s,
#: two products) and random initialisation at 5e9 parameters/s
GPU_ASSUMED = {"forward_flops_per_s": 20e12, "gram_per_s": 5e12, "init_params_per_s": 5e9, "measured": False,
               "device": "GPU (assumed: 20 TFLOP/s forward, 5e12 n^2 p/s Gram, not measured)"}
#: bytes a stored variable adds beyond its data: its zarr.json, its entries in the consolidated
#: metadata and in neuroxr's manifest (measured on the stores extract writes: 0.9 + 1 + 0.5 kB)
META_BYTES_PER_VARIABLE = 2600
CALIBRATION_VERSION = 1


class PlanError(NeuroxrError, ValueError):
    """A plan that cannot be made: no stimuli and no image size, or a model that does not build."""


# --------------------------------------------------------------------------- calibration
def calibration_path() -> Path:
    """``$NEUROXR_CACHE_DIR/calibration.json`` (default ``$XDG_CACHE_HOME/neuroxr`` or ``~/.cache/neuroxr``)."""
    base = os.environ.get("NEUROXR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "neuroxr")
    return Path(base) / "calibration.json"


def _machine_key(threads: int, device: str) -> str:
    return f"{platform.node()}|{os.cpu_count()}cpu|{device}|{threads}threads|v{CALIBRATION_VERSION}"


def measure_calibration(threads: int = 1, device: str = "cpu", images: int = 118, repeat: int = 3) -> dict:
    """Measure this machine's rates with the code extraction runs.

    ``forward_flops_per_s``: a random-weight torchvision ResNet-18 forward of 16 images at 224 px
    (FLOPs from FlopCounterMode, the best of ``repeat`` timed passes after a warm-up);
    ``gram_per_s``: ``n^2 p`` per second of extraction's own reduction of ``images`` images
    (:func:`_measure_reduction`: raw and z-scored Gram and feature sums, float64);
    ``init_params_per_s``: parameters per second of building a random-weight ResNet-18 (the second build).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .features.threads import extraction_threads
    from .features.zoo import load_model

    with extraction_threads(threads) as n_threads:
        load_model("resnet18", weights="random", device=device)  # warm: imports and first-call costs
        t0 = time.perf_counter()
        lm = load_model("resnet18", weights="random", device=device)
        t_init = time.perf_counter() - t0
        params = sum(p.numel() for p in lm.model.parameters())
        x = torch.randn(16, 3, 224, 224, device=device)
        with FlopCounterMode(display=False) as fc, torch.inference_mode():
            lm.model(x)
        flops = fc.get_total_flops()
        best = math.inf
        with torch.inference_mode():
            for _ in range(repeat):
                if device != "cpu":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                lm.model(x)
                if device != "cpu":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        gram_rate = _measure_reduction(images, n_threads, flops / best, repeat)
    return {"forward_flops_per_s": flops / best, "gram_per_s": gram_rate,
            "init_params_per_s": params / max(t_init, 1e-6), "threads": n_threads, "device": device,
            "measured": True, "load": os.getloadavg()[0], "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__}


def _measure_reduction(n: int, n_threads: int, forward_rate: float, repeat: int) -> float:
    """``n^2 p`` per second of extraction's own reduction path (:func:`~neuroxr.features.run.reduce_model`:
    hooks, fingerprints, activation buffers of GB size, raw and z-scored Grams) on a 6-layer
    1x1-convolution network with 802,816 features per layer (ResNet's early layers), its (small,
    counted) forward time taken out.  Measured once (``repeat`` is not used: it takes ~20 s)."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from .features.run import reduce_model
    from .features.zoo import LoadedModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 1), *[nn.Conv2d(64, 64, 1) for _ in range(5)]).eval()
    lm = LoadedModel(model=net, name="calibration", weights="random", family="cnn", source="neuroxr", input_size=112,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pixels = np.random.default_rng(0).integers(0, 256, (n, 112, 112), dtype=np.uint8)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(torch.zeros(1, 3, 112, 112))
    fwd = fc.get_total_flops() * n / forward_rate
    t0 = time.perf_counter()
    ds = reduce_model(lm, pixels, batch_size=32, n_threads=n_threads)
    best = time.perf_counter() - t0
    p = int(ds["n_features"].sum())
    return n * n * p / max(best - fwd, 1e-6)


def load_calibration(threads: int = 1, device: str = "cpu", *, measure: bool = True, force: bool = False) -> dict | None:
    """The cached calibration of this machine at ``threads`` (measured and cached when missing and ``measure``)."""
    path = calibration_path()
    cache = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    key = _machine_key(threads, device)
    if key in cache and not force:
        return cache[key]
    if not measure:
        return None
    cal = measure_calibration(threads, device)
    cache[key] = cal
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    os.replace(tmp, path)  # a cache file, not a study store: replaced atomically on its own
    return cal


# --------------------------------------------------------------------------- sizing on the meta device
@dataclass
class ModelSize:
    """One model's layers and cost per image, measured on the meta device."""

    model: str
    family: str
    source: str
    input_shape: tuple
    params: int
    flops_per_image: float
    layers: list = field(default_factory=list)  # (name, module type, features per image), kept layers
    hooked: int = 0  # hooked layer outputs before the duplicates were dropped

    @property
    def activations(self) -> int:
        return int(sum(p for _, _, p in self.layers))


class _PreprocessOnly:
    """The preprocessing fields :func:`~neuroxr.features.preprocess.preprocess_images` reads."""

    def __init__(self, prep: dict):
        self.__dict__.update(prep)
        self.device = "cpu"


_SHAPES: dict = {}


def find_input_shape(row: dict, image_shape: tuple) -> tuple:
    """(channel, H, W) a model sees for stimuli of ``image_shape`` (y, x): its own preprocessing on one blank image."""
    from .features.preprocess import preprocess_images
    from .features.zoo import read_preprocessing

    prep = read_preprocessing(row)
    key = (tuple(image_shape), prep["input_size"], prep["resize_size"], prep["channels"], prep["interpolation"])
    if key not in _SHAPES:
        x = preprocess_images(_PreprocessOnly(prep), np.zeros((1, *image_shape), dtype=np.float32), 255.0)
        _SHAPES[key] = tuple(int(s) for s in x.shape[1:])
    return _SHAPES[key]


#: modules that return their input unchanged when their output has the input's shape (in eval mode)
_IDENTITY_WHEN_SAME_SHAPE = ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
                             "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "Dropout", "Dropout1d", "Dropout2d",
                             "Dropout3d", "AlphaDropout", "DropPath", "StochasticDepth", "Identity")


class _MetaLayers:
    """Hook callback on the meta device: each layer's features, duplicates found structurally."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.root: dict = {}  # id(tensor) -> (name of the kept layer it equals, its version then)
        self.refs: list = []  # keeps the tensors alive, so their ids are not reused
        self.layers: list = []
        self.calls = 0

    def _resolve(self, t):
        """The kept layer ``t`` equals: the same tensor, or a contiguous view of one with as many elements."""
        if t is None:
            return None
        hit = self.root.get(id(t))
        if hit is not None and hit[1] == t._version:  # not changed in place since it was a layer's output
            return hit[0]
        base = t._base
        hit = self.root.get(id(base)) if base is not None else None
        if hit is not None and hit[1] == base._version and base.numel() == t.numel() and t.is_contiguous() \
                and base.is_contiguous():
            return hit[0]
        return None

    def _same_as(self, mtype, t):
        same = self._resolve(t)
        if same is not None:
            return same
        _, inputs, _ = self.hooks.current
        first = inputs[0] if isinstance(inputs, tuple) and inputs else None
        if mtype in _IDENTITY_WHEN_SAME_SHAPE and first is not None and tuple(first.shape) == tuple(t.shape):
            return self._resolve(first)
        return None

    def __call__(self, name, mtype, t):
        t = _first_tensor(self.hooks.current[2])  # the module's own output (the hooks hand on a detached copy)
        self.calls += 1
        same = self._same_as(mtype, t)
        if same is None:
            self.layers.append((name, mtype, int(np.prod(t.shape[1:]))))
            same = name
        self.root[id(t)] = (same, t._version)
        self.refs.append(t)


def _first_tensor(out):
    from .features.hooks import _first_tensor as first

    return first(out)


def _plan_hooks():
    from .features.hooks import LayerHooks

    class PlanHooks(LayerHooks):
        """neuroxr's layer hooks, also handing the callback the module and its inputs."""

        current = (None, (), None)

        def _hook(self, qual, module, inputs, output):
            self.current = (module, inputs, output)
            super()._hook(qual, module, inputs, output)

    return PlanHooks


_ARCH: dict = {}
#: normalisations whose FLOPs torch's counter does not count and whose meta kernels run as slow Python
#: decompositions: in a plan's forward pass (and only in its thread) they return an empty tensor of their
#: input's shape (a new tensor, as the real ones do), which leaves the layers, shapes and counted FLOPs as
#: they are
_NORMS = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


def _fast_norms():
    """A torch function mode (thread-local: other threads' calls are untouched) in which the
    normalisations of :data:`_NORMS` return an empty tensor of their input's shape."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    norms = {getattr(F, k) for k in _NORMS}

    class FastNorms(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in norms:
                return torch.empty_like(args[0])
            return func(*args, **(kwargs or {}))

    return FastNorms()


def _meta_forward(model, shape, batch, in_device_mode):
    """One forward of a meta batch through neuroxr's hooks under FlopCounterMode: (counter, layers)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.empty((batch, *shape), dtype=torch.float32, device="meta")
    hooks = _plan_hooks()(model, None)
    cb = _MetaLayers(hooks)
    hooks.callback = cb
    mode = torch.device("meta") if in_device_mode else contextlib.nullcontext()
    try:
        # no_grad, not inference_mode: views keep their base and tensors their version counter
        with mode, _fast_norms(), FlopCounterMode(display=False) as fc, torch.no_grad():
            hooks.new_batch(batch)
            model(x)
    finally:
        hooks.remove()
    return fc, cb


def size_module(model, shape: tuple, batch: int = 2) -> tuple:
    """``(parameters, FLOPs per image, kept layers, hooked outputs)`` of a module (on the meta device or
    not: its parameters are moved to meta) for inputs (``batch``, ``*shape``)."""
    model = model.to("meta").eval()
    for p in model.parameters():
        p.requires_grad_(False)  # as load_model does (and torch's module tracker needs for tensors passed in tuples)
    params = int(sum(p.numel() for p in model.parameters()))
    try:  # outside the meta device mode first (it intercepts every call); inside for models that need it
        fc, cb = _meta_forward(model, shape, batch, in_device_mode=False)
    except Exception:  # noqa: BLE001 - a factory call in forward made a CPU tensor: rerun in the mode
        fc, cb = _meta_forward(model, shape, batch, in_device_mode=True)
    return params, fc.get_total_flops() / batch, cb.layers, cb.calls


def _sizes_cache_path() -> Path:
    return calibration_path().parent / "model_sizes.json"


def _sizes_key(row: dict, shape: tuple, batch: int) -> str:
    import importlib.metadata as md

    vers = []
    for pkg in ("torch", "torchvision", "timm"):
        try:
            vers.append(md.version(pkg))
        except md.PackageNotFoundError:
            vers.append("-")
    return "|".join(map(str, (row["source"], row["constructor"], "x".join(map(str, shape)), batch, *vers,
                              f"v{CALIBRATION_VERSION}")))


def read_sizes_cache() -> dict:
    """Model sizes planned before (``~/.cache/neuroxr/model_sizes.json``), keyed by architecture, input
    shape and the torch / torchvision / timm versions; {} when there is none."""
    try:
        return json.loads(_sizes_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def write_sizes_cache(cache: dict) -> None:
    path = _sizes_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:  # a read-only cache directory: the plan is only slower next time
        pass


def size_model(row: dict, image_shape: tuple, batch: int = 2, cache: dict | None = None) -> ModelSize:
    """Layers kept, features per layer, FLOPs per image and parameters of ``row``'s model, on the meta device.

    The model is built with ``torch.device("meta")`` as default device (no weights initialised,
    none downloaded) and runs one meta batch of ``batch`` images of the shape its preprocessing
    gives for stimuli of ``image_shape`` (y, x), through neuroxr's layer hooks, under
    FlopCounterMode.  Models sharing an architecture (the Taskonomy encoders) are sized once.
    ``cache``: a dict of earlier sizes (:func:`read_sizes_cache`), looked up and filled in.
    """
    import torch

    from .features.zoo import _build

    shape = find_input_shape(row, image_shape)
    key = (row["source"], row["constructor"], shape)
    ckey = _sizes_key(row, shape, batch) if cache is not None else None
    if ckey is not None and ckey in cache:
        c = cache[ckey]
        return ModelSize(row["model"], row["family"], row["source"], shape, int(c["params"]), float(c["flops"]),
                         [tuple(x) for x in c["layers"]], int(c["hooked"]))
    if row["source"] in ("taskonomy",) and key in _ARCH:
        got = _ARCH[key]
        return ModelSize(row["model"], row["family"], row["source"], shape, got.params, got.flops_per_image,
                         list(got.layers), got.hooked)
    with torch.device("meta"):
        model = _build(row, seed=0).eval()
    params, flops, layers, calls = size_module(model, shape, batch)
    out = ModelSize(row["model"], row["family"], row["source"], shape, params, flops, layers, calls)
    if row["source"] == "taskonomy":
        _ARCH[key] = out
    if ckey is not None:
        cache[ckey] = {"params": out.params, "flops": out.flops_per_image, "layers": out.layers, "hooked": out.hooked}
    return out


# --------------------------------------------------------------------------- bytes and time
def estimate_store_bytes(n_images: int, layers: list, srp_k: int | None = None, *, model: str = "", weights: str = "",
                         family: str = "", source: str = "") -> dict:
    """Bytes of one variant's part of ``features/<model>.zarr`` (layout of ``build_layer_dataset``).

    Returns ``{"data": ..., "coords": ..., "metadata": ..., "total": ...}``: ``data`` the data
    variables' uncompressed bytes (what xarray's ``nbytes`` of the written store's data variables
    gives), ``coords`` the coordinates' (strings as their UTF-8 characters), ``metadata`` the
    per-variable JSON (:data:`META_BYTES_PER_VARIABLE`).
    """
    L, n = len(layers), int(n_images)
    data = L * (2 * n * n * 8 + n * 8)  # gram, gram_z float64; feature_sum float64
    nvars = 3
    if srp_k:
        data += L * n * int(srp_k) * 4
        nvars += 1
    names = [name for name, _, _ in layers]
    strings = sum(len(S.layer_id(model, weights, nm).encode()) + len(nm.encode()) for nm in names)
    strings += L * sum(len(s.encode()) for s in (model, weights, family, source))
    strings += sum(len(t.encode()) for _, t, _ in layers)
    coords = strings + L * (8 + 8 + 8 + 1) + 2 * n * 8  # depth, relative_depth, n_features, finite; image, image_j
    ncoords = 13
    if srp_k:
        coords += int(srp_k) * 8 + L * 8
        ncoords += 2
    meta = (nvars + ncoords) * META_BYTES_PER_VARIABLE
    return {"data": int(data), "coords": int(coords), "metadata": int(meta), "total": int(data + coords + meta)}


def predict_seconds(size: ModelSize, n_images: int, cal: dict) -> dict:
    """``build``, ``forward``, ``gram`` and ``total`` seconds of one variant at the rates of ``cal``."""
    n = int(n_images)
    build = size.params / cal["init_params_per_s"]
    fwd = size.flops_per_image * n / cal["forward_flops_per_s"]
    gram = n * n * size.activations / cal["gram_per_s"]
    return {"build": build, "forward": fwd, "gram": gram, "total": build + fwd + gram}


def makespan(seconds: list, workers: int) -> float:
    """Time for ``workers`` to run jobs of ``seconds``, each taking the longest one left (LPT)."""
    import heapq

    loads = [0.0] * max(1, int(workers))
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


# --------------------------------------------------------------------------- the plan
@dataclass
class VariantPlan:
    model: str
    weights: str
    family: str
    source: str
    n_images: int
    input_shape: tuple = ()
    layers: list = field(default_factory=list)
    params: int = 0
    gflops_per_image: float = float("nan")
    activations: int = 0
    bytes: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    gpu_seconds: dict = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def study_images(study) -> tuple[int, tuple | None]:
    """(number of images, (y, x) of the stimuli or None) of a study: stimuli.zarr, else responses.zarr's image coord."""
    from .io.store import open_dataset

    st = Path(study)
    if (st / S.STIMULI_STORE).exists():
        px = open_dataset(st / S.STIMULI_STORE, chunks={})[S.PIXELS]
        return int(px.shape[0]), tuple(int(s) for s in px.shape[1:3])
    for store in (S.RESPONSES_STORE, S.RDMS_STORE):
        if (st / store).exists():
            ds = open_dataset(st / store, chunks={})
            return int(ds.sizes[S.IMAGE]), None
    raise MissingDataError(f"{st}: no {S.STIMULI_STORE}, {S.RESPONSES_STORE} or {S.RDMS_STORE}; "
                           f"run `neuroxr simulate` or `neuroxr ingest` first (or give --images N --image-size S)")


def _size_rows(job):
    """Size ``rows`` (one process of :func:`_size_in_processes`): ``[(model, ModelSize or error text)]``."""
    rows, image_shape = job
    out = []
    for row in rows:
        try:
            out.append((row["model"], size_model(row, image_shape)))
        except Exception as exc:  # noqa: BLE001 - reported as that model's line of the plan
            out.append((row["model"], f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"))
    return out


def _size_in_processes(rows: list, image_shape: tuple, jobs: int) -> dict:
    """``{model: ModelSize or error text}`` of ``rows``, sized by ``jobs`` forked processes (each row's
    model on the meta device, as :func:`size_model`); {} where processes cannot be forked."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in mp.get_all_start_methods():
        return {}
    import timm  # noqa: F401 - imported once here, inherited by the forked processes
    import torchvision  # noqa: F401

    chunks = [rows[i::jobs * 3] for i in range(jobs * 3)]  # interleaved: big and small models in each
    try:
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            return {m: r for part in pool.map(_size_rows, [(c, image_shape) for c in chunks if c]) for m, r in part}
    except (OSError, RuntimeError):  # no fork here (limits, a broken pool): sized in this process instead
        return {}


def plan_variants(pairs, n_images: int, image_shape: tuple, *, srp=None, threads: int = 1, catalog=None,
                  calibration: dict | None = None, gpu: dict | None = None, use_cache: bool = True,
                  jobs: int = 1) -> list[VariantPlan]:
    """One :class:`VariantPlan` per (model, weights) pair; a model that does not build is kept with ``error``.

    ``use_cache``: reuse (and add to) the sizes of architectures planned before (:func:`read_sizes_cache`).
    ``jobs``: processes that size the models not in the cache, when there are at least 8 of them
    (forked; ``neuroxr plan`` uses one per available CPU).
    """
    from .features.reduce import find_srp_components
    from .features.zoo import resolve_model_row

    srp_k = find_srp_components(srp, n_images)
    gpu = gpu or GPU_ASSUMED
    out = []
    sized: dict = {}
    cache = read_sizes_cache() if use_cache else None
    before = len(cache) if cache is not None else 0
    rows = {m: resolve_model_row(m, catalog) for m in dict.fromkeys(m for m, _ in pairs)}
    if jobs > 1:
        todo = [r for r in rows.values()
                if cache is None or _sizes_key(r, find_input_shape(r, image_shape), 2) not in cache]
        if len(todo) >= 8:
            for m, got in _size_in_processes(todo, image_shape, int(jobs)).items():
                sized[m] = got
                if cache is not None and isinstance(got, ModelSize):
                    cache[_sizes_key(rows[m], got.input_shape, 2)] = {
                        "params": got.params, "flops": got.flops_per_image, "layers": got.layers,
                        "hooked": got.hooked}
    for model, weights in pairs:
        row = rows[model]
        vp = VariantPlan(model=row["model"], weights=str(weights), family=row["family"], source=row["source"],
                         n_images=int(n_images))
        try:
            if model not in sized:
                sized[model] = size_model(row, image_shape, cache=cache)
            sz = sized[model]
            if isinstance(sz, str):  # the error a sizing process met
                raise PlanError(sz)
        except Exception as exc:  # noqa: BLE001 - a model that does not build is one line of the plan, not fatal
            vp.error = str(exc) if isinstance(exc, PlanError) else \
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            out.append(vp)
            continue
        vp.input_shape, vp.layers, vp.params = sz.input_shape, sz.layers, sz.params
        vp.gflops_per_image, vp.activations = sz.flops_per_image / 1e9, sz.activations
        vp.bytes = estimate_store_bytes(n_images, sz.layers, srp_k, model=vp.model, weights=vp.weights,
                                        family=vp.family, source=vp.source)
        if calibration is not None:
            vp.seconds = predict_seconds(sz, n_images, calibration)
        vp.gpu_seconds = predict_seconds(sz, n_images, gpu)
        out.append(vp)
    if cache is not None and len(cache) > before:
        write_sizes_cache(cache)
    return out


def _si(x: float) -> str:
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g} {unit}"
    return f"{x:.3g}"


def describe_variant(vp: VariantPlan, workers: int | None = None) -> str:
    """One line: layers, features, FLOPs, bytes and predicted time of a variant."""
    from .features.progress import format_bytes

    head = f"{vp.model} [{vp.weights[:16]}]"
    if vp.error:
        return f"{head}: not planned ({vp.error})"
    largest = max((p for _, _, p in vp.layers), default=0)
    line = (f"{head}: {len(vp.layers)} layers kept, {_si(vp.activations)} features/image (largest {_si(largest)}), "
            f"{vp.gflops_per_image:.3g} GFLOP/image x {vp.n_images}; store <= {format_bytes(vp.bytes['total'])}")
    if vp.seconds:
        line += f"; ~{_secs(vp.seconds['total'])} here"
    if vp.gpu_seconds:
        line += f", ~{_secs(vp.gpu_seconds['total'])} on a GPU (assumed)"
    return line


def _secs(s: float) -> str:
    from .features.progress import format_seconds

    return "<0.1 s" if s < 0.05 else format_seconds(s)


def summarise(plans: list[VariantPlan], calibration: dict | None, workers: int = 1, gpu: dict | None = None) -> list[str]:
    """Closing lines: totals of layers, bytes, FLOPs and time (here, on ``workers`` workers, on a GPU)."""
    from .features.progress import format_bytes, format_seconds, plural

    ok = [p for p in plans if not p.error]
    gpu = gpu or GPU_ASSUMED
    lines = [f"total: {plural(len(ok), 'model variant')} planned"
             + (f" ({len(plans) - len(ok)} not: see above)" if len(ok) < len(plans) else "")
             + f", {sum(len(p.layers) for p in ok)} layers, {sum(p.gflops_per_image * p.n_images for p in ok):.4g} "
               f"GFLOP forward, store <= {format_bytes(sum(p.bytes['total'] for p in ok))}"]
    if calibration is not None:
        secs = [p.seconds["total"] for p in ok]
        lines.append(
            f"predicted time: {format_seconds(sum(secs))} here ({calibration['threads']} thread(s): "
            f"{calibration['forward_flops_per_s'] / 1e9:.3g} GFLOP/s forward, {calibration['gram_per_s']:.3g} n^2p/s "
            f"Gram, measured {calibration.get('when', '?')} at load {calibration.get('load', float('nan')):.2f})"
            + (f"; {format_seconds(makespan(secs, workers))} on {workers} workers like it" if workers > 1 else ""))
    lines.append(f"predicted time on a GPU: {_secs(sum(p.gpu_seconds['total'] for p in ok))} "
                 f"({gpu['device']})")
    return lines


def plan_models(models, n_images: int, image_shape: tuple | None, weights=("random",), **kw) -> list[VariantPlan]:
    """:func:`plan_variants` for ``models`` x ``weights`` (a study without stimuli needs ``image_shape``)."""
    if image_shape is None:
        raise PlanError("the study has no stimuli.zarr, so there is no image size to plan a forward pass for: "
                        "give --image-size S (or plan a study with stimuli; imported features are not planned)")
    pairs = [(m, w) for m in models for w in ([weights] if isinstance(weights, str) else weights)]
    return plan_variants(pairs, n_images, image_shape, **kw)


__all__ = [
    "GPU_ASSUMED",
    "ModelSize",
    "PlanError",
    "VariantPlan",
    "calibration_path",
    "describe_variant",
    "estimate_store_bytes",
    "find_input_shape",
    "load_calibration",
    "makespan",
    "measure_calibration",
    "plan_models",
    "plan_variants",
    "predict_seconds",
    "size_model",
    "size_module",
    "study_images",
    "summarise",
]


def log_plan(pairs, n_images: int, image_shape: tuple, log, *, srp=None, threads: int | None = None, catalog=None,
             prefix: str = "plan: ", totals_only: bool = False) -> None:
    """Log one :func:`describe_variant` line per (model, weights) pair and, for several, the totals
    (``totals_only``: the totals alone), with the cached calibration of this machine (none measured
    here: without one, no time is predicted and a line says how to calibrate).  A plan that fails is
    one line, never an error of the run it precedes."""
    try:
        from .features.threads import thread_budget

        n_threads = thread_budget(threads)
        cal = load_calibration(n_threads, measure=False)
        plans = plan_variants(list(pairs), n_images, image_shape, srp=srp, threads=n_threads, catalog=catalog,
                              calibration=cal)
        if not totals_only:
            for vp in plans:
                log(prefix + describe_variant(vp))
        if len(plans) > 1 or totals_only:
            for line in summarise(plans, cal):
                log(prefix + line)
        if cal is None and not totals_only:
            log(prefix + f"no time predicted: no calibration for {n_threads} thread(s) in {calibration_path()}; "
                         f"`neuroxr plan STUDY --model M --threads {n_threads} --calibrate` measures it once")
    except Exception as exc:  # noqa: BLE001 - the plan is information; the run goes on without it
        log(prefix + f"not available ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})")


def log_pipeline_plan(settings, study, skip, log) -> bool:
    """At the start of ``neuroxr run``: log the plan of the [extract] variants still to extract.

    The images come from ``STUDY/stimuli.zarr``, or before a simulated ingest from its settings;
    returns False when neither is there yet (call again after ingest), True once logged.
    """
    from .pipeline.plan import list_done_variants, list_model_variants

    pairs = [p for p in list_model_variants(settings) if p not in set(skip)]
    pairs = [p for p in pairs if p not in list_done_variants(study)]
    if (Path(study) / S.STIMULI_STORE).exists():
        n, shape = study_images(study)
    elif settings.ingest.source == "simulate":
        ing = settings.ingest
        n, shape = int(ing.n_images or 118), (int(ing.image_size or 64),) * 2
    else:
        return False
    if pairs:
        log_plan(pairs, n, shape, log, srp=settings.extract.srp, prefix="plan: ")
    return True
