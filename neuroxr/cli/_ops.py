"""Operations on a study: ``neuroxr verify`` (every chunk's checksum, stale units)."""
from __future__ import annotations

import json
import sys


def _cmd_verify(args) -> int:
    from ..features.progress import plural
    from ..io import integrity
    from ..io.store import clean_stale, resolve_path
    from ..study import open_study

    if args.store:
        problems = [p for s in args.store for p in integrity.verify_store(s)]
    else:
        study = open_study(args.study)
        show = None if args.json or args.quiet else (lambda p: print(f"checking {p}", file=sys.stderr))
        problems = integrity.verify_study(study, progress=show)
    removed = []
    if args.clean and not args.store:
        for stale in integrity.find_stale(resolve_path(args.study)):
            removed.extend(clean_stale(stale.parent))
        gone = {str(r) for r in removed}
        problems = [p for p in problems if not (p.kind == "stale" and p.store in gone)]
    errors = [p for p in problems if p.is_error]
    if args.json:
        print(json.dumps({"ok": not errors, "problems": [p.to_dict() for p in problems],
                          "removed": [str(r) for r in removed]}, indent=1))
    else:
        for r in removed:
            print(f"removed {r}")
        for p in problems:
            print(f"{'ERROR' if p.is_error else 'warning'} {p.kind}: {p.message}")
        where = ", ".join(args.store) if args.store else args.study
        if errors:
            print(f"{where}: {plural(len(errors), 'problem')}; rewrite the stores "
                  f"named above (rerun the step with --overwrite) or restore them", file=sys.stderr)
        elif not args.quiet:
            print(f"{where}: every chunk passed its checksum"
                  + (f" ({plural(len(problems), 'warning')})" if problems else ""))
    return 1 if errors else 0


def register(sub) -> None:
    p = sub.add_parser(
        "verify", help="read every chunk of a study's stores and check its checksum",
        description="Read every chunk of every store of STUDY, check its crc32c checksum and list "
                    "corrupted chunks by store, variable and chunk key; exit status 1 if any. "
                    "Also lists temporary stores left by interrupted runs (--clean removes them).",
    )
    p.add_argument("study", metavar="STUDY", nargs="?", default=".", help="study directory or file:// URL")
    p.add_argument("--store", action="append", default=[], metavar="PATH",
                   help="verify only this Zarr store (repeatable) instead of the whole study")
    p.add_argument("--clean", action="store_true", help="remove temporary stores left by interrupted runs")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="print only problems")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_cmd_verify)
