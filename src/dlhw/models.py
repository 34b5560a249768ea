"""Models: one interface for every kind (softmax regression here; MLP and the
linear/logistic models in their own modules, found through `MODEL_KINDS`).

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

import importlib
from typing import ClassVar

import numpy as np

from dlhw.layers import cross_entropy, softmax_cross_entropy

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
            c, k = cross_entropy(self.loss(X[i:i + EVAL_CHUNK]), y[i:i + EVAL_CHUNK])
            ce, correct = ce + c, correct + k
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


class SoftmaxRegression(Model):
    """Multinomial logistic regression: p(y|x) = softmax(x W + b).

    Objective: L(W, b) = 1/N sum_i CE(softmax(x_i W + b), y_i) + alpha/2 * ||W||^2
    (b not penalised), so dL/dW = X^T (P - Y) / N + alpha W and dL/db = mean(P - Y).
    Weights start at zero.
    """

    kind = "softmax"

    def __init__(self, n_features: int, n_classes: int, alpha: float = 0.0, dtype=np.float32):
        self.alpha = float(alpha)
        self.params = {"W": np.zeros((n_features, n_classes), dtype=dtype),
                       "b": np.zeros(n_classes, dtype=dtype)}

    @classmethod
    def from_config(cls, cfg, n_features: int, n_classes: int, rng: np.random.Generator | None = None):
        return cls(n_features, n_classes, cfg.train.alpha, np.dtype(cfg.train.dtype))

    def loss(self, X, y=None, rng=None):
        W, b = self.params["W"], self.params["b"]
        z = X @ W + b
        if y is None:
            return z
        data_loss, dz = softmax_cross_entropy(z, y)
        dW = X.T @ dz
        dW += self.alpha * W  # L2 gradient; added in place to avoid a temporary
        grads = {"W": dW, "b": dz.sum(axis=0)}
        return data_loss, grads


# kind -> "module:Class"; every class has from_config(cfg, n_features, n_classes, rng)
MODEL_KINDS: dict[str, str] = {
    "softmax": "dlhw.models:SoftmaxRegression",
    "mlp": "dlhw.mlp:MLP",
    "linear": "dlhw.linear:LinearRegression",
    "logistic": "dlhw.linear:LogisticRegression",
}


def model_class(kind: str) -> type[Model]:
    module, _, name = MODEL_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def build_model(cfg, n_features: int, n_classes: int) -> Model:
    """A fresh model for `cfg`; initialisation seeded by (train.seed, 'init')."""
    rng = np.random.default_rng([cfg.train.seed, 1])  # stream 1 = initialisation (stream 0 = shuffling)
    return model_class(cfg.model.kind).from_config(cfg, n_features, n_classes, rng)
