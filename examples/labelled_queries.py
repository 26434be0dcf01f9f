# %% [markdown]
# # Labelled queries on a study's scores
#
# Every question about a neuroxr study is one line of xarray on `scores.zarr`: the neuron-level
# scores `ridge_r` (layer, neuron) at the root, the area-level ones (`rsa_r`, and `cka` where that
# metric is installed) in the group `areas` (layer, area).  The `layer` dim holds every (model,
# weights, layer) triple, with the coords `model`, `layer_name`, `depth`, `relative_depth`,
# `weights`, `variant` (`"<model>:<weights>"`) and `family`.
#
# Run it as a script (`python examples/labelled_queries.py [STUDY]`) or cell by cell (`# %%`) in
# VS Code / Jupyter.  Without a STUDY it builds a small one in a temporary directory:
# `neuroxr simulate`, then `neuroxr extract` for two small models in two weights variants each.
#
# **Weights.** The paper's question is *trained minus random*.  Trained weights need a download,
# and this example must run offline, so the second variant of each architecture is a checkpoint
# file holding *another random initialisation* (seed 1), extracted with `--weights FILE` (its label
# is the file's sha256).  With the trained weights in the torch hub cache, extract
# `--weights trained` instead: the cells below take whichever non-random variant is there.

# %%
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from neuroxr.cli import main as neuroxr
from neuroxr.mapping.metrics import METRICS
from neuroxr.study import open_study

MODELS = ("alexnet", "squeezenet1_1")
study = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(os.environ.get("NEUROXR_EXAMPLE_STUDY", ""))
if not study.name:
    study = Path(tempfile.mkdtemp(prefix="neuroxr-example-")) / "study"
if not (study / "scores.zarr").exists():
    import torch
    import torchvision

    def run(*args):
        if neuroxr([str(a) for a in args]) != 0:
            raise SystemExit(f"neuroxr {' '.join(map(str, args))} failed")

    run("simulate", study, "--n-images", 24, "--neurons-per-area", 10, "--n-trials", 4, "--image-size", 32)
    for m in MODELS:
        run("extract", study, "--model", m, "--weights", "random", "--seed", 0)
        ckpt = study.parent / f"{m}-seed1.pt"
        torch.manual_seed(1)
        torch.save(torchvision.models.get_model(m, weights=None).state_dict(), ckpt)
        run("extract", study, "--model", m, "--weights", ckpt)
    metrics = ["ridge", "rsa"] + (["cka"] if "cka" in METRICS else [])  # cka: where the metric is installed
    run("score", study, *[a for m in metrics for a in ("--metric", m)])
scores = open_study(study).scores
print(f"{study}: {scores.sizes['layer']} layers of {len(set(scores.variant.values))} variants, "
      f"{scores.sizes['neuron']} neurons")

# %% [markdown]
# ## Area means, then the best layer of every variant in every area
# `ridge_r` averaged over the neurons of each area is (layer, area); swapping `layer` for its
# `layer_name` (or `relative_depth`) makes `idxmax` return the layer's name (or depth) per variant.

# %%
r = scores.ridge_r.groupby("area").mean().load()
best_layer = r.groupby("variant").map(lambda d: d.swap_dims(layer="layer_name").idxmax("layer_name"))
best_depth = r.groupby("variant").map(lambda d: d.swap_dims(layer="relative_depth").idxmax("relative_depth"))
print(best_layer.to_pandas().T)
print(best_depth.to_pandas().T.round(2))

# %% [markdown]
# ## The paper's Max table and *trained minus random* per architecture
# The max over layers of each variant, then the non-random variant minus the random one of each
# model (trained weights where they are cached; here the seed-1 checkpoint, see the top).

# %%
max_table = r.groupby("variant").max()
gain = r.where(r.weights != "random").groupby("model").max() - r.where(r.weights == "random").groupby("model").max()
print(max_table.to_pandas().round(3))
print(gain.to_pandas().round(3))

# %% [markdown]
# ## CKA against ridge, layer by layer
# Linear CKA (metric `cka`, variable `cka` in `areas`, (layer, area)) against the area-mean ridge r
# of the same layers.  The cell runs where the metric `cka` is registered (the study is then scored
# with it from the start; a study scored before without it is scored again).

# %%
cka_vs_ridge = None
if "cka" in METRICS:
    if "cka" not in scores["areas"].data_vars:  # a study scored before: score every metric again, with cka
        if neuroxr(["score", str(study), "--metric", "ridge", "--metric", "rsa", "--metric", "cka", "--overwrite"]):
            raise SystemExit("neuroxr score --metric cka failed")
        scores = open_study(study).scores
    cka = scores["areas"].cka.load()
    ridge = scores.ridge_r.groupby("area").mean().load()
    cka_pts, ridge_pts = xr.align(cka.stack(point=("layer", "area")), ridge.stack(point=("layer", "area")))
    cka_vs_ridge = float(np.corrcoef(cka_pts.values, ridge_pts.values)[0, 1])
    print(f"CKA vs ridge over {cka_pts.sizes['point']} (layer, area) points: Pearson r = {cka_vs_ridge:.3f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for v in np.unique(cka_pts.variant.values):
        sel = (cka_pts.variant == v).values
        ax.scatter(ridge_pts.values[sel], cka_pts.values[sel], s=8, label=v)
    ax.set(xlabel="ridge r (area mean)", ylabel="CKA", title="CKA vs ridge per (layer, area)")
    ax.legend(fontsize=6)
    out = study / "reports" / "cka_vs_ridge.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
else:
    print("metric 'cka' is not registered in this neuroxr: the CKA vs ridge cell is skipped")
