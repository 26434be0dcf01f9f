"""The built-in simulated observatory: a study whose ground truth is known.

``simulate_study`` writes ``stimuli.zarr`` and ``responses.zarr`` (with ``trials``) whose neurons
are noisy functions of the layers of a small seeded random-weight network of the zoo, with a
planted hierarchy: the six areas, in the order of :data:`neuroxr.schema.AREAS` (VISp, VISl,
VISal, VISpm, VISrl, VISam), are driven by layers of increasing depth.  Later stages must recover
it: that network ranks first, and its best layer deepens from VISp to VISam.

How it is made (everything from ``seed``, the network's weights from ``weights_seed``):

1. **Images**: half are random crops (random scale, position and flip) of the photographs that
   scikit-image ships, half are 1/f^2-power (1/f amplitude) noise; each is stretched to 0..255
   (grayscale, float32).
2. **Features**: the layers of ``load_model(model, weights="random", seed=weights_seed)``, as
   :func:`neuroxr.features.extract.iter_layer_activations` yields them (exactly what
   ``neuroxr extract STUDY --model MODEL --weights random`` sees).  The driving layers are
   evenly spaced (in execution order) among the network's nonlinearities (ReLU/GELU/...) after
   the first, the shallowest for VISp and the last for VISam (:func:`choose_driving_layers`).
3. **Neurons**: each neuron's drive is a random linear readout ``u = A_c w`` of its area's layer
   activations ``A`` (image, feature), each image's activations centred across features
   (``A_c``), with ``w ~ N(0, I)``.  ``u`` is Gaussian with covariance ``C = A_c A_c^T``
   (image, image), so it is drawn exactly, whatever the feature count, as ``u = U sqrt(S) g``
   from the eigendecomposition of ``C``.  Across the neurons of an area, the correlation of two
   images' drives is then the Pearson r of the two images' activations, so the area's RDM
   follows the layer's RDM (for RSA), and the drive is linear in the layer's features (for
   ridge).  The mean response is ``gain * softplus(3 (u / sd + offset)) / 3`` (``sd`` one scale
   per area; gain lognormal(0, 0.5), offset uniform(-0.5, 1) per neuron).  Checked with
   closed-form leave-one-out ridge (alpha 1, z-scored features) and RSA on all layers: the
   best layers are the driving ones or their neighbours, deepening from VISp to VISam.
4. **Trials**: the mean response plus Gaussian trial noise whose amplitude is set per neuron so
   that its split-half reliability (over all trials, Spearman-Brown) is a target drawn from
   Beta(1.5, 1): reliabilities spread over 0..1, about 30% above 0.8.  A few images have 1-3
   trials fewer (NaN-padded), as in the Allen sessions.
5. **Metadata**: neurons come in containers (experiments) of ~50 sharing a cre line and an
   imaging depth typical of it; ``p_run_mod`` is uniform with ~15% running-modulated
   (< 0.05) and ~10% NaN; ``p_image`` is the one-way ANOVA p-value of the trials across images.

The generating model, weights seed and the layer (name, depth, relative depth) of each area are
recorded as JSON in the ``simulation`` attribute of both stores.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.data
from scipy.stats import f as fdist
from skimage.color import rgb2gray
from skimage.transform import resize

from . import schema as S
from .errors import InvalidArgumentError, MissingDataError
from .features.extract import iter_layer_activations
from .features.zoo import load_model
from .io import store
from .io.builders import build_responses_dataset, build_stimuli_dataset
from .io.ingest import check_study, write_study

#: cre lines of the simulated containers and the depths they are imaged at (um)
CRE_DEPTHS = {
    "Cux2-CreERT2": (175, 275), "Emx1-IRES-Cre": (175, 275, 375), "Slc17a7-IRES2-Cre": (175, 275, 375),
    "Rorb-IRES2-Cre": (275,), "Scnn1a-Tg3-Cre": (350,), "Nr5a1-Cre": (350,), "Rbp4-Cre_KL100": (375,),
    "Fezf2-CreER": (375,), "Tlx3-Cre_PL56": (375,), "Ntsr1-Cre_GN220": (550,),
    "Sst-IRES-Cre": (275, 375), "Vip-IRES-Cre": (175,), "Pvalb-IRES-Cre": (375,),
}
_NONLINEAR = ("ReLU", "ReLU6", "GELU", "SiLU", "Hardswish", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "Mish")
_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "page", "clock", "grass",
           "gravel", "brick", "hubble_deep_field", "cat", "cell", "immunohistochemistry", "text")


# --------------------------------------------------------------------------- images
def _photographs() -> list[np.ndarray]:
    out = []
    for name in _PHOTOS:
        try:
            im = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        except Exception:  # a photograph that is not shipped offline: skip it
            continue
        if im.ndim == 3:
            im = rgb2gray(im[..., :3])
        out.append(im)
    return out


def _stretch(im: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(im, [0.5, 99.5])
    return np.clip((im - lo) / max(hi - lo, 1e-12), 0, 1) * 255.0


def _pink_noise(rng, size: int) -> np.ndarray:
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f  # power 1/f^2
    spec[0, 0] = 0
    return np.fft.irfft2(spec, s=(size, size))


def simulate_images(n_images: int = 118, image_size: int = 64, seed: int = 0) -> np.ndarray:
    """Natural-like grayscale images (image, y, x), float32 0..255 (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    photos = _photographs()
    out = np.empty((n_images, image_size, image_size), dtype=np.float32)
    kinds = rng.permutation(np.arange(n_images) % 2)  # half photographs, half noise
    for k in range(n_images):
        if kinds[k] == 0 and photos:
            im = photos[rng.integers(len(photos))]
            side = int(min(im.shape) * rng.uniform(0.3, 1.0))
            y0 = rng.integers(0, im.shape[0] - side + 1)
            x0 = rng.integers(0, im.shape[1] - side + 1)
            crop = im[y0:y0 + side, x0:x0 + side]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            img = resize(crop, (image_size, image_size), anti_aliasing=True)
        else:
            img = _pink_noise(rng, image_size)
        out[k] = _stretch(img)
    return out


# --------------------------------------------------------------------------- features
def choose_driving_layers(layers: list[tuple[str, str]], n_areas: int = len(S.AREAS)) -> list[int]:
    """Indices (into ``layers``, a list of (name, module type) in execution order) of the layers
    driving each area: evenly spaced among the nonlinearities after the first (all layers when
    there are fewer nonlinearities than areas).

    The first nonlinearity is skipped when there are enough: at the stimuli's resolution the
    first layer of any convolutional network is close to the pixels, so an area driven by it
    would not single out the generating network (measured: random-weight resnet18 and
    squeezenet1_1 tied alexnet's features.1 on VISp).  For alexnet the areas get features.4,
    .7, .9, .11, classifier.2 and classifier.5."""
    cand = [i for i, (_, t) in enumerate(layers) if t in _NONLINEAR]
    if len(cand) > n_areas:
        cand = cand[1:]  # the first nonlinearity sees little more than pixels, in any network
    if len(cand) < n_areas:
        cand = [i for i, (n, _) in enumerate(layers) if n != "output"] or list(range(len(layers)))
    pos = np.round(np.linspace(0, len(cand) - 1, n_areas)).astype(int)
    return [cand[p] for p in pos]


def _centred_kernel(acts: np.ndarray) -> np.ndarray:
    """C = A_c A_c^T (image, image), float64, of activations centred per image across features."""
    a = acts.astype(np.float64)
    a -= a.mean(1, keepdims=True)
    return a @ a.T


def _layer_kernels(model: str, weights_seed: int, pixels: np.ndarray, batch_size: int = 32):
    loaded = load_model(model, weights="random", seed=weights_seed)
    names, kernels = [], []
    for name, mtype, acts in iter_layer_activations(loaded, pixels, batch_size=batch_size):
        names.append((name, mtype))
        kernels.append(_centred_kernel(acts))
    return names, kernels


# --------------------------------------------------------------------------- neurons
def _draw_gp(rng, K: np.ndarray, n: int) -> np.ndarray:
    """n draws (image, n) of a Gaussian with covariance K (exactly a dense random readout)."""
    s, U = np.linalg.eigh(K)
    s = np.clip(s, 0, None)
    return (U * np.sqrt(s)) @ rng.normal(size=(K.shape[0], n))


def _softplus(x, beta):
    return np.logaddexp(0, beta * x) / beta


def _anova_p(trials: np.ndarray) -> np.ndarray:
    """One-way ANOVA p-value across images per neuron; trials (neuron, image, trial) NaN-padded."""
    ok = np.isfinite(trials)
    n_i = ok.sum(2)  # (neuron, image)
    x = np.where(ok, trials, 0.0)
    m_i = x.sum(2) / np.maximum(n_i, 1)
    N = n_i.sum(1)
    grand = x.sum((1, 2)) / N
    ssb = (n_i * (m_i - grand[:, None]) ** 2).sum(1)
    ssw = (np.where(ok, trials - m_i[..., None], 0.0) ** 2).sum((1, 2))
    k = trials.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        F = (ssb / (k - 1)) / (ssw / (N - k))
    return fdist.sf(F, k - 1, N - k)


def _containers(rng, n: int, areas_of: np.ndarray):
    """Container id, cre line and depth per neuron: blocks of ~50 neurons within an area."""
    cre_names = list(CRE_DEPTHS)
    container = np.empty(n, dtype=np.int64)
    cre = np.empty(n, dtype=object)
    depth = np.empty(n, dtype=np.float64)
    next_id = 511_000_000 + int(rng.integers(0, 1000)) * 1000
    for area in pd.unique(areas_of):
        idx = np.flatnonzero(areas_of == area)
        for start in range(0, len(idx), 50):
            blk = idx[start:start + 50]
            line = cre_names[rng.integers(len(cre_names))]
            container[blk] = next_id
            next_id += int(rng.integers(1, 40))
            cre[blk] = line
            depth[blk] = float(rng.choice(CRE_DEPTHS[line]))
    return container, cre.astype(str), depth


def simulate_study(
    study,
    seed: int = 0,
    n_images: int = 118,
    neurons_per_area: int = 200,
    n_trials: int = 50,
    image_size: int = 64,
    model: str = "alexnet",
    overwrite: bool = False,
    *,
    weights_seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """Write the simulated observatory into ``study`` (``stimuli.zarr``, ``responses.zarr``).

    Parameters
    ----------
    study : path-like
        Study directory (created when missing).
    seed : int
        Seed of images, readouts, noise and metadata: the same seed gives the same study.
    n_images, neurons_per_area, n_trials, image_size : int
        Sizes: images (image_size x image_size pixels), neurons in each of the six areas, trials
        per image (a few images get 1-3 fewer, NaN-padded).
    model : str
        Zoo network whose random-weight layers drive the neurons (default ``alexnet``).
    overwrite : bool
        Replace existing stores (atomically); otherwise an existing store raises first.
    weights_seed : int
        Seed of the network's random weights (default 0, the default of ``neuroxr extract``).

    Returns
    -------
    dict
        ``{store name: path}``.  The ``simulation`` attribute (JSON) of both stores records the
        model, weights seed and the layer driving each area.
    """
    study = Path(study)
    _check_sizes(n_images, neurons_per_area, n_trials, image_size)
    store.check_writable([study / S.STIMULI_STORE, study / S.RESPONSES_STORE], overwrite)
    rng = np.random.default_rng([seed, 2])
    pixels = simulate_images(n_images, image_size, seed)
    layers, kernels = _layer_kernels(model, weights_seed, pixels, batch_size)
    drive = choose_driving_layers(layers)
    area_of = np.repeat(np.asarray(S.AREAS), neurons_per_area)
    mean = _area_means(rng, kernels, drive, neurons_per_area, n_images)
    trials, rho, meta = _trials_and_metadata(rng, mean, n_trials, area_of)
    ids = 600_000_000 + np.sort(rng.choice(10 * len(area_of), size=len(area_of), replace=False)).astype(np.int64)
    settings = {"seed": int(seed), "n_images": int(n_images), "neurons_per_area": int(neurons_per_area),
                "n_trials": int(n_trials), "image_size": int(image_size), "model": model,
                "weights_seed": int(weights_seed)}
    attrs = store.provenance(settings, {"simulation": "neuroxr.simulate"})
    attrs["simulation"] = json.dumps(_ground_truth(model, weights_seed, seed, layers, drive), sort_keys=True)
    attrs["source"] = "simulate"
    rds = build_responses_dataset(trials=trials, neuron_ids=ids, meta=meta, source="simulation", attrs=attrs)
    rds["target_reliability"] = (S.NEURON, rho.astype(np.float32))
    rds["target_reliability"].attrs["description"] = "reliability the trial noise was set for (ground truth)"
    sds = build_stimuli_dataset(pixels, source="simulation", attrs=dict(attrs))
    out = {S.STIMULI_STORE: sds, S.RESPONSES_STORE: rds}
    check_study(study, out, overwrite)
    return write_study(study, out, overwrite)


def _check_sizes(n_images, neurons_per_area, n_trials, image_size) -> None:
    for name, val in (("n_images", n_images), ("neurons_per_area", neurons_per_area),
                      ("image_size", image_size)):
        if int(val) < 1:
            raise InvalidArgumentError(f"{name} must be >= 1, got {val}")
    if int(n_images) < 8:
        raise InvalidArgumentError(f"n_images must be >= 8 for reliabilities and scores to mean anything, got {n_images}")
    if int(n_trials) < 4:
        raise InvalidArgumentError(f"n_trials must be >= 4 (split halves need trials), got {n_trials}")


def _area_means(rng, kernels, drive, neurons_per_area: int, n_images: int) -> np.ndarray:
    """Mean responses (neuron, image): each area's neurons read out its driving layer (step 3)."""
    mean = np.empty((neurons_per_area * len(drive), n_images))
    for a, li in enumerate(drive):
        u = _draw_gp(rng, kernels[li], neurons_per_area).T  # (neuron, image)
        u = u / max(float(u.std()), 1e-12)  # one scale per area
        offset = rng.uniform(-0.5, 1.0, size=(neurons_per_area, 1))
        gain = rng.lognormal(0.0, 0.5, size=(neurons_per_area, 1))
        mean[a * neurons_per_area:(a + 1) * neurons_per_area] = gain * _softplus(u + offset, 3.0)
    return mean


def _trials_and_metadata(rng, mean: np.ndarray, n_trials: int, area_of: np.ndarray):
    """``(trials float32, target reliability, metadata)`` (steps 4 and 5), drawn in this order."""
    n, n_images = mean.shape
    # trial noise for a target reliability rho: var_s / (var_s + sigma^2 / T) = rho
    rho = np.clip(rng.beta(1.5, 1.0, size=n), 0.01, 0.99)
    sigma = np.sqrt(n_trials * mean.var(1) * (1 - rho) / rho)
    trials = mean[:, :, None] + sigma[:, None, None] * rng.normal(size=(n, n_images, n_trials))
    # a few images shown 1-3 times fewer (the same for all neurons of a container)
    container, cre, depth = _containers(rng, n, area_of)
    for c in np.unique(container):
        blk = container == c
        short = rng.choice(n_images, size=max(1, n_images // 20), replace=False)
        for i in short:
            trials[np.ix_(blk, [i], np.arange(n_trials - int(rng.integers(1, 4)), n_trials))] = np.nan
    trials = trials.astype(np.float32)
    p_run = rng.uniform(0, 1, size=n)
    running = rng.random(n) < 0.15
    p_run[running] = rng.uniform(0, 0.05, size=int(running.sum()))
    p_run[rng.random(n) < 0.10] = np.nan
    meta = pd.DataFrame({
        "area": area_of, "cre_line": cre, "depth_um": depth, "container": container,
        "p_run_mod": p_run, "p_image": _anova_p(trials.astype(np.float64)),
    })
    return trials, rho, meta


def _ground_truth(model, weights_seed, seed, layers, drive) -> dict:
    """The ``simulation`` attribute: generating model, weights seed and each area's layer."""
    n_layers = len(layers)
    area_layers = {
        area: {"layer_name": layers[li][0], "module_type": layers[li][1], "depth": int(li),
               "relative_depth": float(li / max(n_layers - 1, 1))}
        for area, li in zip(S.AREAS, drive)
    }
    return {
        "model": model, "weights": "random", "weights_seed": int(weights_seed), "seed": int(seed),
        "area_layers": area_layers, "n_layers": n_layers, "layers": [name for name, _ in layers],
        "target_reliability": "Beta(1.5, 1) clipped to [0.01, 0.99]", "rectifier": "softplus(beta=3)",
        "readout": "Gaussian random linear readout of per-image-centred activations, drawn via the image kernel",
    }


def read_simulation(study) -> dict:
    """The ground truth recorded by :func:`simulate_study` (model, weights seed, area layers)."""
    ds = store.open_dataset(Path(study) / S.RESPONSES_STORE)
    if "simulation" not in ds.attrs:
        raise MissingDataError(f"{Path(study) / S.RESPONSES_STORE} was not written by `neuroxr simulate`")
    return json.loads(ds.attrs["simulation"])


__all__ = ["simulate_study", "simulate_images", "choose_driving_layers", "read_simulation", "CRE_DEPTHS"]
