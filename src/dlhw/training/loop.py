"""The single-model training loop (`fit`) and its history.

The rules it follows - shuffling and batches, divergence, iterate averaging, metrics - are
`training.rules`, shared with the stacked grid engine. Buffers that are not parameters
(batch-norm running statistics) are the last iterate's, also when averaging.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Collection

import numpy as np

from dlhw.models import Model
from dlhw.models.optim import OPTIMIZERS
from dlhw.training.rules import IterateMean, epoch_batches, nonfinite

Split = tuple[np.ndarray, np.ndarray]  # (X (N, D), y (N,))


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
        on_step: Callable[[int], None] | None = None,
        eval_at: Collection[int] | None = None, train_at: Collection[int] | None = None) -> History:
    """Train `model` in place on `train` with the settings of `cfg` (a TrainConfig).

    evals: extra splits evaluated at every evaluation point (e.g. val, test);
    the training split itself is evaluated at epoch ends as `train_*`.
    eval_at / train_at: the epochs at whose end `evals` / the training split are evaluated (default:
    every epoch); a grid reads only some epochs, and evaluating costs as much as a third of training.
    Training itself does not depend on them.
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
    avg = IterateMean(model.params) if cfg.average == "epoch" else None
    it = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, epochs + 1):
            if avg:
                avg.reset()
            seen = 0  # rows of this epoch visited so far
            for idx in epoch_batches(n, cfg.batch_size, cfg.seed, epoch):
                if max_steps is not None and it >= max_steps:
                    break
                seen += len(idx)
                loss, grads = model.loss(X[idx], y[idx], rng=drop_rng)
                it += 1
                hist.batch_loss.append(loss)
                if nonfinite(loss):
                    hist.diverged, hist.diverged_epoch = True, epoch
                    hist.epochs_run, hist.iterations = epoch, it
                    return hist
                for k, w in model.params.items():
                    update(w, grads[k], states[k], cfg.learning_rate, cfg.momentum)
                if avg:
                    avg.add(model.params)
                if on_step:
                    on_step(1)
                if cfg.eval_every and it % cfg.eval_every == 0 and seen < n:
                    with _reported(model, avg):
                        hist.rows.append(_evaluate_point(model, None, evals, epoch - 1 + seen / n, it))
            last = epoch == epochs or (max_steps is not None and it >= max_steps)
            on_evals, on_train = eval_at is None or epoch in eval_at, train_at is None or epoch in train_at
            with _reported(model, avg, keep=last):  # at the end the model keeps the reported weights
                if on_evals or on_train:
                    hist.rows.append(_evaluate_point(model, train if on_train else None,
                                                     evals if on_evals else {}, epoch, it))
            hist.epochs_run, hist.iterations = epoch, it
            if last:
                break
    return hist


@contextmanager
def _reported(model: Model, avg: IterateMean | None, keep: bool = False):
    """Within the block the model holds the reported weights (the epoch mean when
    averaging); afterwards the SGD iterate again, unless `keep`."""
    if avg is None or avg.count == 0:
        yield
        return
    saved = {k: w.copy() for k, w in model.params.items()} if not keep else None
    for k, w in model.params.items():
        avg.mean(k, out=w)
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
        if nonfinite(loss):
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

