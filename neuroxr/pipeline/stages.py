"""The stages that build a study: ingest, select, extract, score.  Each skips what is done."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import NeuroxrError
from ..features.extract import describe_result
from ..features.variants import clean_features_dir
from ..io.allen import ingest_allen
from ..io.arrays import ingest_arrays
from ..io.store import open_dataset
from ..mapping.score import score_study
from ..responses import select_study
from ..simulate import simulate_study
from .config import PipelineSettings, given, score_alphas
from .plan import list_done_variants, list_model_variants, resolve_spec

#: [ingest] keys that name files (``FILE[:key]``), resolved against the config's base
INGEST_FILES = ("images", "responses", "trials", "neurons", "neuron_ids")


def run_ingest(settings: PipelineSettings, study: Path, log, force) -> None:
    """Write ``responses.zarr`` and ``stimuli.zarr`` from the [ingest] source, unless they exist."""
    ing = given(settings.ingest)
    src = ing.pop("source", None)
    if (study / S.RESPONSES_STORE).exists() and "ingest" not in force:
        log("ingest: responses.zarr exists, skipped")
        return
    overwrite = "ingest" in force
    if src == "simulate":
        ing.setdefault("seed", settings.study.seed)
        log(f"ingest: simulating an observatory driven by {ing.get('model', 'alexnet')} (random weights)")
        simulate_study(study, overwrite=overwrite, **ing)
    elif src == "arrays":
        for key in INGEST_FILES:
            if key in ing:
                ing[key] = resolve_spec(settings, ing[key])
        log(f"ingest: arrays {ing.get('responses') or ing.get('trials')}")
        ingest_arrays(study, overwrite=overwrite, **ing)
    elif src == "allen":
        cache = settings.path(ing.pop("cache", "allen_cache"))
        log(f"ingest: Allen cache {cache} ({ing.get('session', 'three_session_B')}, {ing.get('response', 'events')})")
        ingest_allen(study, cache, overwrite=overwrite, **ing)
    else:
        raise NeuroxrError(f"{settings.where}: [ingest] source must be allen, arrays or simulate, got {src!r}")


def _usable_criteria(want: dict, ds, log) -> dict:
    """``want`` without the criteria the responses cannot support (each dropped one is logged)."""
    want = dict(want)
    if want["min_reliability"] is not None and S.TRIALS not in ds and "splithalf_r" not in ds.variables:
        log("select: no trials, so no split-half reliability; min_reliability ignored")
        want["min_reliability"] = None
    if want["exclude_running"] and "p_run_mod" not in ds.variables:
        log("select: no p_run_mod; exclude_running ignored")
        want["exclude_running"] = False
    if want["image_selective"] and "p_image" not in ds.variables:
        log("select: no p_image; image_selective ignored")
        want["image_selective"] = False
    return want


def run_select(settings: PipelineSettings, study: Path, log, force) -> None:
    """Select neurons by the [select] criteria, unless the same criteria are already applied."""
    sel = settings.select
    if sel is None:
        return
    ds = open_dataset(study / S.RESPONSES_STORE)
    want = {"min_reliability": sel.min_reliability, "cre_lines": sel.cre_lines,
            "exclude_running": sel.exclude_running, "image_selective": sel.image_selective}
    if "selected" in ds.variables and "select" not in force:
        try:
            have = json.loads(ds["selected"].attrs.get("criteria", "{}"))
        except ValueError:
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            log(f"select: {int(ds['selected'].sum())} of {ds.sizes[S.NEURON]} neurons already selected, skipped")
            return
    want = _usable_criteria(want, ds, log)
    extra = {k: v for k, v in given(sel).items() if k not in want}
    s = select_study(study, seed=settings.study.seed, **want, **extra)
    log(f"select: {int(np.asarray(s).sum())} of {len(s)} neurons kept ({want})")


def plan_worker_threads(client) -> dict:
    """``{worker address: threads}``: the busy threads one extraction task may use on each worker.

    A worker runs one extraction at a time (see :func:`_extract_on_cluster`) with its own
    ``nthreads``, capped at its share of the host's cores (the host's cores as the worker sees them,
    :func:`neuroxr.runtime.available_cores`, over the workers on that host), at least 1: busy
    threads never exceed the host's CPUs, however the cluster is laid out.
    """
    from ..runtime import available_cores

    workers = client.scheduler_info().get("workers", {})
    try:
        cores = client.run(available_cores)
    except (OSError, RuntimeError, TimeoutError, KeyError):  # a worker gone meanwhile: the safe default below
        cores = {}
    per_host: dict = {}
    for addr, w in workers.items():
        host = w.get("host") or addr.rpartition(":")[0]
        per_host[host] = per_host.get(host, 0) + 1
    out = {}
    for addr, w in workers.items():
        host = w.get("host") or addr.rpartition(":")[0]
        share = int(cores.get(addr, 1)) // max(1, per_host[host])
        out[addr] = max(1, min(int(w.get("nthreads", 1) or 1), share))
    return out


def extract_variant(study, model: str, weights: str, budgets: dict | None = None, **kw) -> dict:
    """One (model, weights) variant, as one Dask task: :func:`neuroxr.features.extract.extract_model`
    with the thread budget of the worker running it (``budgets``, from :func:`plan_worker_threads`;
    1 thread on a worker it does not name).  The result also holds ``threads``, ``worker`` (its
    address, None outside a worker), and ``started``/``finished`` (wall-clock seconds).

    Missing weights found only now (a :class:`~neuroxr.errors.MissingDataError` while loading) are
    returned as ``status == "missing"`` with the reason, so the other variants go on."""
    from ..errors import MissingDataError
    from ..features.extract import extract_model
    from ..features.threads import thread_budget

    threads, worker = kw.pop("threads", None), None
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        pass
    if budgets is not None:
        threads = budgets.get(worker, 1)
    started = time.time()
    try:
        out = extract_model(study, model, weights=weights, threads=threads, **kw)
    except MissingDataError as exc:
        return {"model": model, "weights": weights, "status": "missing", "reason": str(exc)}
    return {**out, "threads": thread_budget(threads), "worker": worker, "started": started, "finished": time.time()}


def _live_pool(client, gpu: bool) -> tuple[dict, list]:
    """(thread budgets, the workers that take extractions: those offering a GPU when ``gpu``)."""
    from ..cluster import GPU, worker_resources

    budgets = plan_worker_threads(client)
    if gpu:
        res = worker_resources(client)
        return budgets, [a for a in budgets if res.get(a, {}).get(GPU, 0) > 0]
    return budgets, list(budgets)


def _extract_on_cluster(client, study, todo, kw, log) -> list[dict]:
    """Every variant of ``todo`` as one task on ``client``: one extraction at a time on each worker
    (it runs with the worker's threads, :func:`plan_worker_threads`, and holds one model in memory),
    the variants of one model (one store) one after another; results in ``todo`` order.  The first
    task that fails raises its error (what finished is kept; a rerun resumes)."""
    from distributed import wait

    from ..cluster import gpu_resources

    res = gpu_resources(client)  # GPU workers (`dask worker --resources GPU=1`) take the models
    budgets, pool = _live_pool(client, bool(res))
    log(f"extract: {len(todo)} model variant(s) on {len(pool)} Dask worker(s), "
        f"{', '.join(sorted({str(budgets[a]) for a in pool}))} thread(s) per task")
    run = uuid.uuid4().hex[:8]  # a key of its own per run: an earlier run's result is never reused
    pending, running, results = list(range(len(todo))), {}, [None] * len(todo)
    free = list(pool)
    while pending or running:
        for i in list(pending):
            model = todo[i][0]
            if not free:
                break
            if any(todo[j][0] == model for j, _ in running.values()):
                continue  # its store is being written by another variant
            addr = free.pop(0)
            fut = client.submit(extract_variant, str(study), model, todo[i][2], budgets, progress=False,
                                pure=False, key=f"extract-{model}-{todo[i][1][:40]}-{run}", workers=[addr],
                                allow_other_workers=True, resources=res, **kw)
            running[fut] = (i, addr)
            pending.remove(i)
        if not running:  # every worker of the pool left: take whoever is there now
            budgets, pool = _live_pool(client, bool(res))
            if not pool:
                raise NeuroxrError(f"no Dask worker left to extract {len(pending)} model variant(s) on")
            free = list(pool)
            continue
        done, _ = wait(list(running), return_when="FIRST_COMPLETED")
        live = set(client.scheduler_info().get("workers", {}))
        for fut in done:
            i, addr = running.pop(fut)
            results[i] = fut.result()  # a task's error stops the run here
            if addr in live:
                free.append(addr)
    return results


def run_extract(settings: PipelineSettings, study: Path, log, force, client, skip=()) -> list[dict]:
    """Extract every (model, weights) variant of [extract] that is not extracted yet, but those in
    ``skip`` ((model, weights) pairs whose weights are missing).

    With a Dask ``client``, one task per variant runs on the cluster (see :func:`extract_variant`);
    otherwise the variants run here, one after another.  Returns the variants whose weights turned
    out missing only while loading (dicts ``model, weights, reason``), which were not extracted.
    """
    ex = settings.extract
    skip = set(skip)
    pairs = [p for p in list_model_variants(settings) if p not in skip]
    if not pairs:
        return []
    done = set() if "extract" in force else list_done_variants(study)
    todo = [p for p in pairs if p not in done]
    if not todo:
        log(f"extract: all {len(pairs)} models extracted, skipped")
        return []
    seed = ex.seed if ex.seed is not None else settings.study.seed
    (study / S.FEATURES_DIR).mkdir(parents=True, exist_ok=True)  # extract spills beside the stores
    clean_features_dir(study)
    kw = {"seed": seed, "srp": ex.srp, "batch_size": ex.batch_size, "overwrite": "extract" in force}
    todo = [(m, w, w if w in ("trained", "random") else str(settings.path(w))) for m, w in todo]
    t0 = time.perf_counter()
    if client is not None:
        results = _extract_on_cluster(client, study, todo, kw, log)
    else:
        results = []
        for model, weights, w in todo:
            t1 = time.perf_counter()
            results.append(extract_variant(study, model, w, progress=False, **kw))
            log(f"extract: {model} ({weights}) in {time.perf_counter() - t1:.1f} s")
    missing = []
    for (model, weights, _), r in zip(todo, results):
        if r.get("status") == "missing":
            missing.append({"model": model, "weights": weights, "reason": r["reason"]})
            log(f"not run: {model} ({weights}): {r['reason']}")
        elif client is not None:
            log(f"extract: {describe_result(r)} [{r['threads']} thread(s)]")
    if client is not None:
        log(f"extract: {len(todo)} variant(s) in {time.perf_counter() - t0:.1f} s on the cluster")
    return missing


def run_score(settings: PipelineSettings, study: Path, log, force, client) -> None:
    """Score every extracted model by the [score] metrics (finished models are kept)."""
    sc = given(settings.score)
    metrics = sc.pop("metrics")
    sc["alpha"] = score_alphas(settings.score)
    sc.pop("alphas", None), sc.pop("alpha_unit", None)
    log(f"score: {', '.join(metrics)} (finished models are kept)")
    score_study(study, metrics=metrics, client=client, overwrite="score" in force,
                log=lambda m: log(f"score: {m}"), **sc)
