"""Stacked softmax regression: many (learning rate, alpha) settings trained at once.

All settings share the mini-batch order (`train.epoch_permutation`), so one SGD
step for S settings is two matrix products on weights laid side by side,
V (D, S*K), instead of a Python loop over settings. The result for each setting
is the result `train.fit` gives for it alone (up to float rounding).

Lazy weight decay: the true weights are W_s = c_s * V_s with one scale c_s per
setting. The step W <- (1 - lr*alpha) W - lr * G becomes
    c <- c * (1 - lr*alpha);   V <- V - (lr / c) * G,
so the decay is O(S) per step rather than a pass over all D*S*K weights, and
the gradient product is scaled on its small (B, S*K) side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlhw.models import EVAL_CHUNK
from dlhw.train import epoch_permutation

RESCALE_LO, RESCALE_HI = 1e-3, 1e3  # fold c back into V outside this band (keeps V well scaled)


@dataclass
class StackResult:
    """Per-setting results. Arrays indexed [setting] or [epoch-1, setting]."""

    val_ce: np.ndarray  # (E, S) float64, NaN after divergence
    val_accuracy: np.ndarray  # (E, S)
    train_ce: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> (S,)
    diverged_epoch: np.ndarray = None  # (S,) int, 0 = never
    W: np.ndarray | None = None  # (S, D, K) final true weights, if asked
    b: np.ndarray | None = None  # (S, K)


def _stack_ce(Z3: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed CE (S,) and correct counts (S,) of logits Z3 (N, S, K) vs y (N,); Z3 is overwritten."""
    n = Z3.shape[0]
    correct = (Z3.argmax(axis=2) == y[:, None]).sum(axis=0)  # ties -> first class, as np.argmax
    Z3 -= Z3.max(axis=2, keepdims=True)
    zy = Z3[np.arange(n), :, y]  # (N, S)
    np.exp(Z3, out=Z3)
    lse = np.log(Z3.sum(axis=2, dtype=np.float64))  # (N, S)
    return (lse - zy).sum(axis=0), correct


def stack_metrics(X: np.ndarray, y: np.ndarray, V: np.ndarray, c: np.ndarray, b: np.ndarray, k: int):
    """Mean CE (S,) and accuracy (S,) of every setting on (X, y), in fixed chunks."""
    S = c.shape[0]
    ce = np.zeros(S)
    correct = np.zeros(S)
    for i in range(0, X.shape[0], EVAL_CHUNK):
        Z3 = (X[i:i + EVAL_CHUNK] @ V).reshape(-1, S, k)
        Z3 *= c[:, None]
        Z3 += b
        s, n = _stack_ce(Z3, y[i:i + EVAL_CHUNK])
        ce += s
        correct += n
    m = max(X.shape[0], 1)
    return ce / m, correct / m


def train_stack(X: np.ndarray, y: np.ndarray, n_classes: int, learning_rates, alphas, batch_size: int,
                seed: int, epochs: int, val: tuple[np.ndarray, np.ndarray], *,
                train_ce_epochs=(), keep_weights: bool = False,
                on_epoch: Callable[[int, np.ndarray], None] | None = None) -> StackResult:
    """Train S = len(learning_rates) settings (paired with alphas) for `epochs` epochs.

    X (N, D) float32/64; y (N,) int; val = (Xv, yv). Records validation CE and
    accuracy after every epoch, and the full training-split CE after each epoch
    in `train_ce_epochs`. A setting whose mini-batch CE becomes non-finite is
    marked diverged at that epoch and frozen; the others go on unaffected.
    """
    dt = X.dtype
    n, d = X.shape
    k = n_classes
    lr = np.asarray(learning_rates, dtype=np.float64)
    al = np.asarray(alphas, dtype=np.float64)
    S = lr.shape[0]
    decay = 1.0 - lr * al  # per-step factor on W, (S,)
    V = np.zeros((d, S * k), dtype=dt)
    c = np.ones(S, dtype=np.float64)  # W_s = c_s * V_s
    b = np.zeros((S, k), dtype=dt)
    lr_dt = lr.astype(dt)[:, None]
    alive = np.ones(S, dtype=bool)
    div_epoch = np.zeros(S, dtype=np.int64)
    Xv, yv = val
    res = StackResult(val_ce=np.full((epochs, S), np.nan), val_accuracy=np.full((epochs, S), np.nan),
                      diverged_epoch=div_epoch)
    want_train = set(train_ce_epochs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, epochs + 1):
            order = epoch_permutation(n, seed, epoch)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = X[idx], y[idx]
                B = idx.shape[0]
                Z3 = (xb @ V).reshape(B, S, k)
                Z3 *= c.astype(dt)[:, None]
                Z3 += b
                Z3 -= Z3.max(axis=2, keepdims=True)
                zy = Z3[np.arange(B), :, yb]  # (B, S), copies
                np.exp(Z3, out=Z3)
                ssum = Z3.sum(axis=2, keepdims=True)
                ce = (np.log(ssum[:, :, 0]) - zy).sum(axis=0)  # (S,) summed batch CE
                bad = alive & ~np.isfinite(ce)
                if bad.any():
                    alive &= ~bad
                    div_epoch[bad] = epoch
                    c[bad] = 1.0
                    V.reshape(d, S, k)[:, bad, :] = 0
                    b[bad] = 0
                Z3 /= ssum
                Z3[np.arange(B), :, yb] -= 1  # P - Y
                Z3[:, ~alive, :] = 0  # frozen settings take no step
                b -= (lr_dt / B) * Z3.sum(axis=0)
                c *= decay
                Z3 *= (lr / (c * B)).astype(dt)[:, None]
                V -= xb.T @ Z3.reshape(B, S * k)
                out = (np.abs(c) < RESCALE_LO) | (np.abs(c) > RESCALE_HI) | ~np.isfinite(c)
                if out.any():
                    V3 = V.reshape(d, S, k)
                    V3[:, out, :] *= c[out].astype(dt)[:, None]
                    c[out] = 1.0
            vce, vacc = stack_metrics(Xv, yv, V, c, b, k)
            vce[~alive], vacc[~alive] = np.nan, np.nan
            res.val_ce[epoch - 1], res.val_accuracy[epoch - 1] = vce, vacc
            if epoch in want_train:
                tce, _ = stack_metrics(X, y, V, c, b, k)
                tce[~alive] = np.nan
                res.train_ce[epoch] = tce
            if on_epoch:
                on_epoch(epoch, vce)
    if keep_weights:
        res.W = (V.reshape(d, S, k) * c.astype(dt)[:, None]).transpose(1, 0, 2).copy()
        res.b = b.copy()
    return res
