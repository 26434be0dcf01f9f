"""``neuroxr models`` (the catalog) and ``neuroxr extract`` (per-layer features of a study)."""
from __future__ import annotations

import sys
import time

from ..errors import NeuroxrError
from ._common import add_cluster_args, add_overwrite_arg


class CommandLineError(NeuroxrError, ValueError):
    """Command-line options that do not go together."""


def _models(args):
    import pandas as pd

    from ..features.progress import plural
    from ..features.zoo import list_models

    df = list_models(family=args.family, source=args.source, catalog=args.catalog)
    cols = [c for c in ("model", "family", "source", "input_size", "resize_size", "params", "top1", "top5", "in_paper",
                        "weights_tag", "cluster") if c in df]
    table = df[cols].astype(object)
    for c in ("input_size", "resize_size", "params"):  # whole numbers, blank where a row has none
        if c in table:
            table[c] = [int(v) if pd.notna(v) else "" for v in df[c]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.fillna("").to_string(index=False), flush=True)
    print(plural(len(df), "model"), file=sys.stderr)
    return 0


def _log(msg: str) -> None:
    print(f"neuroxr extract: {msg}", file=sys.stderr, flush=True)


def _with_trained_weights(catalog, family) -> list[str]:
    """The rows of a catalogue slice that ``--weights trained`` can run: those with published weights and the
    baselines (the random Taskonomy encoder and the SimCLR AlexNet are left out, and named)."""
    from ..features.weights import has_trained_weights
    from ..features.zoo import list_models

    rows = list_models(family=family, catalog=catalog).to_dict("records")
    keep = [r["model"] for r in rows if r["family"] == "baseline" or has_trained_weights(r)]
    left = [r["model"] for r in rows if r["model"] not in keep]
    if left:
        _log(f"--weights trained: {', '.join(left)} have no published trained weights, not run (the random "
             "Taskonomy encoder runs with --weights random; a SimCLR AlexNet with --weights PATH)")
    return keep


def _extract(args):
    from ..cluster import client_from_args
    from ..features.extract import (  # torch
        describe_result,
        extract_features,
        import_features,
    )
    from ..features.progress import format_bytes, format_seconds, plural

    t0 = time.perf_counter()
    if args.features:
        if not args.model or len(args.model) != 1:
            raise CommandLineError("--features FILE needs exactly one --model NAME to store the layers under")
        res = [import_features(args.study, args.model[0], args.features, weights=args.weights,
                               family=args.family or "baseline", srp=args.srp, overwrite=args.overwrite)]
    else:
        if not args.model and not args.catalog and not args.family:
            raise CommandLineError("name models with --model M (repeatable), or a slice of the zoo with "
                                   "--catalog conwell2021 (or a models CSV) [--family cnn]")
        models = args.model
        if not models and args.weights == "trained":
            models = _with_trained_weights(args.catalog, args.family)
        with client_from_args(args) as client:
            res = extract_features(args.study, models=models, weights=args.weights or "random", seed=args.seed,
                                   srp=args.srp, catalog=args.catalog, family=args.family, client=client,
                                   overwrite=args.overwrite, batch_size=args.batch_size, device=args.device,
                                   threads=args.threads, log=_log)
    for r in res:
        print(describe_result(r))
    done = [r for r in res if r["status"] == "done"]
    _log(f"{plural(len(done), 'model')} extracted, {len(res) - len(done)} skipped in "
         f"{format_seconds(time.perf_counter() - t0)}; wrote {format_bytes(sum(r.get('bytes', 0) for r in res))}")
    return 0


def register(sub):
    p = sub.add_parser("models", help="list the model zoo (catalogs/models.csv and the Taskonomy encoders)",
                       description="List the model catalog.")
    p.add_argument("--family", default=None, help="cnn, transformer, mlp-mixer, taskonomy, ssl or baseline")
    p.add_argument("--source", default=None, help="torchvision, timm, taskonomy, lightly or neuroxr")
    p.add_argument("--catalog", default=None,
                   help="a selection (conwell2021: the paper's zoo and the baselines) or another models CSV")
    p.set_defaults(func=_models)

    p = sub.add_parser("extract", help="extract per-layer Gram matrices (and SRP) into STUDY/features/<model>.zarr",
                       description="Run models over STUDY/stimuli.zarr and store per-layer summaries "
                                   "(gram, gram_z, feature_sum, optional srp). Resumable: a (model, weights) pair "
                                   "already extracted from the same stimuli, weights, seed, SRP settings and "
                                   "preprocessing is skipped; one whose inputs changed stops with a message "
                                   "naming the change (--overwrite rebuilds it). Progress lines go to stderr.")
    p.add_argument("study", help="study directory (with stimuli.zarr)")
    p.add_argument("--model", action="append", default=None, metavar="M", help="model name (repeatable)")
    p.add_argument("--weights", default=None, help="random (default), trained, or a checkpoint PATH")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (default 0)")
    p.add_argument("--srp", default=None, metavar="N|auto",
                   help="also store a sparse random projection with N components (auto: JL bound, eps 0.1)")
    p.add_argument("--catalog", default=None,
                   help="extract every model of this selection (conwell2021) or catalog CSV")
    p.add_argument("--family", default=None, help="only the models of this family")
    p.add_argument("--features", default=None, metavar="FILE",
                   help="import features computed elsewhere (.npy (image, feature), .npz one array per layer, .nc)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of each extraction: torch and the Gram accumulation, BLAS kept at one "
                        "(default: the CPUs this process may use, shared among a Dask worker's threads)")
    add_overwrite_arg(p)
    add_cluster_args(p)
    p.set_defaults(func=_extract)
