"""Array backends for the Gram and ridge code: NumPy, or PyTorch on the CPU or a GPU.

A backend is a small object with the array operations the kernels need (``asarray``,
``eigh``, ``einsum``, ``where`` ...).  It is passed explicitly to every function (by name,
``"numpy"``, ``"torch"``, ``"torch:cuda"``, or as the object) and never kept as global state,
so Dask workers each build their own (as himalaya does).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import NeuroxrError

__all__ = ["BACKENDS", "get_backend", "resolve_backend", "cuda_available", "NumpyBackend", "TorchBackend"]


class NumpyBackend:
    name = "numpy"

    def asarray(self, x, dtype=np.float64):
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def zeros(self, shape):
        return np.zeros(shape)

    def eigh(self, a):
        return np.linalg.eigh(a)

    def eye(self, n, dtype=np.float64):
        return np.eye(n, dtype=dtype)

    def ones(self, shape, dtype=np.float64):
        return np.ones(shape, dtype=dtype)

    def einsum(self, spec, *ops):
        return np.einsum(spec, *ops, optimize=True)

    def sqrt(self, x):
        return np.sqrt(x)

    def where(self, c, a, b):
        return np.where(c, a, b)

    def swap_last(self, a):
        return np.swapaxes(a, -1, -2)

    def diagonal(self, a):
        return np.diagonal(a, axis1=-2, axis2=-1)

    def nan(self):
        return np.nan

    def isfinite_all(self, a, axes):
        return np.isfinite(a).all(axis=axes)

    def argmin(self, a, axis):
        return np.argmin(a, axis=axis)

    def take_along(self, a, idx, axis):
        return np.take_along_axis(a, idx, axis=axis)

    def abs(self, x):
        return np.abs(x)

    def max(self, x, axis):
        return np.max(x, axis=axis)


class TorchBackend:
    def __init__(self, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float64
        self.name = f"torch:{device}" if device != "cpu" else "torch"

    def asarray(self, x, dtype=None):
        t = self.torch
        return t.as_tensor(np.asarray(x) if not isinstance(x, t.Tensor) else x).to(self.device, t.float64)

    def to_numpy(self, x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def eye(self, n, dtype=None):
        return self.torch.eye(n, dtype=self.torch.float64, device=self.device)

    def ones(self, shape, dtype=None):
        return self.torch.ones(shape, dtype=self.torch.float64, device=self.device)

    def einsum(self, spec, *ops):
        return self.torch.einsum(spec, *ops)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def where(self, c, a, b):
        t = self.torch
        return t.where(c, a if isinstance(a, t.Tensor) else t.as_tensor(a, dtype=t.float64, device=self.device),
                       b if isinstance(b, t.Tensor) else t.as_tensor(b, dtype=t.float64, device=self.device))

    def swap_last(self, a):
        return a.transpose(-1, -2)

    def diagonal(self, a):
        return self.torch.diagonal(a, dim1=-2, dim2=-1)

    def nan(self):
        return float("nan")

    def isfinite_all(self, a, axes):
        out = self.torch.isfinite(a)
        for ax in sorted(axes, reverse=True):
            out = out.all(dim=ax)
        return out

    def argmin(self, a, axis):
        return self.torch.argmin(a, dim=axis)

    def take_along(self, a, idx, axis):
        return self.torch.take_along_dim(a, idx, dim=axis)

    def abs(self, x):
        return self.torch.abs(x)

    def max(self, x, axis):
        return self.torch.amax(x, dim=axis)


_NUMPY = NumpyBackend()


def _make_torch(device="cpu"):
    return TorchBackend(device)


#: backend name -> factory; pass the name (or the object) explicitly to every function
BACKENDS = {
    "numpy": lambda: _NUMPY,
    "torch": lambda: _make_torch("cpu"),
    "torch:cuda": lambda: _make_torch("cuda"),
}


def cuda_available() -> bool:
    """True if PyTorch sees a CUDA device (torch is imported only where an NVIDIA driver is present)."""
    if "torch" not in sys.modules and not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(backend="auto"):
    """``"auto"`` -> ``"torch:cuda"`` where a CUDA device is present, else ``"numpy"``; others unchanged."""
    if isinstance(backend, str) and backend == "auto":
        return "torch:cuda" if cuda_available() else "numpy"
    return backend


def get_backend(backend="numpy"):
    """The backend object for ``backend`` (a name of :data:`BACKENDS`, ``"auto"``, or a backend object)."""
    if not isinstance(backend, str):
        return backend
    backend = resolve_backend(backend)
    if backend.startswith("torch:") and backend not in BACKENDS:  # any torch device, e.g. "torch:cuda:1"
        return _make_torch(backend.split(":", 1)[1])
    if backend not in BACKENDS:
        raise NeuroxrError(f"unknown array backend {backend!r}; choose one of {sorted(BACKENDS)}")
    try:
        return BACKENDS[backend]()
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise NeuroxrError(f"backend {backend!r} needs PyTorch: {exc}") from exc
