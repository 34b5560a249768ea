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

Iterate averaging (`average=True`, see `train`): after every step the true
weights c * V are added to an epoch sum A; the epoch's metrics and the
returned weights are those of A / steps. That pass over the stack costs as
much per step as the forward product at batch 16, so the mean is formed only
in the epochs whose metrics are recorded (`record_epochs`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlhw.models.base import EVAL_CHUNK
from dlhw.training.rules import IterateMean, cross_entropy, epoch_batches, nonfinite

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


def logits(X: np.ndarray, V: np.ndarray, c: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """True logits (N, K, S) of every setting: c * (X V) for the first K - 1 classes, minus their
    sum for the last, plus b. X (N, D), V (D, (K-1)*S), c (S,), b (K, S), out (>= N, K*S)."""
    K, S = b.shape
    n = X.shape[0]
    np.matmul(X, V, out=out[:n, :(K - 1) * S])
    Z = out[:n].reshape(n, K, S)
    np.sum(Z[:, :K - 1, :], axis=1, out=Z[:, K - 1, :])
    np.negative(Z[:, K - 1, :], out=Z[:, K - 1, :])
    Z *= c.astype(V.dtype)
    Z += b
    return Z


def stack_metrics(X: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, b: np.ndarray):
    """Mean CE (S,) and accuracy (S,) of every setting on (X, y), in fixed chunks."""
    K, S = b.shape
    ce, correct = np.zeros(S), np.zeros(S)
    buf = np.empty((min(EVAL_CHUNK, X.shape[0]), K * S), dtype=V.dtype)
    for i in range(0, X.shape[0], EVAL_CHUNK):
        Z = logits(X[i:i + EVAL_CHUNK], V, c, b, buf)
        s, k = cross_entropy(Z, y[i:i + EVAL_CHUNK], overwrite=True)
        ce += s
        correct += k
    m = max(X.shape[0], 1)
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
    V = np.zeros((d, (K - 1) * S), dtype=dt)  # the last class is minus the sum of the others
    V3 = V.reshape(d, K - 1, S)
    c = np.ones(S)  # float64: W[:, :, s] = c[s] * V3[:, :, s]
    b = np.zeros((K, S), dtype=dt)
    alive = np.ones(S, dtype=bool)
    div_epoch = np.zeros(S, dtype=np.int64)
    zbuf = np.empty((batch_size, K * S), dtype=dt)
    gbuf = np.empty_like(V)
    if average:
        avg = IterateMean({"V": V, "b": b})  # sums of the epoch's true weights and biases
        A, Ab = avg.sums["V"], avg.sums["b"]
        ones = np.ones(S)
    step_lr = lr.copy()  # lr for live settings, 0 for frozen ones
    all_rows = np.arange(batch_size)
    Xv, yv = val
    record = set(range(1, epochs + 1) if record_epochs is None else record_epochs) | {epochs}
    res = StackResult(val_ce=np.full((epochs, S), np.nan), val_accuracy=np.full((epochs, S), np.nan),
                      diverged_epoch=div_epoch)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, epochs + 1):
            averaging = average and epoch in record
            if averaging:
                avg.reset()
            for idx in epoch_batches(n, batch_size, seed, epoch):
                B = idx.shape[0]
                xb, yb = X[idx], y[idx]
                rows = all_rows[:B]
                Z = logits(xb, V, c, b, zbuf)
                Z -= Z.max(axis=1, keepdims=True)
                zy = Z[rows, yb, :]  # (B, S)
                np.exp(Z, out=Z)
                ssum = Z.sum(axis=1)  # (B, S)
                ce = (np.log(ssum) - zy).sum(axis=0)  # (S,) summed mini-batch CE
                bad = alive & nonfinite(ce)
                if bad.any():
                    alive &= ~bad
                    step_lr[bad] = 0  # frozen settings take no step
                    div_epoch[bad] = epoch
                    c[bad] = 1.0
                    V3[:, :, bad] = 0
                    b[:, bad] = 0
                    Z[:, :, bad], ssum[:, bad] = 0, 1  # this step's non-finite values must not reach V
                    if average:
                        A.reshape(d, K - 1, S)[:, :, bad] = 0
                        Ab[:, bad] = 0
                if any_hard:
                    V3[:, :, hard] = 0  # c[hard] is already 1
                c *= decay
                if any_hard:
                    c[hard] = 1.0
                # (P - Y) * lr / (c B): normalisation and step size in one pass
                coef = (step_lr / (c * B)).astype(dt)
                Z *= coef / ssum[:, None, :]
                Z[rows, yb, :] -= coef
                b -= c.astype(dt) * Z.sum(axis=0)  # = lr/B * sum(P - Y): the bias is not decayed
                np.matmul(xb.T, Z.reshape(B, K * S)[:, :(K - 1) * S], out=gbuf)
                V -= gbuf
                ac = np.abs(c)
                if not (ac.min() >= RESCALE_LO and ac.max() <= RESCALE_HI):  # also catches NaN
                    out = ~((ac >= RESCALE_LO) & (ac <= RESCALE_HI))
                    V3[:, :, out] *= c[out].astype(dt)
                    c[out] = 1.0
                if averaging:
                    np.multiply(V, np.tile(c.astype(dt), K - 1), out=gbuf)  # true weights, class-major
                    avg.add({"V": gbuf, "b": b})
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
        res.b = (Ab if average else b).T.copy()
    return res
