"""From a config to arrays ready to train on: load, select classes, split, preprocess.

Deterministic: the same config gives the same arrays, in every process (grid
workers call `prepare` themselves and read the decoded data from the local cache).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlhw.data.load import load
from dlhw.errors import ConfigError
from dlhw.data.preprocess import Preprocessor, split

Split = tuple[np.ndarray, np.ndarray]

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


@dataclass
class Prepared:
    """Train/val/test arrays (X float, y int64) plus what is needed to reproduce them."""

    train: Split
    val: Split | None
    test: Split | None
    classes: tuple[str, ...]
    pre: Preprocessor | None
    sha256: dict = field(default_factory=dict)
    source: str = ""
    trained_on: str = "train"  # train | train+val

    @property
    def n_features(self) -> int:
        return self.train[0].shape[1]

    def split(self, name: str) -> Split | None:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def evals(self) -> dict[str, Split]:
        """The splits evaluated during training besides train itself: val (if any) and test."""
        out = {}
        if self.val is not None and len(self.val[0]):
            out["val"] = self.val
        if self.test is not None:
            out["test"] = self.test
        return out


def class_indices(wanted: tuple, classes: tuple[str, ...], where: str = "data.classes") -> list[int]:
    """Map class names or indices to indices into `classes`."""
    out = []
    for c in wanted:
        if isinstance(c, int):
            if c >= len(classes):
                raise ConfigError(f"'{where}' index {c} is out of range; the data set has "
                                  f"{len(classes)} classes (0..{len(classes) - 1}).")
            out.append(c)
        elif c in classes:
            out.append(classes.index(c))
        else:
            raise ConfigError(f"'{where}' has unknown class {c!r}. Allowed: {', '.join(classes)}.")
    return out


def _select(X: np.ndarray, y: np.ndarray, keep: list[int]) -> Split:
    """Rows of the kept classes, relabelled 0..k-1 in `keep` order (1 class -> all label 1)."""
    mask = np.isin(y, keep)
    X, y = X[mask], y[mask]
    if len(keep) == 1:
        return X, np.ones_like(y)
    lut = np.full(int(max(keep)) + 1, -1, dtype=np.int64)
    lut[keep] = np.arange(len(keep))
    return X, lut[y]


def prepare(cfg, data_dir=None, *, retrain_on: str = "train", verify: bool = True,
            pre: Preprocessor | None = None) -> Prepared:
    """Arrays for `cfg`. retrain_on='train+val' merges the validation split into training.

    pre: preprocessing statistics to apply (e.g. those stored with a model);
    by default they are fitted on the training split.
    """
    dtype = np.dtype(cfg.train.dtype)
    if cfg.data.name == "xor":
        X = XOR_X.astype(dtype)
        return Prepared(train=(X, XOR_Y.copy()), val=None, test=None, classes=("0", "1"), pre=None,
                        source="built-in")
    d = load(cfg.data.name, data_dir or cfg.data.dir, verify=verify)
    classes = tuple(d.classes)
    Xtr, ytr, Xte, yte = d.X_train, d.y_train.astype(np.int64), d.X_test, d.y_test.astype(np.int64)
    if cfg.data.classes is not None:
        keep = class_indices(cfg.data.classes, classes)
        Xtr, ytr = _select(Xtr, ytr, keep)
        Xte, yte = _select(Xte, yte, keep)
        classes = tuple(classes[i] for i in keep)
    tr_idx, va_idx = split(ytr, cfg.data.val_fraction, cfg.data.split_seed)
    if retrain_on == "train+val":
        tr_idx = np.sort(np.concatenate([tr_idx, va_idx]))
        va_idx = va_idx[:0]
    if pre is None:
        pre = Preprocessor.fit(cfg.data.preprocess, Xtr[tr_idx])
    val = (pre.transform(Xtr[va_idx], dtype), ytr[va_idx]) if len(va_idx) else None
    return Prepared(
        train=(pre.transform(Xtr[tr_idx], dtype), ytr[tr_idx]),
        val=val,
        test=(pre.transform(Xte, dtype), yte),
        classes=classes,
        pre=pre,
        sha256=dict(d.sha256),
        source=str(d.source),
        trained_on=retrain_on,
    )
