"""Where a grid's jobs run: the executor seam, and the default local executor.

An executor runs jobs and hands back what each one returned; it never writes into the run
folder. The caller (`grid.run`) checks every result and writes `jobs/<key>.npz` itself, so a job
can run in this process, in a local process pool or on another machine (`grid.cluster`, Dask),
and resume works the same way whatever ran it.

    with executor:                       # starts workers (if any), stops them on leaving
        executor.run(jobs, finished, progress)

`finished(Done)` is called in the caller's thread as each job completes; `progress(units, best)`
as work completes inside jobs (one unit = one setting-epoch). Ctrl-C stops the workers and
propagates as KeyboardInterrupt; everything passed to `finished` before it stays saved.
"""
from __future__ import annotations

import os
import queue as queue_mod
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Protocol

import multiprocessing as mp

import numpy as np

from dlhw.grid.jobs import GridJob
from dlhw.grid.spawn import main_not_rerun

# BLAS threads per job. One, always: a product's rounding can depend on the thread count, and a
# grid's results must not depend on --jobs, on the executor or on which jobs a resumed run still had
# to compute. Parallelism comes from the processes (--jobs, default one per core; Dask workers).
JOB_THREADS = 1


@dataclass
class Done:
    """One finished job, as an executor reports it."""

    job: GridJob
    arrays: dict[str, np.ndarray]
    seconds: float
    worker: str  # who ran it: "in process", "local pool", or a Dask worker's name and address


Finished = Callable[[Done], None]
Progress = Callable[[int, float], None]


class Executor(Protocol):
    kind: str  # "local" or "dask": recorded in manifest.json
    where: str  # for grid.log and --dry-run: "" or " at tcp://HOST:PORT"
    note: str  # for grid.log and --dry-run: "" or a hint about the workers, read after entering

    @property
    def workers(self) -> int:
        """How many jobs can run at once."""

    def run(self, jobs: list[GridJob], finished: Finished, progress: Progress) -> None:
        """Run `jobs` (longest first is the caller's order), calling `finished` for each."""

    def describe(self) -> dict:
        """What manifest.json records about the executor (kind, workers, their numeric environment)."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc) -> None: ...


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LocalExecutor:
    """Jobs in this process (one worker or one job), else in a pool of spawned processes."""

    kind = "local"
    where = ""
    note = ""

    def __init__(self, workers: int | None = None):
        self._workers = workers or default_jobs()

    @property
    def workers(self) -> int:
        return self._workers

    def describe(self) -> dict:
        from dlhw.store.provenance import numeric_env

        return {"kind": self.kind, "workers": self._workers, "threads_per_worker": JOB_THREADS,
                "worker_envs": [numeric_env()]}

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, jobs: list[GridJob], finished: Finished, progress: Progress) -> None:
        if not jobs:
            return
        if self._workers == 1 or len(jobs) == 1:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(JOB_THREADS, user_api="blas"):
                for j in jobs:
                    t = time.perf_counter()
                    arrays = j.run(on_progress=progress)
                    finished(Done(j, arrays, time.perf_counter() - t, "in process"))
            return
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        ex = ProcessPoolExecutor(max_workers=min(self._workers, len(jobs)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(JOB_THREADS, q))
        try:
            with main_not_rerun():  # workers start here; they need dlhw only, not the caller's script
                futures = {ex.submit(_work, j): j for j in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(q, progress)
                for f in done:
                    arrays, secs, pid = f.result()  # re-raises a worker's exception (a bug): keep its traceback
                    finished(Done(futures[f], arrays, secs, f"local pid {pid}"))
            _drain(q, progress)
        except BaseException:
            _kill(ex)
            raise
        ex.shutdown(wait=True)


# --------------------------------------------------------------------------- pool worker side

_QUEUE = None
_LIMITS = None
_PARENT = None


def _init_worker(threads: int, q) -> None:
    global _QUEUE, _LIMITS, _PARENT
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _LIMITS = threadpool_limits(threads, user_api="blas")
    _QUEUE = q
    _PARENT = os.getppid()


def _work(job: GridJob) -> tuple[dict[str, np.ndarray], float, int]:
    """Run one job in a pool worker; return its arrays (the parent checks and writes them)."""
    t0 = time.perf_counter()

    def report(units: int, best: float) -> None:
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)  # the parent was killed (e.g. kill -9): stop instead of computing for nobody
        if _QUEUE is not None:
            _QUEUE.put((units, best))

    arrays = job.run(on_progress=report)
    return arrays, time.perf_counter() - t0, os.getpid()


def _drain(q, progress: Progress) -> None:
    while True:
        try:
            progress(*q.get_nowait())
        except queue_mod.Empty:
            return


def _kill(ex: ProcessPoolExecutor) -> None:
    procs = list(getattr(ex, "_processes", {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
