"""Non-network baselines, as ``nn.Module`` s so they go through the same extraction as networks.

Each baseline takes the preprocessed images (image, 1, y, x) (grayscale, scaled to [0, 1]
except ``pixels``, which sees the stored values unchanged) and exposes its stages as named
child modules, so every stage is a "layer" with a depth like a network's:

========  ==========================================================================  ==========
name      layers                                                                      input
========  ==========================================================================  ==========
pixels    ``pixels``: the stored stimuli flattened, unchanged (the null model)        native
gabor     ``gabor_energy`` (4 frequencies x 8 orientations, full resolution),         64 px
          ``gabor_grid`` (the energy averaged over an 8x8 grid: 2,048 features)
gist      ``prefilter`` (local contrast normalisation), ``gist_energy``               128 px
          (4 scales x 8 orientations), ``gist_grid`` (4x4 grid: 512 features, as GIST)
rff       ``rff``: random Fourier features of the flattened pixels                     native
          (:class:`sklearn.kernel_approximation.RBFSampler`, as many components as the
          sparse random projection: the JL bound for 118 images, eps 0.1 = 4,089)
========  ==========================================================================  ==========

Gabor kernels come from :func:`skimage.filters.gabor_kernel` (complex); the energy is the
modulus of the complex response.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.filters import gabor_kernel
from sklearn.kernel_approximation import RBFSampler
from torch import nn

from ..errors import NeuroxrError

BASELINES = ("pixels", "gabor", "gist", "rff")
#: random Fourier features: as many as the study's sparse random projection for 118 images
RFF_COMPONENTS = 4089


class UnknownBaselineError(NeuroxrError, KeyError):
    """A baseline name that is not one of :data:`BASELINES`."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class _Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class _GaborEnergy(nn.Module):
    """Modulus of complex Gabor responses; ``frequencies`` in cycles per pixel.

    One convolution per frequency, its kernels zero-padded to that frequency's largest (not to
    the largest of the bank: GIST's lowest frequency needs 69 x 69 pixels, its highest 11 x 11),
    the image padded by that half-width.  Reflect padding of width ``P`` holds the same pixels in
    its first ``p < P`` columns, so every response equals the one a single padded bank gives.
    """

    def __init__(self, frequencies, n_orientations: int = 8):
        super().__init__()
        self.pads = []
        for g, f in enumerate(frequencies):
            kernels = [gabor_kernel(f, theta=np.pi * k / n_orientations) for k in range(n_orientations)]
            size = max(k.shape[0] for k in kernels)
            bank = np.zeros((2 * len(kernels), 1, size, size), dtype=np.float32)
            for i, k in enumerate(kernels):
                o = (size - k.shape[0]) // 2
                bank[2 * i, 0, o:o + k.shape[0], o:o + k.shape[1]] = k.real
                bank[2 * i + 1, 0, o:o + k.shape[0], o:o + k.shape[1]] = k.imag
            self.register_buffer(f"bank{g}", torch.from_numpy(bank))
            self.pads.append(size // 2)

    def forward(self, x):
        # the padding mode follows the largest kernel, as one bank padded to it would
        mode = "reflect" if min(x.shape[-2:]) > max(self.pads) else "replicate"
        out = []
        for g, pad in enumerate(self.pads):
            r = F.conv2d(F.pad(x, (pad,) * 4, mode=mode), getattr(self, f"bank{g}"))
            re, im = r[:, 0::2], r[:, 1::2]
            out.append(torch.sqrt(re * re + im * im))
        return torch.cat(out, dim=1)


class _GridMean(nn.Module):
    def __init__(self, grid: int):
        super().__init__()
        self.grid = grid

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.grid)


class _LocalContrastNorm(nn.Module):
    """GIST prefilter: subtract a Gaussian local mean, divide by the local standard deviation."""

    def __init__(self, sigma: float = 4.0):
        super().__init__()
        r = int(3 * sigma)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-t ** 2 / (2 * sigma ** 2))
        g = g / g.sum()
        self.register_buffer("kernel", (g[:, None] * g[None, :])[None, None])
        self.r = r

    def _blur(self, x):
        return F.conv2d(F.pad(x, (self.r,) * 4, mode="replicate"), self.kernel)

    def forward(self, x):
        x = x - self._blur(x)
        return x / (0.2 + torch.sqrt(self._blur(x * x)))


class PixelsBaseline(nn.Module):
    """The stored stimuli flattened, unchanged."""

    def __init__(self):
        super().__init__()
        self.pixels = _Flatten()

    def forward(self, x):
        return self.pixels(x)


class GaborBaseline(nn.Module):
    """Gabor energy (4 frequencies x 8 orientations) and its mean over an 8x8 grid."""

    def __init__(self, frequencies=(0.1, 0.2, 0.3, 0.4), n_orientations: int = 8, grid: int = 8):
        super().__init__()
        self.gabor_energy = _GaborEnergy(frequencies, n_orientations)
        self.gabor_grid = _GridMean(grid)

    def forward(self, x):
        return self.gabor_grid(self.gabor_energy(x))


class GistBaseline(nn.Module):
    """GIST-style descriptor: contrast normalisation, Gabor energy at 4 scales x 8 orientations, 4x4 grid."""

    def __init__(self, frequencies=(0.05, 0.1, 0.2, 0.4), n_orientations: int = 8, grid: int = 4):
        super().__init__()
        self.prefilter = _LocalContrastNorm()
        self.gist_energy = _GaborEnergy(frequencies, n_orientations)
        self.gist_grid = _GridMean(grid)

    def forward(self, x):
        return self.gist_grid(self.gist_energy(self.prefilter(x)))


class _RFF(nn.Module):
    def __init__(self, n_components: int, gamma: float | None, seed: int):
        super().__init__()
        self.n_components, self.gamma, self.seed = n_components, gamma, seed
        self.register_buffer("weights", torch.empty(0), persistent=False)
        self.register_buffer("offset", torch.empty(0), persistent=False)

    def _fit(self, d: int, device):
        # gamma 1/d by default: pixels in [0, 1] make the squared distance between images O(d)
        gamma = self.gamma if self.gamma is not None else 1.0 / d
        s = RBFSampler(gamma=gamma, n_components=self.n_components, random_state=self.seed)
        s.fit(np.zeros((1, d)))  # fit draws the random weights from the feature count only
        self.weights = torch.as_tensor(s.random_weights_, dtype=torch.float32, device=device)
        self.offset = torch.as_tensor(s.random_offset_, dtype=torch.float32, device=device)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        if self.weights.numel() == 0 or self.weights.shape[0] != x.shape[1]:
            self._fit(x.shape[1], x.device)
        return np.sqrt(2.0 / self.n_components) * torch.cos(x @ self.weights + self.offset)


class RFFBaseline(nn.Module):
    """Random Fourier features (an RBF kernel approximation) of the flattened pixels."""

    def __init__(self, n_components: int = RFF_COMPONENTS, gamma: float | None = None, seed: int = 0):
        super().__init__()
        self.rff = _RFF(n_components, gamma, seed)

    def forward(self, x):
        return self.rff(x)


def build_baseline(name: str, seed: int = 0) -> nn.Module:
    """The baseline ``name`` (one of :data:`BASELINES`) as an ``nn.Module`` in eval mode."""
    builders = {
        "pixels": PixelsBaseline,
        "gabor": GaborBaseline,
        "gist": GistBaseline,
        "rff": lambda: RFFBaseline(seed=seed),
    }
    if name not in builders:
        raise UnknownBaselineError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return builders[name]().eval()


__all__ = ["BASELINES", "UnknownBaselineError", "build_baseline", "PixelsBaseline", "GaborBaseline", "GistBaseline", "RFFBaseline"]
