"""Where unit tasks run: a local thread pool (default) or a dask.distributed cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class UnitExecutor(Protocol):
    distributed: bool  # tasks leave this process: arguments must pickle, spills go to S3

    @property
    def concurrency(self) -> int:
        """How many tasks run at once (at least 1)."""
        ...

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> Iterator[T]:
        """Results in the order of `items`, each as soon as it and those before it are done."""
        ...


class ThreadUnitExecutor:
    distributed = False

    def __init__(self, workers: int) -> None:
        self._workers = workers

    @property
    def concurrency(self) -> int:
        return max(1, self._workers)

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> Iterator[T]:
        with ThreadPoolExecutor(self._workers, thread_name_prefix="unit") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                ready = 0
                for done in as_completed(futures):
                    done.result()  # the first failure, whichever unit has it, ends the run
                    while ready < len(futures) and futures[ready].done():
                        yield futures[ready].result()
                        ready += 1
            finally:  # a failure (or a caller that stops) starts no further unit
                for future in futures:
                    future.cancel()


class DaskUnitExecutor:
    """Runs unit tasks on a dask.distributed cluster: a running scheduler (`address`) or a
    local cluster of `workers` processes started for this run."""

    distributed = True

    def __init__(self, address: str | None = None, workers: int = 2) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            from backup_lambda.errors import ConfigError

            raise ConfigError(
                "--executor dask needs dask.distributed: pip install 'ddb-backup[dask]'"
            ) from None
        self._cluster: Any = None
        if address is None:
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            self._client: Any = Client(self._cluster)  # type: ignore[no-untyped-call]
        else:
            self._client = Client(address)  # type: ignore[no-untyped-call]

    @property
    def concurrency(self) -> int:
        """The cluster's worker threads now (a cluster that scales may change)."""
        return max(1, int(sum(self._client.nthreads().values())))

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> Iterator[T]:
        futures = self._client.map(fn, list(items), pure=False)
        try:
            for future in futures:
                yield future.result()
        finally:  # a failure (or a caller that stops) leaves no task queued
            self._client.cancel(futures)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
