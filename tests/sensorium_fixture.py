"""Miniature Sensorium 2022 static datasets in the published ``FileTreeDataset`` layout (folder and zip).

```
static<animal>-<session>-<scan>-GrayImageNet-<hash>/
    data/{images,responses,behavior,pupil_center}/<i>.npy
    meta/neurons/{unit_ids,area,layer,animal_ids,sessions,scan_idx,cell_motor_coordinates}.npy
    meta/trials/{tiers,frame_image_id,trial_idx}.npy
    meta/statistics/responses/all/mean.npy
```

Mouse A (26872-17-20): test images 1001-1004 (1004 shown twice, the others three times),
validation 2001-2003, train 3001-3008, final_test 4001-4002 (twice).  Mouse B (27204-5-13):
test images 1001-1003 (three times) and 1005, train 5001-5005; one neuron in ``LM``.  An image
id has the same pixels in every mouse.  Trials are stored in shuffled order with a shuffled
``trial_idx``.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np

SHAPE = (18, 32)
MOUSE_A = {"name": "static26872-17-20-GrayImageNet-94c6ff995dac583098847cfecd43e7b6", "animal": 26872, "session": 17,
           "scan": 20, "n": 6, "areas": ["V1"] * 6,
           "images": {"test": {1001: 3, 1002: 3, 1003: 3, 1004: 2}, "validation": {2001: 1, 2002: 1, 2003: 1},
                      "train": {3000 + i: 1 for i in range(1, 9)}, "final_test": {4001: 2, 4002: 2}}}
MOUSE_B = {"name": "static27204-5-13-GrayImageNet-df6f4b4cd01b6d9c8a8d8b8d6fa8e8a1", "animal": 27204, "session": 5,
           "scan": 13, "n": 5, "areas": ["V1", "V1", "LM", "V1", "V1"],
           "images": {"test": {1001: 3, 1002: 3, 1003: 3, 1005: 3}, "train": {5000 + i: 1 for i in range(1, 6)}}}


def image_pixels(image_id):
    return np.random.default_rng(int(image_id)).integers(0, 256, (1, *SHAPE), dtype=np.uint8)


def write_mouse(root, spec, seed=0) -> dict:
    """Write one dataset folder under ``root``; returns its raw arrays (per trial file index)."""
    rng = np.random.default_rng(seed + spec["animal"])
    d = Path(root) / spec["name"]
    trials = [(tier, img) for tier, imgs in spec["images"].items() for img, k in imgs.items() for _ in range(k)]
    order = rng.permutation(len(trials))
    trials = [trials[i] for i in order]
    n, nn = len(trials), spec["n"]
    tiers = np.asarray([t for t, _ in trials])
    frame_ids = np.asarray([i for _, i in trials], dtype=np.int64)
    trial_idx = rng.permutation(n) * 3 + 7
    responses = rng.gamma(1.0, 1.0, (n, nn)).astype(np.float32)
    behavior = rng.normal(size=(n, 3)).astype(np.float32)
    pupil = rng.normal(size=(n, 2)).astype(np.float32)
    for sub in ("images", "responses", "behavior", "pupil_center"):
        (d / "data" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(d / "data" / "images" / f"{i}.npy", image_pixels(frame_ids[i]))
        np.save(d / "data" / "responses" / f"{i}.npy", responses[i])
        np.save(d / "data" / "behavior" / f"{i}.npy", behavior[i])
        np.save(d / "data" / "pupil_center" / f"{i}.npy", pupil[i])
    nd, td = d / "meta" / "neurons", d / "meta" / "trials"
    nd.mkdir(parents=True)
    td.mkdir(parents=True)
    units = np.arange(1, nn + 1) * 10 + 1
    np.save(nd / "unit_ids.npy", units)
    np.save(nd / "area.npy", np.asarray(spec["areas"]))
    np.save(nd / "layer.npy", np.asarray(["L2/3"] * (nn - 1) + ["L4"]))
    np.save(nd / "animal_ids.npy", np.full(nn, spec["animal"]))
    np.save(nd / "sessions.npy", np.full(nn, spec["session"]))
    np.save(nd / "scan_idx.npy", np.full(nn, spec["scan"]))
    xyz = rng.normal(size=(nn, 3)) * 100
    np.save(nd / "cell_motor_coordinates.npy", xyz)
    np.save(td / "tiers.npy", tiers)
    np.save(td / "frame_image_id.npy", frame_ids)
    np.save(td / "trial_idx.npy", trial_idx)
    (d / "meta" / "statistics" / "responses" / "all").mkdir(parents=True)
    np.save(d / "meta" / "statistics" / "responses" / "all" / "mean.npy", responses.mean(0))
    return {"dir": d, "tiers": tiers, "frame_image_id": frame_ids, "trial_idx": trial_idx, "responses": responses,
            "behavior": behavior, "pupil": pupil, "units": units, "xyz": xyz}


def zip_dataset(folder) -> Path:
    """``<folder>.zip`` holding ``<name>/...`` (as the published zips do)."""
    folder = Path(folder)
    z = folder.with_suffix(".zip")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder)}")
    return z


def make_sensorium(root) -> dict:
    """Both mice as folders under ``root/tree`` and mouse B also as ``root/zips/<name>.zip``."""
    root = Path(root)
    a = write_mouse(root / "tree", MOUSE_A)
    b = write_mouse(root / "tree", MOUSE_B)
    (root / "zips").mkdir(parents=True, exist_ok=True)
    tmp = root / "zips" / MOUSE_B["name"]
    shutil.copytree(b["dir"], tmp)
    b["zip"] = zip_dataset(tmp)
    shutil.rmtree(tmp)
    return {"a": a, "b": b, "root": root}
