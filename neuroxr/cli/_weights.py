"""``neuroxr fetch weights``: every trained variant a study needs, into the standard caches."""
from __future__ import annotations

import sys

from ._common import subcommand_group


def register(sub) -> None:
    fetch = subcommand_group(sub, "fetch", "download public data sets")
    f = fetch.add_parser(
        "weights", help="download the pinned trained weights of catalogue models into the torch / Hugging Face caches",
        description="Download the trained weights each selected catalogue row pins (torchvision IMAGENET1K_V1 files, "
                    "timm files of the Hugging Face hub, the Taskonomy encoders) into the standard caches "
                    "($TORCH_HOME/hub/checkpoints, $HF_HOME/hub), with resume, sha256 checks and a progress bar; "
                    "files already there are not fetched again. With --print, or when offline (NEUROXR_OFFLINE / "
                    "HF_HUB_OFFLINE), print for each the file, URL, repo id and cache path to fill by hand instead.")
    f.add_argument("--catalog", default=None, metavar="NAME|CSV",
                   help="a selection (conwell2021) or a models CSV: every row of it with trained weights")
    f.add_argument("--model", action="append", default=None, metavar="M", help="a catalogue model (repeatable)")
    f.add_argument("--family", default=None, help="only the models of this family")
    f.add_argument("--print", dest="print_only", action="store_true",
                   help="print what to download and where to put it; download nothing")
    f.add_argument("--retries", type=int, default=5, help="resumes after dropped connections per file")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--debug", action="store_true", help="show full tracebacks")
    f.set_defaults(func=_fetch_weights)


def _say(msg: str) -> None:
    print(f"neuroxr fetch weights: {msg}", file=sys.stderr, flush=True)


def _rows(args) -> list[dict]:
    from ..features.zoo import CatalogError, list_models, resolve_model_row

    if not args.model and not args.catalog and not args.family:
        raise CatalogError("name models with --model M (repeatable), or a selection with --catalog conwell2021 "
                           "(or a models CSV), optionally with --family")
    if args.model:
        rows = [resolve_model_row(m, None if args.catalog is None else args.catalog) for m in args.model]
        if args.family:
            rows = [r for r in rows if r.get("family") == args.family]
        return rows
    return list_models(family=args.family, catalog=args.catalog).to_dict("records")


def _fetch_weights(args) -> int:
    from ..features.progress import plural
    from ..features.weights import (
        fetch_weights,
        find_cached_weights,
        find_weights_spec,
        is_offline,
    )
    from ..io.fetch import DownloadError

    rows = _rows(args)
    specs = [s for s in (find_weights_spec(r) for r in rows) if s is not None]
    none = len(rows) - len(specs)
    if none:
        _say(f"{plural(none, 'model')} without published trained weights skipped (baselines, random encoders, "
             "SimCLR checkpoints)")
    offline = is_offline()
    if args.print_only or offline:
        missing = 0
        for s in specs:
            have = find_cached_weights(s)
            missing += have is None
            print("\n".join(s.lines() + [f"  status: {'present at ' + str(have) if have else 'missing'}"]))
        if offline and not args.print_only:
            _say(f"offline (NEUROXR_OFFLINE / HF_HUB_OFFLINE): nothing downloaded; {missing} of "
                 f"{len(specs)} files missing, put them where printed above")
            return 1 if missing else 0
        _say(f"{len(specs) - missing} of {len(specs)} files present")
        return 0
    done = {"present": 0, "downloaded": 0}
    failed = []
    for s in specs:
        try:
            path, status = fetch_weights(s, progress=not args.quiet, retries=args.retries)
        except DownloadError as exc:
            failed.append(f"{s.model}: {exc}")
            continue
        done[status] += 1
        print(f"{s.model}: {status} {path}")
    _say(f"{done['downloaded']} downloaded, {done['present']} already present, {len(failed)} failed")
    for line in failed:
        print(f"neuroxr fetch weights: error: {line}", file=sys.stderr)
    return 1 if failed else 0
