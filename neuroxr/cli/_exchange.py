"""``neuroxr export``: a study's responses and scores as BrainIO-style netCDF assemblies, or its RDMs
as rsatoolbox files."""
from __future__ import annotations

from ._common import add_overwrite_arg


def _export(args):
    from ..exchange import export_study

    for path in export_study(args.study, args.out, fmt=args.format, overwrite=args.overwrite):
        print(f"wrote {path}")
    return 0


def register(sub):
    p = sub.add_parser(
        "export", help="export responses and scores (BrainIO netCDF assemblies) or RDMs (rsatoolbox hdf5)",
        description="brainio: STUDY's responses as a NeuroidAssembly-style netCDF-4 file (presentation x neuroid, "
                    "coords stimulus_id, repetition, neuroid_id, region, ...) and every score variable as one "
                    "(layer x neuroid, or layer x region). rsatoolbox: the neural RDMs (one per area or site) and "
                    "each model's RDMs (one per layer) as rsatoolbox RDMs files (hdf5, rsatoolbox.rdm.load_rdm).")
    p.add_argument("study", help="study directory")
    p.add_argument("out", help="output directory (created when missing)")
    p.add_argument("--format", choices=("brainio", "rsatoolbox"), default="brainio", help="default brainio")
    add_overwrite_arg(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_export)
