"""The scoring runner: every model of a study, as parts, then one atomic ``scores.zarr``.

Storage: parts, then one atomic assembly
----------------------------------------
Each model's scores are written as their own store ``STUDY/scores.parts/<model>.zarr``
(temporary directory, then one replace), so a part either exists whole or not at all; then
``STUDY/scores.zarr`` is assembled from all parts (concatenated along ``layer``) and replaced
atomically.  A crash at any moment leaves the previous ``scores.zarr`` intact and every
finished part in place: rerunning scores only the missing models (resume).  Adding a model's
features and rerunning appends its layers.  A part records the settings and the fingerprint
of the features it was computed from: a part with the same settings and features is skipped;
re-extracted features are rescored; other settings are refused
(:func:`neuroxr.io.store.check_settings` names the setting) unless ``overwrite``.

Scheduling
----------
Dask schedules everything: each model is one graph (its scores and the write of its part).
Locally, :data:`MODELS_IN_FLIGHT` models are computed by one ``dask.compute`` on the threaded
scheduler with :func:`neuroxr.runtime.available_cores` workers (BLAS single-threaded inside
the tasks); with a ``client``, up to :data:`MODELS_IN_FLIGHT` models' graphs are on the cluster
at once (``client.compute``), each gathered by :func:`neuroxr.cluster.gather` (stall detection)
and moved into place as it finishes.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections import deque
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr
from dask.diagnostics import ProgressBar
from tqdm.auto import tqdm

from .. import schema as S
from ..cluster import gather
from ..errors import MissingDataError, NeuroxrError, SettingsMismatchError
from ..io import store as _store
from ..responses import load_selected_responses
from ..runtime import available_cores, quiet_warnings, single_threaded_blas
from ..study import open_study
from .backend import resolve_backend
from .guard import LOCK_TIMEOUT, check_store_variables, fingerprint_store, scores_lock
from .labelled import DEFAULT_LAYER_CHUNK, DEFAULT_NEURON_CHUNK, score_layers
from .metrics import DEFAULT_PLS, METRICS, RESAMPLING_METRICS, check_metrics
from .resample import check_resample_options
from .ridge import alpha_unit, check_alphas
from .tree import concat_scores, open_scores, replace_scores, write_scores

__all__ = ["score_study", "assemble_scores", "compute_scores", "count_nan_scores", "local_scheduler", "PARTS_DIR",
           "MODELS_IN_FLIGHT"]

PARTS_DIR = "scores.parts"
#: models computed at the same time (locally: in one dask.compute; with a client: on the cluster)
MODELS_IN_FLIGHT = 2
#: temporary part stores of this process left by an interrupted run
_OWN_TMPS: set = set()


def count_nan_scores(tree) -> dict:
    """Number of NaN scores per variable, and of all-NaN layers / neurons (computes)."""
    lazy = {}  # (variable, key) -> 0-d count; all computed in one pass over the data
    nodes = tree.subtree if isinstance(tree, xr.DataTree) else [tree]
    variables = {k: v for node in nodes for k, v in node.data_vars.items()}
    for name, var in variables.items():
        if S.LAYER not in var.dims or var.dtype.kind != "f":
            continue
        isn = var.isnull()
        lazy[name, "nan"] = isn.sum().data
        other = [d for d in var.dims if d != S.LAYER]
        if other:
            lazy[name, "nan_layers"] = isn.all(other).sum().data
            lazy[name, f"nan_{other[0]}s"] = isn.all(S.LAYER).sum().data
    values = dask.compute(*lazy.values()) if lazy else ()
    out = {}
    for (name, key), v in zip(lazy, values):
        out.setdefault(name, {})[key] = int(v)
    return out


def _load_responses(study):
    st_path = Path(study)
    if not (st_path / S.RESPONSES_STORE).exists():
        return None
    _store.open_dataset(st_path / S.RESPONSES_STORE, chunks={})  # its manifest names a missing chunk
    check_store_variables(st_path / S.RESPONSES_STORE, [S.MEAN], "scoring")
    return load_selected_responses(study)


def _needed_variables(metrics, zscore: bool, present) -> list:
    """The features variables the metrics read (those the store lists; others: an error when read)."""
    names = []
    for m in metrics:
        for v in METRICS[m].needs:
            v = "gram" if (v == "gram_z" and not zscore) else v
            if v in present and v not in names:
                names.append(v)
    return names


#: metrics comparing RDMs (their results depend on ``rsa_method``)
RDM_METRICS = ("rsa", "versa", "rsa-norm", "rsa-perm")


def _study_settings(metrics, alphas, zscore, rsa_method, pls_opts, areas, resp, has_rdms, nan_layers,
                    resample=None):
    settings = {"metrics": sorted(metrics), "alphas": [float(a) for a in alphas], "zscore": bool(zscore)}
    if alpha_unit(alphas) == "paper":  # the default (paper units) and a plain --alpha 1 are different scores
        settings["alpha_unit"] = "paper"
    if any(m in RESAMPLING_METRICS for m in metrics):
        settings["resample"] = check_resample_options(resample)
    if any(METRICS[m].target == "area" for m in metrics):
        settings["areas"] = None if areas is None else [str(a) for a in areas]
    if any(m in RDM_METRICS for m in metrics):
        settings["rsa_method"] = rsa_method
    if "rsa" in metrics:
        settings["neural_rdms"] = bool(has_rdms)
    if "pls" in metrics:
        settings["pls"] = dict(pls_opts)
    settings["nan_layers"] = nan_layers
    if resp is not None:
        settings["neurons"] = _store.hash_array(np.asarray(resp[S.NEURON].values))
        settings["n_neurons"] = int(resp.sizes[S.NEURON])
        settings["responses"] = _store.hash_array(resp[S.MEAN].data)
    return settings


def _part_attrs(part: Path) -> dict:
    """A part store's attributes from its group metadata alone (no arrays read)."""
    try:
        with quiet_warnings():
            return dict(zarr.open_group(str(part), mode="r").attrs)
    except Exception:  # unreadable metadata: the full open says what is wrong
        return dict(open_scores(part).attrs)


def _has_tree_layout(store: Path) -> bool:
    """True if ``store`` holds scores in the DataTree layout (a ``variant`` layer coord at the root)."""
    try:
        with quiet_warnings():
            return S.VARIANT in set(zarr.open_group(str(store), mode="r").array_keys())
    except Exception:  # unreadable metadata: rescored
        return False


def compute_scores(obj, *, client=None, progress: bool = False, what: str = "scoring"):
    """Compute a lazy result of :func:`score_layers` (or any delayed write of it).

    Locally, BLAS (and torch's intra-op pool, where torch is loaded) is held to one thread for
    the whole computation and the threaded scheduler
    gets :func:`neuroxr.runtime.available_cores` workers (one core: the synchronous scheduler).  With a ``client`` the tasks limit
    BLAS threads themselves on the workers; :func:`neuroxr.cluster.gather` polls the scheduler
    (a clear error if every worker stays paused).
    """
    if client is not None:
        return gather(client, client.compute(obj), what=what, progress=progress)
    with single_threaded_blas(), _single_threaded_torch(), local_scheduler():
        if progress:
            with ProgressBar():
                return dask.compute(obj)[0]
        return dask.compute(obj)[0]


@contextlib.contextmanager
def _single_threaded_torch():
    """One torch intra-op thread per Dask task while scoring runs (where torch is loaded at all)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def local_scheduler():
    """Dask's scheduler for local work: the threaded one with one worker per available core.

    One core: the synchronous scheduler (the caller's thread runs the tasks, no pool handing
    results back).  A scheduler the caller set (``dask.config.set(scheduler=...)``) is kept.
    """
    if dask.config.get("scheduler", None) is not None:
        return contextlib.nullcontext()
    cores = available_cores()
    if cores == 1:
        return dask.config.set(scheduler="synchronous")
    return dask.config.set(scheduler="threads", num_workers=cores)


def _discard(tmp: Path) -> None:
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        # after an interrupt, Dask threads still running may recreate it: removed next run
        _OWN_TMPS.add(tmp)


class _Job:
    """One model's lazy part write: the delayed ``to_zarr`` into ``tmp``, then ``tmp`` -> ``part``."""

    def __init__(self, model, tree, part, log):
        names = sorted(k for node in tree.subtree for k in node.data_vars)
        log(f"{model}: scoring {tree.sizes.get(S.LAYER, 0)} layers x {tree.sizes.get(S.NEURON, 0)} neurons "
            f"({', '.join(names)})")
        self.model, self.part = model, part
        self.delayed, self.tmp = write_scores(tree, part, compute=False)

    def finish(self):
        _store.replace_store(self.tmp, self.part)


def _run_local(jobs, progress):
    """Compute the jobs ``MODELS_IN_FLIGHT`` at a time, each batch one ``dask.compute``.

    A model whose set-up fails stops the run: the batch set up so far is discarded whole.
    """
    batch = []
    try:
        for job in jobs:
            batch.append(job)
            if len(batch) == MODELS_IN_FLIGHT:
                _finish_batch(batch, progress)
                batch = []
        if batch:
            _finish_batch(batch, progress)
            batch = []
    finally:
        for j in batch:
            _discard(j.tmp)


def _finish_batch(batch, progress):
    try:
        compute_scores([j.delayed for j in batch], progress=progress,
                       what="scoring " + ", ".join(j.model for j in batch))
        for j in batch:
            j.finish()
    finally:
        for j in batch:
            _discard(j.tmp)


def _run_client(jobs, client, progress):
    """At most ``MODELS_IN_FLIGHT`` models' graphs on the cluster; each part moved in place as it finishes."""
    window = deque()
    try:
        for job in jobs:
            window.append((job, client.compute(job.delayed)))
            if len(window) == MODELS_IN_FLIGHT:
                _gather_first(window, client, progress)
        while window:
            _gather_first(window, client, progress)
    finally:
        for job, fut in window:
            fut.cancel()
            _discard(job.tmp)


def _gather_first(window, client, progress):
    job, fut = window.popleft()
    try:
        gather(client, fut, what=f"scoring {job.model}", progress=progress)
        job.finish()
    finally:
        _discard(job.tmp)


def _prepare(st, metrics, alphas, zscore, rsa_method, pls_opts, areas, nan_layers, client, overwrite, resample=None):
    """Responses, RDMs and settings of a scoring run; stale temporaries removed, settings checked."""
    resp = _load_responses(st.path)
    if resp is not None and client is None and S.MEAN in resp:
        # every model's graph reads the responses: read them once (a cluster's workers read the store)
        resp = resp.assign({S.MEAN: resp[S.MEAN].load()})
    rdms = _store.open_dataset(st.store(S.RDMS_STORE))[S.RDM] if st.has(S.RDMS_STORE) and "rsa" in metrics else None
    if resp is None and rdms is None:
        raise MissingDataError(f"{st.store(S.RESPONSES_STORE)} does not exist; ingest responses first "
                               "(`neuroxr ingest`, `neuroxr simulate`)")
    settings = _study_settings(metrics, alphas, zscore, rsa_method, pls_opts, areas, resp, rdms is not None,
                               nan_layers, resample)
    scores_path, parts_dir = st.store(S.SCORES_STORE), st.store(PARTS_DIR)
    _store.clean_stale(st.path)
    _store.clean_stale(parts_dir)
    for tmp in list(_OWN_TMPS):  # this process's leftovers (clean_stale spares live pids)
        shutil.rmtree(tmp, ignore_errors=True)
        _OWN_TMPS.discard(tmp)
    if scores_path.exists() and not overwrite:
        _store.check_settings(_store.read_settings(_part_attrs(scores_path)), settings, scores_path)
    if overwrite and parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    return resp, rdms, settings


def _models_to_score(st, models, parts_dir):
    all_models = st.feature_models()
    missing = [m for m in models or () if m not in all_models]
    if missing:
        raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: no features for {missing}; extracted: "
                               f"{all_models or 'none'}; run `neuroxr extract` first")
    todo = list(models) if models else all_models
    if not todo and not any(parts_dir.glob("*.zarr")):
        raise MissingDataError(f"{st.store(S.FEATURES_DIR)}: no extracted features; run `neuroxr extract` first")
    return todo


def _is_done(part: Path, settings: dict, fingerprint: str, overwrite: bool) -> bool:
    """True if ``part`` holds these settings' scores of these features (other settings: refused unless overwrite)."""
    if not part.exists() or not _has_tree_layout(part):
        return False
    attrs = _part_attrs(part)
    try:
        _store.check_settings(_store.read_settings(attrs), settings, part)
    except SettingsMismatchError:
        if not overwrite:
            raise
        return False
    return attrs.get("features_fingerprint") == fingerprint


def _jobs(st, todo, settings, overwrite, log, bar, layer_chunk, **score_kw):
    """The part write of each model still to score, set up as it is asked for."""
    for model in todo:
        fpath = st.store(S.FEATURES_DIR, f"{model}.zarr")
        # the graph's layer chunks straight from the store (no rechunk tasks)
        feats = _store.open_dataset(fpath, chunks={S.LAYER: int(layer_chunk)})
        check_store_variables(fpath, _needed_variables(score_kw["metrics"], score_kw["zscore"], feats.data_vars),
                              "scoring " + ", ".join(score_kw["metrics"]))
        fp = fingerprint_store(fpath)
        part = st.store(PARTS_DIR, f"{model}.zarr")
        if _is_done(part, settings, fp, overwrite):
            log(f"{model}: already scored with these settings, skipped")
            bar.update()
            continue
        tree = score_layers(feats, layer_chunk=layer_chunk, source=fpath,
                            responses_source=st.store(S.RESPONSES_STORE), **score_kw)
        tree.attrs.update(_store.provenance(settings, {"features": str(fpath), "features_fingerprint": fp}))
        tree.attrs.update(features_fingerprint=fp, model_store=model)
        yield _Job(model, tree, part, log)
        bar.update()


def score_study(study, metrics=("ridge", "rsa"), alpha=1.0, alphas=None, zscore: bool = True, models=None,
                client=None, overwrite: bool = False, neuron_chunk: int = DEFAULT_NEURON_CHUNK,
                layer_chunk: int = DEFAULT_LAYER_CHUNK, areas=None, rsa_method: str = "pearson",
                nan_layers: str = "raise", pls_options: dict | None = None, backend: str = "auto",
                progress: bool = False, log=None, lock_timeout: float = LOCK_TIMEOUT,
                resample_options: dict | None = None) -> Path:
    """Score the study's models and write ``STUDY/scores.zarr``.

    Parameters
    ----------
    study : path-like
        The study directory (``responses.zarr`` and/or ``rdms.zarr``, ``features/*.zarr``).
    metrics : sequence of str
        Names of :data:`neuroxr.mapping.metrics.METRICS` ("ridge", "rsa", "srp-ridge", "pls", "cka",
        "cka-debiased", "versa", "effdim", "ridge-norm", "rsa-norm", "rsa-perm", "cka-perm").
    alpha, alphas, zscore, areas, rsa_method, nan_layers, pls_options, backend
        See :func:`score_layers`.
    models : sequence of str, optional
        Model stores (``features/<model>.zarr`` names) to score; default all.
    client : distributed.Client, optional
        Run on this cluster; default the threaded scheduler of this process.
    overwrite : bool
        Discard scores computed with other settings and rescore everything.
    progress : bool
        Show a progress bar (dask's, or ``distributed.progress`` with a client).
    log : callable, optional
        Receives one line per event (the backend chosen, each model scored or skipped).
    lock_timeout : float
        Seconds to wait while another process writes this study's scores
        (:func:`neuroxr.mapping.guard.scores_lock`), then stop naming it.
    resample_options : dict, optional
        Settings of the permutation, bootstrap and ceiling metrics (``n_perm``, ``n_boot``,
        ``n_splits``, ``ceiling_boot``, ``seed``; :data:`neuroxr.mapping.resample.DEFAULT_RESAMPLE`).

    Returns
    -------
    Path of ``scores.zarr``.
    """
    log = log or (lambda msg: None)
    st = open_study(study)
    metrics = check_metrics(metrics)
    alphas = check_alphas(alpha if alphas is None else alphas)
    backend = resolve_backend(backend)
    log(f"array backend: {backend}" + (" (CUDA device found)" if backend.startswith("torch:cuda") else ""))
    kw = dict(metrics=metrics, alphas=alphas, zscore=zscore, areas=areas, rsa_method=rsa_method,
              neuron_chunk=neuron_chunk, nan_layers=nan_layers, pls_options={**DEFAULT_PLS, **(pls_options or {})},
              backend=backend, resample_options=check_resample_options(resample_options))
    with scores_lock(st.path, lock_timeout), (local_scheduler() if client is None else contextlib.nullcontext()):
        return _score_locked(st, models, client, overwrite, layer_chunk, progress, log, **kw)


def _score_locked(st, models, client, overwrite, layer_chunk, progress, log, **kw):
    """:func:`score_study` holding the study's scores lock."""
    resp, rdms, settings = _prepare(st, kw["metrics"], kw["alphas"], kw["zscore"], kw["rsa_method"],
                                    kw["pls_options"], kw["areas"], kw["nan_layers"], client, overwrite,
                                    kw["resample_options"])
    todo = _models_to_score(st, models, st.store(PARTS_DIR))
    with tqdm(total=len(todo), desc="scoring", unit="model", disable=not progress or len(todo) < 2) as bar:
        jobs = _jobs(st, todo, settings, overwrite, log, bar, layer_chunk, responses=resp, rdms=rdms, **kw)
        if client is None:
            _run_local(jobs, progress and len(todo) < 2)
        else:
            _run_client(jobs, client, progress)
    return assemble_scores(st.path, settings)


def assemble_scores(study, settings: dict | None = None) -> Path:
    """(Re)build ``STUDY/scores.zarr`` from the finished parts in ``STUDY/scores.parts`` (atomic)."""
    st_path = Path(study)
    parts_dir = st_path / PARTS_DIR
    parts = sorted(p for p in parts_dir.glob("*.zarr") if not p.name.startswith("."))
    if not parts:
        raise MissingDataError(f"{parts_dir}: no scored models to assemble")
    old = [p.name for p in parts if not _has_tree_layout(p)]
    if old:
        raise SettingsMismatchError(f"{parts_dir}: {old} hold scores in the layout of an older neuroxr (no 'areas' "
                                    "group, no 'variant'); rescore them (`neuroxr score STUDY`, or --overwrite)")
    opened = [open_scores(p) for p in parts]
    if settings is None:
        settings = _store.read_settings(opened[-1])
    keep = [t for t in opened if _store.read_settings(t) == settings]
    layer_ids = np.concatenate([np.asarray(t[S.LAYER].values) for t in keep])
    uniq, counts = np.unique(layer_ids, return_counts=True)
    if (counts > 1).any():
        raise NeuroxrError(f"{parts_dir}: layer ids scored twice in different model stores: "
                           f"{uniq[counts > 1][:5].tolist()}; remove the duplicate features store")
    inputs = {t.attrs.get("model_store", str(i)): t.attrs.get("features_fingerprint") for i, t in enumerate(keep)}
    combined = concat_scores(keep, attrs=_store.provenance(settings, inputs))
    combined.attrs["nan_counts"] = json.dumps(count_nan_scores(combined))
    return replace_scores(combined, st_path / S.SCORES_STORE)
