"""``neuroxr rank | report | run | demo``: rankings, the report, whole pipelines, the demo."""
from __future__ import annotations

import json

from ..mapping import METRICS
from ..stats import order_metrics
from ._common import add_cluster_args, non_negative_int, positive_int


def _rank(args):
    import pandas as pd

    from .. import report, stats
    from ..features.progress import plural

    path = report.write_rankings(args.study, args.metric or None, n_boot=args.n_boot, seed=args.seed)
    r = pd.read_csv(path)
    verdict = stats.judge_ranking(r)  # the headline metric, or the first one with intervals
    metric = verdict["metric"]
    top = report.format_ranking_table(r, metric).head(args.top)
    print(f"wrote {path} ({plural(len(r), 'row')})")
    print(f"verdict: {verdict['text']}")
    print(f"highest {len(top)} by {metric} (area all):")
    print(top.to_string(index=False, float_format="%.4f"))


def _report(args):
    from .. import report

    path = report.write_report(args.study, n_boot=args.n_boot, seed=args.seed)
    print(f"report: {path}")
    print(report.format_headline(json.loads((path.parent / "headline.json").read_text())))


def _pipeline_client(args):
    """The cluster of ``--scheduler``/``--workers``, else the config's ``[cluster]`` table, else none."""
    from ..cluster import client_from_args, get_client

    if args.scheduler is None and not args.workers:
        from ..pipeline import is_domains_config, load_settings, read_config

        cfg = read_config(args.config)
        cl = None if is_domains_config(cfg) else load_settings(cfg).cluster
        if cl is not None and (cl.scheduler or cl.workers):
            return get_client(cl.scheduler, cl.workers, threads_per_worker=cl.threads_per_worker,
                              memory_limit=cl.memory_limit, dashboard_address=args.dashboard_address,
                              resources=args.worker_resources)
    return client_from_args(args)


def _run(args):
    from .. import pipeline

    if args.check:
        missing = pipeline.check_pipeline(args.config, study=args.study)
        if missing:
            print("missing before this pipeline can run:\n" + "\n".join(f"  - {m}" for m in missing))
            return 1
        print("everything the pipeline needs is in place")
        return 0
    with _pipeline_client(args) as client:
        res = pipeline.run_pipeline(args.config, study=args.study, client=client, force=args.force or (),
                                    strict=args.strict)
    print(f"report: {res['report']}")
    if res.get("headline"):
        print(res["headline"])


def _demo(args):
    from .. import pipeline
    from ..cluster import client_from_args
    from ..runtime import single_threaded_blas

    # one owner of parallelism: torch's intra-op threads and the package's own pools; BLAS at one
    # thread for the whole demo (the simulation's float64 kernels ran beside torch's threads)
    with client_from_args(args) as client, single_threaded_blas():
        res = pipeline.run_demo(args.study, client=client, size=args.size, seed=args.seed)
    print(f"report: {res['report']}")
    print(res["headline"])
    print(f"({res['seconds']:.0f} s; rerun to reuse what is done, or open the report in a browser)")


def _add_bootstrap_args(p) -> None:
    p.add_argument("--n-boot", type=non_negative_int, default=1000,
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0: no intervals)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def register(sub) -> None:
    p = sub.add_parser("rank", help="rank models: STUDY/reports/rankings.csv",
                       description="Max over layers of the area-mean score per model and area, the overall "
                                   "ranking, bootstrapped 95% intervals; writes STUDY/reports/rankings.csv.")
    p.add_argument("study", help="study directory with scores.zarr")
    p.add_argument("--metric", action="append", choices=order_metrics(METRICS),
                   help="metric(s) to rank by (repeatable; default: all scored)")
    p.add_argument("--top", type=positive_int, default=10, help="rows printed (default 10)")
    _add_bootstrap_args(p)
    p.set_defaults(func=_rank)

    p = sub.add_parser("report", help="STUDY/reports/index.html with figures (PNG) and tables (CSV)",
                       description="Rankings, statistics and figures of a scored study, as one HTML page "
                                   "with the PNGs and CSV tables beside it.")
    p.add_argument("study", help="study directory with scores.zarr")
    _add_bootstrap_args(p)
    p.set_defaults(func=_report)

    p = sub.add_parser("run", help="run a pipeline config (TOML): ingest -> select -> extract -> score -> "
                                   "rank -> report, resumable",
                       description="Run a whole study from one TOML file (see pipelines/). Each stage skips "
                                   "what is already done, so rerunning resumes. Unknown tables or keys, "
                                   "wrong types and out-of-range values stop it before any work. With "
                                   "--scheduler/--workers (or a [cluster] table in the config) the models are "
                                   "extracted in parallel, one Dask task per model variant.")
    p.add_argument("config", help="pipeline TOML, e.g. pipelines/conwell2021.toml")
    p.add_argument("--study", default=None, help="study directory (default: the config's [study] dir)")
    p.add_argument("--check", action="store_true",
                   help="only list what is missing (data, weights, packages) and exit 1 if anything is")
    p.add_argument("--strict", action="store_true",
                   help="refuse to start when any trained weights are missing (default: skip those model "
                        "variants and list them as not run in the summary and the report)")
    p.add_argument("--force", action="append", metavar="STAGE",
                   choices=["ingest", "select", "extract", "score", "sweep", "tradeoff", "report"],
                   help="redo a stage even if its output exists (repeatable)")
    add_cluster_args(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="the whole study on the built-in simulated observatory, in minutes",
                       description="Simulate an observatory whose responses are generated by one small "
                                   "network's layers (deeper layers for higher areas), extract a handful of "
                                   "small models with random weights plus the baselines, score, rank and "
                                   "report; prints where the report is and the headline.")
    p.add_argument("--study", default="neuroxr-demo", help="study directory (default ./neuroxr-demo)")
    p.add_argument("--size", choices=["small", "full"], default="full",
                   help="'small' is the reduced demo used by the tests")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the simulation and the random weights (default 0)")
    add_cluster_args(p)
    p.set_defaults(func=_demo)
