"""Centred finite differences, for checking hand-written gradients (float64)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by centred differences, perturbing `x` in place (restored after)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1e-8, |a| + |b|), elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))) if a.size else 0.0


def normwise_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the error relative to the reference b's scale.

    Normwise rather than elementwise, so that components near 0 (a softmax probability of 1e-5,
    say) are not judged by their own tiny size; `dlhw check` judges claims with it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def check_model_gradients(model, X: np.ndarray, y: np.ndarray, h: float = 1e-6, rng_seed: int = 0) -> dict[str, float]:
    """Relative error of every parameter's analytic gradient vs finite differences.

    The model's randomness (dropout) is replayed from the same seed for every
    evaluation, so the mask is fixed.
    """
    def loss() -> float:
        return model.objective(X, y, rng=np.random.default_rng(rng_seed))

    _, grads = model.loss(X, y, rng=np.random.default_rng(rng_seed))
    return {k: rel_error(grads[k], numerical_gradient(loss, p, h)) for k, p in model.params.items()}
