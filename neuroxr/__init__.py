"""neuroxr: which deep networks best model the mouse visual cortex, and why.

Every object is a plain xarray Dataset or DataArray; domain methods live in the
``.nxr`` accessor.  Submodules are imported lazily so ``import neuroxr`` is fast.
"""
from __future__ import annotations

import importlib

from . import _boot  # noqa: F401  (first: settings torch reads at its first large allocation)

from . import schema
from .errors import MissingDataError, NeuroxrError, SchemaError, SettingsMismatchError, StoreExistsError
from .study import Study, open_study

from . import accessor  # noqa: F401  (registers the .nxr accessor)

#: public functions and where they live (imported on first use)
_LAZY = {
    # study store
    "write_dataset": "neuroxr.io.store",
    "open_dataset": "neuroxr.io.store",
    # responses
    "calc_splithalf_reliability": "neuroxr.responses",
    "select_neurons": "neuroxr.responses",
    "sweep_reliability": "neuroxr.responses",
    "select_study": "neuroxr.responses",
    "load_selected_responses": "neuroxr.responses",
    "build_responses_dataset": "neuroxr.io.arrays",
    "describe_study": "neuroxr.info",
    # ingest
    "ingest_arrays": "neuroxr.io.arrays",
    "ingest_rdms": "neuroxr.io.arrays",
    "read_brainio_assembly": "neuroxr.io.arrays",
    "simulate_study": "neuroxr.simulate",
    "ingest_allen": "neuroxr.io.allen",
    "fetch_allen": "neuroxr.io.fetch",
    # features
    "list_models": "neuroxr.features.zoo",
    "load_model": "neuroxr.features.zoo",
    "extract_features": "neuroxr.features.extract",
    "import_features": "neuroxr.features.extract",
    # scoring
    "fit_ridge_loo": "neuroxr.mapping.ridge",
    "calc_loo_pearson": "neuroxr.mapping.ridge",
    "RidgeLOO": "neuroxr.mapping.estimator",
    "METRICS": "neuroxr.mapping.metrics",
    "metric_of_variable": "neuroxr.mapping.metrics",
    "open_scores": "neuroxr.mapping.tree",
    "calc_rdm": "neuroxr.rsa",
    "compare_rdms": "neuroxr.rsa",
    "score_study": "neuroxr.mapping.score",
    "score_layers": "neuroxr.mapping.score",
    "compute_scores": "neuroxr.mapping.score",
    "project_srp": "neuroxr.mapping.srp",
    # analyses
    "rank_models": "neuroxr.stats",
    "write_report": "neuroxr.report",
    "run_pipeline": "neuroxr.pipeline",
    # image domains (second study) and PLS
    "cross_validated_pls": "neuroxr.mapping.pls",
    "calc_pls_consistency": "neuroxr.mapping.pls",
    "summarize_naturalness": "neuroxr.domains.naturalness",
    "make_synthetic_domains": "neuroxr.domains.synthetic",
    "train_simclr": "neuroxr.domains.simclr",
    "compare_domains": "neuroxr.domains.compare",
    "run_domains_pipeline": "neuroxr.domains.pipeline",
}

__all__ = [
    "Study", "open_study", "schema", "accessor",
    "NeuroxrError", "SchemaError", "StoreExistsError", "SettingsMismatchError", "MissingDataError",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuroxr' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
