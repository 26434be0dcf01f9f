"""The second study as one runnable pipeline (``pipelines/prasad2022.toml``).

Steps, every parameter from the config:

1. **domains**: real image folders (``[data] domains = {name = "dir"}``) or synthetic ones
   (``[data] synthetic = true``, written by :func:`~neuroxr.domains.synthetic.make_synthetic_domains`
   to ``STUDY/domains/``);
2. **study**: the study's ``stimuli.zarr`` / ``responses.zarr``; with ``[study] simulate = true``
   and no responses yet, the built-in simulated observatory (:func:`neuroxr.simulate.simulate_study`);
   optional neuron selection (``[select]``);
3. **naturalness** of every domain -> ``STUDY/reports/domains/naturalness.csv`` + figure;
4. **train**: one SimCLR AlexNet per domain -> ``STUDY/checkpoints/<domain>.pt`` (an existing
   checkpoint trained with the same settings is reused);
5. **extract + compare**: :func:`~neuroxr.domains.compare.compare_domains` -> tables and figures
   under ``STUDY/reports/domains/``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import NeuroxrError
from ..responses import select_study
from .compare import DOMAINS_REPORT_DIR, compare_domains
from .naturalness import summarize_naturalness
from .plots import plot_naturalness, write_domains_index
from .simclr import load_simclr_checkpoint, train_simclr
from .synthetic import DEFAULT_DOMAINS, make_synthetic_domains

__all__ = ["run_domains_pipeline", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = {
    "data": {"synthetic": True, "domains": {}},
    "synthetic": {"n_images": 256, "size": 64, "seed": 0},
    "study": {"simulate": True},
    "simulate": {"seed": 0, "n_images": 118, "neurons_per_area": 200, "n_trials": 50, "image_size": 64},
    "select": {},
    "naturalness": {"n_samples": 1000, "crop": 256, "fit": "loglog"},
    "train": {"epochs": 600, "batch_size": 4096, "image_size": 64, "seed": 0},
    "compare": {"n_splits": 100, "test_size": 0.5, "n_components": 25, "seed": 0, "svm_folds": 5},
}

_TRAIN_KEYS = ("epochs", "batch_size", "image_size", "lr", "momentum", "weight_decay", "temperature",
               "embedding_dim", "hidden_dim", "vf_prob", "plateau_factor", "plateau_patience",
               "plateau_threshold", "plateau_every", "max_steps", "seed", "num_workers", "device",
               "checkpoint_every")
_COMPARE_KEYS = ("layers", "areas", "n_splits", "test_size", "n_components", "scale", "seed", "trial_split",
                 "pool", "svm_folds", "svm_standardize", "use_selection", "batch_size", "backend", "figures")


def _section(config, name):
    base = dict(DEFAULT_CONFIG.get(name, {}))
    base.update(config.get(name) or {})
    return base


def _unknown(section: dict, allowed, name):
    bad = sorted(set(section) - set(allowed))
    if bad:
        raise NeuroxrError(f"pipeline config [{name}]: unknown keys {bad}; allowed: {sorted(allowed)}")


def _same_training(ckpt_settings: dict, want: dict) -> bool:
    keys = [k for k in want if k not in ("device", "num_workers", "checkpoint_every")]
    return all(ckpt_settings.get(k) == want[k] for k in keys if k in ckpt_settings)


def run_domains_pipeline(config: dict, study=None, progress: bool = True) -> dict:
    """Run synthetic/real domains -> naturalness -> SimCLR training -> extract -> domain report.

    Parameters
    ----------
    config : dict
        The parsed TOML (sections ``pipeline``, ``data``, ``synthetic``, ``study``,
        ``simulate``, ``select``, ``naturalness``, ``train``, ``compare``; see
        ``pipelines/prasad2022.toml``).
    study : path, optional
        Study directory; default ``config["pipeline"]["study"]`` (or ``config["study"]["dir"]``).
        Relative paths in the config (study, domain folders) are relative to the working
        directory.

    Returns
    -------
    dict
        ``study``, ``domains`` (name -> folder), ``naturalness`` (DataFrame), ``checkpoints``
        (name -> path), ``report`` (the :func:`compare_domains` result), ``files``.
    """
    pipe = config.get("pipeline") or {}
    st_cfg = _section(config, "study")
    st_cfg.pop("kind", None)
    study = Path(study or pipe.get("study") or st_cfg.get("dir") or st_cfg.get("path") or "")
    if not str(study) or str(study) == ".":
        raise NeuroxrError("pipeline config: no study directory; set [pipeline] study = \"DIR\" or pass --study")
    study.mkdir(parents=True, exist_ok=True)
    files: dict = {}

    domains = _prepare_domains(config, study)
    _prepare_study(config, study, st_cfg)

    # 3. naturalness
    nat_cfg = _section(config, "naturalness")
    report_dir = study.joinpath(*DOMAINS_REPORT_DIR)
    report_dir.mkdir(parents=True, exist_ok=True)
    nat, slopes = summarize_naturalness(domains, return_slopes=True, **nat_cfg)
    nat.to_csv(report_dir / "naturalness.csv", index=False)
    files["naturalness"] = report_dir / "naturalness.csv"
    files["fig_naturalness"] = plot_naturalness(nat, slopes, report_dir / "naturalness.png")

    # 4. train
    checkpoints = _train_domains(config, study, domains, progress)

    # 5. extract + compare
    cmp_cfg = _section(config, "compare")
    _unknown(cmp_cfg, _COMPARE_KEYS, "compare")
    report = compare_domains(study, checkpoints, naturalness=nat, progress=progress, **cmp_cfg)
    files.update(report["files"])
    if "index" in report["files"]:  # the index again, with the naturalness figure written above
        files["index"] = write_domains_index(report["out"], files, summary=report["summary"], svm=report["svm"],
                                             mannwhitney=report["mannwhitney"], networks=report["networks"])
        report["index"] = files["index"]
    return {"study": study, "domains": domains, "naturalness": nat, "checkpoints": checkpoints,
            "report": report, "files": files, "index": files.get("index")}


def _prepare_domains(config: dict, study: Path) -> dict:
    """Step 1: the domains' image folders (name -> folder), writing the synthetic ones when asked."""
    data = _section(config, "data")
    domains = {str(k): Path(v) for k, v in (data.get("domains") or {}).items()}
    if data.get("synthetic", not domains):
        syn = _section(config, "synthetic")
        specs = syn.pop("domains", None) or DEFAULT_DOMAINS
        _unknown(syn, ("n_images", "size", "seed", "out_dir", "overwrite"), "synthetic")
        out_dir = study / syn.pop("out_dir", "domains")
        overwrite = bool(syn.pop("overwrite", False))
        todo = {k: v for k, v in specs.items()
                if overwrite or not ((out_dir / k).is_dir() and any((out_dir / k).iterdir()))}
        if todo:
            make_synthetic_domains(out_dir, domains=todo, overwrite=overwrite, **syn)
        for k in specs:
            domains.setdefault(str(k), out_dir / k)
    if len(domains) < 2:
        raise NeuroxrError(f"pipeline config [data]: need at least two domains, got {sorted(domains)}; "
                           "set synthetic = true or list folders in [data.domains]")
    return domains


def _prepare_study(config: dict, study: Path, st_cfg: dict) -> None:
    """Step 2: the study's responses (simulated when asked and absent) and the neuron selection."""
    if not (study / "responses.zarr").exists():
        if not st_cfg.get("simulate", False):
            raise NeuroxrError(f"{study}: no responses.zarr; ingest a study first or set [study] simulate = true")
        from ..simulate import simulate_study  # runs a network: torch only when simulating

        simulate_study(study, **_section(config, "simulate"))
    sel = _section(config, "select")
    if sel:
        select_study(study, **sel)


def _train_domains(config: dict, study: Path, domains: dict, progress: bool) -> dict:
    """Step 4: one SimCLR checkpoint per domain (name -> path), reusing those trained with the same settings."""
    tr = _section(config, "train")
    _unknown(tr, _TRAIN_KEYS, "train")
    ckpt_dir = study / "checkpoints"
    checkpoints = {}
    for name, d in domains.items():
        path = ckpt_dir / f"{name}.pt"
        if path.exists():
            old = load_simclr_checkpoint(path).get("settings") or {}
            want = {k: v for k, v in tr.items() if k in _TRAIN_KEYS}
            if _same_training(old, want) and str(old.get("domain_dir")) == str(d):
                checkpoints[name] = path
                continue
        train_simclr(d, path, domain=name, progress=progress, overwrite=True, **tr)
        checkpoints[name] = path
    return checkpoints
