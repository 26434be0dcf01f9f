"""The domain study (Prasad et al. 2022): ``naturalness``, ``make-domains``, ``tile-cremi``, ``train-ssl``, ``domains``.

The handlers import the domain modules (scipy, scikit-image, torch, lightly) when they run, so
that building the parser (every ``neuroxr`` command) does not.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..features.progress import plural
from ._common import add_overwrite_arg
from ._features import CommandLineError


def register(sub) -> None:
    """Add ``naturalness``, ``make-domains``, ``tile-cremi``, ``train-ssl`` and ``domains`` to the subcommands."""
    _register_naturalness(sub)
    _register_make_domains(sub)
    _register_tile_cremi(sub)
    _register_train_ssl(sub)
    _register_domains(sub)


def _register_naturalness(sub) -> None:
    p = sub.add_parser(
        "naturalness", help="spectral slope and naturalness of image domains (folders of images)",
        description="Fit the radially averaged Fourier power spectrum of each domain's images (centre crop, "
                    "grayscale) to A/f^p; naturalness = -log|mean p - 2|. Prints the table, writes it with "
                    "--out and a figure next to it.")
    p.add_argument("domains", nargs="+", metavar="DOMAIN_DIR", help="folders of images, one per domain")
    p.add_argument("--out", metavar="CSV", default=None,
                   help="write the table (domain, n_images, p_mean, p_sd, naturalness) here; the figure goes "
                        "to the same name with .png")
    p.add_argument("--n-samples", type=int, default=1000, metavar="N", help="random images per domain (default 1000)")
    p.add_argument("--crop", type=int, default=256, metavar="PX", help="centre crop side (default 256)")
    p.add_argument("--fit", default="loglog", choices=["loglog", "linear"],
                   help="least squares in log-log space (default) or curve_fit in linear space (domain_rep)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image sampling (default 0)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_naturalness)


def _register_make_domains(sub) -> None:
    p = sub.add_parser(
        "make-domains", help="write synthetic image domains (1/f^p spectra, line drawings) as image folders",
        description="Write synthetic domains as folders of PNG files: spectral-p1, spectral-p2, spectral-p3 "
                    "(random-phase images with power 1/f^p) and lines (line drawings).")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder that gets one sub-folder of PNG files per domain")
    p.add_argument("--n-images", type=int, default=256, metavar="N", help="images per domain (default 256)")
    p.add_argument("--size", type=int, default=64, metavar="PX", help="image side (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image generator (default 0)")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_make_domains)


def _register_tile_cremi(sub) -> None:
    p = sub.add_parser(
        "tile-cremi", help="cut CREMI HDF5 volumes into 125 x 125 px tiles (the CREMI domain)",
        description="Every z slice of each file's raw volume (volumes/raw) is cut into a grid of non-overlapping "
                    "125 x 125 px tiles, 100 per 1250 x 1250 slice, written as PNG files to OUT_DIR (a domain "
                    "folder for `neuroxr naturalness` and `neuroxr train-ssl`, which resizes to 64 x 64).")
    p.add_argument("files", nargs="+", metavar="CREMI_HDF", help="CREMI files (sample_A_20160501.hdf ...)")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="folder that gets the tiles")
    p.add_argument("--key", default="volumes/raw", help="HDF5 dataset of the raw volume (default volumes/raw)")
    p.add_argument("--tile", type=int, default=125, metavar="PX", help="tile side (default 125)")
    p.add_argument("--per-slice", type=int, default=100, metavar="N", help="tiles per z slice (default 100)")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_tile_cremi)


def _register_train_ssl(sub) -> None:
    p = sub.add_parser(
        "train-ssl", help="train a SimCLR AlexNet on one image domain (lightly; CPU or GPU)",
        description="SimCLR (NT-Xent at temperature 0.1, 2-layer projection head to 128, LARS lr 4.8 momentum "
                    "0.9 weight decay 1e-6, LR halved on plateau) with an AlexNet backbone on the images of "
                    "DOMAIN_DIR; augmentations: random resized crop, horizontal and vertical flips, random "
                    "grayscale. Writes a checkpoint that `neuroxr extract --model alexnet-simclr --weights CKPT` "
                    "and `neuroxr domains` load.")
    p.add_argument("domain_dir", metavar="DOMAIN_DIR", help="folder of the domain's images")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--epochs", type=int, default=600, help="training epochs (default 600)")
    p.add_argument("--batch-size", type=int, default=4096, help="images per optimiser step (default 4096)")
    p.add_argument("--image-size", type=int, default=64, metavar="PX", help="side of the augmented views (default 64)")
    p.add_argument("--lr", type=float, default=4.8, help="LARS learning rate (default 4.8)")
    p.add_argument("--hidden-dim", type=int, default=9216, help="projection head hidden width (default 9216)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N optimiser steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and augmentations (default 0)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--domain", default=None, help="domain name recorded in the checkpoint (default: folder name)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_train_ssl)


def _register_domains(sub) -> None:
    p = sub.add_parser(
        "domains", help="compare networks trained on different image domains against a study's neurons",
        description="For each network (--model alexnet-simclr@CKPT): PLS consistency of conv1-conv5 (after ReLU) "
                    "per area over random 50/50 image splits, Mann-Whitney U between domains, activation norms, "
                    "a linear SVM telling the networks apart, activation distances. Writes CSV tables and PNG "
                    "figures to STUDY/reports/domains/ (or --out).")
    p.add_argument("study", help="study directory")
    p.add_argument("--model", dest="models", action="append", required=True, metavar="alexnet-simclr@CKPT",
                   help="a network (repeatable; at least two)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default STUDY/reports/domains)")
    p.add_argument("--n-splits", type=int, default=100, help="random image splits (default 100)")
    p.add_argument("--test-size", type=float, default=0.5, help="fraction of images held out per split (default 0.5)")
    p.add_argument("--n-components", type=int, default=25, help="PLS components (default 25)")
    p.add_argument("--area", dest="areas", action="append", metavar="AREA", help="areas (repeatable; default all)")
    p.add_argument("--layer", dest="layers", action="append", choices=["conv1", "conv2", "conv3", "conv4", "conv5"],
                   help="layers (repeatable; default conv1-conv5)")
    p.add_argument("--pool", default="neuron", choices=["neuron", "specimen"],
                   help="consistency per neuron (default) or pooled per specimen (container) as domain_rep")
    p.add_argument("--svm-folds", type=int, default=5, help="cross-validation folds of the SVM (default 5)")
    p.add_argument("--naturalness", default=None, metavar="CSV",
                   help="table from `neuroxr naturalness` (default: computed from the domain folders "
                        "recorded in the checkpoints, when they exist)")
    p.add_argument("--all-neurons", dest="use_selection", action="store_false",
                   help="ignore the study's neuron selection")
    p.add_argument("--backend", default="zoo", choices=["zoo", "direct"],
                   help="activations through the zoo as `neuroxr extract` (default) or torchvision directly")
    p.add_argument("--seed", type=int, default=0, help="seed of the image splits (default 0)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write the tables only")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_domains)


def _naturalness(args) -> int:
    from ..domains.naturalness import summarize_naturalness
    from ..domains.plots import plot_naturalness

    table, slopes = summarize_naturalness(args.domains, n_samples=args.n_samples, crop=args.crop, fit=args.fit,
                                          seed=args.seed, return_slopes=True)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        fig = plot_naturalness(table, slopes, out.with_suffix(".png"))
        print(f"wrote {out} and {fig}", file=sys.stderr)
    return 0


def _make_domains(args) -> int:
    from ..domains.synthetic import make_synthetic_domains

    dirs = make_synthetic_domains(args.out_dir, n_images=args.n_images, size=args.size, seed=args.seed,
                                  overwrite=args.overwrite)
    for name, d in dirs.items():
        print(f"{name}\t{d}")
    return 0


def _tile_cremi(args) -> int:
    from ..domains.cremi import tile_cremi

    out = tile_cremi(args.files, args.out, key=args.key, tile=args.tile, per_slice=args.per_slice,
                     overwrite=args.overwrite)
    print(f"{out}: {plural(len(list(out.glob('*.png'))), 'tile')}")
    return 0


def _train_ssl(args) -> int:
    from ..domains.simclr import train_simclr

    ckpt = train_simclr(args.domain_dir, args.out, epochs=args.epochs, batch_size=args.batch_size,
                        image_size=args.image_size, lr=args.lr, hidden_dim=args.hidden_dim,
                        max_steps=args.max_steps, seed=args.seed, num_workers=args.num_workers,
                        device=args.device, domain=args.domain, progress=args.progress, overwrite=args.overwrite)
    last = ckpt["loss_history"][-1] if ckpt["loss_history"] else float("nan")
    print(f"{args.out}: domain {ckpt['domain']}, {plural(ckpt['epochs'], 'epoch')}, {plural(ckpt['steps'], 'step')}, "
          f"final loss {last:.4f}")
    return 0


def _domains(args) -> int:
    from ..domains.compare import compare_domains

    if len(args.models) < 2:
        raise CommandLineError("give at least two networks: --model alexnet-simclr@CKPT_A --model alexnet-simclr@CKPT_B")
    kw = {}
    if args.layers:
        kw["layers"] = tuple(args.layers)
    res = compare_domains(args.study, args.models, out=args.out, n_splits=args.n_splits, test_size=args.test_size,
                          n_components=args.n_components, areas=args.areas, pool=args.pool,
                          svm_folds=args.svm_folds, naturalness=args.naturalness, use_selection=args.use_selection,
                          backend=args.backend, seed=args.seed, figures=args.figures, progress=args.progress, **kw)
    summ = res["summary"]
    best = summ.loc[summ.groupby(["model", "area"])["mean"].idxmax()] if len(summ) else summ
    cols = [c for c in ("model", "area", "layer", "mean", "sem", "naturalness") if c in best]
    print(best[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    svm = res["svm"]
    print(svm[svm["fold"] == "mean"][["layer", "accuracy", "precision", "recall", "chance"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {plural(len(res['files']), 'file')} to {res['out']}", file=sys.stderr)
    return 0
