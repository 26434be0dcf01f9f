"""``neuroxr ingest arrays|rdms``, ``select``, ``info`` and ``simulate``: argument parsing only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import schema as S
from ._common import add_cluster_args, add_overwrite_arg, subcommand_group


def _ingest_arrays(args):
    from ..io.ingest import ingest_arrays

    out = ingest_arrays(
        args.study, images=args.images, responses=args.responses, trials=args.trials,
        neurons=args.neurons, area=args.area, cre_line=args.cre_line, depth_um=args.depth_um,
        neuron_ids=args.neuron_ids, overwrite=args.overwrite, allow_unknown_area=args.allow_unknown_area,
    )
    _print_written(out)


def _ingest_rdms(args):
    from ..exchange import ingest_rsatoolbox_rdms, is_rsatoolbox_file
    from ..io.ingest import ingest_rdms

    if is_rsatoolbox_file(args.rdms):  # rsatoolbox's RDMs.save (hdf5, pkl)
        out = ingest_rsatoolbox_rdms(args.study, args.rdms, sites=args.sites, images=args.images,
                                     overwrite=args.overwrite, allow_pickle=args.allow_pickle)
    else:
        out = ingest_rdms(args.study, args.rdms, images=args.images, sites=args.sites, overwrite=args.overwrite)
    _print_written(out)


def _print_written(out):
    from ..io.store import open_dataset

    for path in out.values():
        ds = open_dataset(path)
        dims = ", ".join(f"{k} {v}" for k, v in ds.sizes.items())
        print(f"wrote {path}: {', '.join(map(str, ds.data_vars))} ({dims})")


def describe_criteria(args) -> str:
    """The selection criteria of ``neuroxr select`` in words."""
    parts = []
    if args.min_reliability is not None:
        parts.append(f"split-half reliability >= {args.min_reliability:g} ({args.n_splits} splits, seed {args.seed})")
    if args.cre_lines not in (None, "", "all"):
        parts.append("excitatory cre lines" if args.cre_lines == "excitatory" else f"cre lines {args.cre_lines}")
    if args.exclude_running:
        parts.append("not running-modulated (p_run_mod > 0.05 or unknown)")
    if args.image_selective:
        parts.append("image-selective (p_image < 0.05)")
    return "; ".join(parts) or "none (every neuron)"


def format_selection(selected: np.ndarray, area: np.ndarray | None) -> list[str]:
    """Lines of a per-area table: area, selected, of, percentage."""
    n, k = selected.size, int(selected.sum())
    rows = [("all", k, n)]
    if area is not None:
        names = [a for a in S.AREAS if a in set(area.tolist())] + sorted(set(area.tolist()) - set(S.AREAS))
        rows = [(a, int(selected[area == a].sum()), int((area == a).sum())) for a in names] + rows
    width = max(len(str(r[0])) for r in rows)
    return [f"  {name:<{width}}  {got:>6} of {of:<6} ({100 * got / max(of, 1):5.1f}%)" for name, got, of in rows]


def _select(args):
    from ..cluster import client_from_args
    from ..io.store import open_dataset
    from ..responses import select_study

    with client_from_args(args):
        sel = select_study(
            args.study, min_reliability=args.min_reliability, cre_lines=args.cre_lines,
            exclude_running=args.exclude_running, image_selective=args.image_selective,
            n_splits=args.n_splits, seed=args.seed, recompute=args.recompute,
        )
    store = Path(args.study) / S.RESPONSES_STORE
    ds = open_dataset(store)
    area = np.asarray(ds["area"].values).astype(str) if "area" in ds.coords else None
    print(f"selected {int(sel.sum())} of {sel.size} neurons; criteria: {describe_criteria(args)}")
    print("\n".join(format_selection(np.asarray(sel.values, dtype=bool), area)))
    print(f"stored as the variable 'selected' (neuron) in {store}")


def _info(args):
    from ..info import describe_study, format_study_description
    from ..study import open_study

    open_study(args.study)  # clear error when the directory is missing
    info = describe_study(args.study)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_study_description(info))


def _simulate(args):
    from ..simulate import simulate_study  # imports torch: only when simulating

    out = simulate_study(
        args.study, seed=args.seed, n_images=args.n_images, neurons_per_area=args.neurons_per_area,
        n_trials=args.n_trials, image_size=args.image_size, model=args.model, overwrite=args.overwrite,
    )
    _print_written(out)


def register(sub) -> None:
    ingest = subcommand_group(sub, "ingest", "ingest data into a study: your own arrays, neural RDMs, the Allen cache")

    p = ingest.add_parser(
        "arrays", help="your own arrays: .npy, .npz:KEY, netCDF, xarray Zarr, BrainIO assemblies",
        description="Ingest responses (image x neuron, samples first), optional trials (image x neuron x "
                    "trial, NaN-padded) and images (image x y x x, or RGB) into STUDY/responses.zarr and "
                    "STUDY/stimuli.zarr. Labelled files (netCDF, Zarr, BrainIO presentation x neuroid) are "
                    "transposed by their dim names.",
    )
    p.add_argument("study", help="study directory (created when missing)")
    p.add_argument("--images", metavar="FILE[:KEY]", help="images (image, y, x); optional")
    p.add_argument("--responses", metavar="FILE[:KEY]", help="mean responses (image, neuron)")
    p.add_argument("--trials", metavar="FILE[:KEY]", help="trial responses (image, neuron, trial), NaN-padded")
    p.add_argument("--neurons", metavar="META.csv", help="neuron metadata: one row per neuron (area, cre_line, depth_um, ...)")
    p.add_argument("--neuron-ids", metavar="FILE[:KEY]", help="integer neuron ids, one per neuron")
    p.add_argument("--area", help="area of every neuron, e.g. VISp")
    p.add_argument("--cre-line", help="cre line of every neuron, e.g. Cux2-CreERT2")
    p.add_argument("--depth-um", type=float, help="imaging depth of every neuron (um, finite and >= 0)")
    p.add_argument("--allow-unknown-area", action="store_true",
                   help="keep area names outside the known list (VISp, VISl, ..., V1, V4, IT; see "
                        "neuroxr.io.builders.KNOWN_AREAS) instead of refusing them as typos")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_ingest_arrays)

    p = ingest.add_parser(
        "rdms", help="neural RDMs: CSV of upper triangles (one column per site), a (site, image, image) array "
                     "or an rsatoolbox RDMs file (.hdf5, .pkl)",
        description="Ingest neural RDMs into STUDY/rdms.zarr. CSV: one column per site, rows = the upper "
                    "triangle above the diagonal, row-major ((0,1), (0,2), ..., (1,2), ...). rsatoolbox files "
                    "(RDMs.save, hdf5 or pkl): sites from the 'site' or 'area' RDM descriptor, image ids from "
                    "the 'image' pattern descriptor.",
    )
    p.add_argument("study", help="study directory (created when missing)")
    p.add_argument("--rdms", required=True, metavar="RDMS.csv|FILE[:KEY]",
                   help="CSV of upper triangles (one column per site) or a (site, image, image) array file")
    p.add_argument("--images", metavar="FILE[:KEY]", help="the stimuli (image, y, x), written to stimuli.zarr")
    p.add_argument("--sites", metavar="A,B,...", help="site names (default: CSV column names)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read an rsatoolbox .pkl file (a pickle runs code when loaded: only files you trust)")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_ingest_rdms)

    p = sub.add_parser(
        "select", help="compute split-half reliability and select neurons (stored in responses.zarr)",
        description="Compute split-half reliability from trials (when missing) and store the selection as "
                    "the bool variable 'selected' (neuron) in STUDY/responses.zarr.",
    )
    p.add_argument("study", help="study directory")
    p.add_argument("--min-reliability", type=float, default=None, metavar="R",
                   help="keep neurons with split-half reliability >= R (e.g. 0.8)")
    p.add_argument("--cre-lines", default=None, metavar="excitatory|A,B",
                   help="'excitatory' or a comma-separated list of cre lines (Cux2,Rorb)")
    p.add_argument("--exclude-running", action="store_true", help="drop running-modulated neurons (p_run_mod <= 0.05)")
    p.add_argument("--image-selective", action="store_true", help="keep image-selective neurons (p_image < 0.05)")
    p.add_argument("--n-splits", type=int, default=100, help="random split halves (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    p.add_argument("--recompute", action="store_true", help="recompute splithalf_r even when stored")
    add_cluster_args(p)
    p.set_defaults(func=_select)

    p = sub.add_parser("info", help="what is in a study: images, neurons by area and cre line, reliability, stores")
    p.add_argument("study", help="study directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "simulate", help="the built-in simulated observatory (deterministic by seed)",
        description="Write a simulated study: natural-like images and neurons in six areas driven by the "
                    "layers of a small seeded random-weight network (VISp by early layers ... VISam by late).",
    )
    p.add_argument("study", help="study directory")
    p.add_argument("--seed", type=int, default=0, help="seed of images, readouts, noise and metadata (default 0)")
    p.add_argument("--n-images", type=int, default=118, help="number of images (default 118)")
    p.add_argument("--neurons-per-area", type=int, default=200, help="neurons in each of the six areas (default 200)")
    p.add_argument("--n-trials", type=int, default=50, help="trials per image (default 50)")
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--model", default="alexnet", help="the network whose layers drive the neurons")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_simulate)
