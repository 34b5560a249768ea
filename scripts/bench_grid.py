#!/usr/bin/env python3
"""Benchmark `dlhw grid` (a benchmark, not a test). Run from the repository root:

    .venv/bin/python scripts/bench_grid.py                  # both parts, 3 repetitions
    .venv/bin/python scripts/bench_grid.py --part speedup --reps 5
    .venv/bin/python scripts/bench_grid.py --part canonical --reps 3

Part `canonical`: the 4,096-setting grid of configs/softmax.yaml, end to end (`dlhw grid --fresh`,
data already cached), in a fresh process each time: wall time, peak memory of the whole process
tree (sampled from /proc), settings per second, and the test accuracy of the chosen setting.

Part `speedup`: the grid engine against a plain NumPy loop of the same math, the way the homework
did it (each setting trained alone from zero weights, every epoch count retrained from scratch),
side by side in one process with one BLAS thread each, on the sub-grid at batch size 64: 8 learning
rates x 8 alphas x the 8 epoch counts = 512 settings. The plain loop is timed on `--plain-pairs`
(lr, alpha) pairs with all 8 epoch counts and scaled linearly to the 64 pairs (its settings are
independent, so its cost is exactly linear in their number); its validation CE is checked against
the engine's.

Part `floor` (also run before `canonical`): the matrix-product floor of the grid, measured in the same
run. For every batch size B of the grid: a stack's two products per SGD step, (B x D) @ (D x N) and
(D x B) @ (B x N) with N = settings x (K - 1) stored class columns, for every step of max(epochs)
epochs, plus the evaluations the grid needs (validation and training split after each of its epoch
counts, in chunks of 8192 rows). The products are timed with NumPy's matmul at one BLAS thread in as
many processes as there are cores, all busy at once (the grid runs that way too). A canonical run's
search time and each job's time (from grid.log) are then given as ratios to that floor.

Medians of --reps repetitions are printed, and everything is written to --json.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK_HOURS = 30.0


# --------------------------------------------------------------------------- canonical grid


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of pid and all its descendants (KiB), from /proc."""
    total, todo = 0, [pid]
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo += children.get(p, [])
    return total


# --------------------------------------------------------------------------- the floor


def _product_seconds(args) -> dict:
    """Seconds per product of each shape, timed in this process with one BLAS thread."""
    shapes, seconds_each = args
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    out = {}
    with threadpool_limits(1, user_api="blas"):
        for key, (m, k, n) in shapes.items():
            a = rng.random((m, k), dtype=np.float32)
            b = rng.random((k, n), dtype=np.float32)
            c = np.empty((m, n), dtype=np.float32)
            np.matmul(a, b, out=c)
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds_each:
                np.matmul(a, b, out=c)
                reps += 1
            out[key] = (time.perf_counter() - t0) / reps
    return out


def grid_floor(config: str, seconds_each: float = 0.6) -> dict:
    """The grid's matrix-product floor per batch size (seconds on one core, all cores busy)."""
    import multiprocessing as mp
    import os

    from dlhw.config import load_config
    from dlhw.grid.jobs import MAX_STACK, split_sizes
    from dlhw.models import EVAL_CHUNK
    from dlhw.training.rules import batches_per_epoch

    cfg = load_config(ROOT / config)
    g = cfg.grid
    n_train, n_val, n_all = split_sizes(cfg)
    D, K = 784, 10
    S = min(MAX_STACK, len(g.learning_rate) * len(g.alpha))
    N = S * (K - 1)
    shapes = {}
    for B in g.batch_size:
        shapes[f"fwd{B}"] = (B, D, N)  # x V
        shapes[f"bwd{B}"] = (D, B, N)  # x^T G
    shapes["eval"] = (EVAL_CHUNK, D, N)
    for B in g.batch_size:  # the retrain: one model, K classes
        shapes[f"rfwd{B}"] = (B, D, K)
        shapes[f"rbwd{B}"] = (D, B, K)
    shapes["reval"] = (EVAL_CHUNK, D, K)
    cores = os.cpu_count() or 1
    with mp.get_context("spawn").Pool(cores) as pool:  # every core busy at once, as in the grid
        per_proc = pool.map(_product_seconds, [(shapes, seconds_each)] * cores)
    sec = {k: statistics.median(p[k] for p in per_proc) for k in shapes}
    E = max(g.epochs)
    stacks = math.ceil(len(g.learning_rate) * len(g.alpha) / S) * len(g.seeds)
    eval_rows = (n_val + n_train) * len(g.epochs)
    floor = {}
    for B in g.batch_size:
        steps = E * batches_per_epoch(n_train, B)
        floor[B] = stacks * (steps * (sec[f"fwd{B}"] + sec[f"bwd{B}"]) + eval_rows / EVAL_CHUNK * sec["eval"])
    gflops = {B: 2 * B * D * N * 2 / (sec[f"fwd{B}"] + sec[f"bwd{B}"]) / 1e9 for B in g.batch_size}
    n_retrain = n_all if g.retrain_on == "train+val" else n_train
    retrain = {B: E * batches_per_epoch(n_retrain, B) * (sec[f"rfwd{B}"] + sec[f"rbwd{B}"])
               + E * (n_retrain + 10000) / EVAL_CHUNK * sec["reval"] for B in g.batch_size}
    return {"per_batch_s": floor, "total_core_s": sum(floor.values()), "cores": cores,
            "gflops_per_core": gflops, "retrain_floor_s": retrain}


def job_seconds(run_dir: Path) -> dict[int, float]:
    """Seconds of each batch size's jobs, from grid.log."""
    out: dict[int, float] = {}
    for line in (run_dir / "grid.log").read_text().splitlines():
        m = re.search(r" job \S+ batch_size=(\d+) .*: ([0-9.]+) s", line)
        if m:
            out[int(m.group(1))] = out.get(int(m.group(1)), 0.0) + float(m.group(2))
    return out


def canonical_once(config: str, src: str | None = None) -> dict:
    """One canonical run in a fresh process; src: another checkout's src/ folder to run instead."""
    import os

    out = Path(tempfile.mkdtemp(prefix="dlhw-bench-")) / "grid"
    env = dict(os.environ, PYTHONPATH=src) if src else None
    cmd = [sys.executable, "-m", "dlhw", "grid", "--config", config, "--out", str(out), "--fresh", "-q",
           "--no-plots"]
    peak = [0]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    def sample():
        while p.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(p.pid))
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = p.communicate()
    wall = time.perf_counter() - t0
    th.join()
    if p.returncode != 0:
        raise SystemExit(f"dlhw grid failed ({p.returncode}):\n{stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    best = json.loads((out / "best.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall_s": wall, "grid_s": manifest["grid"]["seconds"], "peak_rss_mib": peak[0] / 1024,
            "workers": manifest["grid"]["workers"], "job_s": job_seconds(out),
            "retrain_s": metrics["seconds"],
            "test_accuracy": metrics["test_accuracy"], "test_ce": metrics["test_ce"],
            "best": {k: best[k] for k in ("batch_size", "learning_rate", "epochs", "alpha", "val_ce")},
            "n_settings": best["n_settings"], "stdout": stdout}


# --------------------------------------------------------------------------- speed-up vs plain loop


def plain_softmax_sgd(X, y, Xv, yv, lr, alpha, batch_size, epochs, seed, average=False, k=10):
    """One setting, zero weights, mini-batch SGD, plain NumPy, in the dtype of X. Returns val CE.

    The lean version: stable softmax, in-place updates, no per-step loss. average: report the
    mean of the last epoch's iterates (`train.average: epoch`).
    """
    from dlhw.training.rules import epoch_permutation

    n, d = X.shape
    W = np.zeros((d, k), dtype=X.dtype)
    b = np.zeros(k, dtype=X.dtype)
    Ws, bs, m = np.zeros_like(W), np.zeros_like(b), 0
    for epoch in range(1, epochs + 1):
        order = epoch_permutation(n, seed, epoch)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X[idx], y[idx]
            z = xb @ W + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), yb] -= 1
            p /= len(idx)
            W -= lr * (xb.T @ p + alpha * W)
            b -= lr * p.sum(axis=0)
            if average and epoch == epochs:
                Ws += W
                bs += b
                m += 1
    return _val_ce(Ws / m, bs / m, Xv, yv) if average else _val_ce(W, b, Xv, yv)


def homework_softmax_sgd(X, y, Xv, yv, lr, alpha, batch_size, epochs, seed, average=False, k=10):
    """The homework's way: float64 arrays (NumPy's default for X / 255.), one-hot targets, and the
    regularised mini-batch loss computed at every step for monitoring. Same math, same batches."""
    from dlhw.training.rules import batches_per_epoch, epoch_permutation

    X = X.astype(np.float64)
    n, d = X.shape
    Y = np.eye(k)[y]
    W = np.zeros((d, k))
    b = np.zeros(k)
    losses, Ws, bs = [], 0.0, 0.0
    for epoch in range(1, epochs + 1):
        order = epoch_permutation(n, seed, epoch)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X[idx], Y[idx]
            z = xb @ W + b
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            losses.append(-np.sum(yb * np.log(p + 1e-12)) / len(idx) + 0.5 * alpha * np.sum(W * W))
            grad_W = xb.T @ (p - yb) / len(idx) + alpha * W
            grad_b = (p - yb).mean(axis=0)
            W = W - lr * grad_W
            b = b - lr * grad_b
            if average and epoch == epochs:
                Ws, bs = Ws + W, bs + b
    if average:
        W, b = Ws / batches_per_epoch(n, batch_size), bs / batches_per_epoch(n, batch_size)
    return _val_ce(W, b, Xv.astype(np.float64), yv)


def _val_ce(W, b, Xv, yv) -> float:
    z = Xv @ W + b
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(yv)), yv]))


def speedup_once(prep, cfg, plain_pairs: int) -> dict:
    from dlhw.training.stack import train_stack

    g = cfg.grid
    bs = 64
    pairs = [(lr, a) for lr in g.learning_rate for a in g.alpha]
    X, y = prep.train
    t0 = time.perf_counter()
    average = cfg.train.average == "epoch"
    r = train_stack(X, y, 10, [p[0] for p in pairs], [p[1] for p in pairs], bs, 0, max(g.epochs), prep.val,
                    average=average, record_epochs=tuple(sorted(g.epochs)) if average else None)
    engine_s = time.perf_counter() - t0
    # plain loops on a spread of pairs (every 64/plain_pairs-th), each epoch count from scratch
    picks = list(range(0, len(pairs), max(1, len(pairs) // plain_pairs)))[:plain_pairs]
    out = {"engine_s": engine_s, "settings": len(pairs) * len(g.epochs), "plain_pairs_timed": len(picks)}
    for name, loop in (("homework", homework_softmax_sgd), ("lean", plain_softmax_sgd)):
        t0 = time.perf_counter()
        worst = 0.0
        for i in picks:
            lr, a = pairs[i]
            for e in g.epochs:
                v = loop(X, y, *prep.val, lr, a, bs, e, 0, average)
                ref = r.val_ce[e - 1, i]
                if np.isfinite(ref) and lr <= 0.14:  # chaotic learning rates may differ in digits
                    worst = max(worst, abs(v - ref))
        sample = time.perf_counter() - t0
        scaled = sample * len(pairs) / len(picks)
        out |= {f"{name}_s_scaled": scaled, f"{name}_speedup": scaled / engine_s,
                f"{name}_max_val_ce_diff": worst}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "canonical", "speedup", "floor"], default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--plain-pairs", type=int, default=2)
    ap.add_argument("--config", default="configs/softmax.yaml")
    ap.add_argument("--json", default="bench_grid.json")
    ap.add_argument("--compare-src", default=None, metavar="DIR",
                    help="Another checkout's src/ (e.g. a worktree of an earlier commit): each canonical "
                         "repetition runs it too, side by side, and the medians of both are printed.")
    args = ap.parse_args()
    report: dict = {"config": args.config, "reps": args.reps}

    if args.part in ("all", "speedup"):
        from threadpoolctl import threadpool_limits

        from dlhw.config import load_config
        from dlhw.data.prepare import prepare

        cfg = load_config(ROOT / args.config)
        prep = prepare(cfg)
        runs = []
        with threadpool_limits(1, user_api="blas"):
            for i in range(args.reps):
                r = speedup_once(prep, cfg, args.plain_pairs)
                runs.append(r)
                print(f"speedup rep {i + 1}: engine {r['engine_s']:.1f} s; homework loop (float64, scaled) "
                      f"{r['homework_s_scaled']:.0f} s -> {r['homework_speedup']:.1f}x; lean float32 loop "
                      f"{r['lean_s_scaled']:.0f} s -> {r['lean_speedup']:.1f}x", flush=True)
        keys = ("engine_s", "homework_s_scaled", "homework_speedup", "lean_s_scaled", "lean_speedup")
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        report["speedup"] = {"runs": runs, "median": med}
        diff = max(max(r["homework_max_val_ce_diff"], r["lean_max_val_ce_diff"]) for r in runs)
        print(f"SPEED-UP at batch size 64 ({runs[0]['settings']} settings), medians of {args.reps}: "
              f"{med['homework_speedup']:.1f}x over the homework's loop (float64, {med['homework_s_scaled']:.0f} s), "
              f"{med['lean_speedup']:.1f}x over a lean float32 loop ({med['lean_s_scaled']:.0f} s); "
              f"engine {med['engine_s']:.1f} s; max |val CE diff| on stable settings {diff:.1e}")

    floors = []
    if args.part in ("all", "canonical", "floor"):
        floors.append(grid_floor(args.config))
        f = floors[-1]
        print("FLOOR (matrix products only, one BLAS thread per core, all cores busy): "
              + ", ".join(f"B={B} {s:.0f} s ({f['gflops_per_core'][B]:.0f} GFLOP/s)" for B, s in f["per_batch_s"].items())
              + f"; total {f['total_core_s']:.0f} core-s = {f['total_core_s'] / f['cores']:.0f} s on {f['cores']} cores",
              flush=True)
    if args.part in ("all", "canonical"):
        runs, others = [], []
        for i in range(args.reps):
            if args.compare_src:
                o = canonical_once(args.config, args.compare_src)
                fl_o = grid_floor(args.config)
                floors.append(fl_o)
                o["floor_s"] = fl_o["total_core_s"] / min(o["workers"], fl_o["cores"])
                o["search_vs_floor"] = o["grid_s"] / o["floor_s"]
                o["job_vs_floor"] = {B: s / fl_o["per_batch_s"][B] for B, s in o["job_s"].items()}
                others.append(o)
                print(f"  other src, rep {i + 1}: {o['wall_s']:.1f} s wall, search {o['grid_s']:.1f} s = "
                      f"{o['search_vs_floor']:.2f}x the floor ({o['floor_s']:.0f} s), retrain {o['retrain_s']:.1f} s; "
                      + ", ".join(f"{B}: {v:.2f}x" for B, v in sorted(o["job_vs_floor"].items()))
                      + f"; test accuracy {o['test_accuracy']:.4f} CE {o['test_ce']:.6f}", flush=True)
            runs.append(canonical_once(args.config))
            r = runs[-1]
            floors.append(grid_floor(args.config))  # measured again beside each run: the machine drifts
            fl = statistics.median(x["total_core_s"] for x in floors[-2:]) / min(r["workers"], floors[-1]["cores"])
            r["floor_s"], r["search_vs_floor"] = fl, r["grid_s"] / fl
            r["job_vs_floor"] = {B: s / statistics.median(x["per_batch_s"][B] for x in floors[-2:])
                                 for B, s in r["job_s"].items()}
            bb = r["best"]["batch_size"]
            r["retrain_floor_s"] = statistics.median(x["retrain_floor_s"][bb] for x in floors[-2:])
            print(f"canonical rep {i + 1}: {r['wall_s']:.1f} s wall, search {r['grid_s']:.1f} s = "
                  f"{r['search_vs_floor']:.2f}x the floor ({fl:.0f} s), retrain {r['retrain_s']:.1f} s "
                  f"({r['retrain_s'] / r['retrain_floor_s']:.1f}x its floor of {r['retrain_floor_s']:.1f} s); per batch size "
                  + ", ".join(f"{B}: {v:.2f}x" for B, v in sorted(r["job_vs_floor"].items()))
                  + f"; peak {r['peak_rss_mib']:.0f} MiB, test accuracy {r['test_accuracy']:.4f}, best {r['best']}",
                  flush=True)
        med_wall = statistics.median(r["wall_s"] for r in runs)
        report["canonical"] = {"runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
                               "median_wall_s": med_wall,
                               "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                               "vs_homework": HOMEWORK_HOURS * 3600 / med_wall}
        report["canonical"]["median_search_vs_floor"] = statistics.median(r["search_vs_floor"] for r in runs)
        report["canonical"]["median_job_vs_floor"] = {
            B: statistics.median(r["job_vs_floor"][B] for r in runs) for B in runs[0]["job_vs_floor"]}
        report["floors"] = floors
        if others:
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            report["compare_src"] = {"src": args.compare_src, "runs": [{k: v for k, v in o.items() if k != "stdout"}
                                                                        for o in others]}
            for name, rs in (("other src", others), ("this checkout", runs)):
                print(f"{name:>13}: medians of {len(rs)}: wall {med(rs, 'wall_s'):.1f} s, search {med(rs, 'grid_s'):.1f} s "
                      f"= {med(rs, 'search_vs_floor'):.2f}x the floor ({med(rs, 'floor_s'):.0f} s), retrain "
                      f"{med(rs, 'retrain_s'):.1f} s; per batch size "
                      + ", ".join(f"{B}: {statistics.median(r['job_vs_floor'][B] for r in rs):.2f}x"
                                  for B in sorted(rs[0]["job_vs_floor"])))
            print(f"this checkout / other src, wall: {med(runs, 'wall_s') / med(others, 'wall_s'):.3f}")
        print(runs[-1]["stdout"])
        print(f"SEARCH vs FLOOR, medians of {args.reps}: {report['canonical']['median_search_vs_floor']:.2f}x; "
              + ", ".join(f"B={B}: {v:.2f}x" for B, v in sorted(report["canonical"]["median_job_vs_floor"].items())))
        print(f"CANONICAL GRID ({runs[0]['n_settings']} settings): median {med_wall:.1f} s wall "
              f"({med_wall / 60:.2f} min; {HOMEWORK_HOURS * 3600 / med_wall:.0f}x faster than 30 hours), "
              f"peak memory {report['canonical']['median_peak_rss_mib']:.0f} MiB, "
              f"test accuracy {runs[0]['test_accuracy']:.2%}")
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
