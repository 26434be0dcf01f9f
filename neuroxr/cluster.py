"""Dask execution: a LocalCluster by default, or an existing scheduler; prints the dashboard link."""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def get_client(scheduler=None, workers=None, *, threads_per_worker=1, memory_limit="auto",
               dashboard_address="127.0.0.1:8787", quiet=False):
    """Context manager yielding a ``distributed.Client`` or ``None``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    workers : int, optional
        Number of LocalCluster worker processes.  With neither, yields ``None`` and work
        runs in this process with dask's threaded scheduler.
    """
    if scheduler is None and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=int(workers), threads_per_worker=threads_per_worker, memory_limit=memory_limit,
            dashboard_address=dashboard_address, host="127.0.0.1", processes=True,
        )
        client = Client(cluster)
    if not quiet:
        print(f"neuroxr: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def client_from_args(args, **kw):
    """:func:`get_client` from the ``--scheduler``/``--workers`` options of the command line."""
    return get_client(
        getattr(args, "scheduler", None), getattr(args, "workers", None),
        threads_per_worker=getattr(args, "threads_per_worker", 1),
        memory_limit=getattr(args, "memory_limit", "auto"),
        dashboard_address=getattr(args, "dashboard_address", "127.0.0.1:8787"), **kw,
    )
