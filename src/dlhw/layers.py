"""Forward/backward pairs and the stable softmax cross-entropy (numpy only).

Convention (CS231n): `*_forward(...) -> out, cache`, `*_backward(dout, cache) -> grads`.
Shapes: N examples, D inputs, K outputs.
"""
from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits z (N, K), stable for any finite z (log-sum-exp)."""
    m = z.max(axis=1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of z (N, K); never overflows (max shifted to 0)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits z (N, K) against labels y (N,), and dL/dz.

    L = -1/N * sum_i log softmax(z_i)[y_i];  dL/dz = (softmax(z) - onehot(y)) / N.
    """
    n = z.shape[0]
    logp = log_softmax(z)
    loss = -float(logp[np.arange(n), y].sum(dtype=np.float64)) / n
    dz = np.exp(logp)
    dz[np.arange(n), y] -= 1
    dz /= n
    return loss, dz


def cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Summed CE and count of correct argmax predictions (for chunked evaluation)."""
    logp = log_softmax(z)
    n = z.shape[0]
    ce = -float(logp[np.arange(n), y].sum(dtype=np.float64))
    correct = int((z.argmax(axis=1) == y).sum())
    return ce, correct


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """out = x @ w + b; x (N, D), w (D, M), b (M,) -> out (N, M)."""
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, M) -> dx (N, D), dw (D, M), db (M,)."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
