"""The validation split (stratified) and preprocessing (statistics from the training split only).

    tr, va = split(y_train, 0.2, seed=0)          # stratified index arrays
    pre = Preprocessor.fit("standardize", X_train[tr])
    X = pre.transform(X_train[tr])                # (n, 784) float32, a new array
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np


def split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx) into `y` (n,), both sorted int64 arrays.

    Each class with count c gives k = floor(val_fraction * c + 0.5) examples (round half up),
    capped at c - 1 so no class loses all its training examples; chosen by a permutation
    from `np.random.default_rng(seed)`, classes in sorted order. val_fraction 0 -> empty val.
    """
    if isinstance(val_fraction, bool) or not (
            isinstance(val_fraction, numbers.Real) and 0 <= val_fraction < 1):
        raise ValueError(f"The 'val_fraction' parameter must be a float in [0, 1). "
                         f"Got {val_fraction!r} instead.")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D. Got shape {y.shape} instead.")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(math.floor(val_fraction * len(idx) + 0.5), len(idx) - 1)
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_mask = np.ones(len(y), bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), val_idx.astype(np.int64)


# --------------------------------------------------------------------------- preprocess

PREPROCESS_KINDS = ("scale", "standardize", "none")


def _column_std(X: np.ndarray, mean: np.ndarray, rows: int = 8192) -> np.ndarray:
    """Population std of each column of X (n, d), in float64 chunks to bound memory."""
    ss = np.zeros(X.shape[1])
    for i in range(0, len(X), rows):
        ss += ((X[i:i + rows].astype(np.float64) - mean) ** 2).sum(axis=0)
    return np.sqrt(ss / len(X))


@dataclass
class Preprocessor:
    """Pixel preprocessing fitted on the training split only.

    scale: x / 255.  standardize: (x - mean) / std per pixel, std 0 -> 1.  none: float(x).
    """

    kind: str  # scale | standardize | none
    mean: np.ndarray | None = None  # (d,) float64, standardize only
    std: np.ndarray | None = None  # (d,) float64 > 0, standardize only

    @classmethod
    def fit(cls, kind: str, X_train: np.ndarray) -> Preprocessor:
        """Fit on X_train (n, d) uint8 (training split only, never validation or test)."""
        if kind not in PREPROCESS_KINDS:
            raise ValueError(f"The 'kind' parameter must be one of {PREPROCESS_KINDS}. "
                             f"Got {kind!r} instead.")
        if kind != "standardize":
            return cls(kind)
        if X_train.ndim != 2 or len(X_train) == 0:
            raise ValueError(f"X_train must be 2-D and non-empty. Got shape {X_train.shape}.")
        mean = X_train.mean(axis=0, dtype=np.float64)
        std = _column_std(X_train, mean)
        std[std == 0] = 1.0  # constant pixels: centre them, don't divide by zero
        return cls(kind, mean, std)

    def transform(self, X: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """X (n, d) -> a new (n, d) array of `dtype`; X itself is never changed."""
        out = np.array(X, dtype=dtype, copy=True)
        if self.kind == "scale":
            out /= 255
        elif self.kind == "standardize":
            if self.mean is None or self.std is None or X.shape[-1] != len(self.mean):
                raise ValueError(f"standardize fitted on {None if self.mean is None else len(self.mean)} "
                                 f"features cannot transform X of shape {X.shape}")
            out -= self.mean.astype(dtype)
            out /= self.std.astype(dtype)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for `np.savez`: pre_kind (0-d str), pre_mean and pre_std ((d,) or (0,))."""
        empty = np.empty(0)
        return {"pre_kind": np.array(self.kind),
                "pre_mean": empty if self.mean is None else self.mean,
                "pre_std": empty if self.std is None else self.std}

    @classmethod
    def from_arrays(cls, d: Any) -> Preprocessor:
        """Inverse of `to_arrays`; `d` may be the NpzFile itself."""
        kind = str(d["pre_kind"])
        if kind not in PREPROCESS_KINDS:
            raise ValueError(f"unknown preprocess kind {kind!r} in saved arrays")
        mean, std = np.asarray(d["pre_mean"]), np.asarray(d["pre_std"])
        return cls(kind, mean if mean.size else None, std if std.size else None)
