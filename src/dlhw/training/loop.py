"""Mini-batch training loop and its history.

Shuffling: epoch e (1-based) visits the training rows in the order
`epoch_permutation(n, seed, e)`, a function of (seed, epoch) only, so every
setting trained with the same batch size and seed sees the same mini-batches
(the grid engine relies on this). The last partial batch is kept.

Iterate averaging (`train.average: epoch`, Polyak-Ruppert over one epoch):
the model reported at any point of an epoch - evaluated, saved, returned - is
the mean of the weights after each SGD step of that epoch so far; SGD itself
goes on from the last iterate. At a constant learning rate the last iterate
rattles around the optimum with a spread that grows with the learning rate;
the mean over an epoch sits much closer to it (lower CE, steadier accuracy).
Buffers that are not parameters (batch-norm running statistics) are the last
iterate's.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlhw.models import Model
from dlhw.models.optim import OPTIMIZERS

Split = tuple[np.ndarray, np.ndarray]  # (X (N, D), y (N,))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """Row order for `epoch` (1-based): seeded by (seed, epoch) alone."""
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


@dataclass
class History:
    """What happened during `fit`.

    rows: one dict per evaluation point (epoch ends, plus every `eval_every`
          iterations), keys `epoch` (may be fractional), `iteration` and
          `<split>_<metric>`, e.g. `val_ce`, `test_accuracy`;
    batch_loss: the objective on each mini-batch (iterations,), float64.
    """

    rows: list[dict] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    diverged: bool = False
    diverged_epoch: int | None = None
    epochs_run: int = 0
    iterations: int = 0

    def epoch_rows(self) -> list[dict]:
        return [r for r in self.rows if float(r["epoch"]).is_integer()]


def fit(model: Model, train: Split, cfg, evals: dict[str, Split] | None = None, *,
        epochs: int | None = None, max_steps: int | None = None,
        on_step: Callable[[int], None] | None = None) -> History:
    """Train `model` in place on `train` with the settings of `cfg` (a TrainConfig).

    evals: extra splits evaluated at every evaluation point (e.g. val, test);
    the training split itself is evaluated at epoch ends as `train_*`.
    max_steps: stop after this many SGD steps (the last epoch may be partial).
    A non-finite mini-batch loss stops training and marks the run diverged.
    """
    X, y = train
    evals = evals or {}
    epochs = cfg.epochs if epochs is None else epochs
    n = X.shape[0]
    hist = History()
    if cfg.optimizer == "newton":
        return _fit_newton(model, train, evals, epochs, hist, on_step)
    update = OPTIMIZERS[cfg.optimizer]
    states: dict[str, dict] = {k: {} for k in model.params}
    drop_rng = np.random.default_rng([cfg.seed, 2])  # stream 2 = dropout masks
    avg = _IterateMean(model.params) if cfg.average == "epoch" else None
    it = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, epochs + 1):
            order = epoch_permutation(n, cfg.seed, epoch)
            if avg:
                avg.reset()
            for start in range(0, n, cfg.batch_size):
                if max_steps is not None and it >= max_steps:
                    break
                idx = order[start:start + cfg.batch_size]
                loss, grads = model.loss(X[idx], y[idx], rng=drop_rng)
                it += 1
                hist.batch_loss.append(loss)
                if not math.isfinite(loss):
                    hist.diverged, hist.diverged_epoch = True, epoch
                    hist.epochs_run, hist.iterations = epoch, it
                    return hist
                for k, w in model.params.items():
                    update(w, grads[k], states[k], cfg.learning_rate, cfg.momentum)
                if avg:
                    avg.add(model.params)
                if on_step:
                    on_step(1)
                if cfg.eval_every and it % cfg.eval_every == 0 and start + cfg.batch_size < n:
                    with _reported(model, avg):
                        hist.rows.append(_evaluate_point(model, None, evals, epoch - 1 + (start + len(idx)) / n, it))
            last = epoch == epochs or (max_steps is not None and it >= max_steps)
            with _reported(model, avg, keep=last):
                hist.rows.append(_evaluate_point(model, train, evals, epoch, it))
            hist.epochs_run, hist.iterations = epoch, it
            if last:
                break
    return hist


class _IterateMean:
    """Running sum of parameter values over the steps of one epoch."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.sums = {k: np.zeros_like(w) for k, w in params.items()}
        self.count = 0

    def reset(self) -> None:
        for s in self.sums.values():
            s.fill(0)
        self.count = 0

    def add(self, params: dict[str, np.ndarray]) -> None:
        for k, w in params.items():
            self.sums[k] += w
        self.count += 1


@contextmanager
def _reported(model: Model, avg: _IterateMean | None, keep: bool = False):
    """Within the block the model holds the reported weights (the epoch mean when
    averaging); afterwards the SGD iterate again, unless `keep`."""
    if avg is None or avg.count == 0:
        yield
        return
    saved = {k: w.copy() for k, w in model.params.items()} if not keep else None
    for k, w in model.params.items():
        np.divide(avg.sums[k], avg.count, out=w, casting="unsafe")
    try:
        yield
    finally:
        if saved is not None:
            for k, w in model.params.items():
                w[...] = saved[k]


def _fit_newton(model, train, evals, epochs, hist, on_step) -> History:
    """Full-batch Newton steps: one per epoch (model must define newton_step)."""
    X, y = train
    for epoch in range(1, epochs + 1):
        loss = model.newton_step(X, y)
        hist.batch_loss.append(loss)
        if not math.isfinite(loss):
            hist.diverged, hist.diverged_epoch = True, epoch
            break
        hist.rows.append(_evaluate_point(model, train, evals, epoch, epoch))
        hist.epochs_run = hist.iterations = epoch
        if on_step:
            on_step(1)
    return hist


def _evaluate_point(model, train, evals, epoch, it) -> dict:
    """Metrics of every split; at epoch ends also the model's diagnostics on the train split."""
    row: dict = {"epoch": round(float(epoch), 6), "iteration": it}
    splits = ({"train": train} if train is not None else {}) | evals
    for name, (Xs, ys) in splits.items():
        if Xs is None or len(Xs) == 0:
            continue
        for metric, value in model.evaluate(Xs, ys).items():
            row[f"{name}_{metric}"] = value
    if train is not None:
        row |= model.diagnostics(*train)
    return row

