"""Softmax regression (multinomial logistic regression)."""
from __future__ import annotations

import numpy as np

from dlhw.models.base import Model
from dlhw.models.layers import softmax_cross_entropy


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
