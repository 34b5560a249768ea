"""A run folder's result files, read back: what the figures, report.md and `dlhw compare` draw from.

Pure reading - no matplotlib, no training, no data sets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from dlhw.store import files as results
from dlhw.errors import RunError
from dlhw.grid.jobs import axis_text
from dlhw.grid.select import rank

SPLITS = ("train", "val", "test")
LOSS_NAMES = {"ce": "cross-entropy", "mse": "mean squared error", "loss": "loss"}
AXES = ("batch_size", "learning_rate", "epochs", "alpha")


@dataclass
class RunFiles:
    """A run folder's result files, each None when absent."""

    dir: Path
    config_text: str | None = None
    config: dict | None = None
    metrics: dict | None = None
    history: list[dict] | None = None
    iterations: np.ndarray | None = None  # (T, 2): iteration, batch loss
    model: dict[str, np.ndarray] | None = None
    manifest: dict | None = None
    best: dict | None = None
    grid: list[dict] | None = None
    grid_epochs: list[dict] | None = None

    @property
    def name(self) -> str:
        return str((self.config or {}).get("name") or self.dir.name)

    @property
    def select_by(self) -> str:
        return (self.best or {}).get("select_by") or "val_ce"


def check_run_dir(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, or a RunError naming what is wrong with it."""
    p = Path(run_dir)
    if not p.exists():
        raise RunError(f"{p}: run folder not found.")
    if not p.is_dir():
        raise RunError(f"{p}: is a file; give a run folder (e.g. results/softmax_train).")
    if not any((p / f).is_file() for f in ("config.yaml", "metrics.json", "grid.csv", "history.csv")):
        raise RunError(f"{p}: not a dlhw run folder (no config.yaml, metrics.json, history.csv or grid.csv).")
    return p


def read_run(run_dir: str | Path) -> RunFiles:
    """Every result file of `run_dir` that exists (a RunError if one is unreadable)."""
    d = check_run_dir(run_dir)
    run = RunFiles(d)
    if (d / "config.yaml").is_file():
        run.config_text = (d / "config.yaml").read_text(encoding="utf-8")
        try:
            run.config = yaml.safe_load(run.config_text) or {}
        except yaml.YAMLError as e:
            raise RunError(f"{d / 'config.yaml'}: not valid YAML ({e}).") from None
    for attr, name in (("metrics", "metrics.json"), ("manifest", "manifest.json"), ("best", "best.json")):
        if (d / name).is_file():
            setattr(run, attr, results.read_json(d / name))
    for attr, name in (("history", "history.csv"), ("grid", "grid.csv"), ("grid_epochs", "grid_epochs.csv")):
        if (d / name).is_file():
            setattr(run, attr, results.read_csv(d / name) or None)
    if (d / "iterations.csv").is_file():
        run.iterations = _read_iterations(d / "iterations.csv")
    if (d / "model.npz").is_file():
        run.model = results.load_npz(d / "model.npz")
    return run


def _read_iterations(path: Path) -> np.ndarray | None:
    try:  # far faster than csv.DictReader for the 10^5-row files of small batch sizes
        a = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise RunError(f"{path}: not a valid iterations file ({e}).") from None
    return a if a.size else None


def loss_metrics(history: list[dict] | None) -> list[str]:
    """Loss metrics history.csv holds (cross-entropy first): `ce`, `mse`, ..."""
    if not history:
        return []
    cols = list(history[0])
    names = []
    for c in cols:
        split, _, m = c.partition("_")
        if split in SPLITS and m and m != "accuracy" and m not in names and (
                m in LOSS_NAMES or f"val_{m}" in cols or f"test_{m}" in cols):
            names.append(m)
    return sorted(names, key=lambda m: m != "ce")


def column(rows: list[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the rows where y is a finite number."""
    pts = [(r[x], r[y]) for r in rows if finite(r.get(y)) and finite(r.get(x))]
    if not pts:
        return np.empty(0), np.empty(0)
    a = np.array(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metric_label(metric: str) -> str:
    """'val_ce' -> 'validation cross-entropy'."""
    split, _, m = metric.partition("_")
    split = {"val": "validation", "train": "training"}.get(split, split)
    return f"{split} {LOSS_NAMES.get(m, m)}"


def fmt_value(v: float) -> str:
    """Compact tick label: 0.001, 0.0027, 1e-6, 0, 64."""
    if v == 0:
        return "0"
    s = f"{v:.2g}"
    return s.replace("e-0", "e-").replace("e+0", "e")



def usable(row: dict, metric: str) -> bool:
    return not row.get("diverged") and finite(row.get(metric))


def better(metric: str) -> Callable:
    """min for losses, max for accuracies."""
    return max if metric.endswith("accuracy") else min


def extra_axes(run: RunFiles) -> list[str]:
    """The grid's axes over other config keys (`model.hidden`, ...): grid.csv's columns before batch_size."""
    cols = list(run.grid[0]) if run.grid else []
    return cols[:cols.index("batch_size")] if "batch_size" in cols else []


def axis_label(value) -> str:
    """An extra axis's value as text, the same for best.json ([512, 256]) and grid.csv (512-256)."""
    return str(axis_text(value))


def chosen_rows(run: RunFiles, rows: list[dict] | None = None) -> list[dict]:
    """`rows` (default grid.csv's) with the chosen setting's values of the extra axes (all of them when
    there are none)."""
    rows = list(run.grid or []) if rows is None else rows
    extra, best = extra_axes(run), run.best or {}
    if not extra or not all(k in best for k in extra):
        return rows
    return [r for r in rows if all(axis_label(r[k]) == axis_label(best[k]) for k in extra)]


def ranked_settings(run: RunFiles) -> list[dict]:
    """grid.csv rows that did not diverge, best first by the run's selection metric."""
    return rank(run.grid or [], run.select_by)
