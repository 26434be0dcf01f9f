"""The second study as one runnable pipeline (``pipelines/prasad2022.toml``).

Steps, every parameter from the config:

1. **domains**: image folders (``[data.domains]``: TinyImageNet, DomainNet's six domains ...),
   CREMI tiles cut from the HDF5 volumes (``[data.cremi]``, :func:`~neuroxr.domains.cremi.tile_cremi`)
   and/or synthetic domains (``[data] synthetic = true``) written to ``STUDY/domains/``;
2. **naturalness** of every domain -> ``STUDY/domains.zarr`` (+ CSV and figure);
3. **train**: one SimCLR AlexNet per domain -> ``STUDY/checkpoints/<domain>.pt``, one Dask task per
   network (a checkpoint trained with the same settings is reused);
4. for every recording of ``[recordings] use`` (``allen-2p``, ``allen-neuropixels``, ``sensorium``),
   in its own study ``STUDY/recordings/<name>/``: **ingest**, neuron **selection**, **extract**
   (every network into ``features/alexnet-simclr.zarr``, one Dask task per network), **score**
   (the ``pls-splits`` metric into ``scores.zarr``), **analyse** (Mann-Whitney tests, norms, SVM,
   distances -> ``domains.zarr``; tables and figures in ``reports/domains/``);
5. **Table 1** (domain, naturalness, slope p, PLS per recording) -> ``STUDY/domains.zarr``,
   ``STUDY/reports/domains/table1.csv``, printed.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import NeuroxrError
from .compare import DOMAINS_REPORT_DIR
from .naturalness import summarize_naturalness
from .plots import plot_domain_report, plot_naturalness, write_domains_index
from .simclr import CONV_LAYERS, load_simclr_checkpoint
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
    "compare": {"n_splits": 100, "test_size": 0.5, "n_components": 25, "seed": 0, "svm_folds": 5,
                "correction": "holm"},
}

_TRAIN_KEYS = ("epochs", "batch_size", "image_size", "lr", "momentum", "weight_decay", "temperature",
               "embedding_dim", "hidden_dim", "vf_prob", "plateau_factor", "plateau_patience",
               "plateau_threshold", "plateau_every", "max_steps", "seed", "num_workers", "device",
               "checkpoint_every", "resize")
_COMPARE_KEYS = ("layers", "areas", "n_splits", "test_size", "n_components", "scale", "seed", "trial_split",
                 "pool", "svm_folds", "svm_standardize", "use_selection", "batch_size", "backend", "figures",
                 "correction", "pls", "score_layers", "svm_max_iter")
_RECORDING_NAMES = ("allen-2p", "allen-neuropixels", "sensorium", "simulated")


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


def _log_default(msg):
    import sys

    print(f"neuroxr: {msg}", file=sys.stderr, flush=True)


def run_domains_pipeline(config: dict, study=None, progress: bool = True, log=None) -> dict:
    """Run domains -> naturalness -> SimCLR training -> per recording: ingest, extract, score, analyse -> Table 1.

    Parameters
    ----------
    config : dict
        The parsed TOML (sections ``pipeline``, ``data``, ``synthetic``, ``recordings``, ``select``,
        ``naturalness``, ``train``, ``compare``; see ``pipelines/prasad2022.toml``).  Without
        ``[recordings]`` the study runs on one simulated recording (``[simulate]``).
    study : path, optional
        Study directory; default ``config["pipeline"]["study"]``.  Relative paths in the config
        (study, domain folders, recordings) are relative to the working directory.

    Returns
    -------
    dict
        ``study``, ``domains`` (name -> folder), ``naturalness`` (DataFrame), ``checkpoints``
        (name -> path), ``recordings`` (name -> dict of the recording's tables and study dir),
        ``table1`` (DataFrame), ``report`` (``{"index": path}``), ``files``.
    """
    from .study import (
        MODEL,
        RECORDINGS_DIR,
        analyse_recording,
        build_table1,
        extract_networks,
        format_table1,
        ingest_recording,
        print_table,
        score_recording,
        train_networks,
        weights_of,
        write_naturalness_store,
    )

    log = log or _log_default
    pipe = config.get("pipeline") or {}
    st_cfg = _section(config, "study")
    st_cfg.pop("kind", None)
    study = Path(study or pipe.get("study") or st_cfg.get("dir") or st_cfg.get("path") or "")
    if not str(study) or str(study) == ".":
        raise NeuroxrError("pipeline config: no study directory; set [pipeline] study = \"DIR\" or pass --study")
    study.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    cmp_cfg = _section(config, "compare")
    _unknown(cmp_cfg, _COMPARE_KEYS, "compare")
    if cmp_cfg.get("pls", "exact") not in ("exact", "scores"):
        raise NeuroxrError(f"pipeline config [compare] pls = {cmp_cfg['pls']!r}: use \"exact\" (the paper's PLS on "
                           "the conv activations) or \"scores\" (scores.zarr's pls_split_r)")
    recordings = _recordings(config)

    domains = _prepare_domains(config, study)

    # naturalness
    nat_cfg = _section(config, "naturalness")
    report_dir = study.joinpath(*DOMAINS_REPORT_DIR)
    report_dir.mkdir(parents=True, exist_ok=True)
    nat, slopes = summarize_naturalness(domains, return_slopes=True, **nat_cfg)
    nat.to_csv(report_dir / "naturalness.csv", index=False)
    files["naturalness"] = report_dir / "naturalness.csv"
    files["fig_naturalness"] = plot_naturalness(nat, slopes, report_dir / "naturalness.png")
    naturalness = dict(zip(nat["domain"], nat["naturalness"]))
    log("naturalness: " + ", ".join(f"{d} {v:.3f}" for d, v in naturalness.items()))

    # train: one Dask task per network
    tr = _section(config, "train")
    _unknown(tr, _TRAIN_KEYS, "train")
    want = {k: v for k, v in tr.items() if k in _TRAIN_KEYS}

    def reuse(path, d):
        old = load_simclr_checkpoint(path).get("settings") or {}
        return _same_training(old, want) and str(old.get("domain_dir")) == str(d)

    checkpoints = train_networks(domains, study / "checkpoints", tr, reuse, log=log)
    weights = weights_of(checkpoints)
    networks = _networks_table(checkpoints, weights, MODEL)
    networks.to_csv(report_dir / "networks.csv", index=False)
    files["networks"] = report_dir / "networks.csv"
    write_naturalness_store(study, nat, slopes, networks)

    # every recording in its own study
    layers = list(cmp_cfg.get("layers") or CONV_LAYERS)
    pls = {k: cmp_cfg[k] for k in ("n_splits", "test_size", "n_components", "seed") if k in cmp_cfg}
    pls["kind"] = "random"
    if cmp_cfg.get("score_layers", "conv") == "conv":  # the study's layers only (the rest NaN)
        from .study import CONV_LAYER_NAMES

        pls["layer_names"] = sorted(n for n, c in CONV_LAYER_NAMES.items() if c in layers)
    elif cmp_cfg.get("score_layers") != "all":
        raise NeuroxrError(f"pipeline config [compare] score_layers = {cmp_cfg['score_layers']!r}: use \"conv\" "
                           "(conv1..conv5 after ReLU, the study's) or \"all\" (every layer of the features store)")
    per_rec, summaries, filters = {}, {}, {}
    for name, spec in recordings.items():
        rdir = study / RECORDINGS_DIR / name
        ingest_recording(name, spec, rdir, log=log)
        _select(config, rdir, log)
        exact_pls = cmp_cfg.get("pls", "exact") == "exact"
        acts, filters, exact = extract_networks(rdir, checkpoints, layers=layers,
                                                batch_size=int(cmp_cfg.get("batch_size", 64)), log=log,
                                                pls=pls if exact_pls else None)
        score_recording(rdir, pls, log=log)
        res = analyse_recording(rdir, weights, acts, naturalness, {**cmp_cfg, "_exact": exact})
        rfiles = _write_recording_report(rdir, res, filters, networks, cmp_cfg)
        files.update({f"{name}:{k}": v for k, v in rfiles.items()})
        if cmp_cfg.get("figures", True):  # the recording's norms and distances beside Table 1
            from .plots import plot_distances, plot_norm_distributions

            files[f"fig_norm_distributions_{name}"] = plot_norm_distributions(
                res["norms"], report_dir / f"norm_distributions_{name}.png")
            if len(res["distances"]):
                files[f"fig_distances_{name}"] = plot_distances(res["distances"], report_dir / f"distances_{name}.png")
        per_rec[name] = {**res, "study": rdir, "files": rfiles}
        summaries[name] = res["summary"]
        log(f"{name}: scored and analysed -> {rdir}")

    table1 = build_table1(nat, summaries)
    table1.to_csv(report_dir / "table1.csv", index=False)
    files["table1"] = report_dir / "table1.csv"
    files["domains_store"] = write_naturalness_store(study, nat, slopes, networks, table1)
    text = format_table1(table1)
    (report_dir / "table1.txt").write_text(text + "\n")
    print_table(text)
    if filters and cmp_cfg.get("figures", True):
        files.update(plot_domain_report(report_dir, filters=filters))
    files["index"] = write_domains_index(report_dir, files, table1=table1, networks=networks)
    return {"study": study, "domains": domains, "naturalness": nat, "checkpoints": checkpoints,
            "recordings": per_rec, "table1": table1, "report": {"index": files["index"]}, "files": files,
            "index": files["index"]}


def _recordings(config: dict) -> dict:
    """name -> spec of the recordings to score (``[recordings] use``), or one simulated recording."""
    rec = dict(config.get("recordings") or {})
    if not rec:
        sim = _section(config, "simulate")
        return {"simulated": {"source": "simulate", **sim}}
    use = rec.pop("use", None)
    specs = {k: v for k, v in rec.items() if isinstance(v, dict)}
    bad = sorted(set(specs) - set(_RECORDING_NAMES))
    if bad:
        raise NeuroxrError(f"pipeline config [recordings]: unknown recordings {bad}; use {list(_RECORDING_NAMES)}")
    use = list(specs) if use is None else [use] if isinstance(use, str) else list(use)
    missing = [u for u in use if u not in specs and u not in ("allen-neuropixels", "sensorium")]
    if missing:
        raise NeuroxrError(f"pipeline config [recordings] use = {use}: no [recordings.{missing[0]}] section; "
                           "add one saying where the recording is")
    if not use:
        raise NeuroxrError("pipeline config [recordings] use = []: name at least one of "
                           "allen-2p, allen-neuropixels, sensorium")
    return {u: dict(specs.get(u) or {}) for u in use}


def _select(config: dict, rdir: Path, log) -> None:
    """[select] criteria on one recording, those it cannot support dropped (logged)."""
    from .. import schema as S
    from ..io.store import open_dataset
    from ..responses import select_study

    sel = dict(config.get("select") or {})
    if not sel:
        return
    ds = open_dataset(rdir / S.RESPONSES_STORE)
    if sel.get("min_reliability") is not None and S.TRIALS not in ds and "splithalf_r" not in ds.variables:
        log(f"{rdir.name}: no trials, so no split-half reliability; min_reliability ignored")
        sel.pop("min_reliability")
    for key, var in (("exclude_running", "p_run_mod"), ("image_selective", "p_image")):
        if sel.get(key) and var not in ds.variables:
            log(f"{rdir.name}: no {var}; {key} ignored")
            sel.pop(key)
    if any(v not in (None, False) for v in sel.values()):
        select_study(rdir, **sel)


def _networks_table(checkpoints: dict, weights: dict, model: str) -> pd.DataFrame:
    from ..mapping.tree import label_variants

    rows = []
    for d, p in checkpoints.items():
        ck = load_simclr_checkpoint(p)
        hist = ck.get("loss_history") or []
        rows.append({"domain": d, "checkpoint": str(p), "weights": weights[d],
                     "variant": label_variants([model], [weights[d]])[0], "epochs": ck.get("epochs"),
                     "steps": ck.get("steps"), "final_loss": float(hist[-1]) if hist else float("nan")})
    return pd.DataFrame(rows)


def _write_recording_report(rdir: Path, res: dict, filters: dict, networks: pd.DataFrame, cmp_cfg: dict) -> dict:
    out = rdir.joinpath(*DOMAINS_REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key in ("predictivity", "summary", "mannwhitney", "norms", "svm", "distances", "distances_per_image"):
        p = out / f"{'predictivity_summary' if key == 'summary' else key}.csv"
        res[key].to_csv(p, index=False)
        files[key] = p
    if cmp_cfg.get("figures", True):
        files.update(plot_domain_report(out, summary=res["summary"], norms=res["norms"], filters=filters,
                                        distances=res["distances"], svm=res["svm"]))
    files["index"] = write_domains_index(out, files, summary=res["summary"], svm=res["svm"],
                                         mannwhitney=res["mannwhitney"], networks=networks)
    return files


def _prepare_domains(config: dict, study: Path) -> dict:
    """The domains' image folders (name -> folder): listed folders, CREMI tiles, synthetic ones."""
    data = _section(config, "data")
    _unknown(data, ("synthetic", "domains", "cremi"), "data")
    domains = {str(k): Path(v) for k, v in (data.get("domains") or {}).items()}
    for k, d in domains.items():
        if not d.is_dir():
            raise NeuroxrError(f"pipeline config [data.domains] {k} = {str(d)!r}: not a folder (relative paths are "
                               "relative to the working directory); point it at the domain's images")
    cremi = data.get("cremi")
    if cremi:
        from .cremi import tile_cremi

        cremi = dict(cremi)
        _unknown(cremi, ("files", "out_dir", "key", "tile", "per_slice", "name"), "data.cremi")
        name = str(cremi.pop("name", "cremi"))
        out = study / cremi.pop("out_dir", f"domains/{name}")
        if not (out.is_dir() and any(out.iterdir())):
            tile_cremi(cremi.pop("files"), out, **{k: v for k, v in cremi.items() if k != "files"})
        domains[name] = out
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
