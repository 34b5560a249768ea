"""How long a grid will take, measured on the machine it runs on.

A fixed cost model fitted once is wrong on any other machine, or on the same one when it is busy.
So `calibrate` times a few dozen real stacked steps at each batch size of the grid (random data of
the grid's shape, the engine's own code), an evaluation chunk, the averaging pass and a few steps
of the retrain's loop - in as many processes at once as the grid will use, so that the cores are
as busy as they will be. `estimate` turns that into the jobs' costs and the wall time of
running them longest first on the workers, plus the retrain. `dlhw grid --dry-run` prints it;
`dlhw grid` shows it as the first ETA and records it in manifest.json.
"""
from __future__ import annotations

import heapq
import math
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import numpy as np

from dlhw.config import Config
from dlhw.grid.jobs import GridJob, split_sizes
from dlhw.grid.spawn import main_not_rerun
from dlhw.models import EVAL_CHUNK
from dlhw.training.rules import batches_per_epoch

START_S = 4.0  # process start, data load (from the cache) and the pool: measured once, small
ROWS = 16384  # random rows the calibration trains on: up to 64 steps, 8 at batch 2048


@dataclass
class Calibration:
    step_s: dict[int, float]  # batch size -> seconds per stacked step (S settings)
    settings: int  # S the steps were timed with
    eval_s: float  # seconds per EVAL_CHUNK rows evaluated by a stack of S settings
    avg_s: float  # seconds per averaging pass over a stack of S settings
    retrain_step_s: dict[int, float]  # the smallest batch size -> seconds per single-model SGD step (fit)
    retrain_eval_s: float  # seconds per EVAL_CHUNK rows evaluated by one model


def _per_step(run, B: int, long: int | None = None, tries: int = 2) -> float:
    """Seconds per SGD step of `run(n_rows)`, a call's fixed cost (allocations, the thread-limit
    context, the epoch-end evaluation) taken out: one step's call is timed against a `long` one's."""
    long = long or max(2, min(ROWS // B, 64))
    best_one = best_long = math.inf
    for _ in range(tries):  # the fastest: the others may have met a busy moment
        t0 = time.perf_counter()
        run(B)
        t1 = time.perf_counter()
        run(B * long)
        t2 = time.perf_counter()
        best_one, best_long = min(best_one, t1 - t0), min(best_long, t2 - t1)
    return max(best_long - best_one, 0.0) / (long - 1)


def _measure(args) -> Calibration:
    """Run in each of the calibration processes, one BLAS thread each."""
    batch_sizes, S, K, D, dtype = args
    from threadpoolctl import threadpool_limits

    from dlhw.config import TrainConfig
    from dlhw.models import SoftmaxRegression
    from dlhw.training import kernels
    from dlhw.training.loop import fit
    from dlhw.training.stack import stack_metrics, train_stack

    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    lrs, alphas = [0.01] * S, [1e-4] * S
    with threadpool_limits(1, user_api="blas"):
        X = rng.random((ROWS, D), dtype=np.float32).astype(dt)
        y = rng.integers(0, K, X.shape[0])
        val = (X[:1], y[:1])
        train_stack(X[:64], y[:64], K, lrs, alphas, 16, 0, 1, val)  # load the compiled kernels
        # a step costs a + b * B (fixed work, then products and passes linear in B): time the smallest
        # and the largest batch size, interpolate the others
        lo, hi = min(batch_sizes), max(batch_sizes)
        ends = {B: _per_step(lambda n: train_stack(X[:n], y[:n], K, lrs, alphas, B, 0, 1, val), B)
                for B in {lo, hi}}
        slope = (ends[hi] - ends[lo]) / (hi - lo) if hi > lo else 0.0
        step_s = {B: ends[lo] + slope * (B - lo) for B in batch_sizes}
        m = SoftmaxRegression(D, K, 1e-4, dt)
        cfg = TrainConfig(batch_size=lo, learning_rate=0.01, epochs=1, average="epoch", dtype=dtype)
        retrain_s = {lo: _per_step(lambda n: fit(m, (X[:n], y[:n]), cfg), lo)}
        Xe, ye = np.resize(X, (EVAL_CHUNK, D)), np.resize(y, EVAL_CHUNK)
        V, c, b = np.zeros((D, (K - 1) * S), dt), np.ones(S), np.zeros((K, S), dt)
        t0 = time.perf_counter()
        stack_metrics(Xe, ye, V, c, b)
        eval_s = time.perf_counter() - t0
        A, ct = np.zeros_like(V), np.ones((K - 1) * S, dt)
        t0 = time.perf_counter()
        for _ in range(20):
            kernels.add_true_weights(V, ct, A)
        avg_s = (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        SoftmaxRegression(D, K, 0.0, dt).evaluate(Xe, ye)
        retrain_eval_s = time.perf_counter() - t0
    return Calibration(step_s, S, eval_s, avg_s, retrain_s, retrain_eval_s)


def calibrate(cfg: Config, jobs: list[GridJob], workers: int) -> Calibration | None:
    """Time the grid's own steps here, with `workers` processes busy at once; None if the grid has
    no stacked job (other model kinds keep the flop-count model of `GridJob.cost`)."""
    stacked = [j for j in jobs if j.stacked]
    if not stacked:
        return None
    S = max(j.n_settings for j in stacked)
    args = (sorted({j.batch_size for j in stacked} | {min(cfg.grid.batch_size)}), S, 10, 784, cfg.train.dtype)
    n = max(1, min(workers, len(stacked)))
    if n == 1:
        return _measure(args)
    with main_not_rerun(), mp.get_context("spawn").Pool(n) as pool:  # never re-runs the caller's script
        cals = pool.map(_measure, [args] * n)
    med = lambda f: statistics.median(f(c) for c in cals)  # noqa: E731
    return Calibration({B: med(lambda c: c.step_s[B]) for B in args[0]}, S, med(lambda c: c.eval_s),
                       med(lambda c: c.avg_s), {B: med(lambda c: c.retrain_step_s[B]) for B in cals[0].retrain_step_s},
                       med(lambda c: c.retrain_eval_s))


def job_seconds(job: GridJob, cal: Calibration | None) -> float:
    """A job's cost on one core: calibrated steps, evaluations and averaging passes for a stack."""
    if cal is None or not job.stacked or job.batch_size not in cal.step_s:
        return job.cost()
    n_train, n_val, _ = split_sizes(job.cfg)
    per_epoch = batches_per_epoch(n_train, job.batch_size)
    width = job.cost() / job.cost(cal.settings)  # a narrower stack: cheaper, not proportionally (fixed costs)
    recorded = len(job.grid_epochs) if job.averaged else job.epochs
    evals = (recorded * n_val + len(job.grid_epochs) * n_train) / EVAL_CHUNK * cal.eval_s
    avg = len(job.grid_epochs) * per_epoch * cal.avg_s if job.averaged else 0.0
    return width * (job.epochs * per_epoch * cal.step_s[job.batch_size] + evals + avg)


def makespan(costs: list[float], workers: int) -> float:
    """Wall time of running jobs longest first, each on the first free worker."""
    free = [0.0] * max(1, min(workers, len(costs)))
    for c in sorted(costs, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + c)
    return max(free, default=0.0)


def retrain_seconds(cfg: Config, cal: Calibration | None, retrain: GridJob) -> float:
    """The retrain of the longest setting on train+val (one model, every split evaluated per epoch)."""
    if cal is None or retrain.batch_size not in cal.retrain_step_s:
        return retrain.cost()
    n_train, _, n_all = split_sizes(cfg)
    n = n_all if cfg.grid.retrain_on == "train+val" else n_train
    steps = retrain.epochs * batches_per_epoch(n, retrain.batch_size)
    evals = retrain.epochs * (n + 10000) / EVAL_CHUNK * cal.retrain_eval_s
    return steps * cal.retrain_step_s[retrain.batch_size] + evals


def estimate(cfg: Config, jobs: list[GridJob], workers: int, retrain: GridJob | None,
             cal: Calibration | None) -> float:
    """Estimated wall time of running `jobs` on `workers` and then the retrain."""
    search = makespan([job_seconds(j, cal) for j in jobs], workers) if jobs else 0.0
    return START_S + search + (retrain_seconds(cfg, cal, retrain) if retrain else 0.0)


def describe(cal: Calibration | None) -> str:
    if cal is None:
        return "from a flop count (no stacked job to time)"
    B = min(cal.step_s)
    return (f"calibrated here: a {cal.settings}-setting step at batch {B} takes {cal.step_s[B] * 1e3:.2f} ms, "
            f"at batch {max(cal.step_s)} {cal.step_s[max(cal.step_s)] * 1e3:.1f} ms")


__all__ = ["Calibration", "calibrate", "describe", "estimate", "job_seconds", "makespan"]
