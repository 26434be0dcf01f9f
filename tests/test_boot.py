"""Issue 13: the process settings neuroxr makes when imported (neuroxr._boot, Zarr's codec threads).

torch's CPU allocator asks the kernel for transparent huge pages only when THP_MEM_ALLOC_ENABLE is
set before its first large allocation; importing neuroxr sets it (unless the user set it, or
NEUROXR_TUNE=0).  Checked on a real allocation: the huge pages the kernel reports for the process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroxr._boot import blas_kernels, tune_environment

REPO = Path(__file__).resolve().parents[1]
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

CHILD = r'''
import sys
import neuroxr  # noqa: F401
import torch
big = torch.ones(64 << 20)  # 256 MB
huge = sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages"))
print(huge)
'''


def test_tune_environment_sets_defaults_and_keeps_the_users():
    env = {}
    assert tune_environment(env, platform="linux") == {"THP_MEM_ALLOC_ENABLE": "1"}
    assert env == {"THP_MEM_ALLOC_ENABLE": "1"}
    env = {"THP_MEM_ALLOC_ENABLE": "0"}
    assert tune_environment(env, platform="linux") == {} and env == {"THP_MEM_ALLOC_ENABLE": "0"}
    env = {"NEUROXR_TUNE": "0"}
    assert tune_environment(env, platform="linux") == {} and "THP_MEM_ALLOC_ENABLE" not in env
    env = {}
    assert tune_environment(env, platform="darwin") == {} and env == {}
    # the BLAS kernel is never forced: a machine's OPENBLAS_CORETYPE is its own
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    tune_environment(env, platform="linux")
    assert env["OPENBLAS_CORETYPE"] == "Haswell"


def test_blas_kernels_names_each_library_with_its_kernel():
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    text = blas_kernels()
    assert len(text.split(", ")) == max(1, len(libs))
    for lib in libs:
        assert f"{lib['internal_api']} {lib.get('version')} {lib.get('architecture')} x{lib['num_threads']}" in text


def _huge_kb(**env) -> int:
    full = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "NEUROXR_TUNE")}
    full.update(env, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=full, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not THP_MODE.exists() or "[never]" in THP_MODE.read_text(),
                    reason="the kernel gives no transparent huge pages")
def test_importing_neuroxr_gives_torch_tensors_huge_pages():
    pytest.importorskip("torch")
    assert _huge_kb() > 0
    if "[madvise]" in THP_MODE.read_text():  # huge pages only where asked for: the opt-out asks for none
        assert _huge_kb(NEUROXR_TUNE="0") == 0


ZARR_CHILD = r'''
import os, sys, threading
os.sched_setaffinity(0, {0})
import numpy as np, xarray as xr
from neuroxr.io.store import write_dataset, open_dataset
import zarr
ds = xr.Dataset({"x": (("a", "b"), np.random.default_rng(0).standard_normal((400, 400)))})
write_dataset(ds, sys.argv[1])
open_dataset(sys.argv[1]).load()
pool = [t.name for t in threading.enumerate() if t.name.startswith("zarr_pool")]
print(zarr.config.get("threading.max_workers"), len(pool))
'''


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_zarr_codec_threads_stay_inside_the_cpus(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("ZARR_THREADING__MAX_WORKERS", None)
    out = subprocess.run([sys.executable, "-c", ZARR_CHILD, str(tmp_path / "a.zarr")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    limit, threads = map(int, out.stdout.split()[-2:])
    assert limit == 1 and threads <= 1  # one CPU: one codec thread (zarr's default would be cpus + 4)
    env["ZARR_THREADING__MAX_WORKERS"] = "3"  # the user's own setting is kept
    out = subprocess.run([sys.executable, "-c", ZARR_CHILD, str(tmp_path / "b.zarr")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-2]) == 3
