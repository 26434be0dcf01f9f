"""Scoring speed and memory: the study's reference pipeline against neuroxr, side by side.

Reference (as the study did it): scikit-learn ``SparseRandomProjection`` (eps 0.1, Johnson-
Lindenstrauss, ~4,088 components for 118 images), ``StandardScaler``, ``RidgeCV(alphas=[1],
store_cv_results=True)`` (generalized/leave-one-out CV) and a Pearson r per neuron.

neuroxr: the z-scored Gram matrix streamed over feature chunks (``calc_zscored_gram``), then the
lazy ``score_layers`` graph (exact leave-one-out ridge, Householder-restricted eigendecomposition).

Every measurement runs in its own child process (same seed, same data generated in the child,
one tiny warm-up run of the same pipeline first so one-off import and JIT costs are not timed),
so peak memory is honest: ``peak`` is the child's ru_maxrss, ``delta`` is peak minus the resident
size right after the data were generated (what the pipeline itself added).  Each measurement
imports its own libraries inside its function, so a child holds no other pipeline's modules.  Correctness:

- ``max|dr| srp``: neuroxr's ``srp-ridge`` on the reference's own projection vs the reference r;
- ``max|dr| exact``: neuroxr ``ridge`` vs scikit-learn ``RidgeCV`` on the full z-scored features
  (both exact; run up to ``--exact-max-p`` features, on the first 20 neurons: scikit-learn also
  forms the coefficients, feature x neuron, 49 GB at p = 10^6 and 6,619 neurons).

Also: a zoo of ``--zoo-layers`` layers scored against ``--zoo-neurons`` neurons given the features
(Gram matrices in Zarr stores on disk), through ``score_study`` (ridge and rsa).

Usage::

    python benchmarks/bench_score.py                         # p = 1e4, 1e6, 3e6 x 6,619 / 60,000 neurons + zoo
    python benchmarks/bench_score.py --p 1e4,1e6 --neurons 6619 --zoo-layers 0
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_IMAGES = 118
SEED = 0


# ----------------------------------------------------------------------------------------------
# data (generated identically in every child)
# ----------------------------------------------------------------------------------------------
def make_data(p, n_neurons, n=N_IMAGES, seed=SEED):
    """X (image, feature) float32, ReLU-like; Y (image, neuron) float32 driven by 200 of the features."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, p), dtype=np.float32)
    for i in range(n):
        row = rng.standard_normal(p, dtype=np.float32)
        row += 0.3
        np.maximum(row, 0, out=row)
        X[i] = row
    k = min(200, p)
    W = rng.standard_normal((k, n_neurons), dtype=np.float32) / np.sqrt(k)
    Y = X[:, :k] @ W
    Y += 2.0 * rng.standard_normal((n, n_neurons), dtype=np.float32)
    return X, Y


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pearson_columns(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


# ----------------------------------------------------------------------------------------------
# children
# ----------------------------------------------------------------------------------------------
def _warm_up_reference():
    """One tiny fit first, so one-off costs (lazy imports, thread pools) are not timed."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.random_projection import SparseRandomProjection

    Xw, Yw = make_data(20_000, 10)
    Zw = StandardScaler().fit_transform(SparseRandomProjection(n_components=50, random_state=SEED).fit_transform(Xw))
    RidgeCV(alphas=[1.0], store_cv_results=True).fit(Zw, Yw)


def _warm_up_neuroxr(threads):
    """The same tiny run for neuroxr (imports of Dask's schedulers, the compiled Gram kernel)."""
    import dask

    from neuroxr.mapping.ridge import calc_zscored_gram
    from neuroxr.mapping.score import compute_scores, score_layers

    Xw, Yw = make_data(20_000, 10)
    with dask.config.set(scheduler="threads", num_workers=2):
        compute_scores(score_layers(_features_dataset(calc_zscored_gram(Xw, n_threads=threads or None)), _responses(Yw),
                                    ("ridge",)).ridge_r)


def child_reference(p, N, out, pearson="vectorised", save_srp=True):
    from scipy.stats import pearsonr
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.random_projection import SparseRandomProjection

    X, Y = make_data(p, N)
    _warm_up_reference()
    base = rss_kb()
    c0 = cpu_s()
    t0 = time.perf_counter()
    Xp = SparseRandomProjection(n_components="auto", eps=0.1, random_state=SEED).fit_transform(X)
    t1 = time.perf_counter()
    Z = StandardScaler().fit_transform(Xp)
    m = RidgeCV(alphas=[1.0], fit_intercept=True, store_cv_results=True, scoring="neg_mean_squared_error").fit(Z, Y)
    pred = m.cv_results_[..., 0]
    t2 = time.perf_counter()
    if pearson == "loop":
        r = np.array([pearsonr(pred[:, j], Y[:, j]).statistic for j in range(N)])
    else:
        r = pearson_columns(pred.astype(np.float64), Y.astype(np.float64))
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out / "r_ref.npy", r)
    if save_srp:
        np.save(out / "srp.npy", np.asarray(Xp, dtype=np.float32))
    return {"time": t3 - t0, "cpu": cpu_s() - c0, "srp_time": t1 - t0, "ridge_time": t2 - t1, "pearson_time": t3 - t2,
            "peak_kb": peak, "delta_kb": peak - base, "n_components": int(Xp.shape[1])}


def _features_dataset(K, name="gram_z", srp=None):
    import xarray as xr

    n = K.shape[-1]
    ds = xr.Dataset({name: (("layer", "image", "image_j"), K[None])},
                    coords={"layer": ["bench|trained|x"], "image": np.arange(n), "image_j": np.arange(n),
                            "model": ("layer", ["bench"]), "layer_name": ("layer", ["x"]), "depth": ("layer", [0]),
                            "relative_depth": ("layer", [0.0]), "weights": ("layer", ["trained"]),
                            "family": ("layer", ["cnn"]), "finite": ("layer", [True])})
    if srp is not None:
        ds["srp"] = (("layer", "image", "component"), srp[None])
    return ds


def _responses(Y):
    import xarray as xr

    N = Y.shape[1]
    return xr.DataArray(Y.T, dims=("neuron", "image"),
                        coords={"neuron": np.arange(N), "image": np.arange(Y.shape[0]),
                                "area": ("neuron", np.array(["VISp", "VISl"])[np.arange(N) % 2])})


def child_neuroxr(p, N, out, threads=0):
    import dask

    from neuroxr.mapping.ridge import calc_zscored_gram
    from neuroxr.mapping.score import compute_scores, score_layers

    X, Y = make_data(p, N)
    _warm_up_neuroxr(threads)
    resp = _responses(Y)
    base = rss_kb()
    c0 = cpu_s()
    t0 = time.perf_counter()
    K = calc_zscored_gram(X, n_threads=threads or None)
    t1 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=os.cpu_count() or 2):
        r = compute_scores(score_layers(_features_dataset(K), resp, ("ridge",)).ridge_r).values[0]
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out / "r_nxr.npy", r)
    return {"time": t2 - t0, "cpu": cpu_s() - c0, "gram_time": t1 - t0, "score_time": t2 - t1, "peak_kb": peak,
            "delta_kb": peak - base}


def child_neuroxr_srp(p, N, out):
    """srp-ridge on the reference's own projection (correctness only, not timed)."""
    from neuroxr.mapping.score import score_layers

    _, Y = make_data(p, N)
    srp = np.load(out / "srp.npy")
    ds = _features_dataset(np.zeros((srp.shape[0], srp.shape[0])), srp=srp)
    r = score_layers(ds, _responses(Y), ("srp-ridge",)).srp_ridge_r.values[0]
    np.save(out / "r_nxr_srp.npy", r)
    return {}


def child_exact(p, N, out, n_targets=20):
    """scikit-learn RidgeCV on the full z-scored features (exact LOO), for max|dr| against neuroxr.

    Only the first ``n_targets`` neurons: scikit-learn also forms the (feature, neuron)
    coefficients, 49 GB at p = 10^6 and 6,619 neurons.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    X, Y = make_data(p, N)
    Y = Y[:, :n_targets]
    Z = StandardScaler().fit_transform(X.astype(np.float64))
    del X
    t0 = time.perf_counter()
    m = RidgeCV(alphas=[1.0], store_cv_results=True, scoring="neg_mean_squared_error").fit(Z, Y.astype(np.float64))
    r = pearson_columns(m.cv_results_[..., 0], Y.astype(np.float64))
    np.save(out / "r_exact.npy", r)
    return {"time": time.perf_counter() - t0}


def child_peak_gemm():
    """This machine's float64 matrix-multiply rate right now (GFLOP/s), for the moonshot ratio."""
    a = np.random.default_rng(0).standard_normal((2048, 2048))
    a @ a
    t = time.perf_counter()
    for _ in range(3):
        a @ a
    return {"gflops": 3 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9}


def child_zoo(n_layers, N, study, layers_per_model=100):
    """Write a zoo of Gram matrices as features stores, then time score_study (ridge + rsa)."""
    import xarray as xr

    from neuroxr.io.store import write_dataset
    from neuroxr.mapping.score import score_study

    rng = np.random.default_rng(SEED)
    study = Path(study)
    if study.exists():
        shutil.rmtree(study)
    n = N_IMAGES
    _, Y = make_data(300, N)
    resp = _responses(Y).to_dataset(name="mean")
    resp = resp.assign_coords(cre_line=("neuron", ["Cux2"] * N), depth_um=("neuron", np.full(N, 175.0)))
    write_dataset(resp, study / "responses.zarr")
    n_models = int(np.ceil(n_layers / layers_per_model))
    t_write = time.perf_counter()
    for m in range(n_models):
        L = min(layers_per_model, n_layers - m * layers_per_model)
        A = rng.standard_normal((L, n, 64))
        A[:, :, 0] += 3.0
        gram = A @ np.swapaxes(A, 1, 2)
        Ac = A - A.mean(1, keepdims=True)
        Ac /= Ac.std(1, keepdims=True)
        gram_z = Ac @ np.swapaxes(Ac, 1, 2)
        ds = xr.Dataset({"gram": (("layer", "image", "image_j"), gram), "gram_z": (("layer", "image", "image_j"), gram_z),
                         "feature_sum": (("layer", "image"), A.sum(2))},
                        coords={"layer": [f"m{m}|trained|l{i}" for i in range(L)], "image": np.arange(n),
                                "image_j": np.arange(n), "model": ("layer", [f"m{m}"] * L),
                                "layer_name": ("layer", [f"l{i}" for i in range(L)]), "depth": ("layer", np.arange(L)),
                                "relative_depth": ("layer", np.arange(L) / max(1, L - 1)),
                                "weights": ("layer", ["trained"] * L), "family": ("layer", ["cnn"] * L),
                                "n_features": ("layer", [64] * L), "finite": ("layer", [True] * L)})
        write_dataset(ds, study / "features" / f"m{m:04d}.zarr", chunks={"layer": 8})
    t_write = time.perf_counter() - t_write
    t0 = time.perf_counter()
    c0 = cpu_s()
    score_study(study, metrics=("ridge", "rsa"), layer_chunk=16)
    t_all = time.perf_counter() - t0
    return {"time": t_all, "cpu": cpu_s() - c0, "write_features_time": t_write, "n_layers": n_layers, "n_neurons": N,
            "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


CHILDREN = {"reference": child_reference, "neuroxr": child_neuroxr, "neuroxr-srp": child_neuroxr_srp,
            "exact": child_exact, "gemm": child_peak_gemm, "zoo": child_zoo}


def run_child(kind, *args, timeout=3600):
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(args)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "wall": time.perf_counter() - t}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_repeated(kind, repeat, *args):
    """Run a timed child ``repeat`` times (fresh processes): median of the times, max of the memory."""
    runs = [run_child(kind, *args) for _ in range(max(1, repeat))]
    bad = [r for r in runs if "error" in r]
    if bad:
        return bad[0]
    out = dict(runs[-1])
    for k in out:
        vals = [r[k] for r in runs]
        if k.endswith("_kb"):
            out[k] = max(vals)
        elif isinstance(out[k], float):
            out[k] = float(np.median(vals))
    out["times"] = [r["time"] for r in runs]
    return out


def _fmt_mb(kb):
    return f"{kb / 1024:8.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", default="1e4,1e6,3e6", help="feature counts (comma-separated)")
    ap.add_argument("--neurons", default="6619,60000", help="neuron counts (comma-separated)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for neuroxr's Gram (0: one per core, the default; the reference uses BLAS's threads)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each timed pipeline (fresh processes; medians of time, max of memory)")
    ap.add_argument("--exact-max-p", type=float, default=1e6, help="largest p for the exact scikit-learn comparison")
    ap.add_argument("--reference-pearson", choices=["vectorised", "loop"], default="vectorised")
    ap.add_argument("--zoo-layers", type=int, default=10000)
    ap.add_argument("--zoo-neurons", type=int, default=6619)
    ap.add_argument("--skip-reference-above", type=float, default=float("inf"),
                    help="skip the reference pipeline above this p (time/memory on a shared machine)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("child_args", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        cargs = json.loads(args.child_args)
        if args.child in ("reference", "neuroxr", "neuroxr-srp", "exact"):
            cargs[2] = Path(cargs[2])
        print(json.dumps(CHILDREN[args.child](*cargs)))
        return 0

    ps = [int(float(x)) for x in args.p.split(",") if x]
    Ns = [int(float(x)) for x in args.neurons.split(",") if x]
    print(f"# bench_score: {N_IMAGES} images; machine: {os.cpu_count()} cores (shared with other jobs; "
          f"load average {os.getloadavg()[0]:.1f} at start)")
    gemm = run_child("gemm")
    print(f"# float64 matmul rate now: {gemm.get('gflops', float('nan')):.1f} GFLOP/s")
    head = (f"{'p':>9} {'neurons':>7} | {'ref s':>7} {'ref cpu':>7} {'ref MB':>8} {'(+MB)':>7} | {'nxr s':>7} "
            f"{'nxr cpu':>7} {'gram s':>7} {'nxr MB':>8} {'(+MB)':>7} | {'speedup':>7} {'cpu x':>6} {'mem x':>6} | "
            f"{'max|dr| srp':>11} {'max|dr| exact':>13} | {'gram/ideal':>10}")
    print(head)
    print("-" * len(head))
    rows = []
    for p in ps:
        for N in Ns:
            with tempfile.TemporaryDirectory(prefix="nxr_bench_") as tmp:
                tmp = Path(tmp)
                ref = run_repeated("reference", args.repeat, p, N, str(tmp), args.reference_pearson) \
                    if p <= args.skip_reference_above else {"error": "skipped"}
                nxr = run_repeated("neuroxr", args.repeat, p, N, str(tmp), args.threads)
                dr_srp = dr_exact = float("nan")
                if "error" not in ref and "error" not in nxr:
                    run_child("neuroxr-srp", p, N, str(tmp))
                    if (tmp / "r_nxr_srp.npy").exists():
                        dr_srp = float(np.nanmax(np.abs(np.load(tmp / "r_nxr_srp.npy") - np.load(tmp / "r_ref.npy"))))
                if p <= args.exact_max_p and "error" not in nxr:
                    ex = run_child("exact", p, N, str(tmp))
                    if "error" not in ex:
                        r_ex = np.load(tmp / "r_exact.npy")
                        dr_exact = float(np.nanmax(np.abs(r_ex - np.load(tmp / "r_nxr.npy")[:r_ex.size])))
                ideal = p * N_IMAGES ** 2 / (gemm.get("gflops", np.nan) * 1e9)  # SYRK flops at the matmul rate
                row = {"p": p, "neurons": N, "reference": ref, "neuroxr": nxr, "max_dr_srp": dr_srp,
                       "max_dr_exact": dr_exact, "gram_ideal_s": ideal}
                rows.append(row)
                if "error" in nxr:
                    print(f"{p:>9} {N:>7} | neuroxr failed: {nxr['error']}")
                    continue
                if "error" in ref:
                    rt = rc = rm = rd = float("nan")
                    print(f"# reference at p={p}, N={N}: {ref['error']}")
                else:
                    rt, rc, rm, rd = ref["time"], ref["cpu"], ref["peak_kb"], ref["delta_kb"]
                print(f"{p:>9} {N:>7} | {rt:7.2f} {rc:7.2f} {_fmt_mb(rm)} {_fmt_mb(rd):>7} | {nxr['time']:7.3f} "
                      f"{nxr['cpu']:7.3f} {nxr['gram_time']:7.3f} {_fmt_mb(nxr['peak_kb'])} {_fmt_mb(nxr['delta_kb']):>7} | "
                      f"{rt / nxr['time']:7.1f} {rc / nxr['cpu']:6.1f} {rd / max(nxr['delta_kb'], 1):6.1f} | "
                      f"{dr_srp:11.2e} {dr_exact:13.2e} | {nxr['gram_time'] / ideal:10.2f}", flush=True)
    print(f"# times are medians of {args.repeat} runs each (fresh processes); memory is the largest of them")
    print("# speedup = ref s / nxr s (wall, same data); cpu x = ratio of CPU seconds (user+sys; less sensitive to")
    print("# other jobs on a shared machine); mem x = ratio of the memory each pipeline added (+MB);")
    print("# gram/ideal = neuroxr's Gram time over p*n^2 flops at the measured matmul rate (moonshot: <= 2)")
    if args.zoo_layers:
        with tempfile.TemporaryDirectory(prefix="nxr_zoo_") as tmp:
            z = run_child("zoo", args.zoo_layers, args.zoo_neurons, str(Path(tmp) / "study"))
        if "error" in z:
            print(f"# zoo failed: {z['error']}")
        else:
            print(f"# zoo: {z['n_layers']} layers x {z['n_neurons']} neurons given the Gram matrices (Zarr on disk): "
                  f"score_study ridge+rsa {z['time']:.1f} s wall, {z['cpu']:.1f} s CPU "
                  f"({1e3 * z['time'] / z['n_layers']:.1f} ms/layer), "
                  f"peak {z['peak_kb'] / 1024:.0f} MB (writing the features took {z['write_features_time']:.1f} s)")
        rows.append({"zoo": z})
    print("# json: " + json.dumps(rows, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
