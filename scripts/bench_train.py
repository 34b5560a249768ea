#!/usr/bin/env python3
"""Benchmark the core (a benchmark, not a test): data load cold and cached, and seconds per epoch of
softmax regression at batch size 64 in float32 and float64. Medians of --reps, side by side.

    .venv/bin/python scripts/bench_train.py [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from dlhw import data as ds
from dlhw.config import from_dict
from dlhw.models import SoftmaxRegression
from dlhw.data.prepare import prepare
from dlhw.training.loop import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cold, warm = [], []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            ds.load("fashion-mnist", cache_dir=cache)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            ds.load("fashion-mnist", cache_dir=cache)
            warm.append(time.perf_counter() - t)
    print(f"data load, cold (decompress + verify SHA-256 + decode + cache): median {statistics.median(cold):.3f} s")
    print(f"data load, cached: median {statistics.median(warm):.3f} s")
    per_epoch: dict[str, list[float]] = {"float32": [], "float64": []}
    preps = {dt: prepare(from_dict({"name": "b", "train": {"dtype": dt}})) for dt in per_epoch}
    for _ in range(args.reps):
        for dt, prep in preps.items():  # interleaved: both see the same machine load
            cfg = from_dict({"name": "b", "train": {"dtype": dt, "batch_size": 64, "learning_rate": 0.05,
                                                    "epochs": args.epochs}})
            m = SoftmaxRegression(prep.n_features, 10, cfg.train.alpha, np.dtype(dt))
            t = time.perf_counter()
            fit(m, prep.train, cfg.train)  # includes the per-epoch train-split evaluation
            per_epoch[dt].append((time.perf_counter() - t) / args.epochs)
    f32, f64 = (statistics.median(per_epoch[k]) for k in ("float32", "float64"))
    print(f"seconds per epoch, batch 64 (48,000 images): float32 {f32:.3f} s, float64 {f64:.3f} s "
          f"(float64 / float32 = {f64 / f32:.2f})")


if __name__ == "__main__":
    main()
