"""A model over a study's stimuli, every distinct layer reduced: in one pass, or batch by batch.

:func:`reduce_model` takes one forward pass of every image when the layers' sizes (probed on one
image) fit the memory budget, each layer reduced in its hook (:mod:`.onepass`): no activations
kept, no spill files, whatever ``batch_size`` says.  Otherwise it runs batches of ``batch_size``,
keeping each layer's rows (in memory up to the budget, then in spill files) and reduces them
afterwards (:class:`~.reduce.LayerCollector`).  Both give the same numbers up to torch's float32
round-off between batch sizes (~1e-8 relative in the Gram).
"""
from __future__ import annotations

import shutil
import tempfile

import numpy as np
from tqdm.auto import tqdm

from ..io.paths import owner_tag
from ..io.reader import available_memory
from .hooks import LayerHooks, iter_batches, run_forward
from .onepass import one_pass_fits, probe_layers, reduce_in_one_pass
from .preprocess import find_pixel_scale, preprocess_images
from .progress import StepLog, format_bytes
from .reduce import (MODEL_PRECISION, SRP_SEED, FeatureError, LayerCollector, LayerReducer, SRPCache,
                     build_layer_dataset, default_ram_budget, find_srp_components, read_batch)


def reduce_model(loaded, pixels, image=None, *, batch_size: int = 32, srp=None, srp_seed: int = SRP_SEED,
                 ram_budget: float | None = None, tmpdir=None, chunk_bytes: int = 8 << 20,
                 precision: str | None = None, progress=None, device=None, n_threads: int = 1, log=None,
                 one_pass: bool | None = None, backend: str | None = None):
    """Run ``loaded`` over the stimuli and reduce every distinct layer (in one pass when it fits).

    Parameters
    ----------
    loaded : LoadedModel
    pixels : ndarray or DataArray (image, y, x)
        The stimuli; a lazy DataArray is read one batch at a time.
    image : array of int, optional
        The ``image`` coordinate (default: ``pixels``' own, or 0..n-1).
    batch_size : int
        Images per forward pass when the one pass does not fit (or ``one_pass=False``): each
        layer's rows are then kept (memory up to ``ram_budget``, then spill files).
    srp : int, 'auto' or None
        Number of sparse-random-projection components to store as ``srp`` (layer, image, component).
    ram_budget : float, optional
        Bytes of activations this may hold (default :func:`default_ram_budget`): one pass of every
        image when it fits (:func:`~neuroxr.features.onepass.one_pass_fits`), else batches whose
        layers are held in memory up to the budget, the rest spilled to files in ``tmpdir`` and
        read back by feature chunks.
    precision : {"mixed", "float32", "float64"}, optional
        The Gram products (:class:`~neuroxr.mapping.gram.GramAccumulator`): ``"mixed"`` (the raw
        Gram with float32 products summed in float64, ~1e-8 relative; the z-scored Gram in
        float64), ``"float32"`` (both so) or ``"float64"`` (~1e-13).  Default
        (:func:`pick_precision`): :data:`~.reduce.MODEL_PRECISION` for networks, float64 for the
        baselines (family ``baseline``: few features, cheap either way).
    one_pass : bool, optional
        ``None`` (default): one forward pass of all images, each layer reduced in its hook, when it
        fits ``ram_budget`` (default: :data:`ONE_PASS_SHARE` of the available memory;
        :func:`~neuroxr.features.onepass.one_pass_fits`; no activations kept, no spill files: the
        fastest way); ``False``: always batches; ``True``: one pass even
        past the budget.
    n_threads : int
        Threads of the Gram accumulation (the caller sets torch's and BLAS's: see
        :func:`neuroxr.features.threads.extraction_threads`).
    log : callable, optional
        Receives progress lines (batches and layer groups, with elapsed time and what is left).
    backend : str, optional
        Where the one pass reduces each layer: ``None`` (default) follows the model, ``"torch:cuda"``
        (fingerprints and Gram matrices on the GPU, no activation copied to the host) for a model on
        a CUDA device, else ``"numpy"`` (compiled kernel and BLAS on the CPU); ``"torch:cpu"`` runs
        the device code on the CPU.

    Returns
    -------
    Dataset
        ``gram``, ``gram_z`` (layer, image, image_j) float64, ``feature_sum`` (layer, image) float64,
        optional ``srp`` (layer, image, component) float32, with the layer coords of the contract.
    """
    precision = pick_precision(loaded) if precision is None else precision
    if device is not None:
        loaded.model.to(device)
        loaded.device = str(device)
    n = int(pixels.shape[0])
    if image is None:
        image = pixels[pixels.dims[0]].values if hasattr(pixels, "dims") and pixels.dims[0] in pixels.coords else np.arange(n)
    srp_k = find_srp_components(srp, n)
    budget = default_ram_budget() if ram_budget is None else ram_budget
    cache = SRPCache(srp_k, srp_seed) if srp_k else None
    prefix = f"{loaded.name} [{str(loaded.weights)[:16]}]"
    scale = find_pixel_scale(pixels)
    sizes = probe_layers(loaded, pixels, scale) if one_pass is not False else {}
    # the one pass holds a few layers of every image for a moment, not every layer: it may use
    # ONE_PASS_SHARE of the available memory (the kept rows of the batched path, RAM_SHARE)
    one_budget = max(budget, ONE_PASS_SHARE * available_memory()) if ram_budget is None else ram_budget
    if sizes and (one_pass or one_pass_fits(n, sizes, one_budget, str(loaded.device))):
        backend = layer_backend(loaded) if backend is None else backend
        if log is not None:
            where = "the compiled kernel and BLAS on the CPU" if backend == "numpy" else f"{backend} on the device"
            log(f"{prefix}: one forward pass of all {n} images on {loaded.device}, {len(sizes)} layers reduced "
                f"in their hooks ({precision} Gram products, {where})")
        layers = reduce_in_one_pass(loaded, pixels, scale, sizes, cache, precision, chunk_bytes, n_threads, log,
                                    prefix, backend)
    else:
        layers = _reduce_in_batches(loaded, pixels, scale, batch_size, budget, tmpdir, cache, precision, chunk_bytes,
                                    n_threads, progress, log, prefix)
    if not layers["names"]:
        raise FeatureError(f"model {loaded.name!r} produced no layer outputs on these stimuli")
    return build_layer_dataset(loaded.name, loaded.weights, loaded.family, loaded.source, layers["names"],
                               layers["types"], layers["results"], layers["finite"], image, srp_k,
                               layers["n_features"])


#: share of the available memory (host and cgroup) one forward pass of every image may take
ONE_PASS_SHARE = 0.5


def layer_backend(loaded) -> str:
    """Where the one pass reduces ``loaded``'s layers: ``"torch:<device>"`` for a model on a CUDA
    device (the layers never leave it), else ``"numpy"``."""
    device = str(getattr(loaded, "device", "cpu"))
    return f"torch:{device}" if device.startswith("cuda") else "numpy"


def pick_precision(loaded) -> str:
    """The Gram products of ``loaded``'s extraction: :data:`~.reduce.MODEL_PRECISION` for networks,
    float64 for the baselines (family ``baseline``)."""
    return "float64" if getattr(loaded, "family", None) == "baseline" else MODEL_PRECISION


def _reduce_in_batches(loaded, pixels, scale, batch_size, budget, tmpdir, cache, precision, chunk_bytes, n_threads,
                       progress, log, prefix) -> dict:
    """Batches through ``loaded``, each layer's rows kept (memory up to ``budget``, then spill files), then reduced."""
    n = int(pixels.shape[0])
    work = tempfile.mkdtemp(prefix=".spill-", suffix=owner_tag(), dir=tmpdir)  # owned: never cleaned under a live run
    collector = LayerCollector(n, budget, work)
    try:
        _run_batches(loaded, pixels, scale, collector, batch_size, progress,
                     StepLog(log, prefix, "forward batch", -(-n // max(1, batch_size))))
        return _reduce_collected(collector, n, cache, precision, chunk_bytes, n_threads, log, prefix,
                                 tqdm_kw=dict(desc=f"{loaded.name} layers", unit="layer", leave=False,
                                              disable=None if progress is None else not progress))
    finally:
        collector.close()
        shutil.rmtree(work, ignore_errors=True)


def _run_batches(loaded, pixels, scale, collector: LayerCollector, batch_size: int, progress, steps: StepLog) -> None:
    """Forward every batch of stimuli through ``loaded`` with ``collector`` on its layers."""
    n = int(pixels.shape[0])
    with LayerHooks(loaded.model, collector) as hooks:
        batches = list(iter_batches(n, batch_size))
        for i, sl in enumerate(tqdm(batches, desc=f"{loaded.name} forward", unit="batch",
                                    disable=None if progress is None else not progress, leave=False)):
            batch = read_batch(pixels, sl)
            hooks.new_batch(len(batch))
            collector.new_batch()
            run_forward(loaded, preprocess_images(loaded, batch, scale))
            steps.step(i + 1, f"{format_bytes(collector.ram_used)} held, {collector.spills} spilled")


def _reduce_collected(collector: LayerCollector, n: int, cache, precision: str, chunk_bytes: int, n_threads: int,
                      log, prefix: str, tqdm_kw: dict) -> dict:
    """Reduce every distinct layer the collector holds; lists of names, types, results, finite, n_features."""
    out = {"names": [], "types": [], "results": [], "finite": [], "n_features": []}
    roots = [(k, L) for k, L in collector.layers.items() if L["alias"] is None]
    steps = StepLog(log, prefix, "layers reduced", len(roots))
    total, done = max(1, sum(L["p"] for _, L in roots)), 0
    for i, (name, L) in enumerate(tqdm(roots, **tqdm_kw)):
        buf = L["buffer"]
        if buf.rows == n:  # else produced in some batches only (conditional branch): not a layer of all images
            red = LayerReducer(n, L["p"], cache, precision, n_threads=n_threads)
            for start, x in buf.chunks(red.chunk_size(chunk_bytes)):
                red.add(x, start)
            res = red.finish()
            out["names"].append(name)
            out["types"].append(L["type"])
            out["results"].append(res)
            out["finite"].append(bool(all(np.isfinite(v).all() for v in res.values())))
            out["n_features"].append(L["p"])
        buf.close()
        done += L["p"]
        steps.step(i + 1, f"last {name}", share=done / total)
    return out


__all__ = ["ONE_PASS_SHARE", "layer_backend", "pick_precision", "reduce_model"]
