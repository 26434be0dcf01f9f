#!/usr/bin/env bash
# GPU check of scoring: the Gram accumulation and the ridge scores on the CPU (numpy) and on the
# device (torch), side by side in one process, with the ratio and max |dr| of each.  Under 5 minutes
# on a GPU machine at the default size.
#
#   bash benchmarks/gpu_check.sh                      # needs a CUDA device; exits 3 without one
#   NXR_GPU_CHECK_DEVICE=torch:cpu bash benchmarks/gpu_check.sh   # the same logic on torch's CPU backend
#   NXR_GPU_CHECK_P=1000000 NXR_GPU_CHECK_NEURONS=6619 ...        # problem size (defaults shown)
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
print("gpu_check: " + ("OK" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
PY
