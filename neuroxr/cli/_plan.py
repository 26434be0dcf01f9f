"""``neuroxr plan``: what extracting model variants will cost, before anything is extracted."""
from __future__ import annotations

import sys
import time

from ..errors import NeuroxrError


class PlanOptionsError(NeuroxrError, ValueError):
    """Options of ``neuroxr plan`` that do not go together."""


def _plan(args):
    from ..features.progress import format_seconds
    from ..features.threads import thread_budget
    from ..features.zoo import list_models
    from ..planner import (
        describe_variant,
        load_calibration,
        plan_models,
        study_images,
        summarise,
    )
    from ..runtime import available_cores

    t0 = time.perf_counter()
    if args.model:
        models = list(args.model)
        catalog = None if args.catalog in (None, "all") else args.catalog
    elif args.catalog or args.family:
        catalog = None if args.catalog in (None, "all") else args.catalog
        models = list(list_models(family=args.family, catalog=catalog)["model"])
    else:
        raise PlanOptionsError("name models with --model M (repeatable), or plan the catalogue with --catalog "
                               "(the shipped models.csv and taskonomy.csv) or --catalog FILE [--family cnn]")
    n, shape = study_images(args.study) if args.study else (None, None)
    if args.images:
        n = args.images
    if args.image_size:
        shape = (args.image_size, args.image_size)
    if n is None:
        raise PlanOptionsError("give a STUDY, or --images N with --image-size S")
    threads = thread_budget(args.threads)
    cal = None if args.no_time else load_calibration(threads, force=args.calibrate)
    weights = args.weights or ["random"]
    plans = plan_models(models, n, shape, weights=weights, srp=args.srp, threads=threads, catalog=catalog,
                        calibration=cal, use_cache=not args.no_cache, jobs=args.jobs or available_cores())
    for vp in plans:
        print(describe_variant(vp), flush=True)
        if args.layers and not vp.error:
            for name, mtype, p in vp.layers:
                print(f"    {name:40s} {mtype:24s} {p:>12,d}")
    for line in summarise(plans, cal, workers=args.workers):
        print(line)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"calibration": cal, "variants": [vp.to_dict() for vp in plans]}, f, indent=1, default=str)
    print(f"neuroxr plan: {len(plans)} variants planned in {format_seconds(time.perf_counter() - t0)} "
          f"(meta device: no weights built or downloaded)", file=sys.stderr)
    return 0


def register(sub):
    p = sub.add_parser(
        "plan", help="before extracting: layers, features, FLOPs, store bytes and predicted time per model variant",
        description="Size every model variant on PyTorch's meta device (no weights initialised or downloaded): "
                    "the layers extraction keeps, features per layer and in total, forward FLOPs "
                    "(torch's FlopCounterMode), the bytes its features store will hold, and the time predicted "
                    "on this machine (calibrated once, cached in ~/.cache/neuroxr/calibration.json), on N "
                    "workers and on a GPU (assumed throughput).")
    p.add_argument("study", nargs="?", default=None, help="study directory (its stimuli give n and the image size)")
    p.add_argument("--model", action="append", default=None, metavar="M", help="model name (repeatable)")
    p.add_argument("--catalog", nargs="?", const="all", default=None, metavar="FILE",
                   help="plan every model of the catalogue (no FILE: models.csv and taskonomy.csv)")
    p.add_argument("--family", default=None, help="only the models of this family")
    p.add_argument("--weights", action="append", default=None, metavar="W",
                   help="weights variant(s): random (default), trained or a checkpoint PATH (repeatable)")
    p.add_argument("--srp", default=None, metavar="N|auto", help="count the sparse random projection's bytes too")
    p.add_argument("--threads", type=int, default=None,
                   help="thread budget of the extraction planned (default: the available CPUs, as extract)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="also predict the time on N such workers")
    p.add_argument("--images", type=int, default=None, metavar="N", help="number of images (default: the study's)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="stimulus side in pixels (default: the study's stimuli)")
    p.add_argument("--layers", action="store_true", help="also list every kept layer with its features")
    p.add_argument("--calibrate", action="store_true", help="measure this machine's rates again (else cached)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes sizing the models (default: the available CPUs; 1: in this process)")
    p.add_argument("--no-cache", action="store_true",
                   help="size every model again (else architectures planned before are read from "
                        "~/.cache/neuroxr/model_sizes.json)")
    p.add_argument("--no-time", action="store_true", help="no time prediction here (no calibration)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(func=_plan)
