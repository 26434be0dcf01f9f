"""``neuroxr ingest allen`` and ``neuroxr fetch allen``: the Allen Brain Observatory."""
from __future__ import annotations

import contextlib
import sys
import warnings

from ._common import add_cluster_args, add_overwrite_arg, subcommand_group


def register(sub) -> None:
    ingest = subcommand_group(sub, "ingest", "bring recordings into a study (responses.zarr, stimuli.zarr)")
    p = ingest.add_parser(
        "allen", help="the natural-scenes sessions of an AllenSDK Brain Observatory cache",
        description="Read an AllenSDK BrainObservatoryCache directory (manifest.json, ophys_experiments.json, "
                    "cell_specimens.json, ophys_experiment_data/<id>.nwb, ophys_experiment_events/<id>_events.npz) "
                    "and write STUDY/responses.zarr (trials per neuron, image and trial) and STUDY/stimuli.zarr. "
                    "Nothing is downloaded: get the files with `neuroxr fetch allen` or AllenSDK.")
    p.add_argument("study", metavar="STUDY", help="study directory")
    p.add_argument("--cache", required=True, metavar="DIR", help="AllenSDK cache directory (or its manifest.json)")
    p.add_argument("--response", choices=("events", "dff"), default="events",
                   help="per trial: sum of events (default) or mean dF/F over the presentation window")
    p.add_argument("--session", default="three_session_B", help="session type with the natural scenes")
    p.add_argument("--areas", nargs="+", metavar="AREA", default=None, help="e.g. VISp VISl")
    p.add_argument("--cre-lines", nargs="+", metavar="CRE", default=None,
                   help="full names, driver names (Cux2) or excitatory/inhibitory")
    p.add_argument("--containers", nargs="+", type=int, metavar="ID", default=None, help="experiment container ids")
    p.add_argument("--include-failed", action="store_true", help="also experiments of failed containers")
    p.add_argument("--chunk-neurons", type=int, default=1024, metavar="N", help="neurons per stored chunk")
    p.add_argument("--allow-unknown-area", action="store_true",
                   help="keep area names outside the known list instead of refusing them")
    add_overwrite_arg(p)
    add_cluster_args(p)
    p.set_defaults(func=_ingest)

    _register_neuropixels_ingest(ingest)

    fetch = subcommand_group(sub, "fetch", "download public data sets")
    f = fetch.add_parser(
        "allen", help="download Allen Brain Observatory natural-scenes experiments into an AllenSDK cache",
        description="Download ophys_experiments.json, cell_specimens.json, experiment_containers.json and, for "
                    "each selected three_session_B experiment, its NWB file and events .npz from the public S3 "
                    "bucket allen-brain-observatory (visual-coding-2p/), into the AllenSDK cache layout. "
                    "Interrupted downloads resume; files are verified by size (and MD5 when the server gives one); "
                    "files already present and verified are not downloaded again.")
    f.add_argument("cache_dir", metavar="ALLEN_CACHE_DIR", help="AllenSDK cache directory (created when missing)")
    f.add_argument("--containers", nargs="+", type=int, metavar="ID", default=None, help="experiment container ids")
    f.add_argument("--areas", nargs="+", metavar="AREA", default=None, help="e.g. VISp VISl")
    f.add_argument("--cre-lines", nargs="+", metavar="CRE", default=None,
                   help="full names, driver names (Cux2) or excitatory/inhibitory")
    f.add_argument("--experiments", nargs="+", type=int, metavar="ID", default=None, help="ophys experiment ids")
    f.add_argument("--session", default="three_session_B", help="session type with the natural scenes")
    f.add_argument("--no-events", action="store_true", help="skip the events files (enough for --response dff)")
    f.add_argument("--base-url", default=None, metavar="URL",
                   help="mirror in the bucket's layout (default https://allen-brain-observatory.s3.us-west-2."
                        "amazonaws.com/visual-coding-2p)")
    f.add_argument("--api-url", default=None, metavar="URL",
                   help="RMA API asked for files the bucket lacks (default http://api.brain-map.org; 'none': don't)")
    f.add_argument("--refresh-metadata", action="store_true",
                   help="download the JSON tables again even if valid copies are present")
    f.add_argument("--retries", type=int, default=5, help="resumes after dropped connections per file")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--debug", action="store_true", help="show full tracebacks")
    f.set_defaults(func=_fetch)
    _register_neuropixels_fetch(fetch)


def _window(text: str):
    import argparse

    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,END in seconds after onset (e.g. 0,0.25), got {text!r}"
                                         ) from None
    return a, b


def _register_neuropixels_ingest(ingest) -> None:
    p = ingest.add_parser(
        "allen-neuropixels", help="natural-scenes spike counts of an AllenSDK EcephysProjectCache (Neuropixels)",
        description="Read an AllenSDK EcephysProjectCache directory (manifest.json, sessions.csv, units.csv, "
                    "channels.csv, probes.csv, session_<id>/session_<id>.nwb, natural_scene_templates/"
                    "natural_scene_<n>.tiff) and write STUDY/responses.zarr (spike counts per unit, scene and "
                    "presentation) and STUDY/stimuli.zarr. Units pass AllenSDK's default quality filters "
                    "(amplitude_cutoff <= 0.1, presence_ratio >= 0.95, isi_violations <= 0.5, quality good, in "
                    "the brain). Nothing is downloaded: get the files with `neuroxr fetch allen-neuropixels`.")
    p.add_argument("study", metavar="STUDY", help="study directory")
    p.add_argument("--cache", required=True, metavar="DIR", help="EcephysProjectCache directory (or its manifest.json)")
    p.add_argument("--window", type=_window, default=(0.0, 0.25), metavar="START,END",
                   help="counting window in seconds after each onset, [START, END) (default 0,0.25)")
    p.add_argument("--session", dest="sessions", nargs="+", type=int, metavar="ID", default=None,
                   help="session ids (default: every downloaded brain_observatory_1.1 session)")
    p.add_argument("--areas", nargs="+", metavar="AREA", default=None,
                   help="structures to keep (default the six visual areas VISp VISl VISal VISpm VISrl VISam; "
                        "'all': every structure)")
    p.add_argument("--amplitude-cutoff-maximum", type=float, default=0.1, metavar="X")
    p.add_argument("--presence-ratio-minimum", type=float, default=0.95, metavar="X")
    p.add_argument("--isi-violations-maximum", type=float, default=0.5, metavar="X")
    p.add_argument("--no-quality-filter", action="store_true", help="keep every unit (no quality filter at all)")
    p.add_argument("--scenes-from-2p", metavar="DIR", default=None,
                   help="take the 118 scenes from a 2-photon BrainObservatoryCache (compared with the TIFF "
                        "templates when those are there too)")
    p.add_argument("--chunk-neurons", type=int, default=1024, metavar="N", help="neurons per stored chunk")
    add_overwrite_arg(p)
    add_cluster_args(p)
    p.set_defaults(func=_ingest_neuropixels)


def _register_neuropixels_fetch(fetch) -> None:
    f = fetch.add_parser(
        "allen-neuropixels", help="download Visual Coding Neuropixels sessions into an EcephysProjectCache",
        description="Download sessions.csv, probes.csv, channels.csv, units.csv, the natural scene templates and, "
                    "for each chosen session (default: every brain_observatory_1.1 session), "
                    "session_<id>/session_<id>.nwb from the public S3 bucket allen-brain-observatory "
                    "(visual-coding-neuropixels/ecephys-cache/), in the EcephysProjectCache layout. Interrupted "
                    "downloads resume; files are verified by size and MD5 (when the server gives one); verified "
                    "files are not downloaded again. A session NWB is about 2-3 GB.")
    f.add_argument("cache_dir", metavar="DIR", help="EcephysProjectCache directory (created when missing)")
    f.add_argument("--session", dest="sessions", nargs="+", type=int, metavar="ID", default=None, help="session ids")
    f.add_argument("--no-templates", action="store_true", help="skip the natural scene TIFFs")
    f.add_argument("--base-url", default=None, metavar="URL",
                   help="mirror in the bucket's layout (default https://allen-brain-observatory.s3.us-west-2."
                        "amazonaws.com/visual-coding-neuropixels/ecephys-cache)")
    f.add_argument("--api-url", default=None, metavar="URL",
                   help="RMA API asked for session files the bucket lacks (default http://api.brain-map.org; "
                        "'none': don't)")
    f.add_argument("--retries", type=int, default=5, help="resumes after dropped connections per file")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--debug", action="store_true", help="show full tracebacks")
    f.set_defaults(func=_fetch_neuropixels)


@contextlib.contextmanager
def _one_line_warnings(command):
    """Show warnings as ``neuroxr COMMAND: warning: message`` (no source line)."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda msg, cat, *a, **k: print(f"neuroxr {command}: warning: {msg}", file=sys.stderr)
        yield


def _ingest(args):
    from ..cluster import client_from_args
    from ..io.allen import ingest_allen

    with _one_line_warnings("ingest allen"), client_from_args(args):
        ds = ingest_allen(args.study, args.cache, response=args.response, session=args.session, areas=args.areas,
                          cre_lines=args.cre_lines, containers=args.containers, overwrite=args.overwrite,
                          include_failed=args.include_failed, chunk_neurons=args.chunk_neurons,
                          allow_unknown_area=args.allow_unknown_area)
    n_exp = len(set(ds["experiment"].values.tolist()))
    print(f"neuroxr: {args.study}: {ds.sizes['neuron']} neurons from {n_exp} experiments x {ds.sizes['image']} "
          f"images x {ds.sizes['trial']} trials ({args.response})")
    return 0


def _fetch(args):
    from ..io.fetch import DEFAULT_API_URL, DEFAULT_BASE_URL, fetch_allen

    api = DEFAULT_API_URL if args.api_url is None else (None if args.api_url.lower() in ("", "none") else args.api_url)
    with _one_line_warnings("fetch allen"):
        done = fetch_allen(args.cache_dir, containers=args.containers, areas=args.areas, cre_lines=args.cre_lines,
                           base_url=args.base_url or DEFAULT_BASE_URL, session=args.session,
                           events=not args.no_events, experiments=args.experiments, api_url=api,
                           refresh_metadata=args.refresh_metadata,
                           retries=args.retries, progress=not args.quiet)
    print(f"neuroxr: {args.cache_dir}: {len(done['experiments'])} experiments; {len(done['downloaded'])} files "
          f"downloaded, {len(done['present'])} already present", file=sys.stderr)
    return 0


def _ingest_neuropixels(args):
    from ..cluster import client_from_args
    from ..io.allen.ecephys import ingest_neuropixels

    if args.no_quality_filter:
        quality = {"amplitude_cutoff_maximum": None, "presence_ratio_minimum": None, "isi_violations_maximum": None,
                   "quality": None, "in_brain": False}
    else:
        quality = {"amplitude_cutoff_maximum": args.amplitude_cutoff_maximum,
                   "presence_ratio_minimum": args.presence_ratio_minimum,
                   "isi_violations_maximum": args.isi_violations_maximum}
    areas = "all" if args.areas and [a.lower() for a in args.areas] == ["all"] else args.areas
    with _one_line_warnings("ingest allen-neuropixels"), client_from_args(args):
        s = ingest_neuropixels(args.study, args.cache, window=args.window, areas=areas, quality=quality,
                               sessions=args.sessions, scenes_from_2p=args.scenes_from_2p, overwrite=args.overwrite,
                               chunk_neurons=args.chunk_neurons)
    failed = ", ".join(f"{k} {v}" for k, v in s["units_failed"].items() if v) or "none"
    print(f"neuroxr: {args.study}: {s['n_neurons']} units from {len(s['sessions'])} sessions x {s['n_images']} "
          f"scenes x {s['n_trials']} presentations (spike counts in [{s['window'][0]:g}, {s['window'][1]:g}) s); "
          f"units left out: {failed}")
    return 0


def _fetch_neuropixels(args):
    from ..io.allen.ecephys_fetch import DEFAULT_NEUROPIXELS_URL, fetch_neuropixels
    from ..io.fetch import DEFAULT_API_URL

    api = DEFAULT_API_URL if args.api_url is None else (None if args.api_url.lower() in ("", "none") else args.api_url)
    with _one_line_warnings("fetch allen-neuropixels"):
        done = fetch_neuropixels(args.cache_dir, sessions=args.sessions, base_url=args.base_url or DEFAULT_NEUROPIXELS_URL,
                                 templates=not args.no_templates, api_url=api, retries=args.retries,
                                 progress=not args.quiet)
    print(f"neuroxr: {args.cache_dir}: {len(done['sessions'])} sessions; {len(done['downloaded'])} files downloaded, "
          f"{len(done['present'])} already present", file=sys.stderr)
    return 0
