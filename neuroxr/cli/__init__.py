"""The ``neuroxr`` command line: argument parsing only, every subcommand calls the library.

Each module ``neuroxr/cli/_<topic>.py`` defines ``register(subparsers)`` which adds its
subcommands with ``parser.set_defaults(func=callable(args) -> int | None)``.  Modules are
discovered automatically, so topics never edit a shared file.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from importlib.metadata import PackageNotFoundError, version

from ..errors import USER_ERRORS
from ..io.store import resolve_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuroxr",
        description="Which deep networks best model the mouse visual cortex: ingest, extract, score, rank, report.",
    )
    try:
        v = version("neuroxr")
    except PackageNotFoundError:  # pragma: no cover
        v = "unknown"
    parser.add_argument("--version", action="version", version=f"neuroxr {v}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") and not info.name.startswith("__") and info.name != "_common":
            mod = importlib.import_module(f"{__name__}.{info.name}")
            if hasattr(mod, "register"):
                mod.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _normalise_paths(args)
        rc = args.func(args)
    except KeyboardInterrupt:
        print("neuroxr: interrupted; finished units are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout has gone (`neuroxr models | head`): stop quietly
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a writer killed by the signal
    except USER_ERRORS as exc:  # clear one-line errors, no bare traceback
        if getattr(args, "debug", False):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"neuroxr {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
        pass


def _normalise_paths(args) -> None:
    """``file://`` URLs given as STUDY (or ``--study``) become plain local paths, in one place."""
    for name in ("study", "path", "studies"):
        val = getattr(args, name, None)
        if isinstance(val, str) and ":/" in val:
            setattr(args, name, str(resolve_path(val)))
        elif isinstance(val, list):
            setattr(args, name, [str(resolve_path(v)) if isinstance(v, str) and ":/" in v else v for v in val])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
