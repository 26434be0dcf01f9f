"""``neuroxr score STUDY``: leave-one-out ridge, RSA, SRP-ridge and PLS scores of every layer."""
from __future__ import annotations

import argparse
import sys

from ..mapping import METRICS
from ._common import add_cluster_args, add_overwrite_arg, positive_int


def _alphas(text: str):
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated numbers, got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "score", help="score every layer of every extracted model against the neurons (writes scores.zarr)",
        description="Score every layer of every extracted model: exact leave-one-out ridge (ridge_r), RSA "
                    "(rsa_r), ridge on the sparse random projection (srp_ridge_r) and PLS (pls_r). Writes "
                    "STUDY/scores.zarr; rerunning resumes, and new models are appended.")
    p.add_argument("study", help="study directory")
    p.add_argument("--metric", dest="metrics", action="append", choices=list(METRICS),
                   help="metric to compute (repeatable; default: ridge and rsa)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--alpha", type=float, default=None,
                   help="ridge penalty, as scikit-learn's Ridge(alpha) on the (z-scored) features, on every ridge "
                        "metric (default: the paper's alpha = 1 in its units, see --alpha-unit)")
    g.add_argument("--alphas", type=_alphas, default=None, metavar="A,B,...",
                   help="grid of ridge penalties; each neuron gets the best by leave-one-out error (stored as "
                        "ridge_alpha)")
    p.add_argument("--alpha-unit", choices=["paper", "penalty"], default=None,
                   help="'paper': the exact ridge applies alpha x max(1, trace(K) / (n x c)), the shrinkage alpha has after "
                        "the paper's c-component projection, and scores each prediction without its "
                        "leave-one-out intercept (srp-ridge keeps alpha and the paper's Pearson r); 'penalty': "
                        "alpha as given, Pearson r of the leave-one-out prediction. Default: paper without "
                        "--alpha/--alphas, penalty with them")
    p.add_argument("--model", dest="models", action="append", metavar="M",
                   help="score only this features store (repeatable; default all)")
    p.add_argument("--no-zscore", dest="zscore", action="store_false",
                   help="ridge on raw features instead of features z-scored over images")
    p.add_argument("--area", dest="areas", action="append", metavar="AREA",
                   help="areas for RSA (repeatable; default every area of the selected neurons)")
    p.add_argument("--rsa-method", default="pearson", choices=["pearson", "spearman", "kendall"],
                   help="comparison of RDMs (default pearson)")
    p.add_argument("--pls-splits", default="kfold", choices=["kfold", "random"],
                   help="PLS image splits: 5-fold (default) or repeated random halves")
    p.add_argument("--pls-n-splits", type=positive_int, default=None, metavar="K",
                   help="number of PLS splits (default 5 for kfold, 100 for random)")
    p.add_argument("--pls-components", type=positive_int, default=25, metavar="C",
                   help="PLS components (default 25)")
    p.add_argument("--skip-nan-layers", action="store_true",
                   help="score layers with NaN features as NaN instead of stopping")
    p.add_argument("--neuron-chunk", type=positive_int, default=8192, metavar="N",
                   help="neurons per scoring task (default 8192)")
    p.add_argument("--layer-chunk", type=positive_int, default=8, metavar="L",
                   help="layers per scoring task (default 8)")
    p.add_argument("--backend", default="auto", choices=["auto", "numpy", "torch", "torch:cuda"],
                   help="array library of the Gram and ridge work (default auto: torch:cuda with a GPU, else numpy)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_overwrite_arg(p)
    add_cluster_args(p)
    p.set_defaults(func=_run)


def alphas_of_args(args):
    """The penalties of ``--alpha``/``--alphas``/``--alpha-unit``: a :class:`~neuroxr.mapping.ridge.PaperAlphas`
    (default: the paper's alpha = 1 in its units) or plain penalties (what an explicit value says)."""
    from ..mapping.ridge import resolve_alphas

    return resolve_alphas(args.alpha, args.alphas, args.alpha_unit)


def _log_routes() -> None:
    """The ridge route chosen for each metric (logger ``neuroxr.score``) on stderr, as the other events."""
    import logging

    class _Stderr(logging.StreamHandler):
        """Writes to the ``sys.stderr`` of the moment (not the one of the first call: it may be closed)."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value):
            pass

    lg = logging.getLogger("neuroxr.score")
    if not any(getattr(h, "_nxr_cli", False) for h in lg.handlers):
        h = _Stderr()
        h.setFormatter(logging.Formatter("neuroxr score: %(message)s"))
        h._nxr_cli = True
        lg.addHandler(h)
    lg.setLevel(logging.INFO)


def _run(args) -> int:
    from ..cluster import client_from_args
    from ..features.progress import plural
    from ..mapping import open_scores
    from ..mapping import score as scoring
    alpha = alphas_of_args(args)
    _log_routes()
    pls = dict(scoring.DEFAULT_PLS, kind=args.pls_splits, n_components=args.pls_components)
    pls["n_splits"] = args.pls_n_splits or (5 if args.pls_splits == "kfold" else 100)
    with client_from_args(args) as client:
        path = scoring.score_study(
            args.study, metrics=tuple(args.metrics or ("ridge", "rsa")), alpha=alpha, alphas=None,
            zscore=args.zscore, models=args.models, client=client, overwrite=args.overwrite,
            neuron_chunk=args.neuron_chunk, layer_chunk=args.layer_chunk, areas=args.areas,
            rsa_method=args.rsa_method, nan_layers="skip" if args.skip_nan_layers else "raise",
            pls_options=pls, backend=args.backend, progress=args.progress,
            log=lambda msg: print(f"neuroxr score: {msg}", file=sys.stderr),
        )
    tree = open_scores(path)
    sizes = {d: n for node in tree.subtree for d, n in node.to_dataset(inherit=False).sizes.items()}
    variables = [str(v) for node in tree.subtree for v in node.data_vars]
    print(f"{path}: {plural(sizes.get('layer', 0), 'layer')}, {plural(sizes.get('neuron', 0), 'neuron')}, "
          f"variables {variables}; NaN counts {tree.attrs.get('nan_counts', '{}')}")
    return 0
