"""Building the command line (every ``neuroxr`` command, ``--help`` included) loads no heavy library."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn", "statsmodels", "distributed", "dask.distributed", "timm", "matplotlib")
# runs the CLI in-process with the given argv and prints which heavy modules got imported
PROBE = """
import json, sys
import neuroxr.cli
argv = json.loads(sys.argv[1])
if argv is None:
    neuroxr.cli.build_parser()
else:
    try:
        neuroxr.cli.main(argv)
    except SystemExit:
        pass
heavy = json.loads(sys.argv[2])
print("LOADED=" + json.dumps([m for m in heavy if m in sys.modules]))
"""


def _loaded_after(argv, heavy=HEAVY) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(heavy)], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("LOADED=")][-1]
    return json.loads(line.removeprefix("LOADED="))


@pytest.mark.parametrize("argv", [None, ["--help"], ["models", "--help"], ["run", "--help"], ["score", "--help"],
                                  ["rank", "--help"], ["extract", "--help"], ["domains", "--help"]],
                         ids=lambda a: "build_parser" if a is None else " ".join(a))
def test_parser_and_help_import_no_heavy_library(argv):
    assert _loaded_after(argv) == []


def test_import_neuroxr_and_stats_tables_stay_light(heavy=HEAVY):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import json, sys; import neuroxr, neuroxr.stats.tables, neuroxr.info; "
            f"print(json.dumps([m for m in {list(heavy)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_lazy_stats_names_resolve_to_their_submodules():
    import neuroxr.stats as stats
    from neuroxr.stats import inference, ranking, tables

    assert stats.rank_models is ranking.rank_models
    assert stats.compare_trained_random is inference.compare_trained_random
    assert stats.order_metrics is tables.order_metrics
    assert stats.depth.summarize_best_depth is stats.summarize_best_depth
    with pytest.raises(AttributeError):
        stats.no_such_name  # noqa: B018
