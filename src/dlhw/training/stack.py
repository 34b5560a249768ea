"""Stacked softmax regression: many (learning rate, alpha) settings trained at once.

All settings share the mini-batch order (`rules.epoch_batches`), so one SGD
step for S settings is two matrix products on weights laid side by side,
V (D, K*S) with column k*S + s holding class k of setting s, instead of a
Python loop over settings. Each setting's result is the result `loop.fit`
gives for it alone, up to float rounding: both follow `training.rules` (batches,
divergence, averaging, metrics). Plain SGD only: other optimisers train unstacked.

One class for free: from zero weights, every gradient X^T (P - Y) has columns
summing to zero over the classes (rows of P - Y sum to 0), and decay keeps
that, so W's class columns always sum to zero. V therefore stores only the
first K - 1 class columns, and the last class's logits are minus the sum of
the others: 10% fewer multiply-adds for K = 10, the same trajectory.

Lazy weight decay: the true weights are W_s = c_s * V_s with one scale c_s per
setting. The step W <- (1 - lr*alpha) W - lr * G becomes
    c <- c * (1 - lr*alpha);   V <- V - (lr / c) * G,
so decay costs O(S) per step instead of a pass over all D*K*S weights, and the
gradient is scaled on the small (B, K*S) side of its product.

Iterate averaging (`average=True`, see `training.rules.IterateMean`): after every
step the true weights c * V are added to an epoch sum A; the epoch's metrics and
the returned weights are those of A / steps. That pass over the stack costs about
a seventh of a step's products at batch 16, so the mean is formed only in the
epochs whose metrics are recorded (`record_epochs`).

The step's elementwise work and the weight update run in `training.kernels`
(compiled loops, gemm with beta = 1): docs/performance.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlhw.models.base import EVAL_CHUNK
from dlhw.training import kernels
from dlhw.training.rules import IterateMean, epoch_batches, nonfinite

RESCALE_LO, RESCALE_HI = 1e-3, 1e3  # fold c back into V outside this band (keeps V well scaled)


@dataclass
class StackResult:
    """Per-setting results; arrays indexed [epoch - 1, setting] or [setting]."""

    val_ce: np.ndarray  # (E, S) float64, NaN once diverged
    val_accuracy: np.ndarray  # (E, S)
    train_ce: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> (S,)
    diverged_epoch: np.ndarray | None = None  # (S,) int, 0 = never
    W: np.ndarray | None = None  # (S, D, K) final true weights, if asked
    b: np.ndarray | None = None  # (S, K)


def stack_metrics(X: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, b: np.ndarray):
    """Mean CE (S,) and accuracy (S,) of every setting on (X, y), in fixed chunks: the metric rule
    of `models.layers.cross_entropy` (exp-sum in float64, ties to the first class), its passes
    compiled (`kernels.eval_logits`, `eval_ce`) around NumPy's exp."""
    K, S = b.shape
    n = X.shape[0]
    ce, correct = np.zeros(S), np.zeros(S, dtype=np.int64)
    R = kernels.ROWS
    Zl = np.empty((min(EVAL_CHUNK, n), (K - 1) * S), dtype=V.dtype)
    P, zy = np.empty((R, K, S), dtype=V.dtype), np.empty((R, S), dtype=V.dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for i in range(0, n, EVAL_CHUNK):
            Xc, yc = X[i:i + EVAL_CHUNK], y[i:i + EVAL_CHUNK]
            m = len(yc)
            np.matmul(Xc, V, out=Zl[:m])
            for j in range(0, m, R):  # the elementwise passes block by block, rows in order
                r = min(R, m - j)
                Pr = P[:r]
                kernels.eval_logits(Zl[j:j + r], c, b, yc[j:j + r], Pr, zy[:r], correct)
                np.exp(Pr, out=Pr)
                kernels.eval_ce(Pr, zy[:r], ce)
    m = max(n, 1)
    return ce / m, correct / m


def train_stack(X: np.ndarray, y: np.ndarray, n_classes: int, learning_rates, alphas, batch_size: int,
                seed: int, epochs: int, val: tuple[np.ndarray, np.ndarray], *,
                train_ce_epochs=(), record_epochs=None, keep_weights: bool = False, average: bool = False,
                on_epoch: Callable[[int, np.ndarray], None] | None = None) -> StackResult:
    """Train S = len(learning_rates) settings (paired with alphas) for `epochs` epochs.

    X (N, D) float32/64 and y (N,) int: the training split; val = (Xv, yv).
    Records validation CE and accuracy after each epoch in `record_epochs` (default:
    every epoch; the last epoch always; NaN elsewhere), and the training-split CE
    after each epoch listed in `train_ce_epochs` (a subset of them). A setting whose mini-batch
    CE is not finite is marked diverged at that epoch and frozen at zero; the
    others go on unaffected (their columns never mix). average: report the mean
    of each epoch's iterates instead of the last one.
    """
    dt = X.dtype
    n, d = X.shape
    K = n_classes
    lr = np.asarray(learning_rates, dtype=np.float64)
    decay = 1.0 - lr * np.asarray(alphas, dtype=np.float64)  # per-step factor on W, (S,)
    hard = decay == 0  # lr * alpha == 1: each step forgets W entirely (W <- -lr G)
    any_hard = bool(hard.any())
    S = lr.shape[0]
    N = (K - 1) * S  # stored columns: the last class is minus the sum of the others
    V = np.zeros((d, N), dtype=dt)
    V3 = V.reshape(d, K - 1, S)  # a view: V3[:, k, s] is class k of setting s
    c = np.ones(S)  # float64: W[:, k, s] = c[s] * V3[:, k, s]
    b = np.zeros((K, S), dtype=dt)
    alive = np.ones(S, dtype=bool)
    div_epoch = np.zeros(S, dtype=np.int64)
    gemm = kernels.gemm_for(dt)
    Zl = np.empty((batch_size, N), dtype=dt)  # x V, then the gradient G, in place
    # the mini-batch, gathered into the same buffers every step: no allocation per step, so no page
    # faults where malloc hands big blocks back to the system at once (Dask's workers set
    # MALLOC_TRIM_THRESHOLD_, which made batch-64 jobs ~15% slower with a fresh array per step)
    Xb, Yb = np.empty((batch_size, d), dtype=dt), np.empty(batch_size, dtype=y.dtype)
    R = kernels.ROWS
    P, zy = np.empty((R, K, S), dtype=dt), np.empty((R, S), dtype=dt)  # one block of rows
    ce, db = np.empty(S, dtype=dt), np.empty((K, S), dtype=dt)
    c_next, coef = np.empty(S), np.empty(S, dtype=dt)  # this step's scales and step sizes
    if average:
        avg = IterateMean({"V": V, "b": b})  # sums of the epoch's true weights and biases
        A = avg.sums["V"]
        ones = np.ones(S)
    step_lr = lr.copy()  # lr for live settings, 0 for frozen ones
    Xv, yv = val
    record = set(range(1, epochs + 1) if record_epochs is None else record_epochs) | {epochs}
    res = StackResult(val_ce=np.full((epochs, S), np.nan), val_accuracy=np.full((epochs, S), np.nan),
                      diverged_epoch=div_epoch)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), kernels.limit_like_numpy():
        for epoch in range(1, epochs + 1):
            averaging = average and epoch in record
            if averaging:
                avg.reset()
            for idx in epoch_batches(n, batch_size, seed, epoch):
                B = idx.shape[0]
                xb = np.take(X, idx, axis=0, out=Xb[:B], mode="clip")  # "raise" would buffer; idx is in range
                yb = np.take(y, idx, out=Yb[:B], mode="clip")
                G = Zl[:B]
                kernels.forward(xb, V, G)
                kernels.begin_step(c, decay, hard, step_lr, B, c_next, coef, ce, db)  # the logits still use c
                for j in range(0, B, R):  # logits, exp, CE and gradient block by block, rows in order
                    r = min(R, B - j)
                    Pr, zr, yr = P[:r], zy[:r], yb[j:j + r]
                    kernels.shifted_logits(G[j:j + r], c, b, yr, Pr, zr)
                    np.exp(Pr, out=Pr)
                    kernels.ce_gradient(Pr, zr, yr, coef, ce, G[j:j + r], db)  # G overwrites x V
                c, c_next = c_next, c
                if any_hard:
                    V3[:, :, hard] = 0  # lr * alpha == 1: the step forgets W (c[hard] is 1)
                state = kernels.end_step(alive, ce, b, db, c, RESCALE_LO, RESCALE_HI)  # bias step unless 2
                if state == 2:  # a setting diverged (rare): freeze it at zero
                    bad = alive & nonfinite(ce)
                    alive &= ~bad
                    step_lr[bad] = 0  # frozen settings take no step
                    div_epoch[bad] = epoch
                    c[bad] = np.where(hard[bad], 1.0, decay[bad])  # as if reset to 1 before this step's decay
                    V3[:, :, bad] = 0
                    b[:, bad] = 0
                    G.reshape(B, K - 1, S)[:, :, bad] = 0  # this step's non-finite values must not reach V
                    db[:, bad] = 0
                    if average:
                        A.reshape(d, K - 1, S)[:, :, bad] = 0
                        avg.sums["b"][:, bad] = 0
                    kernels.bias_step(b, db, c)  # b -= lr/B * sum (P - Y)
                kernels.update(gemm, xb, G, V)  # V <- V - x^T G
                if state:
                    ac = np.abs(c)
                    out = ~((ac >= RESCALE_LO) & (ac <= RESCALE_HI))  # fold c back into V (also NaN)
                    if out.any():
                        V3[:, :, out] *= c[out].astype(dt)
                        c[out] = 1.0
                if averaging:  # the true weights c V in one compiled pass, then the bias (counts the step)
                    kernels.add_true_weights(V, np.tile(c.astype(dt), K - 1), A)
                    avg.add({"b": b})
            if epoch not in record:
                if on_epoch:
                    on_epoch(epoch, res.val_ce[epoch - 1])
                continue
            if average:
                Vr, cr, br = avg.mean("V"), ones, avg.mean("b")  # the reported model: this epoch's mean
            else:
                Vr, cr, br = V, c, b
            vce, vacc = stack_metrics(Xv, yv, Vr, cr, br)
            vce[~alive], vacc[~alive] = np.nan, np.nan
            res.val_ce[epoch - 1], res.val_accuracy[epoch - 1] = vce, vacc
            if epoch in train_ce_epochs:
                tce, _ = stack_metrics(X, y, Vr, cr, br)
                tce[~alive] = np.nan
                res.train_ce[epoch] = tce
            if on_epoch:
                on_epoch(epoch, vce)
    if keep_weights:
        Wk = (A.reshape(d, K - 1, S) if average else V3 * c.astype(dt))
        Wk = np.concatenate([Wk, -Wk.sum(axis=1, keepdims=True)], axis=1)
        res.W = Wk.transpose(2, 0, 1).copy()  # (S, D, K)
        res.b = (avg.sums["b"] if average else b).T.copy()
    return res
