"""Scoring speed: every neuroxr scoring path against its peer on the same answer, side by side.

Rows (each child a fresh process, the kinds alternating, medians of ``--repeat``; ``max|dr|``
beside each ratio):

- srp-ridge including its projection vs scikit-learn's pipeline (``SparseRandomProjection``
  fitted per layer, eps 0.1, ``StandardScaler``, ``RidgeCV(alphas=[1])`` GCV, Pearson); neuroxr
  draws the same matrix (:mod:`neuroxr.mapping.srp`) and scores ``srp-ridge``;
- exact ridge vs ``StandardScaler`` + ``RidgeCV`` on the full features (50 neurons: scikit-learn
  also forms the feature x neuron coefficients);
- RSA of one layer vs rsatoolbox (``benchmarks/bench_rsa.py``);
- the paper pipeline vs neuroxr's exact ridge, labelled DIFFERENT ANSWERS (not a same-answer ratio).

The header prints the load average, the thread settings (``--threads``) and threadpoolctl's BLAS.

Usage::

    python benchmarks/bench_score.py --p 1e6 --repeat 3
    python benchmarks/bench_score.py --p 1e6 --neurons 6619,60000 --repeat 3   # the issue's rows
    python benchmarks/bench_score.py --p 1e6 --neurons 6619 --zoo-layers 10000
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rsa import compare_rsa  # noqa: E402

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
        compute_scores(score_layers(_features_dataset(calc_zscored_gram(Xw, n_threads=threads or None, backend="numpy")),
                                    _responses(Yw), ("ridge",), backend="numpy").ridge_r)


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
    K = calc_zscored_gram(X, n_threads=threads or None, backend="numpy")
    t1 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=threads or os.cpu_count() or 2):
        r = compute_scores(score_layers(_features_dataset(K), resp, ("ridge",), backend="numpy").ridge_r).values[0]
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out / "r_nxr.npy", r)
    return {"time": t2 - t0, "cpu": cpu_s() - c0, "gram_time": t1 - t0, "score_time": t2 - t1, "peak_kb": peak,
            "delta_kb": peak - base}


def child_neuroxr_srp(p, N, out, threads=0):
    """neuroxr's srp-ridge including its projection (scikit-learn's matrix, drawn fast, chunk by chunk)."""
    import dask

    from neuroxr.mapping.score import compute_scores, score_layers
    from neuroxr.mapping.srp import project_srp

    X, Y = make_data(p, N)
    resp = _responses(Y)
    project_srp(X[:, :20_000], 50, SEED)  # warm-up
    c0 = cpu_s()
    t0 = time.perf_counter()
    srp = project_srp(X, "auto", SEED)
    t1 = time.perf_counter()
    ds = _features_dataset(np.zeros((X.shape[0], X.shape[0])), srp=srp)
    with dask.config.set(scheduler="threads", num_workers=threads or os.cpu_count() or 2):
        r = compute_scores(score_layers(ds, resp, ("srp-ridge",), backend="numpy").srp_ridge_r).values[0]
    t2 = time.perf_counter()
    np.save(out / "r_nxr_srp.npy", r)
    return {"time": t2 - t0, "cpu": cpu_s() - c0, "srp_time": t1 - t0, "score_time": t2 - t1}


def child_exact(p, N, out, n_targets=50):
    """scikit-learn StandardScaler + RidgeCV on the full features (exact LOO), timed, first ``n_targets`` neurons.

    Only a few neurons: scikit-learn also forms the (feature, neuron) coefficients.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    X, Y = make_data(p, N)
    Y = Y[:, :n_targets].astype(np.float64)
    RidgeCV(alphas=[1.0], store_cv_results=True, scoring="neg_mean_squared_error").fit(
        StandardScaler().fit_transform(X[:, :2000]), Y)  # warm-up
    t0 = time.perf_counter()
    Z = StandardScaler().fit_transform(X)
    m = RidgeCV(alphas=[1.0], store_cv_results=True, scoring="neg_mean_squared_error").fit(Z, Y)
    r = pearson_columns(m.cv_results_[..., 0], Y)
    t1 = time.perf_counter()
    np.save(out / "r_exact.npy", r)
    return {"time": t1 - t0}


def child_exact_neuroxr(p, N, out, threads=0, n_targets=50):
    """neuroxr's exact ridge on the same neurons: the z-scored Gram, then the leave-one-out kernel."""
    from neuroxr.mapping.ridge import calc_loo_pearson, calc_zscored_gram

    X, Y = make_data(p, N)
    Y = Y[:, :n_targets].astype(np.float64)
    calc_loo_pearson(calc_zscored_gram(X[:, :2000], n_threads=threads or None, backend="numpy"), Y)  # warm-up
    t0 = time.perf_counter()
    r = calc_loo_pearson(calc_zscored_gram(X, n_threads=threads or None, backend="numpy"), Y)
    t1 = time.perf_counter()
    np.save(out / "r_exact_nxr.npy", r)
    return {"time": t1 - t0}


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
            "exact": child_exact, "exact-neuroxr": child_exact_neuroxr, "gemm": child_peak_gemm, "zoo": child_zoo}
PATH_ARG = ("reference", "neuroxr", "neuroxr-srp", "exact", "exact-neuroxr")


def run_child(kind, *args, timeout=3600):
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(args)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "wall": time.perf_counter() - t}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summarise(runs):
    """Median of the times, max of the memory, over runs of one child (or its first error)."""
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


def run_alternating(kinds, repeat, args_of):
    """Each child ``repeat`` times, alternating kinds in fresh processes: {kind: summary}."""
    runs = {k: [] for k in kinds}
    for _ in range(max(1, repeat)):
        for k in kinds:
            runs[k].append(run_child(k, *args_of[k]))
    return {k: _summarise(v) for k, v in runs.items()}


def _max_dr(tmp, a, b):
    fa, fb = tmp / a, tmp / b
    if not (fa.exists() and fb.exists()):
        return float("nan")
    ra, rb = np.load(fa), np.load(fb)
    return float(np.nanmax(np.abs(ra[:rb.size] - rb[:ra.size])))


def _row(label, peer_name, peer, nxr, dr, target):
    if "error" in peer or "error" in nxr:
        return f"{label:<46} | failed: {peer.get('error') or nxr.get('error')}"
    ratio = peer["time"] / nxr["time"]
    return (f"{label:<46} | {peer_name:<22} {peer['time']:8.2f} s | neuroxr {nxr['time']:8.2f} s | "
            f"{ratio:6.2f}x (target {target}) | max|dr| {dr:.1e}")


def _environment(threads):
    from threadpoolctl import threadpool_info

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '-')}, "
            f"{i.get('num_threads')} threads, {i.get('architecture', '-')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"# machine: {os.cpu_count()} cores (shared), load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"# threads: neuroxr Gram {threads or 'one per available core'} (BLAS 1 thread inside); "
          f"peers: their BLAS defaults; BLAS: {'; '.join(blas) or 'none found'}")
    print("# environment: " + ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "THP_MEM_ALLOC_ENABLE")))


def bench_one(p, N, repeat, threads, pearson, neuron_free=True):
    """All same-answer rows and the different-answers row at one (p, N); ``neuron_free=False`` leaves
    out the rows that do not depend on N (exact ridge of 50 neurons, RSA), measured at the first N."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="nxr_bench_") as tmp:
        tmp = Path(tmp)
        a = (p, N, str(tmp))
        got = run_alternating(["reference", "neuroxr-srp", "neuroxr"], repeat,
                              {"reference": a + (pearson, False), "neuroxr-srp": a + (threads,), "neuroxr": a + (threads,)})
        lines.append(_row(f"srp-ridge incl. projection, p={p:.0e}, N={N}", "scikit-learn pipeline", got["reference"],
                          got["neuroxr-srp"], _max_dr(tmp, "r_ref.npy", "r_nxr_srp.npy"), ">= 3x"))
        ex = rsa = None
        if neuron_free:
            ex = run_alternating(["exact", "exact-neuroxr"], repeat, {"exact": a, "exact-neuroxr": a + (threads,)})
            lines.append(_row(f"exact ridge, p={p:.0e}, 50 neurons", "scaler + RidgeCV", ex["exact"],
                              ex["exact-neuroxr"], _max_dr(tmp, "r_exact.npy", "r_exact_nxr.npy"), ">= 3x"))
            rsa = compare_rsa(p, repeat, threads)
            lines.append(_row(f"RSA of one layer, p={p:.0e}", "rsatoolbox", {"time": rsa.get("peer", np.nan), **rsa},
                              {"time": rsa.get("nxr", np.nan)}, rsa.get("max_dr", np.nan), ">= 2x"))
        lines.append(_row(f"DIFFERENT ANSWERS: paper srp vs exact, p={p:.0e}", "scikit-learn pipeline",
                          got["reference"], got["neuroxr"], float("nan"), "n/a") + " (not comparable)")
    return lines, {"p": p, "N": N, "srp": got, "exact": ex, "rsa": rsa}


def _fmt_mb(kb):
    return f"{kb / 1024:8.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", default="1e6", help="feature counts (comma-separated)")
    ap.add_argument("--neurons", default="6619", help="neuron counts (comma-separated)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for neuroxr's Gram (0: one per core, the default; the reference uses BLAS's threads)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each timed pipeline (fresh processes; medians of time, max of memory)")
    ap.add_argument("--reference-pearson", choices=["vectorised", "loop"], default="vectorised")
    ap.add_argument("--zoo-layers", type=int, default=0, help="also time score_study on a zoo of this many layers")
    ap.add_argument("--zoo-neurons", type=int, default=6619)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("child_args", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        cargs = json.loads(args.child_args)
        if args.child in PATH_ARG:
            cargs[2] = Path(cargs[2])
        print(json.dumps(CHILDREN[args.child](*cargs)))
        return 0

    ps = [int(float(x)) for x in args.p.split(",") if x]
    Ns = [int(float(x)) for x in args.neurons.split(",") if x]
    print(f"# bench_score: {N_IMAGES} images; medians of {args.repeat} runs, alternating fresh processes")
    _environment(args.threads)
    rows = []
    for p in ps:
        for N in Ns:
            lines, row = bench_one(p, N, args.repeat, args.threads, args.reference_pearson, neuron_free=N == Ns[0])
            rows.append(row)
            for line in lines:
                print(line, flush=True)
    print(f"# load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
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
