"""Optimisers: `update(w, dw, state) -> state`, updating `w` in place.

`state` is a per-parameter dict the optimiser owns (velocity etc.).
"""
from __future__ import annotations

import numpy as np


def sgd(w: np.ndarray, dw: np.ndarray, state: dict, lr: float, momentum: float = 0.0) -> dict:
    """w <- w - lr * dw."""
    w -= lr * dw
    return state


def sgd_momentum(w: np.ndarray, dw: np.ndarray, state: dict, lr: float, momentum: float = 0.9) -> dict:
    """Classical momentum: v <- momentum * v - lr * dw;  w <- w + v (v starts at 0)."""
    v = state.get("v")
    if v is None:
        v = state["v"] = np.zeros_like(w)
    v *= momentum
    v -= lr * dw
    w += v
    return state


OPTIMIZERS = {"sgd": sgd, "momentum": sgd_momentum}
