"""Where runs execute: this process, local worker processes, or a Dask cluster.

Every executor has one operation, :meth:`Executor.map_unordered`: call a function on each item
and yield ``(item, future)`` pairs in completion order, each future done (its ``result()``
returns the value or raises the task's exception). The runner does not know which executor it
has; results do not depend on it, because each run is a pure function of its spec.

* ``serial``: in this process, in order (``-j 1``).
* ``local``: a :class:`pebble.ProcessPool` of ``jobs`` processes. The workers ignore SIGINT,
  so Ctrl-C reaches only the parent, which stops them; a worker that dies (``kill -9``, the
  OOM killer) costs only the run it held, which is run once more on a new worker; a worker
  whose parent is gone exits within a second.
* ``dask``: ``dask.distributed`` (the ``dask`` extra): a ``LocalCluster`` of ``jobs`` worker
  processes, or the existing cluster whose scheduler is at ``scheduler`` (its workers need
  vmapsim installed).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from sim.config.loader import ConfigError
from sim.config.versions import check_same_versions, versions

EXECUTORS = ("local", "dask")
"""Choices of ``--executor``; ``local`` with one job runs serially in this process."""


class Executor(ABC):
    """Runs a function over items; a context manager that releases its workers on exit."""

    name = "executor"

    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(item, done future)`` for every item, in completion order."""

    @abstractmethod
    def close(self, abort: bool = False) -> None:
        """Release the workers; ``abort``: drop queued and running work."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.close(abort=kind is not None)


class SerialExecutor(Executor):
    """Each item in this process, in order."""

    name = "serial"

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[Any, Future]]:
        for item in items:
            future: Future = Future()
            try:
                future.set_result(fn(item))
            except Exception as exc:
                future.set_exception(exc)
            yield item, future

    def close(self, abort: bool = False) -> None:
        """Nothing to release."""


RETRIES = 1
"""Times a run whose worker process died (killed, out of memory) is run again on a new one
before it is recorded failed."""
PARENT_CHECK_S = 0.5
"""How often a worker looks whether the process that started it is still there."""


def _start_worker() -> None:
    """Worker initializer: Ctrl-C on a terminal goes to the parent only, and the worker exits
    when its parent is gone (killed with SIGKILL, it can stop nobody)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: stop() ends it
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="vmapsim-parent-check").start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


class ProcessExecutor(Executor):
    """``jobs`` local worker processes (a :class:`pebble.ProcessPool`: a worker that dies
    fails only the run it held, and a new worker takes its place)."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        from pebble import ProcessPool  # imported when processes are wanted

        self.pool = ProcessPool(max_workers=jobs, initializer=_start_worker)

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[Any, Future]]:
        """Each item's run, in completion order; a run whose worker died is run once more
        (``RETRIES``) and then yielded with the worker's death as its exception."""
        from pebble import ProcessExpired

        pending = {self.pool.schedule(fn, args=(item,)): (item, 0) for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item, tries = pending.pop(future)
                if isinstance(future.exception(), ProcessExpired) and tries < RETRIES:
                    pending[self.pool.schedule(fn, args=(item,))] = (item, tries + 1)
                    continue
                yield item, future

    def close(self, abort: bool = False) -> None:
        """Wait for the workers to finish (``abort``: stop them and their runs now)."""
        if abort:
            self.pool.stop()
        else:
            self.pool.close()
        self.pool.join()


class DaskExecutor(Executor):
    """A Dask cluster: a new ``LocalCluster`` of ``jobs`` processes, or the one at
    ``scheduler`` (``tcp://host:port``)."""

    name = "dask"

    def __init__(self, jobs: int, scheduler: str | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs dask.distributed: "
                              "pip install 'vmapsim[dask]'", "command line") from None
        self.cluster = None
        if scheduler is None:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                  "--scheduler") from None
        self.futures: list[Any] = []
        try:  # a worker with another numpy or simpy would give other numbers
            check_same_versions(versions(), self.client.run(versions))
        except ConfigError:
            self.close()
            raise

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed as dask_completed

        by_key = {}
        for item in items:
            future = self.client.submit(fn, item, pure=False)
            by_key[future.key] = item
            self.futures.append(future)
        for future in dask_completed(self.futures):
            yield by_key[future.key], future

    def close(self, abort: bool = False) -> None:
        if abort and self.futures:
            self.client.cancel(self.futures)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def open_executor(kind: str, jobs: int, scheduler: str | None = None) -> Executor:
    """The executor for ``--executor kind -j jobs [--scheduler addr]``."""
    if jobs < 1:
        raise ConfigError(f"-j expects at least 1 worker, found {jobs}", "command line")
    if scheduler is not None or kind == "dask":
        return DaskExecutor(jobs, scheduler)
    if kind != "local":
        raise ConfigError(f"unknown executor '{kind}' (known: {', '.join(EXECUTORS)})",
                          "--executor")
    return SerialExecutor() if jobs == 1 else ProcessExecutor(jobs)


def default_jobs() -> int:
    """All the cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
