#!/usr/bin/env bash
# GPU check of extraction and scoring, CPU and device side by side in one process, with the ratio and
# max |dr| of each: the Gram accumulation, the ridge scores, and a whole extraction (every layer of
# NXR_GPU_CHECK_MODEL, default resnet50 with random weights, 118 images, one pass: forward, fingerprints
# and Gram matrices on the device) against the same extraction on the CPU.  Under 5 minutes on a GPU
# machine at the default size.
#
#   bash benchmarks/gpu_check.sh                      # needs a CUDA device; exits 3 without one
#   NXR_GPU_CHECK_DEVICE=torch:cpu bash benchmarks/gpu_check.sh   # the same logic on torch's CPU backend
#   NXR_GPU_CHECK_P=1000000 NXR_GPU_CHECK_NEURONS=6619 ...        # problem size (defaults shown)
#   NXR_GPU_CHECK_MODEL=alexnet ...                               # the extracted model ("none": skip)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
exec python - <<'PY'
import os, sys, time
import numpy as np
import xarray as xr

from neuroxr.mapping.backend import cuda_available, resolve_backend
from neuroxr.mapping.gram import calc_zscored_gram
from neuroxr.mapping.score import compute_scores, score_layers

device = os.environ.get("NXR_GPU_CHECK_DEVICE", "auto")
p = int(float(os.environ.get("NXR_GPU_CHECK_P", "1e6")))
N = int(float(os.environ.get("NXR_GPU_CHECK_NEURONS", "6619")))
n = 118
chosen = resolve_backend(device)
if chosen == "numpy":
    print("gpu_check: no CUDA device found (torch.cuda.is_available() is False): nothing to compare; "
          "set NXR_GPU_CHECK_DEVICE=torch:cpu to exercise the same path on the CPU")
    sys.exit(3)
print(f"gpu_check: device backend {chosen} (auto picks {resolve_backend('auto')}; cuda available: {cuda_available()}); "
      f"p={p}, {N} neurons, {n} images")
rng = np.random.default_rng(0)
X = np.maximum(rng.standard_normal((n, p), dtype=np.float32) + 0.3, 0)
Y = X[:, :200] @ rng.standard_normal((200, N), dtype=np.float32) + 2 * rng.standard_normal((n, N), dtype=np.float32)


def timed(fn, repeat=3):
    fn()  # warm-up (kernels, CUDA context)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return out, float(np.median(ts))


def features(K):
    return xr.Dataset({"gram_z": (("layer", "image", "image_j"), K[None])},
                      coords={"layer": ["g|trained|x"], "image": np.arange(n), "image_j": np.arange(n),
                              "model": ("layer", ["g"]), "layer_name": ("layer", ["x"]), "depth": ("layer", [0]),
                              "relative_depth": ("layer", [0.0]), "weights": ("layer", ["trained"]),
                              "family": ("layer", ["cnn"]), "finite": ("layer", [True])})


resp = xr.DataArray(Y.T, dims=("neuron", "image"), coords={"neuron": np.arange(N), "image": np.arange(n)})
K_cpu, t_cpu = timed(lambda: calc_zscored_gram(X, backend="numpy"))
K_dev, t_dev = timed(lambda: calc_zscored_gram(X, backend=chosen))
dK = float(np.abs(K_cpu - K_dev).max() / np.abs(K_cpu).max())
print(f"gram      cpu {t_cpu:8.3f} s | {chosen} {t_dev:8.3f} s | cpu/device {t_cpu / t_dev:6.2f}x | max|dK|/max|K| {dK:.1e}")
feats = features(K_cpu)
r_cpu, s_cpu = timed(lambda: compute_scores(score_layers(feats, resp, ("ridge",), backend="numpy").ridge_r).values)
r_dev, s_dev = timed(lambda: compute_scores(score_layers(feats, resp, ("ridge",), backend=chosen).ridge_r).values)
dr = float(np.nanmax(np.abs(r_cpu - r_dev)))
print(f"scoring   cpu {s_cpu:8.3f} s | {chosen} {s_dev:8.3f} s | cpu/device {s_cpu / s_dev:6.2f}x | max|dr| {dr:.1e}")
ok = dK < 1e-9 and dr < 1e-6

model = os.environ.get("NXR_GPU_CHECK_MODEL", "resnet50")
if model != "none":
    import torch

    from neuroxr.features.run import reduce_model
    from neuroxr.features.threads import extraction_threads
    from neuroxr.features.zoo import load_model
    from neuroxr.mapping.ridge import calc_loo_pearson

    device = chosen.split(":", 1)[1] if ":" in chosen else "cpu"  # "torch" alone: torch's CPU
    pixels = rng.integers(0, 256, (n, 64, 64)).astype(np.uint8)
    with extraction_threads() as budget:
        lm_cpu = load_model(model, weights="random", device="cpu")
        lm_dev = load_model(model, weights="random", device=device)
        backend = None if device != "cpu" else "torch:cpu"
        run_cpu = lambda: reduce_model(lm_cpu, pixels, n_threads=budget, one_pass=True)
        run_dev = lambda: (reduce_model(lm_dev, pixels, n_threads=budget, one_pass=True, backend=backend),
                           torch.cuda.synchronize() if device.startswith("cuda") else None)[0]
        f_cpu, e_cpu = timed(run_cpu, repeat=1)
        f_dev, e_dev = timed(run_dev, repeat=1)
    same = list(f_cpu.layer_name.values) == list(f_dev.layer_name.values)
    # activations differ at float32 round-off between the devices' kernels: compare the Grams relatively
    dG = max(float((np.abs(f_cpu[v] - f_dev[v]).max(("image", "image_j")) / np.abs(f_cpu[v]).max(("image", "image_j"))).max())
             for v in ("gram", "gram_z"))
    Yr = Y[:, :200].astype(np.float64)
    der = max(float(np.nanmax(np.abs(calc_loo_pearson(f_cpu.gram_z.values[i], Yr, alphas=(1e3,))
                                      - calc_loo_pearson(f_dev.gram_z.values[i], Yr, alphas=(1e3,)))))
              for i in range(f_cpu.sizes["layer"]))
    print(f"extract   cpu {e_cpu:8.3f} s | {chosen} {e_dev:8.3f} s | cpu/device {e_cpu / e_dev:6.2f}x | {model}, "
          f"{f_dev.sizes['layer']} layers (same kept: {same}); max rel dGram {dG:.1e}, max|dr| ridge {der:.1e}")
    ok = ok and same and dG < 1e-5 and der < 1e-4  # float32 kernels of two devices (TF32 off)
print("gpu_check: " + ("OK" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
PY
