"""Pipeline configs: TOML parsed into typed settings, every table and key checked.

A config has one table per stage (see :mod:`neuroxr.pipeline`).  :func:`load_settings` turns it
into :class:`PipelineSettings` (one dataclass per table); an unknown table or key, a value of the
wrong type or out of range is a :class:`ConfigError` naming the file, ``[table] key``, the value
and the nearest valid name.  :func:`read_config` returns the same content, checked, as a dict.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingDataError, NeuroxrError
from ..mapping import METRICS

SOURCES = ("allen", "arrays", "simulate")
KINDS = ("conwell2021", "prasad2022")


class ConfigError(NeuroxrError):
    """A pipeline config with an unknown table or key, or a value of the wrong type or range."""


def _key(default=None, kind="str", *, low=None, high=None, above=None, choices=None, sources=None):
    """A config key: its default, value kind (``int``, ``float``, ``bool``, ``str``, ``list[str]``,
    ``list[float]``, ``list[int]``, ``str|list[str]``, ``bool|str``, ``int|auto``, ``table``), the
    allowed range (``low <= v <= high``, ``v > above``) or choices, and for ``[ingest]`` the sources
    it applies to."""
    meta = {"kind": kind, "low": low, "high": high, "above": above, "choices": choices, "sources": sources}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


_SIM, _ARR, _ALLEN = ("simulate",), ("arrays",), ("allen",)


@dataclass
class StudySettings:
    dir: str | None = _key()
    base: str = _key(".")
    seed: int = _key(0, "int", low=0)
    kind: str = _key("conwell2021", choices=KINDS)
    requires: list = _key([], "list[str]")


@dataclass
class IngestSettings:
    """``source`` and the keyword arguments of its ingest function (None: the function's default)."""

    source: str | None = _key(choices=SOURCES)
    # simulate: neuroxr.simulate.simulate_study
    model: str | None = _key(sources=_SIM)
    weights_seed: int | None = _key(kind="int", low=0, sources=_SIM)
    n_images: int | None = _key(kind="int", low=2, sources=_SIM)
    neurons_per_area: int | None = _key(kind="int", low=1, sources=_SIM)
    n_trials: int | None = _key(kind="int", low=1, sources=_SIM)
    image_size: int | None = _key(kind="int", low=8, sources=_SIM)
    seed: int | None = _key(kind="int", low=0, sources=_SIM)
    batch_size: int | None = _key(kind="int", low=1, sources=_SIM)
    # arrays: neuroxr.io.arrays.ingest_arrays (FILE[:key] paths)
    images: str | None = _key(sources=_ARR)
    responses: str | None = _key(sources=_ARR)
    trials: str | None = _key(sources=_ARR)
    neurons: str | None = _key(sources=_ARR)
    neuron_ids: str | None = _key(sources=_ARR)
    area: str | None = _key(sources=_ARR)
    cre_line: str | None = _key(sources=_ARR)
    depth_um: float | None = _key(kind="float", low=0, sources=_ARR)
    # allen: neuroxr.io.allen.ingest_allen
    cache: str | None = _key(sources=_ALLEN)
    response: str | None = _key(choices=("events", "dff"), sources=_ALLEN)
    session: str | None = _key(sources=_ALLEN)
    areas: list | None = _key(kind="list[str]", sources=_ALLEN)
    cre_lines: object = _key(kind="str|list[str]", sources=_ALLEN)
    containers: list | None = _key(kind="list[int]", sources=_ALLEN)
    include_failed: bool | None = _key(kind="bool", sources=_ALLEN)
    chunk_neurons: int | None = _key(kind="int", low=1, sources=_ALLEN)
    block: int | None = _key(kind="int", low=1, sources=_ALLEN)


@dataclass
class SelectSettings:
    min_reliability: float | None = _key(kind="float", low=-1, high=1)
    cre_lines: object = _key(kind="str|list[str]")
    exclude_running: bool = _key(False, "bool")
    image_selective: bool = _key(False, "bool")
    n_splits: int | None = _key(kind="int", low=2)
    recompute: bool | None = _key(kind="bool")


@dataclass
class ExtractSettings:
    models: list = _key([], "list[str]")
    catalog: object = _key(kind="bool|str")
    families: list | None = _key(kind="list[str]")
    taskonomy: bool = _key(False, "bool")
    exclude: list = _key([], "list[str]")
    weights: object = _key(["random"], "str|list[str]")
    baselines: list = _key([], "list[str]")
    srp: object = _key(kind="int|auto", low=1)
    seed: int | None = _key(kind="int", low=0)
    batch_size: int = _key(32, "int", low=1)


@dataclass
class ScoreSettings:
    """``metrics`` and the keyword arguments of :func:`neuroxr.mapping.score.score_study`."""

    metrics: list = _key(["ridge", "rsa"], "list[str]", choices=METRICS.keys())
    alpha: float | None = _key(kind="float", above=0)  # None: the paper's alpha = 1 in its units
    alphas: list | None = _key(kind="list[float]", above=0)
    alpha_unit: str | None = _key(choices=("paper", "penalty"))
    zscore: bool | None = _key(kind="bool")
    areas: list | None = _key(kind="list[str]")
    rsa_method: str | None = _key(choices=("pearson", "spearman", "kendall"))
    neuron_chunk: int | None = _key(kind="int", low=1)
    layer_chunk: int | None = _key(kind="int", low=1)
    nan_layers: str | None = _key(choices=("raise", "skip"))
    pls_options: dict | None = _key(kind="table")
    backend: str | None = _key(choices=("numpy", "torch", "torch:cuda"))


@dataclass
class SweepSettings:
    thresholds: list = _key([round(0.1 * i, 1) for i in range(10)], "list[float]", low=-1, high=1)
    models: list | None = _key(kind="list[str]")


@dataclass
class TradeoffSettings:
    model: str = _key("alexnet")
    weights: str = _key("random")
    n_layers: int = _key(2, "int", low=1)
    sizes: list = _key([64, 256, 1024, 4096], "list[int]", low=1)
    regressions: list = _key(["ridge", "pls"], "list[str]", choices=("ridge", "pls"))


@dataclass
class ReportSettings:
    n_boot: int = _key(1000, "int", low=0)
    seed: int | None = _key(kind="int", low=0)


@dataclass
class ClusterSettings:
    """Where ``neuroxr run`` computes when the command line names no cluster (``--scheduler``,
    ``--workers`` win): a running scheduler's address or file, or a LocalCluster of ``workers``."""

    scheduler: str | None = _key()
    workers: int | None = _key(kind="int", low=1)
    threads_per_worker: int = _key(1, "int", low=1)
    memory_limit: str = _key("auto")


#: the tables of a pipeline config and their settings
SECTIONS = {"study": StudySettings, "ingest": IngestSettings, "select": SelectSettings,
            "extract": ExtractSettings, "score": ScoreSettings, "sweep": SweepSettings,
            "tradeoff": TradeoffSettings, "report": ReportSettings, "cluster": ClusterSettings}


@dataclass
class PipelineSettings:
    """A checked pipeline config: one settings object per table (None: the table is absent),
    ``base`` (relative paths are resolved against it) and ``where`` (the file, for messages)."""

    study: StudySettings
    base: Path
    where: str = "config"
    ingest: IngestSettings = field(default_factory=IngestSettings)
    select: SelectSettings | None = None
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    sweep: SweepSettings | None = None
    tradeoff: TradeoffSettings | None = None
    report: ReportSettings = field(default_factory=ReportSettings)
    cluster: ClusterSettings | None = None

    def path(self, p) -> Path:
        """``p`` with ``~`` expanded, relative to :attr:`base` unless absolute."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else self.base / p


def score_alphas(score):
    """The [score] penalties as the command line reads them (:func:`neuroxr.mapping.ridge.resolve_alphas`)."""
    from ..mapping.ridge import resolve_alphas

    return resolve_alphas(score.alpha, score.alphas, score.alpha_unit)


def given(settings) -> dict:
    """The keys of a settings object that are set (not None), as keyword arguments."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if getattr(settings, f.name) is not None}


# --------------------------------------------------------------------------------------------
# checking values
# --------------------------------------------------------------------------------------------
def _suggest(name, valid) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "list[str]": "a list of strings", "list[float]": "a list of numbers",
               "list[int]": "a list of integers", "str|list[str]": "a string or a list of strings",
               "bool|str": "true, false or a path string", "int|auto": "a positive integer or \"auto\"",
               "table": "a table"}


def _is(value, kind) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind.startswith("list["):
        return isinstance(value, list) and all(_is(v, kind[5:-1]) for v in value)
    return any(_is(value, k) for k in kind.split("|") if k != "auto") or (kind.endswith("auto") and value == "auto")


def _check_range(value, meta) -> str | None:
    """What is wrong with a number's range (None if nothing)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be finite"
    if meta["low"] is not None and value < meta["low"]:
        return f"must be >= {meta['low']}"
    if meta["high"] is not None and value > meta["high"]:
        return f"must be <= {meta['high']}"
    if meta["above"] is not None and not value > meta["above"]:
        return f"must be > {meta['above']}"
    return None


def _check_value(where, table, key, value, meta):
    kind = meta["kind"]
    name = f"{where}: [{table}] {key}"
    if not _is(value, kind):
        hint = f" (write {key} = [{value!r}])".replace("'", '"') if kind.startswith("list[") and isinstance(
            value, (str, int, float)) and not isinstance(value, bool) else ""
        raise ConfigError(f"{name} must be {_TYPE_WORDS[kind]}, got {type(value).__name__} {value!r}{hint}")
    items = value if isinstance(value, list) else [value]
    for v in items:
        if meta["choices"] is not None and isinstance(v, str) and v not in meta["choices"]:
            raise ConfigError(f"{name}: unknown value {v!r}{_suggest(v, meta['choices'])}; "
                              f"choose from {list(meta['choices'])}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            problem = _check_range(v, meta)
            if problem:
                raise ConfigError(f"{name} {problem}, got {v!r}")


def _build_section(where, table, raw: dict):
    cls = SECTIONS[table]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{where}: [{table}] unknown key {key!r}{_suggest(key, fields)}; "
                              f"valid keys: {', '.join(fields)}")
        if value is None and fields[key].default is None:  # a dict config may say "not set" explicitly
            continue
        _check_value(where, table, key, value, fields[key].metadata)
    settings = cls(**copy.deepcopy(raw))
    if table == "ingest":
        _check_sources(where, settings, raw, fields)
    return settings


def _check_sources(where, settings, raw, fields):
    """Every ``[ingest]`` key applies to the chosen source."""
    for key in raw:
        sources = fields[key].metadata["sources"]
        if sources and settings.source is not None and settings.source not in sources:
            valid = [k for k, f in fields.items() if not f.metadata["sources"]
                     or settings.source in f.metadata["sources"]]
            raise ConfigError(f"{where}: [ingest] key {key!r} does not apply to source {settings.source!r}"
                              f"{_suggest(key, valid)}; its keys: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def is_domains_config(cfg: dict) -> bool:
    """True for the second study's configs (``kind = "prasad2022"`` in ``[study]`` or ``[pipeline]``)."""
    return any(isinstance(cfg.get(t), dict) and cfg[t].get("kind") == "prasad2022" for t in ("study", "pipeline"))


def _parse(config) -> tuple[dict, Path]:
    """(the config as a dict, the directory relative bases start from)."""
    if isinstance(config, dict):
        return copy.deepcopy(config), Path.cwd()
    path = Path(config)
    if not path.exists():
        raise MissingDataError(f"pipeline config {path} does not exist (see pipelines/ for examples)")
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    cfg["_config"] = str(path)
    return cfg, path.resolve().parent


def _check_tables(cfg: dict) -> None:
    where = cfg.get("_config", "config")
    for key, val in cfg.items():
        if key.startswith("_"):
            continue
        if key not in SECTIONS:
            raise ConfigError(f"{where}: unknown table [{key}]{_suggest(key, SECTIONS)}; "
                              f"expected {list(SECTIONS)}")
        if not isinstance(val, dict):
            raise ConfigError(f"{where}: {key!r} must be a table ([{key}]), got {val!r}")


def read_config(config) -> dict:
    """A pipeline config as a checked dict: a TOML path (parsed with :mod:`tomllib`) or a dict (copied).

    Relative paths in the config are resolved against ``[study] base`` (itself relative to the
    config file's directory; default: that directory, or the working directory for a dict);
    the resolved base is stored as ``cfg["_base"]``.  Every table is checked as
    :func:`load_settings` does.
    """
    cfg, here = _parse(config)
    if is_domains_config(cfg):
        return cfg  # the image-domain study has its own tables (neuroxr.domains.pipeline)
    _check_tables(cfg)
    where = cfg.get("_config", "config")
    for table, raw in cfg.items():
        if not table.startswith("_"):
            _build_section(where, table, raw)
    if "_base" not in cfg:  # a dict already read keeps its base
        cfg["_base"] = str((here / cfg.get("study", {}).get("base", ".")).resolve())
    return cfg


def load_settings(config) -> PipelineSettings:
    """A pipeline config (TOML path, or a dict as :func:`read_config` gives) as :class:`PipelineSettings`."""
    cfg = read_config(config)
    if is_domains_config(cfg):
        raise ConfigError(f"{cfg.get('_config', 'config')}: an image-domain (prasad2022) config; "
                          "run it with neuroxr.domains.pipeline.run_domains_pipeline")
    where = cfg.get("_config", "config")
    tables = {t: _build_section(where, t, raw) for t, raw in cfg.items() if not t.startswith("_")}
    if not cfg.get("select"):  # an empty [select] selects nothing
        tables.pop("select", None)
    return PipelineSettings(study=tables.pop("study", StudySettings()), base=Path(cfg["_base"]), where=where,
                            **tables)
