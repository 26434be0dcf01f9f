"""Process settings that native libraries read once, when they load: set before torch allocates.

Imported first by ``neuroxr/__init__.py`` (standard library only).  A value the user exported is
kept, and ``NEUROXR_TUNE=0`` leaves the environment untouched.

- ``THP_MEM_ALLOC_ENABLE=1`` (Linux): torch's CPU allocator asks for transparent huge pages for
  tensors of 2 MB and more.  Without it every large activation is a fresh ``mmap`` whose 4 kB
  pages fault in one by one.  Measured here (2 threads, 118 images in one batch): resnet50
  8.1 s -> 5.9 s, vgg16 15.2 s -> 12.2 s; peak memory unchanged.  torch reads the variable at
  its first allocation of 2 MB or more, so it takes effect only where neuroxr is imported
  before such a tensor is made (the command line always; a notebook that imports neuroxr first).

The BLAS kernel is not set here: OpenBLAS picks it from the processor (threadpoolctl reports it,
:func:`blas_kernels`, and every extraction log and benchmark prints it).  A machine that exports
``OPENBLAS_CORETYPE`` keeps it: some set it because older OpenBLAS builds compute wrong results
on their processors.
"""
from __future__ import annotations

import os
import sys

#: what :func:`tune_environment` set in this process (name -> value), for the logs
APPLIED: dict = {}


def tune_environment(environ=os.environ, platform: str = sys.platform) -> dict:
    """Set the defaults above in ``environ`` (where unset) and return what was set."""
    applied = {}
    if environ.get("NEUROXR_TUNE", "1") == "0":
        return applied
    if "THP_MEM_ALLOC_ENABLE" not in environ and platform.startswith("linux"):
        environ["THP_MEM_ALLOC_ENABLE"] = applied["THP_MEM_ALLOC_ENABLE"] = "1"
    return applied


def blas_kernels() -> str:
    """The loaded BLAS libraries: version, the kernel each runs and its threads (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    libs = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} x{i.get('num_threads')}"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(libs) or "no BLAS loaded"


APPLIED.update(tune_environment())

__all__ = ["APPLIED", "blas_kernels", "tune_environment"]
