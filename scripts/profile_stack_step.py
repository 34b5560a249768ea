#!/usr/bin/env python3
"""Where one stacked SGD step's time goes (a benchmark, not a test). Run from the repository root:

    .venv/bin/python scripts/profile_stack_step.py            # B = 16 and 1024, 64 settings, float32

Times each operation of `training.stack.train_stack`'s step on its own, repeated on the same arrays
(medians of 7 rounds, one BLAS thread), next to the whole step as `train_stack` runs it (one epoch
of random data, per step). "products" is the floor of a step: the two matrix products alone.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from dlhw.training import kernels
from dlhw.training.rules import epoch_batches
from dlhw.training.stack import train_stack


def timed(f, n: int) -> float:
    """Median seconds per call over 7 rounds of n calls."""
    f()
    out = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        out.append((time.perf_counter() - t0) / n)
    return statistics.median(out)


def profile(B: int, S: int = 64, K: int = 10, D: int = 784, n: int = 48000) -> dict[str, float]:
    rng = np.random.default_rng(0)
    X = rng.random((n, D), dtype=np.float32) * 0.1
    y = rng.integers(0, K, n)
    N = (K - 1) * S
    V = rng.normal(scale=1e-3, size=(D, N)).astype(np.float32)
    c, c_next, b = np.ones(S), np.ones(S), np.zeros((K, S), np.float32)
    R = kernels.ROWS
    Zl, P = np.empty((B, N), np.float32), np.empty((R, K, S), np.float32)
    zy, ce, db = np.empty((R, S), np.float32), np.empty(S, np.float32), np.zeros((K, S), np.float32)
    alive, hard, lr, decay = np.ones(S, bool), np.zeros(S, bool), np.full(S, 0.01), np.full(S, 1 - 1e-6)
    coef = np.full(S, 1e-3, np.float32)
    A = np.zeros_like(V)
    gemm = kernels.gemm_for(np.float32)
    idx = np.sort(rng.choice(n, B, replace=False))
    xb, yb = X[idx], y[idx]
    reps = max(20, 20000 // B)

    def blocks(f):
        """f(rows j..j+r) over the step's blocks of ROWS rows, as train_stack runs them."""
        def run():
            for j in range(0, B, R):
                f(j, min(R, B - j))
        return run

    kernels.forward(xb, V, Zl)
    np.seterr(over="ignore")  # exp repeated in place on the same block overflows; only its time counts
    t = {
        "gather X[idx], y[idx]": timed(lambda: (X[idx], y[idx]), reps),
        "product 1: x V": timed(lambda: kernels.forward(xb, V, Zl), reps),
        "step sizes (compiled, S values)": timed(lambda: kernels.begin_step(c, decay, hard, lr, B, c_next, coef, ce, db),
                                                 reps),
        "shifted logits (compiled, blocks)": timed(blocks(lambda j, r: kernels.shifted_logits(
            Zl[j:j + r], c, b, yb[j:j + r], P[:r], zy[:r])), reps),
        "exp (NumPy, blocks)": timed(blocks(lambda j, r: np.exp(P[:r], out=P[:r])), reps),
        "CE + gradient (compiled, blocks)": timed(blocks(lambda j, r: kernels.ce_gradient(
            P[:r], zy[:r], yb[j:j + r], coef, ce, Zl[j:j + r], db)), reps),
        "divergence check, bias step (compiled)": timed(lambda: kernels.end_step(alive, ce, b, db, c, 1e-3, 1e3), reps),
        "product 2 + update: V -= x^T G": timed(lambda: kernels.update(gemm, xb, Zl, V), reps),
        "averaging pass (recorded epochs only)": timed(lambda: kernels.add_true_weights(V, np.tile(c.astype(np.float32), K - 1), A),
                                                      reps),
    }
    steps = sum(1 for _ in epoch_batches(n, B, 0, 1))
    lrs = list(np.repeat(np.logspace(-3, 0, 8), S // 8))
    alphas = list(np.tile(np.r_[0, np.logspace(-6, -2, 7)], S // 8))
    val = (X[:100], y[:100])
    train_stack(X[:2000], y[:2000], K, lrs, alphas, B, 0, 1, val)  # compile / load the kernels
    whole = []
    for _ in range(3):
        t0 = time.perf_counter()
        train_stack(X, y, K, lrs, alphas, B, 0, 1, val, record_epochs=(1,), average=False)
        whole.append((time.perf_counter() - t0) / steps)
    t["whole step in train_stack"] = statistics.median(whole)
    t["products (the floor)"] = t["product 1: x V"] + t["product 2 + update: V -= x^T G"]
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 1024])
    args = ap.parse_args()
    with threadpool_limits(1, user_api="blas"):
        for B in args.batch:
            t = profile(B)
            floor = t["products (the floor)"]
            print(f"batch {B}: one step {t['whole step in train_stack'] * 1e6:.0f} us, "
                  f"products {floor * 1e6:.0f} us ({t['whole step in train_stack'] / floor:.2f}x)")
            for k, v in t.items():
                print(f"  {k:<42} {v * 1e6:9.1f} us  {v / floor:6.1%}")


if __name__ == "__main__":
    main()
