"""Issue 13: one owner of parallelism while extracting.

An extraction in a child process whose CPU affinity shrinks to one core after torch and NumPy
sized their pools (as under a launcher or a Dask worker that pins its processes) never has more
than one busy thread while it builds the model, runs the forward passes and accumulates the Gram
matrices (torch intra-op x Gram threads x BLAS): a monitor thread samples the state of every
thread of the process (``/proc/self/task/*/stat``, 'R' = running or runnable) meanwhile.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroxr import schema as S
from neuroxr.io.store import write_dataset

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(r'''
    import json, os, sys, threading, time

    import numpy as np
    import torch  # its pools are sized for every core of the machine here

    import neuroxr.features.extract as E
    from neuroxr.runtime import running_thread_ids

    os.sched_setaffinity(0, {0})
    peak = {"busy": 0, "samples": 0}
    stop, active = threading.Event(), threading.Event()

    def watched(fn):  # the model's construction and the forward passes + Gram accumulation
        def call(*args, **kwargs):
            active.set()
            try:
                return fn(*args, **kwargs)
            finally:
                active.clear()
        return call

    E.load_model, E.reduce_model = watched(E.load_model), watched(E.reduce_model)

    def monitor():
        me = threading.get_native_id()
        while not stop.is_set():
            if active.is_set():
                busy = running_thread_ids(exclude=[me])
                if len(busy) > peak["busy"]:
                    names = {t.native_id: t.name for t in threading.enumerate()}
                    peak["busy"], peak["threads"] = len(busy), [names.get(t, str(t)) for t in busy]
                peak["samples"] += 1
            time.sleep(0.001)

    start = torch.get_num_threads()
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    lines = []
    res = E.extract_features(sys.argv[1], [sys.argv[2]], progress=False, device="cpu", log=lines.append)
    stop.set()
    watcher.join()
    print(json.dumps({**peak, "status": res[0]["status"], "layers": res[0]["layers"], "log": lines,
                      "torch_after": torch.get_num_threads(), "torch_at_start": start}))
''')


def _run_child(study, model):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)  # the pools as a user gets them: one thread per core of the machine
    out = subprocess.run([sys.executable, "-c", CHILD, str(study), model], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not Path("/proc/self/task").exists(),
                    reason="needs Linux CPU affinity and /proc")
def test_extraction_under_one_core_has_one_busy_thread(tmp_path):
    pytest.importorskip("torch")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no pool can be oversized")
    images = np.random.default_rng(0).integers(0, 256, (16, 24, 24)).astype(np.uint8)
    study = tmp_path / "study"
    write_dataset(xr.Dataset({S.PIXELS: ((S.IMAGE, S.Y, S.X), images)},
                             coords={S.IMAGE: np.arange(16, dtype=np.int64)}), study / S.STIMULI_STORE)
    got = _run_child(study, "alexnet")
    assert got["status"] == "done" and got["layers"] > 10
    assert got["samples"] > 20  # the monitor saw the extraction
    assert got["busy"] <= 1, got
    assert "1 thread(s) (torch 1, Gram 1" in got["log"][0], got["log"][0]
    blas = got["log"][0].split("BLAS: ", 1)[1].rstrip(")").split(", ")
    # every BLAS library with its kernel (threadpoolctl's architecture) and one thread
    assert blas == ["no BLAS loaded"] or all(len(b.split()) == 4 and b.endswith(" x1") for b in blas), blas
    assert got["torch_after"] == got["torch_at_start"] > 1  # torch's own setting restored afterwards
