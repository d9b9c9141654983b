"""Where runs execute: this process, local worker processes, or a Dask cluster.

Every executor has one operation, :meth:`Executor.map_unordered`: call a function on each item
and yield ``(item, future)`` pairs in completion order, each future done (its ``result()``
returns the value or raises the task's exception). The runner does not know which executor it
has; results do not depend on it, because each run is a pure function of its spec.

* ``serial``: in this process, in order (``-j 1``).
* ``local``: a :class:`concurrent.futures.ProcessPoolExecutor` of ``jobs`` processes; the
  workers ignore SIGINT, so Ctrl-C reaches only the parent, which stops them.
* ``dask``: ``dask.distributed`` (the ``dask`` extra): a ``LocalCluster`` of ``jobs`` worker
  processes, or the existing cluster whose scheduler is at ``scheduler`` (its workers need
  vmapsim installed).
"""

from __future__ import annotations

import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

from sim.config.loader import ConfigError

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


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C on a terminal goes to the parent only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor(Executor):
    """``jobs`` local worker processes."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint)

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[Any, Future]]:
        futures = {self.pool.submit(fn, item): item for item in items}
        for future in as_completed(futures):
            yield futures[future], future

    def close(self, abort: bool = False) -> None:
        if not abort:
            self.pool.shutdown(wait=True)
            return
        self.pool.shutdown(wait=False, cancel_futures=True)
        terminate = getattr(self.pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        # older Pythons have no public way to stop a running task: end its process
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            process.terminate()


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
