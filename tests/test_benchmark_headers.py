"""Every benchmark takes ``--threads`` and records the load, the thread settings and the BLAS kernel.

The scripts are only asked for ``--help`` here (the benchmarks themselves are long); the shared
header and budget (``benchmarks/_machine.py``) are unit-tested.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

SCRIPTS = ["bench_allen_ingest", "bench_reliability", "bench_scale", "smoke_catalog", "bench_many_images",
           "plan_vs_measured", "bench_rsa", "estimate_catalog", "bench_rank_ooc", "bench_extract", "bench_score"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.fixture(scope="module")
def machine():
    sys.path.insert(0, str(BENCH))
    try:
        import _machine

        yield _machine
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_takes_threads(script):
    out = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--help"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--threads" in out.stdout


def test_describe_machine_names_load_threads_kernels_and_environment(machine):
    line = machine.describe_machine(1)  # first: it loads numpy's and scipy's BLAS

    assert "\n" not in line
    assert "load average" in line and "--threads 1" in line and "available cores" in line
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    assert blas
    for lib in blas:
        assert str(lib.get("architecture")) in line
        assert f"{lib.get('internal_api')} {lib.get('version')}" in line
    for name in machine.ENV_VARS:
        assert f"{name}=" in line
    assert "OPENBLAS_CORETYPE=" in line
    assert "note here" in machine.describe_machine(3, "note here")
    assert machine.load_line().startswith("load average after: ")
    assert len(machine.load_line().split(": ")[1].split()) == 3


def test_apply_threads_limits_every_blas_library():
    """In a fresh process (the limit is process-wide and kept): BLAS, torch and numba at the budget."""
    code = f"""
import json, sys
sys.path.insert(0, {str(BENCH)!r})
import torch
import _machine
from threadpoolctl import threadpool_info
n = _machine.apply_threads(1)
try:
    import numba
    nb = numba.get_num_threads()
except ImportError:
    nb = 1
print(json.dumps({{"n": n, "torch": torch.get_num_threads(), "numba": nb,
                  "blas": [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 1 and res["torch"] == 1 and res["numba"] == 1
    assert res["blas"] and set(res["blas"]) == {1}


def test_dask_local_runs_on_the_budget(machine):
    import threading

    import dask

    seen = set()

    def task(i):
        seen.add(threading.get_ident())
        return i

    work = [dask.delayed(task)(i) for i in range(32)]
    with machine.dask_local(1):
        dask.compute(*work)
    assert seen == {threading.get_ident()}
    seen.clear()
    with machine.dask_local(2):
        dask.compute(*work)
        assert dask.base.get_scheduler() is not dask.threaded.get  # neuroxr's writes use it as given
    assert 1 <= len(seen) <= 2
