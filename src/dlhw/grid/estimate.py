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

import dataclasses
import heapq
import json
import math
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass, field, replace

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
    # jobs that train one model at a time (networks, momentum): `single_key` -> (seconds per SGD step,
    # seconds per EVAL_CHUNK rows evaluated), timed with the job's own model and optimizer
    single: dict[str, tuple[float, float]] = field(default_factory=dict)


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


def single_key(cfg: Config, batch_size: int) -> str:
    """What a single-model job's step time depends on: the model, the optimizer, the dtype, the
    number of classes and the batch size."""
    return json.dumps([dataclasses.asdict(cfg.model), cfg.train.optimizer, cfg.train.dtype, _classes(cfg),
                       batch_size], sort_keys=True, default=str)


def _classes(cfg: Config) -> int:
    return len(cfg.data.classes) if cfg.data.classes else 10


def _timeable(cfg: Config) -> bool:
    """Single models the calibration can time on random 784-pixel rows (not the tiny XOR exercises)."""
    return cfg.data.name != "xor" and cfg.model.kind in ("softmax", "mlp") and cfg.train.optimizer != "newton"


def _measure_single(args) -> dict[str, tuple[float, float]]:
    """Run in each calibration process: seconds per SGD step and per evaluation chunk of each model."""
    items, dtype = args
    from threadpoolctl import threadpool_limits

    from dlhw.models import build_model
    from dlhw.training.loop import fit

    rng = np.random.default_rng(0)
    out = {}
    with threadpool_limits(1, user_api="blas"):
        X = rng.random((ROWS, 784), dtype=np.float32).astype(np.dtype(dtype))
        Xe = np.resize(X, (EVAL_CHUNK, 784))
        for key, cfg, B in items:
            y = rng.integers(0, _classes(cfg), ROWS)
            model = build_model(cfg, 784, _classes(cfg))
            tc = replace(cfg.train, batch_size=B, epochs=1, eval_every=None)
            fit(model, (X[:B], y[:B]), tc, eval_at=(), train_at=())  # first call: allocations, caches
            step = _per_step(lambda n: fit(model, (X[:n], y[:n]), tc, eval_at=(), train_at=()), B)
            t0 = time.perf_counter()
            model.evaluate(Xe, np.resize(y, EVAL_CHUNK))
            out[key] = (step, time.perf_counter() - t0)
    return out


def _measure_all(args) -> tuple[Calibration | None, dict]:
    stack_args, single_args = args
    return (_measure(stack_args) if stack_args else None), (_measure_single(single_args) if single_args[0] else {})


def retrain_job(cfg: Config) -> GridJob:
    """A stand-in for the final retrain, for estimates: one setting of the longest epoch count at the
    smallest batch size, with the most costly values of the other axes (e.g. the widest network)."""
    g = cfg.grid
    jobs = [GridJob(cfg.variant(v), min(g.batch_size), g.seeds[0], (g.learning_rate[0],), (g.alpha[0],),
                    max(g.epochs), ()) for v in g.variants()]
    return max(jobs, key=lambda j: j.cost())


def calibrate(cfg: Config, jobs: list[GridJob], workers: int) -> Calibration | None:
    """Time the grid's own steps here, with `workers` processes busy at once: a stack's steps at each
    batch size, and each single-model job's model (networks, momentum) at its batch size; None if
    nothing can be timed (the flop-count model of `GridJob.cost` then stands)."""
    stacked = [j for j in jobs if j.stacked]
    singles = {single_key(j.cfg, j.batch_size): (j.cfg, j.batch_size) for j in [*jobs, retrain_job(cfg)]
               if not j.stacked and _timeable(j.cfg)}
    if not stacked and not singles:
        return None
    S = max((j.n_settings for j in stacked), default=0)
    stack_args = (sorted({j.batch_size for j in stacked} | {min(cfg.grid.batch_size)}), S, 10, 784,
                  cfg.train.dtype) if stacked else None
    args = (stack_args, ([(k, c, B) for k, (c, B) in singles.items()], cfg.train.dtype))
    n = max(1, min(workers, len(stacked) + len(singles)))
    if n == 1:
        parts = [_measure_all(args)]
    else:
        with main_not_rerun(), mp.get_context("spawn").Pool(n) as pool:  # never re-runs the caller's script
            parts = pool.map(_measure_all, [args] * n)
    med = statistics.median
    single = {k: (med(p[1][k][0] for p in parts), med(p[1][k][1] for p in parts)) for k in singles}
    if not stacked:
        return Calibration({}, 0, 0.0, 0.0, {}, 0.0, single)
    cals = [p[0] for p in parts]
    m = lambda f: med(f(c) for c in cals)  # noqa: E731
    return Calibration({B: m(lambda c: c.step_s[B]) for B in stack_args[0]}, S, m(lambda c: c.eval_s),
                       m(lambda c: c.avg_s), {B: m(lambda c: c.retrain_step_s[B]) for B in cals[0].retrain_step_s},
                       m(lambda c: c.retrain_eval_s), single)


def job_seconds(job: GridJob, cal: Calibration | None) -> float:
    """A job's cost on one core: calibrated steps, evaluations and averaging passes for a stack; steps
    and the evaluations after the grid's epochs for single models."""
    single = cal.single.get(single_key(job.cfg, job.batch_size)) if cal is not None and not job.stacked else None
    if single:
        step_s, eval_s = single
        n_train, n_val, _ = split_sizes(job.cfg)
        evals = len(job.grid_epochs) * (n_val + n_train) / EVAL_CHUNK * eval_s
        return job.n_settings * (job.epochs * batches_per_epoch(n_train, job.batch_size) * step_s + evals)
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
    n_train, _, n_all = split_sizes(cfg)
    n = n_all if cfg.grid.retrain_on == "train+val" else n_train
    steps = retrain.epochs * batches_per_epoch(n, retrain.batch_size)
    n_test = 10000 * _classes(cfg) // 10
    key = single_key(retrain.cfg, retrain.batch_size)
    if cal is not None and not retrain.stacked and key in cal.single:
        step_s, eval_s = cal.single[key]
        return steps * step_s + retrain.epochs * (n + n_test) / EVAL_CHUNK * eval_s
    if cal is None or retrain.batch_size not in cal.retrain_step_s:
        return retrain.cost()
    evals = retrain.epochs * (n + n_test) / EVAL_CHUNK * cal.retrain_eval_s
    return steps * cal.retrain_step_s[retrain.batch_size] + evals


def estimate(cfg: Config, jobs: list[GridJob], workers: int, retrain: GridJob | None,
             cal: Calibration | None) -> float:
    """Estimated wall time of running `jobs` on `workers` and then the retrain."""
    search = makespan([job_seconds(j, cal) for j in jobs], workers) if jobs else 0.0
    return START_S + search + (retrain_seconds(cfg, cal, retrain) if retrain else 0.0)


def describe(cal: Calibration | None) -> str:
    if cal is None:
        return "from a flop count (nothing here could be timed)"
    if not cal.step_s:
        fastest, slowest = min(s for s, _ in cal.single.values()), max(s for s, _ in cal.single.values())
        return (f"calibrated here: {len(cal.single)} model(s) timed, {fastest * 1e3:.2f} to {slowest * 1e3:.2f} ms "
                f"per SGD step")
    B = min(cal.step_s)
    return (f"calibrated here: a {cal.settings}-setting step at batch {B} takes {cal.step_s[B] * 1e3:.2f} ms, "
            f"at batch {max(cal.step_s)} {cal.step_s[max(cal.step_s)] * 1e3:.1f} ms")


__all__ = ["Calibration", "calibrate", "describe", "estimate", "job_seconds", "makespan"]
