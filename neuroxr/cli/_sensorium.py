"""``neuroxr ingest sensorium``: Sensorium 2022 static datasets (mouse V1, natural images)."""
from __future__ import annotations

from ._allen import _one_line_warnings
from ._common import add_cluster_args, add_overwrite_arg, subcommand_group

TIER_CHOICES = ("test", "validation", "train", "final_test", "all")


def register(sub) -> None:
    ingest = subcommand_group(sub, "ingest", "bring recordings into a study (responses.zarr, stimuli.zarr)")
    p = ingest.add_parser(
        "sensorium", help="Sensorium 2022 static datasets (folder trees or their zips), one mouse each",
        description="Read Sensorium static datasets in the published FileTreeDataset layout (data/images, "
                    "data/responses, data/behavior, data/pupil_center/<i>.npy; meta/neurons, meta/trials) from "
                    "folders or zips and write STUDY/responses.zarr (trials = repeats of a frame_image_id; behaviour "
                    "and pupil per trial) and STUDY/stimuli.zarr. With several mice the image axis holds the image "
                    "ids all of them saw in the chosen tiers.")
    p.add_argument("study", metavar="STUDY", help="study directory")
    p.add_argument("--path", dest="path", action="append", required=True, metavar="DIR_OR_ZIP",
                   help="a dataset folder or zip, or a folder holding several (repeatable)")
    p.add_argument("--tier", dest="tiers", action="append", choices=TIER_CHOICES, default=None,
                   help="trials of this tier (repeatable; default test: the repeated images)")
    p.add_argument("--mice", nargs="+", metavar="KEY", default=None,
                   help="only these datasets (animal-session-scan such as 26872-17-20, or the animal id)")
    p.add_argument("--image-block", type=int, default=128, metavar="N", help="images per read block and stored chunk")
    p.add_argument("--allow-unknown-area", action="store_true",
                   help="keep area names outside the known list instead of refusing them")
    add_overwrite_arg(p)
    add_cluster_args(p)
    p.set_defaults(func=_ingest)


def _ingest(args):
    from ..cluster import client_from_args
    from ..io.sensorium import ingest_sensorium

    with _one_line_warnings("ingest sensorium"), client_from_args(args):
        s = ingest_sensorium(args.study, args.path, tiers=tuple(args.tiers or ("test",)), mice=args.mice,
                             overwrite=args.overwrite, image_block=args.image_block,
                             allow_unknown_area=args.allow_unknown_area)
    print(f"neuroxr: {args.study}: {s['n_neurons']} neurons from {len(s['mice'])} mice ({', '.join(s['mice'])}) x "
          f"{s['n_images']} images x {s['n_trials']} trials")
    return 0
