"""Alias of :mod:`neuroxr.simulate` (the simulator lives outside ``io``: it depends on ``features``).

Resolved on first attribute access, so importing ``neuroxr.io`` never imports ``features``.
Callers: ``neuroxr/__init__.py``, ``neuroxr/pipeline.py``, ``neuroxr/domains/pipeline.py``; once
they import :mod:`neuroxr.simulate`, this module goes.
"""
from __future__ import annotations

import importlib


def __getattr__(name):
    return getattr(importlib.import_module("neuroxr.simulate"), name)
