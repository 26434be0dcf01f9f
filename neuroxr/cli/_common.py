"""Options shared by subcommands, and argparse types for counts."""
from __future__ import annotations

import argparse


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: argparse types: an integer >= 0 (bootstrap resamples, seeds) and >= 1 (sizes, counts)
non_negative_int = _int_at_least(0)
positive_int = _int_at_least(1)


def add_cluster_args(parser) -> None:
    """``--scheduler ADDRESS`` or ``--workers N`` (a LocalCluster), and ``--dashboard-address``."""
    g = parser.add_argument_group("execution")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running dask.distributed scheduler, e.g. tcp://10.0.0.5:8786, "
                        "or the path of its scheduler file")
    g.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="start a LocalCluster of N worker processes (default or 0: run in this process)")
    g.add_argument("--threads-per-worker", type=positive_int, default=1, metavar="T",
                   help="threads of each LocalCluster worker (default 1)")
    g.add_argument("--memory-limit", default="auto", metavar="SIZE", help="per-worker memory limit, e.g. 3GB")
    g.add_argument("--dashboard-address", default="127.0.0.1:8787", metavar="HOST:PORT",
                   help="where the Dask dashboard listens (default 127.0.0.1:8787)")
    g.add_argument("--worker-resources", default=None, metavar="SPEC",
                   help="resources each LocalCluster worker offers, e.g. GPU=1 (remote workers: "
                        "`dask worker ADDRESS --resources GPU=1`)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_overwrite_arg(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store (atomically)")


def subcommand_group(sub, name: str, help: str):
    """The sub-subparsers of a grouped command (``ingest arrays|rdms|allen``, ``fetch allen``).

    Several topic modules add to the same group without knowing about each other.  The groups
    are kept on ``sub`` itself (not in a global keyed by ``id``: a new parser built in the same
    process may reuse a collected one's id).
    """
    groups = sub.__dict__.setdefault("_neuroxr_groups", {})
    if name not in groups:
        p = sub.add_parser(name, help=help, description=help)
        g = p.add_subparsers(dest=f"{name}_kind", metavar="KIND")
        g.required = True
        groups[name] = g
    return groups[name]
