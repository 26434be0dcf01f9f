"""Distributed execution on a real cluster: a `dask scheduler` and `dask worker` processes on 127.0.0.1.

The pipeline (simulate -> extract -> score) runs through them as `neuroxr` subprocesses with
``--scheduler``; its stores must equal those of a run without a cluster.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr import cluster
from neuroxr.errors import NeuroxrError

BIN = Path(sys.executable).parent
DASK = str(BIN / "dask")
NEUROXR = str(BIN / "neuroxr")

pytestmark = pytest.mark.network  # local 127.0.0.1 servers only


def _wait_for(pred, timeout=60.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


class Cluster:
    """A scheduler and worker processes started with the `dask` command line."""

    def __init__(self, root: Path):
        self.root = root
        self.file = root / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}

    def _popen(self, args, log):
        # every process in its own session so it can be ended by pid without touching others
        return subprocess.Popen(args, stdout=open(self.root / log, "wb"), stderr=subprocess.STDOUT,
                                cwd=self.root, env=self.env, start_new_session=True)

    def start_scheduler(self):
        self.procs.append(self._popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(self.file)], "scheduler.log"))
        _wait_for(lambda: self.file.exists() and self.file.stat().st_size > 0, 60, "the scheduler file")
        self.address = json.loads(self.file.read_text())["address"]

    # 3 GB: a worker that has extracted features holds torch, torchvision and timm (about 0.8 GiB
    # resident); at 1.5 GB Dask paused such workers (80 % of the limit) and nothing ran again
    def start_worker(self, name, *extra, memory_limit="3GB"):
        wdir = self.root / f"cwd-{name}"  # workers run elsewhere: study paths must be absolute
        wdir.mkdir(exist_ok=True)
        p = self._popen(
            [DASK, "worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1", "--nthreads", "1",
             "--nworkers", "1", "--name", name, "--memory-limit", memory_limit, "--no-dashboard",
             "--local-directory", str(wdir), *extra], f"worker-{name}.log")
        self.procs.append(p)
        self.workers[name] = p
        return p

    def n_workers(self) -> int:
        from distributed import Client

        with Client(scheduler_file=str(self.file), timeout="10s") as c:
            return len(c.scheduler_info()["workers"])

    def wait_workers(self, n):
        _wait_for(lambda: self.n_workers() >= n, 90, f"{n} workers")

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_scheduler()
        c.start_worker("w1")
        c.start_worker("w2")
        c.wait_workers(2)
        yield c
    finally:
        c.stop()


def test_client_on_existing_scheduler(dask_cluster, capsys):
    with cluster.get_client(scheduler=dask_cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        import dask.array as da

        x = da.arange(1000, chunks=100)
        assert int((x * 2).sum().compute()) == 2 * sum(range(1000))
    err = capsys.readouterr().err
    assert "2 workers" in err and f"scheduler {dask_cluster.address}" in err
    link = err.split("dashboard at ")[1].split()[0]
    import urllib.request

    with urllib.request.urlopen(link, timeout=20) as resp:  # the scheduler's bokeh dashboard
        assert resp.status == 200
    # the scheduler file works as the address too
    with cluster.get_client(scheduler=str(dask_cluster.file), quiet=True) as client:
        assert client.scheduler.address == dask_cluster.address


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(NeuroxrError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with cluster.get_client(scheduler="127.0.0.1:9", timeout="2s"):
            pass


def test_local_cluster_serves_dashboard_on_localhost(capsys):
    import urllib.request

    with cluster.get_client(workers=1, dashboard_address="127.0.0.1:0") as client:
        link = cluster.dashboard_link(client)
        assert link.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(link, timeout=20) as resp:  # bokeh is installed: the page is served
            assert resp.status == 200
    assert f"Dask dashboard at {link}" in capsys.readouterr().err


def test_corrupt_chunk_named_through_remote_workers(dask_cluster, tmp_path):
    from neuroxr.io import integrity, store

    p = tmp_path / "s.zarr"
    ds = xr.Dataset({"v": (("layer", "neuron"), np.arange(40.0).reshape(4, 10))})
    store.write_dataset(ds, p, chunks={"layer": 1})
    with cluster.get_client(scheduler=dask_cluster.address, quiet=True):
        back = store.open_dataset(p)
        np.testing.assert_array_equal(back.v.values, ds.v.values)  # read on the workers
        raw = bytearray((p / "v" / "c" / "2" / "0").read_bytes())
        raw[-6] ^= 0xFF
        (p / "v" / "c" / "2" / "0").write_bytes(bytes(raw))
        with pytest.raises(integrity.ChunkCorruptError) as info:
            store.open_dataset(p).v.values
    assert (info.value.variable, info.value.chunk) == ("v", "c/2/0")


def test_gpu_annotation_routes_tasks_to_gpu_worker(dask_cluster):
    import dask
    from distributed import get_worker

    with cluster.get_client(scheduler=dask_cluster.address, quiet=True):
        with pytest.raises(NeuroxrError, match="no Dask worker offers a GPU"):
            cluster.annotate_gpu(True)
        assert cluster.gpu_resources() is None  # CPU-only cluster: no constraint
    dask_cluster.start_worker("gpu", "--resources", "GPU=1")
    dask_cluster.wait_workers(3)
    try:
        with cluster.get_client(scheduler=dask_cluster.address, quiet=True) as client:
            res = cluster.worker_resources(client)
            gpu_addr = [a for a, r in res.items() if r.get("GPU")]
            assert len(gpu_addr) == 1
            with cluster.annotate_gpu():
                tasks = [dask.delayed(lambda i: (i, get_worker().address), pure=False)(i) for i in range(8)]
            ran = dask.compute(*tasks)
            assert sorted(i for i, _ in ran) == list(range(8))
            assert {a for _, a in ran} == set(gpu_addr)
            # client.submit gets the same routing through gpu_resources
            assert cluster.gpu_resources(client) == {"GPU": 1}
            futs = [client.submit(lambda i: get_worker().address, i, resources=cluster.gpu_resources(client))
                    for i in range(4)]
            assert set(client.gather(futs)) == set(gpu_addr)
            # unannotated tasks may go anywhere; annotate_gpu(False) adds nothing
            with cluster.annotate_gpu(False):
                t = dask.delayed(lambda: 1)()
            assert t.compute() == 1
    finally:
        p = dask_cluster.workers.pop("gpu")
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
        _wait_for(lambda: dask_cluster.n_workers() == 2, 60, "the GPU worker to leave")


def test_parse_resources():
    assert cluster.parse_resources("GPU=1,MEM=2e9") == {"GPU": 1.0, "MEM": 2e9}
    assert cluster.parse_resources(None) == {}
    with pytest.raises(NeuroxrError, match="NAME=NUMBER"):
        cluster.parse_resources("GPU")


def test_killed_worker_is_rescheduled_same_result(dask_cluster, tmp_path):
    """SIGKILL one worker process mid-run: Dask reruns its tasks elsewhere; the store is exact."""
    import dask.array as da
    from distributed import Client

    from neuroxr.io import store

    def _slow_block(block, delay):  # local: shipped to the workers by value (they cannot import tests)
        time.sleep(delay)
        return block @ block.T[:, :8]

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24 * 8, 16))
    want = np.concatenate([X[i:i + 8] @ X[i:i + 8].T[:, :8] for i in range(0, len(X), 8)])
    path = tmp_path / "features" / "m.zarr"
    with Client(dask_cluster.address, timeout="20s") as client:
        pids = client.run(os.getpid)  # {worker address: pid of the worker process}
        victim = sorted(pids.values())[0]
        x = da.from_array(X, chunks=(8, 16)).map_blocks(_slow_block, 0.25, chunks=(8, 8), dtype=float)
        ds = xr.Dataset({"k": (("image", "image_j"), x)})
        fut = client.submit(lambda: None)  # warm
        fut.result()
        import threading

        def _kill():
            time.sleep(1.0)  # a few blocks done, most still running or queued
            os.kill(victim, signal.SIGKILL)

        t = threading.Thread(target=_kill)
        t.start()
        store.write_dataset(ds, path)
        t.join()
        got = store.open_dataset(path).k.values
        np.testing.assert_array_equal(got, want)
        # the worker really died (its nanny restarted it with a new pid)
        _wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 60, "the worker restart")
        assert victim not in client.run(os.getpid).values()
    assert not list(path.parent.glob(".*"))  # no temporary store left


def _extract_available() -> bool:
    from test_resume import _extract_available as ok

    return ok()


def test_pipeline_through_cluster_equals_local(dask_cluster, tmp_path):
    """ingest -> extract -> score as `neuroxr` subprocesses with --scheduler, the study given as a
    file:// URL; the stores equal those of the same commands run without a cluster."""
    import shutil

    from test_resume import assert_studies_equal, make_base_study, run_cli, write_synthetic_features

    base = make_base_study(tmp_path / "b")
    # ingest through the command line too (the workers read what it wrote)
    np.save(tmp_path / "imgs.npy", xr.open_zarr(base / "stimuli.zarr")["pixels"].values)
    np.save(tmp_path / "resp.npy", xr.open_zarr(base / "responses.zarr")["mean"].values.T)
    from neuroxr.cli import main

    local, remote = tmp_path / "local", tmp_path / "remote"
    url = f"file://{remote}"
    sched = ["--scheduler", dask_cluster.address]
    ingest = ["--images", str(tmp_path / "imgs.npy"), "--responses", str(tmp_path / "resp.npy"),
              "--area", "VISp", "--cre-line", "Cux2-CreERT2", "--depth-um", "175"]
    # the local run in this process, the cluster run as subprocesses
    assert main(["ingest", "arrays", str(local), *ingest]) == 0
    run_cli(["ingest", "arrays", url, *ingest])
    if _extract_available():
        models = ["--model", "pixels", "--model", "gabor", "--weights", "random"]
        assert main(["extract", str(local), *models]) == 0
        run_cli(["extract", url, *models, *sched])
    else:  # until `neuroxr extract` exists: the same synthetic features in both
        for study in (local, remote):
            write_synthetic_features(study, n_models=3)
    assert main(["score", str(local), "--no-progress"]) == 0
    res = run_cli(["score", url, *sched])
    assert "Dask dashboard at" in res.stderr and "2 workers" in res.stderr
    # features written separately have other timestamps, hence other fingerprints in `inputs`
    assert_studies_equal(remote, local, volatile=("created", "inputs", "features_fingerprint"))
    assert xr.open_zarr(remote / "scores.zarr").sizes["neuron"] == 36
    shutil.rmtree(tmp_path / "b")


@pytest.mark.slow
def test_score_survives_a_killed_worker(dask_cluster, tmp_path):
    """SIGKILL a worker while `neuroxr score --scheduler` runs: same scores as a local run."""
    import shutil
    import threading

    from distributed import Client

    from test_resume import assert_studies_equal, make_base_study, run_cli, write_synthetic_features

    base = make_base_study(tmp_path / "b")
    write_synthetic_features(base, n_models=12, n_layers=16)
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(base, local)
    shutil.copytree(base, remote)
    run_cli(["score", str(local), "--layer-chunk", "2"])
    with Client(dask_cluster.address, timeout="20s") as client:
        victim = sorted(client.run(os.getpid).values())[-1]

    def _kill():
        _wait_for(lambda: any((remote / "scores.parts").glob("*.zarr")), 120, "the first scored model")
        os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=_kill)
    t.start()
    run_cli(["score", str(remote), "--scheduler", dask_cluster.address, "--layer-chunk", "2"])
    t.join()
    assert_studies_equal(remote, local)
    with Client(dask_cluster.address, timeout="20s") as client:
        _wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 60, "the worker restart")
        assert victim not in client.run(os.getpid).values()


def _set_status(paused: bool):
    def f(dask_worker):
        from distributed.core import Status

        dask_worker.status = Status.paused if paused else Status.running

    return f


@pytest.fixture
def inproc_client():
    """One in-process worker without a memory monitor (memory_limit=0): only we pause it."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as lc, Client(lc) as client:
        yield client


def test_all_workers_paused_is_a_clear_error_not_a_hang(inproc_client, capsys):
    """Every worker paused for memory: gather names them and raises instead of waiting forever."""
    import dask.array as da

    client = inproc_client
    assert cluster.gather(client, client.compute(da.ones(10, chunks=5).sum())) == 10.0  # running: fine
    client.run(_set_status(True))
    fut = client.compute((da.arange(10, chunks=5) * 3).sum())
    t0 = time.monotonic()
    with pytest.raises(cluster.ClusterStalledError) as info:
        cluster.gather(client, fut, what="scoring m1", paused_timeout=2, poll=0.2)
    assert 2 <= time.monotonic() - t0 < 30
    msg = str(info.value)
    addr = next(iter(client.scheduler_info()["workers"]))
    assert "scoring m1" in msg and "every worker is paused for memory" in msg and addr in msg
    assert "--memory-limit" in msg and "no progress for 2 s" in msg
    assert fut.status == "cancelled"
    # the environment variable sets the default wait
    os.environ["NEUROXR_PAUSED_TIMEOUT"] = "0.5"
    try:
        with pytest.raises(cluster.ClusterStalledError, match="no progress for 0.5 s"):
            cluster.gather(client, [client.submit(lambda: 1, pure=False)], poll=0.2)
    finally:
        del os.environ["NEUROXR_PAUSED_TIMEOUT"]


def test_paused_workers_that_resume_finish_the_work(inproc_client, capsys):
    """A pause shorter than the timeout (Dask spilling, memory freed) is waited out; the bar counts tasks."""
    import threading

    import dask.array as da

    client = inproc_client
    client.run(_set_status(True))
    x = da.arange(40, chunks=4) ** 2
    fut = client.compute(x.sum())

    def resume():
        time.sleep(2.0)
        client.run(_set_status(False))

    t = threading.Thread(target=resume)
    t.start()
    got = cluster.gather(client, fut, what="demo", paused_timeout=60, poll=0.2, progress=True)
    t.join()
    assert got == sum(i * i for i in range(40))
    err = capsys.readouterr().err
    assert "demo" in err and "100%" in err and "task" in err


def test_any_computation_under_get_client_stops_on_a_paused_cluster(monkeypatch):
    """Not only score/extract: a plain dask.compute inside get_client raises ClusterStalledError."""
    import dask.array as da
    from distributed import LocalCluster

    monkeypatch.setenv("NEUROXR_PAUSED_TIMEOUT", "1")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as lc:
        with cluster.get_client(scheduler=lc.scheduler_address, quiet=True):
            assert int(da.arange(10, chunks=5).sum().compute()) == 45  # running workers: untouched
        t0 = time.monotonic()
        with pytest.raises(cluster.ClusterStalledError) as info:
            with cluster.get_client(scheduler=lc.scheduler_address, quiet=True) as client:
                client.run(_set_status(True))
                (da.arange(10, chunks=5) * 3).sum().compute()
        assert time.monotonic() - t0 < 30
        msg = str(info.value)
        assert "every worker is paused for memory" in msg and "no progress for 1 s" in msg
        assert lc.scheduler_address in msg
    monkeypatch.setenv("NEUROXR_PAUSED_TIMEOUT", "soon")
    with pytest.raises(NeuroxrError, match="NEUROXR_PAUSED_TIMEOUT='soon'"):
        cluster._paused_timeout()
