"""Whole studies from one TOML file: ingest -> select -> extract -> score -> rank -> report.

A pipeline config (``pipelines/*.toml``, read with :mod:`tomllib` as plain data and checked into
typed settings by :mod:`.config`: unknown tables or keys, wrong types and out-of-range values are
errors) has one table per stage; every stage skips what is already done, so rerunning resumes
after a crash or adds what the config gained (a model, a metric)::

    [study]
    dir = "studies/visp"          # the study directory (relative paths: see `base`)
    base = ".."                   # relative paths are relative to this, itself relative to the config
    seed = 0
    kind = "conwell2021"          # or "prasad2022": the image-domain study (neuroxr.domains)

    [ingest]                      # source = "allen" | "arrays" | "simulate"; other keys go to the
    source = "arrays"             # ingest function (neuroxr.io.allen.ingest_allen, ...arrays.ingest_arrays,
    images = "data.npz:images"    # ...simulate.simulate_study): see IngestSettings

    [select]                      # neuroxr.responses.select_study keyword arguments
    min_reliability = 0.8

    [extract]
    models = ["alexnet", "resnet18"]   # or catalog = "models" (every row), families = [...]
    weights = ["trained", "random"]
    baselines = ["pixels"]
    srp = 4096                         # store the sparse random projection (for srp-ridge)

    [score]
    metrics = ["ridge", "rsa"]
    # alpha = 1.0                 # default: the paper's alpha = 1 in its units (docs/metrics.md)

    [sweep]                       # optional: rankings rescored at rising reliability thresholds
    thresholds = [0.0, 0.1, ..., 0.9]
    models = ["alexnet"]

    [tradeoff]                    # optional: method trade-off measured on a few layers
    model = "alexnet"

    [report]
    n_boot = 1000

- :mod:`.config`: the settings dataclasses, :func:`read_config`, :func:`load_settings`.
- :mod:`.plan`: the (model, weights) variants to extract, what is missing before a run.
- :mod:`.stages`: ingest, select, extract, score.
- :mod:`.analyses`: :func:`rescore_by_reliability` and :func:`calc_method_tradeoff`.
- :mod:`.run`: :func:`run_pipeline`, :func:`run_demo` and the demo configs.
"""
from __future__ import annotations

from .analyses import calc_method_tradeoff, rescore_by_reliability
from .config import (
    SECTIONS, ConfigError, PipelineSettings, is_domains_config, load_settings, read_config,
)
from .plan import list_done_variants, list_model_variants, resolve_spec
from .run import DEMO, DEMO_SMALL, check_pipeline, run_demo, run_pipeline

__all__ = [
    "DEMO", "DEMO_SMALL", "SECTIONS", "ConfigError", "PipelineSettings", "calc_method_tradeoff",
    "check_pipeline", "is_domains_config", "list_done_variants", "list_model_variants", "load_settings",
    "read_config", "rescore_by_reliability", "resolve_spec", "run_demo", "run_pipeline",
]
