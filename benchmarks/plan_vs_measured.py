"""``neuroxr plan``'s predicted extraction times against measured ``neuroxr extract`` runs.

    python benchmarks/plan_vs_measured.py [--models alexnet,resnet18,...] [--images 118] [--threads 1]
                                          [--out benchmarks/plan_vs_measured.md]

Simulates a study (``neuroxr simulate``, 64 px images), calibrates this machine once (the rates the
plan uses, measured now so both sides see the same load), predicts every model with the plan, then
runs ``neuroxr extract STUDY --model M --weights random`` in a fresh process per model and reads the
time it reports for the model (model build, forward passes, reductions, store write; not the
interpreter's start).  Writes a Markdown table with ``uptime``'s load before and after each run.

``--threads N`` (default 1) is the budget of both sides: the calibration and the plan at N threads,
``neuroxr extract --threads N`` (torch intra-op and Gram threads, BLAS one) with
``OMP_NUM_THREADS=N``, and this process's BLAS, torch and numba at N.  The first line (also in the
Markdown) is the load, the thread settings and the BLAS kernels; the last the load after.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _machine  # the sibling module, found through the path above

from neuroxr.planner import load_calibration, plan_variants


def _neuroxr(*args, env=None) -> str:
    out = subprocess.run([sys.executable, "-m", "neuroxr", *args], capture_output=True, text=True, env=env,
                         check=True)
    return out.stdout + out.stderr


def _seconds(text: str, model: str) -> float:
    m = re.search(rf"^{re.escape(model)} \[random\]: done \(.*?; ([0-9.]+) s|"
                  rf"^{re.escape(model)} \[random\]: done \(.*?; (\d+) min (\d+) s", text, re.MULTILINE)
    if m.group(1):
        return float(m.group(1))
    return 60 * int(m.group(2)) + int(m.group(3))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="alexnet,resnet18,squeezenet1_1,mobilenet_v2,vgg11")
    ap.add_argument("--images", type=int, default=118)
    _machine.add_threads_argument(ap, default=1, help_text=_machine.THREADS_HELP.replace(
        "the available cores, %(default)s here", "%(default)s"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "plan_vs_measured.md"))
    args = ap.parse_args(argv)
    args.threads = _machine.apply_threads(args.threads)
    machine = _machine.describe_machine(args.threads, f"calibration {args.threads}, neuroxr extract --threads "
                                                      f"{args.threads} with OMP_NUM_THREADS={args.threads}")
    print(machine, flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="plan-bench-"))
    try:
        base = tmp / "base"
        _neuroxr("simulate", str(base), "--n-images", str(args.images), "--neurons-per-area", "20", env=env)
        load0 = os.getloadavg()
        cal = load_calibration(args.threads, force=True)
        models = args.models.split(",")
        plans = plan_variants([(m, "random") for m in models], args.images, (64, 64), threads=args.threads,
                              calibration=cal)
        rows = []
        for vp in plans:
            study = tmp / vp.model
            shutil.copytree(base, study)
            before = os.getloadavg()[0]
            t0 = time.perf_counter()
            text = _neuroxr("extract", str(study), "--model", vp.model, "--weights", "random", "--threads",
                            str(args.threads), env=env)
            wall = time.perf_counter() - t0
            after = os.getloadavg()[0]
            got = _seconds(text, vp.model)
            rows.append((vp, got, wall, before, after))
            print(f"{vp.model}: predicted {vp.seconds['total']:.1f} s, measured {got:.1f} s (wall {wall:.1f} s), "
                  f"load {before:.2f} -> {after:.2f}", flush=True)
            shutil.rmtree(study, ignore_errors=True)
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        lines = [
            "# `neuroxr plan` predictions vs measured `neuroxr extract`",
            "",
            (f"Simulated study: {args.images} images of 64 x 64 px, random weights, {args.threads} thread(s), "
            f"this machine ({os.cpu_count()} CPUs, shared). Calibration measured in the same run: "
            f"{cal['forward_flops_per_s'] / 1e9:.1f} GFLOP/s forward, {cal['gram_per_s']:.3g} n^2 p/s reduction, "
            f"{cal['init_params_per_s']:.3g} parameters/s random init (load at start "
            f"{load0[0]:.2f}, {load0[1]:.2f}, {load0[2]:.2f})."),
            "",
            f"Machine: {machine}",
            "",
            ("Measured: the seconds `neuroxr extract` reports for the model (build, forward, reductions, store write; "
            "not the interpreter's start, which the wall column includes)."),
            "",
            ("| model | layers | features/image | GFLOP/image | predicted build + forward + Gram (s) | predicted (s) "
            "| measured (s) | measured / predicted | wall (s) | load before -> after |"),
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for vp, got, wall, before, after in rows:
            s = vp.seconds
            lines.append(f"| {vp.model} | {len(vp.layers)} | {vp.activations / 1e6:.2f} M | {vp.gflops_per_image:.2f} "
                         f"| {s['build']:.1f} + {s['forward']:.1f} + {s['gram']:.1f} | {s['total']:.1f} | {got:.1f} "
                         f"| {got / s['total']:.2f} | {wall:.1f} | {before:.2f} -> {after:.2f} |")
        lines += ["", f"`uptime` at the end: `{uptime}`", ""]
        Path(args.out).write_text("\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(_machine.load_line())


if __name__ == "__main__":
    main()
