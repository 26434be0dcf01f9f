"""Dask execution: a LocalCluster by default, or an existing scheduler; prints the dashboard link.

Every command that computes takes ``--scheduler ADDRESS`` (a running ``dask scheduler``,
dask-jobqueue on SLURM/PBS, dask-kubernetes...; a scheduler JSON file written by
``--scheduler-file`` works too) or ``--workers N`` (a LocalCluster of N processes).  Within
:func:`get_client` the client is the default Dask scheduler, so the same graphs run on
either, and on neither (dask's threaded scheduler in this process).

The dashboard of a LocalCluster listens on 127.0.0.1 unless ``--dashboard-address`` says
otherwise; its link is printed to stderr.  Workers that own a GPU are started with
``dask worker ADDRESS --resources GPU=1`` (or ``--worker-resources GPU=1`` for a
LocalCluster); :func:`annotate_gpu` then sends the tasks it wraps (feature extraction, one
task per model) only to them.
"""
from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
from concurrent.futures import CancelledError as FutureCancelledError

import dask
from distributed import Client, Future, LocalCluster, wait
from distributed import get_client as get_distributed_client
from tqdm.auto import tqdm

from .errors import NeuroxrError

#: the resource name GPU workers declare (``dask worker --resources GPU=1``)
GPU = "GPU"


def parse_resources(spec) -> dict:
    """``"GPU=1,MEM=2e9"`` -> ``{"GPU": 1.0, "MEM": 2e9}`` (a dict passes through)."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        return {str(k): float(v) for k, v in spec.items()}
    out = {}
    for part in str(spec).replace(" ", ",").split(","):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise NeuroxrError(f"worker resources {spec!r}: {part!r} is not NAME=NUMBER (e.g. GPU=1)") from None
        if not sep or not name.strip():
            raise NeuroxrError(f"worker resources {spec!r}: {part!r} is not NAME=NUMBER (e.g. GPU=1)")
    return out


def _connect(scheduler, timeout):
    if os.path.isfile(str(scheduler)):  # a scheduler file (dask scheduler --scheduler-file F)
        return Client(scheduler_file=str(scheduler), timeout=timeout)
    address = str(scheduler)
    if "://" not in address:
        address = f"tcp://{address}"
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise NeuroxrError(
            f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
            f"`dask scheduler` and `dask worker {address}`, or drop --scheduler to run locally"
        ) from None


def dashboard_link(client) -> str | None:
    """The dashboard URL of ``client``'s scheduler, or None if it serves none."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # pragma: no cover - scheduler gone
        return None
    if "dashboard" not in services:
        return None
    try:
        return client.dashboard_link
    except Exception:  # pragma: no cover
        return None


@contextlib.contextmanager
def get_client(scheduler=None, workers=None, *, threads_per_worker=1, memory_limit="auto",
               dashboard_address="127.0.0.1:8787", resources=None, timeout="20s", quiet=False):
    """Context manager yielding a ``distributed.Client`` or ``None``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``; ``host:8786`` is read as tcp) or
        the path of a scheduler file.
    workers : int, optional
        Number of LocalCluster worker processes.  With neither, yields ``None`` and work
        runs in this process with dask's threaded scheduler.
    threads_per_worker : int
    memory_limit : str or int
        Per-worker memory limit of the LocalCluster (``"3GB"``); Dask spills, pauses and finally
        restarts a worker that exceeds it.
    dashboard_address : str or None
        Where the LocalCluster's dashboard (bokeh) listens; ``127.0.0.1:8787`` by default so it
        is not exposed on the network; ``127.0.0.1:0`` picks a free port; ``None``/``"none"``
        turns the bokeh pages off.
    resources : str or dict, optional
        Abstract resources each LocalCluster worker offers, e.g. ``"GPU=1"``.
    quiet : bool
        Do not print the dashboard link.
    """
    if scheduler is None and not workers:
        yield None
        return
    cluster = None
    if scheduler is not None:
        client = _connect(scheduler, timeout)
    else:
        if int(workers) < 1:
            raise NeuroxrError(f"--workers {workers}: need at least 1 worker process")
        dash = dashboard_address
        if dash is None or str(dash).lower() in ("none", "", "off"):
            dash = None
        kwargs = {}
        res = parse_resources(resources)
        if res:
            kwargs["resources"] = res
        cluster = LocalCluster(
            n_workers=int(workers), threads_per_worker=threads_per_worker, memory_limit=memory_limit,
            dashboard_address=dash, host="127.0.0.1", processes=True, **kwargs,
        )
        client = Client(cluster)
    if not quiet:
        link = dashboard_link(client)
        n = len(client.scheduler_info().get("workers", {}))
        where = f"scheduler {client.scheduler.address}, {n} worker{'s' * (n != 1)}"
        if link:
            print(f"neuroxr: Dask dashboard at {link} ({where})", file=sys.stderr)
        else:
            print(f"neuroxr: Dask {where}; no dashboard served", file=sys.stderr)
    watchdog = _StallWatchdog(client)
    try:
        yield client
    except FutureCancelledError as exc:
        if watchdog.reason is None:
            raise
        raise ClusterStalledError(watchdog.reason) from exc
    finally:
        watchdog.stop()
        client.close()
        if cluster is not None:
            cluster.close()


def client_from_args(args, **kw):
    """:func:`get_client` from the ``--scheduler``/``--workers`` options of the command line."""
    return get_client(
        getattr(args, "scheduler", None), getattr(args, "workers", None),
        threads_per_worker=getattr(args, "threads_per_worker", 1),
        memory_limit=getattr(args, "memory_limit", "auto"),
        dashboard_address=getattr(args, "dashboard_address", "127.0.0.1:8787"),
        resources=getattr(args, "worker_resources", None), **kw,
    )


def current_client():
    """The active ``distributed.Client`` (inside :func:`get_client`), or None."""
    try:
        return get_distributed_client()
    except ValueError:
        return None


def worker_resources(client=None) -> dict:
    """``{worker address: {resource: amount}}`` of the cluster (empty without a client)."""
    client = client if client is not None else current_client()
    if client is None:
        return {}
    return {addr: dict(w.get("resources") or {}) for addr, w in client.scheduler_info()["workers"].items()}


def annotate_gpu(enabled=None, client=None):
    """Context manager: tasks built inside need one ``GPU`` resource (``dask.annotate``).

    Parameters
    ----------
    enabled : bool or None
        ``None`` (default): annotate only when some worker offers a GPU resource, so the same
        code runs on CPU-only clusters.  ``True``: require it, and raise
        :class:`NeuroxrError` at once if no worker offers one (instead of tasks waiting forever).
        ``False``: no annotation.

    Examples
    --------
    >>> with annotate_gpu():                       # doctest: +SKIP
    ...     tasks = [dask.delayed(extract_one)(m) for m in models]
    """
    if enabled is False:
        return contextlib.nullcontext()
    have = any(r.get(GPU, 0) > 0 for r in worker_resources(client).values())
    if not have:
        if enabled:
            raise NeuroxrError(
                "GPU tasks were asked for but no Dask worker offers a GPU resource; start GPU workers "
                "with `dask worker SCHEDULER --resources GPU=1` (or --worker-resources GPU=1 with --workers)"
            )
        return contextlib.nullcontext()
    return dask.annotate(resources={GPU: 1})


def gpu_resources(client=None, enabled=None):
    """``resources=`` for ``client.submit``: ``{"GPU": 1}`` when some worker offers a GPU, else None.

    The ``client.submit`` counterpart of :func:`annotate_gpu` (same ``enabled`` semantics).
    """
    if enabled is False:
        return None
    have = any(r.get(GPU, 0) > 0 for r in worker_resources(client).values())
    if not have and enabled:
        annotate_gpu(True, client)  # raises the explanatory error
    return {GPU: 1} if have else None


def measure_worker_peak_rss(client) -> dict:
    """``{worker address: peak resident memory in bytes}`` of every worker process (ru_maxrss)."""

    def _peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return client.run(_peak)


#: seconds every worker may stay paused (memory above Dask's pause fraction, nothing executing)
#: while results are awaited before :func:`gather` gives up with :class:`ClusterStalledError`;
#: the environment variable ``NEUROXR_PAUSED_TIMEOUT`` overrides it
PAUSED_TIMEOUT = 120.0


class ClusterStalledError(NeuroxrError):
    """Every Dask worker is paused for memory and nothing runs: the awaited results cannot come."""


def _gib(n) -> str:
    return f"{(n or 0) / 2**30:.2f} GiB"


def _stall_reason(client) -> str | None:
    """Why no task can run now (every worker paused with nothing executing), else None.

    No workers at all is not a stall: a batch system may still be starting them.
    """
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        return None
    lines = []
    for addr, w in workers.items():
        m = w.get("metrics", {})
        if w.get("status") != "paused" or (m.get("task_counts") or {}).get("executing", 0):
            return None
        lim = w.get("memory_limit") or 0
        lines.append(f"{w.get('name', addr)} ({addr}): process memory {_gib(m.get('memory'))}"
                     + (f" of its {_gib(lim)} limit" if lim else ""))
    return "every worker is paused for memory: " + "; ".join(lines)


class _StallClock:
    """How long the cluster has been stalled (:func:`_stall_reason`), across polls.

    :meth:`expired` returns the reason once the stall has lasted ``timeout`` seconds, else None;
    any poll that finds the cluster working (or nothing awaited) starts the clock again.
    """

    def __init__(self, timeout=None):
        self.timeout, self.since = _paused_timeout(timeout), None

    def expired(self, client, awaiting: bool = True) -> str | None:
        reason = _stall_reason(client) if awaiting else None
        if reason is None:
            self.since = None
            return None
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        return reason if now - self.since >= self.timeout else None

    def message(self, what, client, reason) -> str:
        return (f"{what} on the Dask scheduler {client.scheduler.address} made no progress for "
                f"{self.timeout:g} s: {reason}. {_STALL_ADVICE}")


def _progress_probe():
    """A function to run on the scheduler: (tasks, tasks not yet done) of the graphs under keys.

    Built inside a function so that cloudpickle ships it by value: a remote scheduler need
    not have neuroxr installed.
    """
    def probe(dask_scheduler, keys):
        todo = {"waiting", "queued", "processing", "no-worker", "released"}
        seen, total, pending = set(), 0, 0
        stack = [dask_scheduler.tasks[k] for k in keys if k in dask_scheduler.tasks]
        while stack:
            ts = stack.pop()
            if id(ts) in seen:
                continue
            seen.add(id(ts))
            total += 1
            pending += ts.state in todo
            stack.extend(ts.dependencies)
        return total, pending

    return probe


class _TaskBar:
    """A tqdm bar over the tasks of a submitted graph, polled from the scheduler.

    The total is the graph's size at the first poll; finished tasks the scheduler has
    already forgotten count as done.  Off if the scheduler refuses ``run_on_scheduler``.
    """

    def __init__(self, client, futs, what):
        self.client, self.keys, self.what = client, [f.key for f in futs], what
        self.probe, self.bar, self.total = _progress_probe(), None, 0

    def update(self):
        if self.probe is None:
            return
        try:
            total, pending = self.client.run_on_scheduler(self.probe, keys=self.keys)
        except Exception:  # pragma: no cover - e.g. a scheduler that forbids run_on_scheduler
            self.probe = None
            return
        if self.bar is None:
            self.total = max(total, 1)
            self.bar = tqdm(total=self.total, desc=self.what, unit="task", file=sys.stderr)
        self.bar.update(max(0, self.total - pending) - self.bar.n)

    def close(self, finished):
        if self.bar is None:
            return
        if finished:
            self.bar.update(self.total - self.bar.n)
        self.bar.close()


class _StallWatchdog:
    """Watches the cluster while a client from :func:`get_client` is in use.

    Any computation under the client (``dask.compute``, ``.values`` of a lazy array, ...) waits
    on the client's futures; after ``paused_timeout`` seconds of a stalled cluster (see
    :func:`gather`) the pending ones are cancelled with the reason, so the command stops with
    :class:`ClusterStalledError` instead of waiting forever.
    """

    def __init__(self, client, paused_timeout=None, poll=2.0):
        self.client, self.poll, self.reason = client, poll, None
        self.clock = _StallClock(paused_timeout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nxr-stall-watchdog", daemon=True)
        self._thread.start()

    def _pending(self):
        return [k for k, st in list(self.client.futures.items()) if getattr(st, "status", None) == "pending"]

    def _run(self):
        while not self._stop.wait(self.poll):
            try:
                reason = self.clock.expired(self.client, awaiting=bool(self._pending()))
            except Exception:  # the client is closing or the scheduler is gone: not ours to judge
                return
            if reason is None:
                continue
            self.reason = self.clock.message("the computation", self.client, reason)
            try:
                self.client.cancel([Future(k, self.client) for k in self._pending()], msg=self.reason)
            except Exception:  # pragma: no cover
                pass
            return

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)


_STALL_ADVICE = ("Give the workers more memory (`dask worker --memory-limit`, or `--memory-limit` with "
                 "--workers), or restart them (`Client.restart()`) to free what earlier work left resident; "
                 "results already written are kept")


def _paused_timeout(value=None) -> float:
    if value is not None:
        return float(value)
    raw = os.environ.get("NEUROXR_PAUSED_TIMEOUT")
    if raw is None:
        return PAUSED_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise NeuroxrError(f"environment variable NEUROXR_PAUSED_TIMEOUT={raw!r} is not a number of seconds") from None


def gather(client, futures, *, what: str = "the computation", paused_timeout: float | None = None,
           poll: float = 1.0, progress: bool = False):
    """``client.gather(futures)``, but fail clearly instead of waiting forever on a stalled cluster.

    Dask pauses a worker whose process memory passes its pause fraction (80 % of
    ``--memory-limit``) and starts no task on it until the memory falls again; memory held by
    imported libraries (torch alone is about 0.6 GiB) never falls, and with every worker paused
    a computation waits forever with the workers idle.  While waiting, the scheduler is
    polled; once every worker has been paused with nothing executing for ``paused_timeout``
    seconds (default :data:`PAUSED_TIMEOUT`, or ``NEUROXR_PAUSED_TIMEOUT``),
    :class:`ClusterStalledError` names the workers, their memory and limits.  The futures are cancelled; nothing already written is touched.

    ``futures`` may be one future or a list; the result has the same shape.  ``progress``
    shows a bar of the graph's tasks on stderr (the dashboard shows the same and more).
    """
    clock = _StallClock(paused_timeout)
    single = not isinstance(futures, (list, tuple))
    futs = [futures] if single else list(futures)
    bar = _TaskBar(client, futs, what) if progress else None
    finished = False
    try:
        while True:
            try:
                wait(futs, timeout=poll)
                finished = True
                break
            except TimeoutError:
                pass
            if bar is not None:
                bar.update()
            reason = clock.expired(client)
            if reason is not None:
                client.cancel(futs)
                raise ClusterStalledError(clock.message(what, client, reason))
    finally:
        if bar is not None:
            bar.close(finished)
    out = client.gather(futs)
    return out[0] if single else out


__all__ = [
    "get_client", "client_from_args", "current_client", "dashboard_link", "annotate_gpu", "gpu_resources",
    "worker_resources", "parse_resources", "measure_worker_peak_rss", "GPU", "gather",
    "ClusterStalledError", "PAUSED_TIMEOUT",
]
