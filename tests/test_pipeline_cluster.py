"""`neuroxr run` on a cluster: one Dask task per model variant on a LocalCluster of two single-thread
workers, each variant's store written once, the same numbers as the serial run, threads per task
sized so busy threads never exceed the CPUs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from neuroxr import schema as S

CONFIG = """
[study]
dir = "study"
seed = 0
[ingest]
source = "simulate"
n_images = 24
neurons_per_area = 6
n_trials = 4
image_size = 16
[extract]
models = ["alexnet", "squeezenet1_1"]
weights = ["random"]
baselines = ["pixels"]
seed = 0
[score]
metrics = ["ridge", "rsa"]
[report]
n_boot = 20
"""

VARIANTS = [("alexnet", "random"), ("squeezenet1_1", "random"), ("pixels", "random")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same pipeline run serially and on a LocalCluster of 2 workers x 1 thread."""
    from neuroxr.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("parallel")
    (tmp / "run.toml").write_text(CONFIG)
    serial_log, cluster_log = [], []
    serial = run_pipeline(tmp / "run.toml", study=tmp / "serial", log=serial_log.append)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1", memory_limit="3GB") as cluster, Client(cluster) as client:
        from neuroxr.pipeline.stages import plan_worker_threads

        budgets = plan_worker_threads(client)
        parallel = run_pipeline(tmp / "run.toml", study=tmp / "parallel", client=client, log=cluster_log.append)
        resumed_log = []
        run_pipeline(tmp / "run.toml", study=tmp / "parallel", client=client, log=resumed_log.append)
        # trained weights in no cache (offline): skipped and listed, the rest extracted on the cluster
        (tmp / "trained.toml").write_text(CONFIG.replace('models = ["alexnet", "squeezenet1_1"]',
                                                         'models = ["squeezenet1_1"]')
                                          .replace('weights = ["random"]', 'weights = ["trained", "random"]'))
        mp = pytest.MonkeyPatch()
        for d in ("torch", "hf"):
            (tmp / d).mkdir()
        for k, v in {"TORCH_HOME": tmp / "torch", "HF_HOME": tmp / "hf", "HF_HUB_CACHE": tmp / "hf" / "hub",
                     "XDG_CACHE_HOME": tmp, "HF_HUB_OFFLINE": "1"}.items():
            mp.setenv(k, str(v))
        skipped_log = []
        try:
            skipped = run_pipeline(tmp / "trained.toml", study=tmp / "skipped", client=client,
                                   log=skipped_log.append)
        finally:
            mp.undo()
    runs = {"skipped": skipped, "skipped_log": skipped_log}
    return tmp, serial, parallel, serial_log, cluster_log, resumed_log, budgets, runs


def _features(study: Path, model: str) -> xr.Dataset:
    return xr.open_zarr(study / S.FEATURES_DIR / f"{model}.zarr").load()


def test_every_variant_extracted_once_on_the_cluster(runs):
    from neuroxr.runtime import available_cores

    tmp, _, parallel, _, log, resumed, _, _ = runs
    per_task = max(1, available_cores() // 2)  # two single-thread workers share this host's cores
    assert f"extract: 3 model variant(s) on 2 Dask worker(s), {per_task} thread(s) per task" in log
    for model, weights in VARIANTS:
        lines = [m for m in log if m.startswith(f"extract: {model} [{weights}]")]
        assert len(lines) == 1 and ": done (" in lines[0], lines
        assert lines[0].endswith(f"[{max(1, available_cores() // 2)} thread(s)]")  # the task's budget
        ds = _features(tmp / "parallel", model)
        # the store holds the variant's layers once: no layer repeated by a second write
        assert len(set(ds.layer.values.tolist())) == ds.sizes["layer"]
        assert set(ds.weights.values.tolist()) == {weights}
    assert sorted(p.name for p in (tmp / "parallel" / S.FEATURES_DIR).glob("*.zarr")) == [
        "alexnet.zarr", "pixels.zarr", "squeezenet1_1.zarr"]
    assert "extract: all 3 models extracted, skipped" in resumed
    assert parallel["not_run"] == []


def test_cluster_features_and_scores_equal_the_serial_run(runs):
    tmp = runs[0]
    for model, _ in VARIANTS:
        a, b = _features(tmp / "serial", model), _features(tmp / "parallel", model)
        assert set(a.data_vars) == set(b.data_vars)
        for v in a.data_vars:
            if a[v].dtype.kind == "f":
                np.testing.assert_allclose(b[v].values, a[v].values, rtol=1e-6, atol=1e-9, err_msg=f"{model} {v}")
            else:
                np.testing.assert_array_equal(b[v].values, a[v].values)
    sa = xr.open_zarr(tmp / "serial" / S.SCORES_STORE).load()
    sb = xr.open_zarr(tmp / "parallel" / S.SCORES_STORE).load()
    sb = sb.sel(layer=sa.layer.values)
    np.testing.assert_allclose(sb.ridge_r.values, sa.ridge_r.values, rtol=1e-6, atol=1e-9)
    import pandas as pd

    ra = pd.read_csv(tmp / "serial" / "reports" / "rankings.csv")
    rb = pd.read_csv(tmp / "parallel" / "reports" / "rankings.csv")
    pd.testing.assert_frame_equal(ra, rb, check_exact=False, rtol=1e-6)


def test_threads_per_task_never_exceed_the_cpus(runs):
    from neuroxr.runtime import available_cores

    budgets = runs[-2]
    assert len(budgets) == 2
    # two single-thread workers on one host share its cores: each task gets half (at least 1)
    assert set(budgets.values()) == {max(1, available_cores() // 2)}
    assert sum(budgets.values()) <= max(2, available_cores())


def test_plan_worker_threads_is_the_workers_threads_within_its_share_of_the_host():
    from neuroxr.pipeline.stages import plan_worker_threads

    class FakeClient:
        def scheduler_info(self):
            return {"workers": {"tcp://a:1": {"host": "a", "nthreads": 2}, "tcp://a:2": {"host": "a", "nthreads": 2},
                                "tcp://b:1": {"host": "b", "nthreads": 1}, "tcp://c:1": {"host": "c", "nthreads": 8},
                                "tcp://d:1": {"host": "d", "nthreads": 4}, "tcp://d:2": {"host": "d", "nthreads": 4}}}

        def run(self, fn):
            return {"tcp://a:1": 16, "tcp://a:2": 16, "tcp://b:1": 16, "tcp://c:1": 4, "tcp://d:1": 4, "tcp://d:2": 4}

    # a: 2 threads each (16 cores shared by 2 workers); b: its 1 thread; c: 8 declared, 4 cores;
    # d: two 4-thread workers on 4 cores get 2 each
    assert plan_worker_threads(FakeClient()) == {"tcp://a:1": 2, "tcp://a:2": 2, "tcp://b:1": 1, "tcp://c:1": 4,
                                                 "tcp://d:1": 2, "tcp://d:2": 2}


def test_one_extraction_at_a_time_per_worker_and_per_model(tmp_path):
    """The dispatcher: never two tasks on one worker at once, never two variants of one model at
    once (their store is one file), every variant once, results in order."""
    from neuroxr.pipeline import stages

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, memory_limit=0,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        import neuroxr.features.extract as fx

        real = fx.extract_model

        def slow(study, model, weights="random", **kw):  # stands in for an extraction (threads: the budget)
            time.sleep(0.3)
            return {"model": model, "weights": weights, "status": "done", "layers": 1, "nonfinite": [],
                    "seconds": 0.3, "bytes": 0, "threads_seen": kw.get("threads")}

        fx.extract_model = slow
        try:
            todo = [("m1", "random", "random"), ("m1", "ckpt", "ckpt"), ("m2", "random", "random"),
                    ("m3", "random", "random"), ("m1", "trained", "trained")]
            out = stages._extract_on_cluster(client, tmp_path, todo, {}, lambda m: None)
        finally:
            fx.extract_model = real
        budgets = stages.plan_worker_threads(client)
    assert [(r["model"], r["weights"]) for r in out] == [(m, w) for m, w, _ in todo]
    assert all(r["threads_seen"] == budgets[r["worker"]] for r in out)

    def overlap(a, b):
        return a["started"] < b["finished"] and b["started"] < a["finished"]

    for i, a in enumerate(out):
        for b in out[i + 1:]:
            assert not (a["worker"] == b["worker"] and overlap(a, b)), (a, b)
            assert not (a["model"] == b["model"] and overlap(a, b)), (a, b)
    assert len({r["worker"] for r in out}) == 2  # both workers took work


def test_weights_missing_at_load_time_are_listed_not_fatal(tmp_path, monkeypatch):
    """A variant whose weights go missing between the plan and the load is listed as not run
    (summary, not_run.json), the others extracted; --strict refuses."""
    import json

    import neuroxr.features.extract as fx
    from neuroxr.errors import MissingDataError
    from neuroxr.pipeline import run_pipeline

    orig = fx.extract_model

    def flaky(study, model, **kw):
        if model == "squeezenet1_1":
            raise MissingDataError("squeezenet1_1 weights vanished from the cache")
        return orig(study, model, **kw)

    monkeypatch.setattr(fx, "extract_model", flaky)
    (tmp_path / "run.toml").write_text(CONFIG.replace('"alexnet", ', ""))
    res = run_pipeline(tmp_path / "run.toml", log=lambda m: None)
    assert [(x["model"], x["weights"]) for x in res["not_run"]] == [("squeezenet1_1", "random")]
    assert "not run (1): squeezenet1_1 (random): squeezenet1_1 weights vanished" in res["headline"]
    listed = json.loads((tmp_path / "study" / "reports" / "not_run.json").read_text())
    assert listed == res["not_run"]
    assert sorted(p.name for p in (tmp_path / "study" / S.FEATURES_DIR).glob("*.zarr")) == ["pixels.zarr"]
    with pytest.raises(MissingDataError, match="--strict"):
        run_pipeline(tmp_path / "run.toml", study=tmp_path / "strict", strict=True, log=lambda m: None)


def test_cluster_table_is_used_when_the_command_line_names_none(tmp_path, monkeypatch):
    import contextlib

    from neuroxr import cluster
    from neuroxr.cli import _analysis
    from neuroxr.pipeline import ConfigError, load_settings

    seen = []

    @contextlib.contextmanager
    def fake_get_client(scheduler=None, workers=None, **kw):
        seen.append((scheduler, workers, kw.get("threads_per_worker"), kw.get("memory_limit")))
        yield None

    monkeypatch.setattr(cluster, "get_client", fake_get_client)
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG + '[cluster]\nworkers = 3\nthreads_per_worker = 2\nmemory_limit = "2GB"\n')
    assert load_settings(cfg).cluster.workers == 3

    class Args:
        config, scheduler, workers, threads_per_worker = str(cfg), None, None, 1
        memory_limit, dashboard_address, worker_resources = "auto", "127.0.0.1:0", None

    with _analysis._pipeline_client(Args()):
        pass
    Args.scheduler = "tcp://10.0.0.5:8786"  # the command line wins
    with _analysis._pipeline_client(Args()):
        pass
    assert seen == [(None, 3, 2, "2GB"), ("tcp://10.0.0.5:8786", None, 1, "auto")]
    cfg.write_text(CONFIG + "[cluster]\nworkrs = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'workers'"):
        load_settings(cfg)


def test_missing_weights_skipped_and_listed_with_parallel_extraction(runs):
    tmp, extra = runs[0], runs[-1]
    res, log = extra["skipped"], extra["skipped_log"]
    assert [(x["model"], x["weights"]) for x in res["not_run"]] == [("squeezenet1_1", "trained")]
    assert "not run (1): squeezenet1_1 (trained)" in res["headline"]
    from neuroxr.runtime import available_cores

    assert f"extract: 2 model variant(s) on 2 Dask worker(s), {max(1, available_cores() // 2)} thread(s) per task" in log
    ds = _features(tmp / "skipped", "squeezenet1_1")
    assert set(ds.weights.values.tolist()) == {"random"}
    page = res["report"].read_text()
    assert "<h2>Not run</h2>" in page and "<b>squeezenet1_1</b> (trained)" in page
