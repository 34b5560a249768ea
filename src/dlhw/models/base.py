"""The model contract every kind implements (softmax, mlp, linear, logistic).

The contract (CS231n style):
- `params`: dict name -> array, updated in place by the optimiser;
- `loss(X, y=None, rng=None)`: with y=None the scores (eval mode), else
  `(data_loss, grads)` for one mini-batch in training mode: `data_loss` is the
  mean data loss (e.g. CE) *without* the penalty, `grads` the gradients of the
  full objective `data_loss + penalty()`, where
  `penalty() = alpha/2 * sum ||P||^2 over P in decayed` (biases not penalised);
  `grads` has the same keys as `params`. Training stops ("diverged") when
  `data_loss` is not finite;
- `evaluate(X, y) -> dict` of unregularised metrics in eval mode (e.g. ce, accuracy);
- `state()` / `from_state(arrays)`: everything `model.npz` needs to rebuild it.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from dlhw.models.layers import cross_entropy

EVAL_CHUNK = 8192  # rows per evaluation product: bounds memory, fixed so results are reproducible


class Model:
    kind: ClassVar[str] = "model"
    decayed: ClassVar[tuple[str, ...]] = ("W",)  # params penalised by alpha
    metric_names: ClassVar[tuple[str, ...]] = ("ce", "accuracy")

    params: dict[str, np.ndarray]
    alpha: float

    def loss(self, X: np.ndarray, y: np.ndarray | None = None, rng: np.random.Generator | None = None):
        raise NotImplementedError

    def penalty(self) -> float:
        """alpha/2 * sum of squared decayed weights (accumulated in float64)."""
        return 0.5 * self.alpha * sum(float(np.square(self.params[k], dtype=np.float64).sum())
                                      for k in self.decayed)

    def objective(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None) -> float:
        """The full training objective on (X, y): data loss + penalty."""
        return self.loss(X, y, rng=rng)[0] + self.penalty()

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean CE and accuracy over (X, y) in eval mode, in fixed chunks."""
        ce, correct = 0.0, 0
        for i in range(0, X.shape[0], EVAL_CHUNK):
            c, k = cross_entropy(self.loss(X[i:i + EVAL_CHUNK]), y[i:i + EVAL_CHUNK], overwrite=True)
            ce, correct = ce + float(c), correct + int(k)
        n = max(X.shape[0], 1)
        return {"ce": ce / n, "accuracy": correct / n}

    def diagnostics(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Extra per-epoch numbers for history.csv (e.g. weight norms); none by default."""
        return {}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (N,)."""
        return np.concatenate([self.loss(X[i:i + EVAL_CHUNK]).argmax(axis=1)
                               for i in range(0, X.shape[0], EVAL_CHUNK)]) if len(X) else np.zeros(0, int)

    def state(self) -> dict[str, np.ndarray]:
        return {f"param_{k}": v for k, v in self.params.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in self.params:
            self.params[k] = np.asarray(arrays[f"param_{k}"], dtype=self.params[k].dtype)

    def first_layer(self) -> np.ndarray:
        """(D, M) weights applied to the input: what `weights.png` draws."""
        return self.params["W"]
