#!/usr/bin/env python3
"""Benchmark the grid's executors and how it scales with workers (a benchmark, not a test).
Run from the repository root (needs the dask extra, which `make install` installs):

    .venv/bin/python scripts/bench_cluster.py                     # both parts, 3 repetitions
    .venv/bin/python scripts/bench_cluster.py --part cut          # the simulation only (~2 min)
    .venv/bin/python scripts/bench_cluster.py --part executors --reps 1 --set grid.batch_size=[64,128]

Part `cut` (simulation: a 2-core machine cannot show 32 workers). One stack of the grid is timed at
each width 64, 32, 16, 8, 4 and each batch size, on one core with one BLAS thread: seconds per SGD
step (a long call timed against a one-step call, on random rows of the data's shape), per
evaluation chunk and per averaging pass, turned into the job's seconds by the same formula as
`dlhw grid --dry-run` (`estimate.job_seconds`). Measured once with one process and once with every
core busy (as a loaded worker machine runs). Printed: the measured job seconds beside the cost
model the planner uses (`GridJob.cost`), a least-squares fit of per-step seconds a + b*S + c*B*S,
and for 1, 2, 8, 32 and 128 workers the cut `grid.cut.plan` chooses and the predicted search time
(jobs longest first on the workers) plus the retrain, which stays one serial setting.

Part `executors`: the grid end to end (`dlhw grid --fresh`, data cached) in a fresh process per run,
side by side in each repetition (order rotated): the local pool with 2 workers (`--jobs 2`), a Dask
LocalCluster with 2 workers (`--scheduler local --jobs 2`), a `dask scheduler` with two `dask worker`
processes started beforehand (`--scheduler tcp://...`), and the local pool with 1 worker (`--jobs 1`).
Printed: medians, Dask's overhead over the pool (median of the paired per-repetition ratios), the
speed-up of 2 workers over 1, and for the pool runs `dlhw grid --dry-run`'s calibrated estimate (run
just before each) against the run's wall time. With both parts, the cut part's predictions for 1 and
2 workers are checked against the real search times.

Everything is written to --json.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS = 16384  # random rows the steps are timed on
WORKER_COUNTS = (1, 2, 8, 32, 128)


# --------------------------------------------------------------------------- part cut


def _measure(args) -> dict:
    """One process, one BLAS thread: per-step, evaluation and averaging seconds for each width."""
    batch_sizes, widths, dtype = args
    from threadpoolctl import threadpool_limits

    from dlhw.grid.estimate import _per_step
    from dlhw.models import EVAL_CHUNK
    from dlhw.training import kernels
    from dlhw.training.stack import stack_metrics, train_stack

    K, D = 10, 784
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    out = {"step_s": {}, "eval_s": {}, "avg_s": {}}
    with threadpool_limits(1, user_api="blas"):
        X = rng.random((ROWS, D), dtype=np.float32).astype(dt)
        y = rng.integers(0, K, ROWS)
        val = (X[:1], y[:1])
        t0 = time.perf_counter()  # warm up the kernels and the core (a cold first second reads slow)
        while time.perf_counter() - t0 < 2.0:
            train_stack(X[:4096], y[:4096], K, [0.01] * 64, [1e-4] * 64, 16, 0, 1, val)
        for S in widths:
            lrs, alphas = [0.01] * S, [1e-4] * S
            for B in batch_sizes:
                out["step_s"][f"{B},{S}"] = _per_step(  # a long call against a one-step call, best of 3
                    lambda n: train_stack(X[:n], y[:n], K, lrs, alphas, B, 0, 1, val), B,
                    long=max(8, min(512, ROWS // B)), tries=3)
            Xe, ye = np.resize(X, (EVAL_CHUNK, D)), np.resize(y, EVAL_CHUNK)
            V, c, b = np.zeros((D, (K - 1) * S), dt), np.ones(S), np.zeros((K, S), dt)
            best = math.inf
            for _ in range(3):
                t0 = time.perf_counter()
                stack_metrics(Xe, ye, V, c, b)
                best = min(best, time.perf_counter() - t0)
            out["eval_s"][str(S)] = best
            A, ct = np.zeros_like(V), np.ones((K - 1) * S, dt)
            t0 = time.perf_counter()
            for _ in range(20):
                kernels.add_true_weights(V, ct, A)
            out["avg_s"][str(S)] = (time.perf_counter() - t0) / 20
    return out


def measure_widths(cfg, widths: list[int], procs: int) -> dict:
    """Median over `procs` processes timing at once (procs = cores: every core busy)."""
    args = (sorted(cfg.grid.batch_size), widths, cfg.train.dtype)
    if procs == 1:
        per = [_measure(args)]
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            per = pool.map(_measure, [args] * procs)
    return {part: {k: statistics.median(p[part][k] for p in per) for k in per[0][part]} for part in per[0]}


def job_table(cfg, m: dict, widths: list[int]) -> dict:
    """(batch size, width) -> the canonical job's seconds, by the estimator's own formula."""
    from dlhw.grid.estimate import Calibration, job_seconds
    from dlhw.grid.jobs import GridJob

    g = cfg.grid
    out = {}
    for S in widths:
        cal = Calibration({B: m["step_s"][f"{B},{S}"] for B in g.batch_size}, S, m["eval_s"][str(S)],
                          m["avg_s"][str(S)], {}, 0.0)
        for B in g.batch_size:
            job = GridJob(cfg, B, g.seeds[0], (0.01,) * S, (0.0,) * S, max(g.epochs), tuple(sorted(g.epochs)))
            out[B, S] = job_seconds(job, cal)
    return out


def fit_steps(m: dict) -> tuple[float, float, float, float]:
    """Least squares (relative error) of per-step seconds = a + b*S + c*B + d*B*S, the form of `GridJob.cost`."""
    rows, t = [], []
    for key, s in m["step_s"].items():
        B, S = map(int, key.split(","))
        rows.append([1.0, S, B, B * S])
        t.append(s)
    A, t = np.array(rows), np.array(t)
    w = 1 / t
    coef, *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    return tuple(float(c) for c in coef)


def plans(cfg, table: dict, retrain_s: float) -> dict:
    """For each worker count: the planner's cut with the measured costs, and its predicted times."""
    from dlhw.grid import cut
    from dlhw.grid.estimate import makespan
    from dlhw.grid.jobs import make_jobs

    g = cfg.grid
    n = len(g.learning_rate) * len(g.alpha)
    groups = [(seed, B) for seed in g.seeds for B in g.batch_size]
    out = {}
    for workers in WORKER_COUNTS:
        width = cut.plan(groups, n, 64, workers, lambda grp, s: table[grp[1], s])
        costs = [table[grp[1], s] for grp in groups for s in cut.chunk_sizes(n, width[grp])]
        # the cut `dlhw grid` itself makes (its planner runs on the fitted cost model), judged by the measurements
        made = make_jobs(cfg, workers=workers)
        made_span = makespan([table[j.batch_size, j.n_settings] for j in made], workers)
        out[workers] = {"jobs": len(costs), "width": {B: width[g.seeds[0], B] for B in g.batch_size},
                        "search_s": makespan(costs, workers), "work_s": sum(costs), "retrain_s": retrain_s,
                        "dlhw_jobs": len(made), "dlhw_search_s": made_span}
    return out


def retrain_seconds(cfg, procs: int) -> float:
    """The retrain of the longest setting (the smallest batch size, max epochs), by the estimator."""
    from dlhw.grid import estimate
    from dlhw.grid.jobs import GridJob

    g = cfg.grid
    job = GridJob(cfg, min(g.batch_size), g.seeds[0], (g.learning_rate[0],), (g.alpha[0],), max(g.epochs), ())
    cal = estimate.calibrate(cfg, [GridJob(cfg, min(g.batch_size), g.seeds[0], (0.01,), (0.0,), 1, (1,))], procs)
    return estimate.retrain_seconds(cfg, cal, job)


def part_cut(cfg, report: dict) -> None:
    from dlhw.grid import cut
    from dlhw.grid.jobs import GridJob

    g = cfg.grid
    widths = cut.widths(len(g.learning_rate) * len(g.alpha), 64)
    cores = os.cpu_count() or 1
    report["cut"] = {}
    for procs in sorted({1, cores}):
        t0 = time.perf_counter()
        m = measure_widths(cfg, widths, procs)
        table = job_table(cfg, m, widths)
        a, b, c, d = fit_steps(m)
        retrain = retrain_seconds(cfg, procs)
        res = plans(cfg, table, retrain)
        report["cut"][procs] = {"measured": m, "job_s": {f"{B},{S}": v for (B, S), v in table.items()},
                                "fit": {"a": a, "b": b, "c": c, "d": d}, "plans": res}
        print(f"\n== one stack's seconds per job ({max(g.epochs)} epochs), {procs} process(es) busy, "
              f"measured in {time.perf_counter() - t0:.0f} s; model = GridJob.cost ==")
        print("batch " + "".join(f"{f'w={S}':>18}" for S in widths))
        for B in g.batch_size:
            cells = []
            for S in widths:
                model = GridJob(cfg, B, 0, (0.0,) * S, (0.0,) * S, max(g.epochs), tuple(sorted(g.epochs))).cost()
                cells.append(f"{table[B, S]:8.1f} ({model / table[B, S]:.2f}x)")
            print(f"{B:5d} " + "".join(f"{x:>18}" for x in cells))
        print("(in brackets: the model / measured)")
        print(f"per-step fit: {a * 1e6:.1f} us + {b * 1e6:.2f} us * S + {c * 1e6:.2f} us * B + {d * 1e9:.0f} ns * B * S "
              f"(GridJob.cost: 8.0 us + 0.73 us * S + 0.69 us * B + 233 ns * B * S)")
        print("narrowing costs (work at width w / work at 64, summed over batch sizes): "
              + ", ".join(f"w={S}: {sum(table[B, S] * 64 / S for B in g.batch_size) / sum(table[B, 64] for B in g.batch_size):.2f}"
                          for S in widths))
        print(f"{'workers':>8} {'jobs':>5} {'search':>9} {'+retrain':>9} {'vs 2':>6}   widths by batch size"
              f"   (dlhw's own cut: jobs, search)")
        for w, p in res.items():
            print(f"{w:8d} {p['jobs']:5d} {p['search_s']:8.1f}s {p['search_s'] + p['retrain_s']:8.1f}s "
                  f"{res[2]['search_s'] / p['search_s']:5.1f}x   "
                  + " ".join(f"{B}:{p['width'][B]}" for B in g.batch_size)
                  + f"   ({p['dlhw_jobs']}, {p['dlhw_search_s']:.1f}s)")


# --------------------------------------------------------------------------- part executors


def _start_cluster(tmp: Path, n: int) -> tuple[str, list[subprocess.Popen]]:
    from dlhw.grid.cluster import quiet_env

    dask = str(BIN / "dask")
    env = {**os.environ, **quiet_env()}  # Dask's monitors turned down, as the README starts them
    sched_file = tmp / "scheduler.json"
    logs = open(tmp / "cluster.log", "w")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], stdout=logs, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=tmp, env=env)]
    deadline = time.time() + 60
    while not sched_file.is_file() and time.time() < deadline:
        time.sleep(0.2)
    address = json.loads(sched_file.read_text())["address"]
    for i in range(n):
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                       "--no-dashboard", "--name", f"bench{i}"], stdout=logs,
                                      stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp, env=env))
    from distributed import Client

    with Client(address, timeout=30) as c:
        c.wait_for_workers(n, timeout=60)
    return address, procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def run_grid(config: str, out: Path, sets: list[str], extra: list[str]) -> dict:
    cmd = [str(BIN / "dlhw"), "grid", "--config", config, "--out", str(out), "--fresh", "-q", "--no-plots",
           *[a for s in sets for a in ("--set", s)], *extra]
    estimated = None
    if "--scheduler" not in extra:  # what `--dry-run` promises just before the run (calibrated here)
        dry = [*cmd[:cmd.index("--out")], "--out", str(out) + "-dry-run", *cmd[cmd.index("--no-plots") + 1:],
               "--dry-run"]  # an empty folder: the estimate for the whole grid, as the --fresh run does it
        d = subprocess.run(dry, capture_output=True, text=True, cwd=ROOT)
        m = re.search(r"estimated (?:(\d+)m)?(\d+)s", d.stdout)
        estimated = int(m[1] or 0) * 60 + int(m[2]) if m else None
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    best = json.loads((out / "best.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "search_s": manifest["grid"]["seconds"], "estimated_s": estimated, "test_accuracy": metrics["test_accuracy"],
            "test_ce": metrics["test_ce"], "best": {k: best[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")}, "executor": manifest["grid"].get("executor", {}).get("kind")}


def part_executors(args, report: dict) -> None:
    variants = ["pool 2", "dask local 2", "dask scheduler 2", "pool 1"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="dlhw-bench-cluster-") as tmp:
        tmp = Path(tmp)
        address, procs = _start_cluster(tmp, 2)
        try:
            for rep in range(args.reps):
                order = variants[rep % len(variants):] + variants[:rep % len(variants)]
                for v in order:
                    extra = {"pool 2": ["--jobs", "2"], "dask local 2": ["--scheduler", "local", "--jobs", "2"],
                             "dask scheduler 2": ["--scheduler", address], "pool 1": ["--jobs", "1"]}[v]
                    r = run_grid(args.config, tmp / v.replace(" ", "-"), args.set, extra)
                    runs[v].append(r)
                    est = f" (--dry-run said {r['estimated_s']} s)" if r["estimated_s"] else ""
                    print(f"rep {rep + 1} {v:>17}: wall {r['wall_s']:7.1f} s{est}, search {r['search_s']:7.1f} s, "
                          f"test accuracy {r['test_accuracy']}", flush=True)
        finally:
            _stop(procs)
    results = {r["test_accuracy"] for rs in runs.values() for r in rs} | {r["test_ce"] for rs in runs.values() for r in rs}
    med = lambda v, k: statistics.median(r[k] for r in runs[v])  # noqa: E731
    paired = lambda a, b, k: statistics.median(x[k] / y[k] for x, y in zip(runs[a], runs[b]))  # noqa: E731
    summary = {v: {"wall_s": med(v, "wall_s"), "search_s": med(v, "search_s")} for v in variants}
    ratios = {"dask_local_over_pool_wall": paired("dask local 2", "pool 2", "wall_s"),
              "dask_scheduler_over_pool_wall": paired("dask scheduler 2", "pool 2", "wall_s"),
              "dask_local_over_pool_search": paired("dask local 2", "pool 2", "search_s"),
              "dask_scheduler_over_pool_search": paired("dask scheduler 2", "pool 2", "search_s"),
              "speedup_2_over_1_wall": paired("pool 1", "pool 2", "wall_s"),
              "speedup_2_over_1_search": paired("pool 1", "pool 2", "search_s")}
    report["executors"] = {"config": args.config, "set": args.set, "reps": args.reps, "runs": runs,
                           "medians": summary, "ratios": ratios, "same_results": len(results) == 2}
    print(f"\n== medians of {args.reps} ({args.config} {' '.join(args.set)}) ==")
    for v in variants:
        print(f"{v:>17}: wall {summary[v]['wall_s']:7.1f} s, search {summary[v]['search_s']:7.1f} s")
    print(f"Dask overhead over the pool (paired ratios, wall / search): LocalCluster "
          f"{ratios['dask_local_over_pool_wall']:.3f} / {ratios['dask_local_over_pool_search']:.3f}, "
          f"scheduler + 2 workers {ratios['dask_scheduler_over_pool_wall']:.3f} / "
          f"{ratios['dask_scheduler_over_pool_search']:.3f}")
    print(f"2 workers over 1 (pool): {ratios['speedup_2_over_1_wall']:.2f}x wall, "
          f"{ratios['speedup_2_over_1_search']:.2f}x search")
    for v in ("pool 1", "pool 2"):  # the calibrated estimate against the real time, run by run
        est = [r["estimated_s"] / r["wall_s"] for r in runs[v] if r["estimated_s"]]
        if est:
            report["executors"].setdefault("dry_run_over_wall", {})[v] = statistics.median(est)
            print(f"{v}: --dry-run's estimate / the run's wall time: median {statistics.median(est):.2f} "
                  f"({', '.join(f'{e:.2f}' for e in est)})")
    print(f"every run chose the same setting with the same test metrics: {report['executors']['same_results']}")


def check_predictions(report: dict) -> None:
    """The cut part's predicted search for 1 and 2 workers beside the real runs' median search."""
    cores = os.cpu_count() or 1
    med = report["executors"]["medians"]
    print("\n== predicted vs real search ==")
    for workers, variant, procs in ((1, "pool 1", 1), (2, "pool 2", min(2, cores))):
        pred = report["cut"][procs]["plans"][workers]["search_s"]
        real = med[variant]["search_s"]
        report.setdefault("predicted_vs_real", {})[workers] = {"predicted_s": pred, "real_s": real}
        print(f"{workers} worker(s): predicted {pred:.1f} s, measured {real:.1f} s ({pred / real - 1:+.0%})")
    # the most 2 workers can give here: the 1-worker search divided by the predicted ratio (jobs balanced
    # on 2 workers, each core slower with both busy: the cut part's two tables), plus the serial rest
    # (start, selection, retrain) as measured with 1 worker
    search_ratio = report["cut"][1]["plans"][1]["search_s"] / report["cut"][min(2, cores)]["plans"][2]["search_s"]
    wall1, search1 = med["pool 1"]["wall_s"], med["pool 1"]["search_s"]
    ceiling = wall1 / (search1 / search_ratio + (wall1 - search1))
    speedup = report["executors"]["ratios"]["speedup_2_over_1_wall"]
    report["ceiling_2_over_1"] = {"search": search_ratio, "wall": ceiling, "measured_wall": speedup}
    print(f"2 workers over 1, the most this machine allows (jobs' measured cost alone vs both cores busy, "
          f"balance, serial retrain): {search_ratio:.2f}x search, {ceiling:.2f}x wall; measured {speedup:.2f}x wall "
          f"({speedup / ceiling:.0%} of it)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["cut", "executors", "all"], default="all")
    ap.add_argument("--config", default="configs/softmax.yaml")
    ap.add_argument("--set", action="append", default=[], help="config overrides for the executors part")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="results/bench_cluster.json")
    args = ap.parse_args()
    from dlhw.config import load_config

    report: dict = {"argv": sys.argv[1:], "cores": os.cpu_count()}
    if args.part in ("cut", "all"):
        part_cut(load_config(ROOT / args.config), report)
    if args.part in ("executors", "all"):
        part_executors(args, report)
    if args.part == "all" and not args.set:
        check_predictions(report)
    out = ROOT / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
