#!/usr/bin/env python3
"""What evaluating only the epochs a grid reads saves for a network's grid job (a benchmark, not a test).

    .venv/bin/python scripts/bench_grid_eval.py                  # configs/mlp_grid.yaml's networks, 9 epochs
    .venv/bin/python scripts/bench_grid_eval.py --epochs 30 --reps 3

A grid job of a single model (a network, or momentum) trains one setting for max(epochs) epochs and
reads it after each of the grid's epoch counts. `fit` used to evaluate the validation and the
training split after every epoch; a grid job now evaluates them only after the grid's epoch counts
(`fit(eval_at=, train_at=)`). For each network of the config (at its first batch size and lr, one
BLAS thread, the real data), both are timed side by side in alternating order, with the grid's
epoch counts spread over --epochs like the config's (e.g. 10, 20, 30 -> 3, 6, 9 of 9). The trained
weights are checked to be identical. Medians of --reps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/mlp_grid.yaml")
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from dlhw.config import load_config
    from dlhw.data.prepare import prepare
    from dlhw.models import build_model
    from dlhw.training.loop import fit

    cfg = load_config(ROOT / args.config)
    g = cfg.grid
    E = args.epochs
    read = sorted({max(1, round(e * E / max(g.epochs))) for e in g.epochs})
    variants = g.variants()
    prep = prepare(cfg.variant(variants[0]))
    print(f"{cfg.name}: batch {g.batch_size[0]}, lr {g.learning_rate[0]}, {E} epochs read after {read}; "
          f"{len(prep.train[1])} training and {len(prep.val[1])} validation rows; one BLAS thread")
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for values in variants:
            sub = cfg.variant(values)
            tc = replace(sub.train, batch_size=g.batch_size[0], learning_rate=g.learning_rate[0], alpha=g.alpha[0],
                         epochs=E, eval_every=None)
            times: dict[str, list[float]] = {"every epoch": [], "grid epochs": []}
            weights = {}
            for rep in range(args.reps):
                for how in (("every epoch", "grid epochs") if rep % 2 == 0 else ("grid epochs", "every epoch")):
                    at = None if how == "every epoch" else set(read)
                    model = build_model(sub, prep.n_features, len(prep.classes))
                    t0 = time.perf_counter()
                    fit(model, prep.train, tc, {"val": prep.val}, eval_at=at, train_at=at)
                    times[how].append(time.perf_counter() - t0)
                    weights[how] = {k: v.copy() for k, v in model.params.items()}
            same = all(np.array_equal(weights["every epoch"][k], weights["grid epochs"][k]) for k in weights["grid epochs"])
            a, b = statistics.median(times["every epoch"]), statistics.median(times["grid epochs"])
            label = ", ".join(f"{k} {v}" for k, v in values.items()) or "the config"
            rows.append((label, a, b, same))
            print(f"{label:>30}: every epoch {a:6.1f} s, grid epochs only {b:6.1f} s: {1 - b / a:5.1%} saved; "
                  f"same weights: {same}", flush=True)
    total_a, total_b = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all':>30}: {total_a:.1f} s -> {total_b:.1f} s, {1 - total_b / total_a:.1%} saved")
    if not all(r[3] for r in rows):
        sys.exit("the weights differ: evaluation changed training")


if __name__ == "__main__":
    main()
