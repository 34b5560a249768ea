"""The training rules, in one place. The single-model loop (`loop.fit`) and the stacked engine
(`stack.train_stack`) both call these, so a grid row and `dlhw train` agree by construction:

- shuffling: epoch e (1-based) visits the training rows in the order `epoch_permutation(n, seed, e)`,
  a function of (seed, epoch) only, cut into consecutive batches of `batch_size`; the last, partial
  batch is kept (`epoch_batches`);
- divergence: a run (or one setting of a stack) diverges at the first mini-batch whose data loss
  (mean CE without the penalty) is not finite (`nonfinite`); it stops there, takes no step with that
  batch's values, and reports no metrics from then on;
- iterate averaging (`train.average: epoch`): the reported model is the mean of the iterates after each
  SGD step of the current epoch (`IterateMean`); SGD itself goes on from the last iterate;
- metrics: cross-entropy and accuracy come from `models.layers.cross_entropy` (a row is correct
  when the first argmax of its logits is its label: a tie goes to the lower class index).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from dlhw.models.layers import cross_entropy

__all__ = ["IterateMean", "batches_per_epoch", "cross_entropy", "epoch_batches", "epoch_permutation", "nonfinite"]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """Row order for `epoch` (1-based): seeded by (seed, epoch) alone."""
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """SGD steps in one epoch of n rows (the last partial batch counts)."""
    return math.ceil(n / batch_size)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """The row indices of each mini-batch of `epoch`, in order."""
    order = epoch_permutation(n, seed, epoch)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def nonfinite(loss):
    """True where a mini-batch's data loss means divergence (inf or NaN); scalar or array."""
    return ~np.isfinite(loss)


class IterateMean:
    """Running sum of arrays over the SGD steps of one epoch; `mean` divides by the step count.

    The arrays are whatever a loop holds as its weights (a model's params, or a stack's true
    weights and biases). `add` adds the arrays it is given and counts one step; a loop may add to
    `sums` itself in a faster way (the stack adds c V in a compiled pass) before calling it.
    """

    def __init__(self, like: dict[str, np.ndarray]):
        self.sums = {k: np.zeros_like(w) for k, w in like.items()}
        self.count = 0

    def reset(self) -> None:
        for s in self.sums.values():
            s.fill(0)
        self.count = 0

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        for k, w in arrays.items():
            self.sums[k] += w
        self.count += 1

    def mean(self, key: str, out: np.ndarray | None = None) -> np.ndarray:
        """The epoch's mean of `key`, into `out` (default: in place of the sum)."""
        s = self.sums[key]
        return np.divide(s, s.dtype.type(self.count), out=s if out is None else out, casting="unsafe")
