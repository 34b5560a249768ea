"""Figure plumbing shared by the figure modules: styled figures saved atomically, round log ticks."""
from __future__ import annotations

import io
import math
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import matplotlib
import matplotlib.pyplot as plt  # colormaps and patches only: figures never go through pyplot
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

from dlhw.store import files as results
from dlhw.report.runfiles import RunFiles, finite, fmt_value

FORMATS = ("png", "svg", "pdf")
COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "batch": "#7f7f7f"}
AXIS_LABEL = {"batch_size": "batch size", "learning_rate": "learning rate", "epochs": "epochs",
              "alpha": "α (L2 strength)"}
STYLE = {  # sized so a 5-inch-wide figure stays legible printed at column width (~3.3 in)
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.framealpha": 0.85,
    "savefig.dpi": 200, "image.interpolation": "nearest",
}


class ShownFigure(Figure):
    """A Figure that Jupyter shows inline (PNG) whichever backend is active: dlhw's figures are
    never in pyplot's list of figures, so nothing displays, keeps or closes them behind your back."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


_KEPT: ContextVar[list | None] = ContextVar("dlhw_kept_figures", default=None)


@contextmanager
def keep_figures() -> Iterator[list]:
    """Inside, `figure()` hands its figures to the list yielded instead of writing them to files."""
    kept: list = []
    token = _KEPT.set(kept)
    try:
        yield kept
    finally:
        _KEPT.reset(token)


@contextmanager
def figure(path: Path, nrows: int = 1, ncols: int = 1, *, figsize=None, **kw) -> Iterator[tuple]:
    """A styled figure saved atomically to `path` on success (inside `keep_figures()`: handed back).

    A plain `Figure`, not pyplot's: no backend is needed, no window opens, nothing must be closed.
    """
    with matplotlib.rc_context(STYLE):
        fig = ShownFigure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, **kw)
        yield fig, axes
        kept = _KEPT.get()
        if kept is not None:
            kept.append(fig)
            return
        buf = io.BytesIO()
        fig.savefig(buf, format=path.suffix.lstrip("."))
        results.atomic_write_bytes(path, buf.getvalue())  # no half-written figure after a crash


def nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round numbers in [lo, hi] for a log axis: the coarsest of 1-2-5, 1-1.5-2-3-5-7, ... with 4+ ticks."""
    ks = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    out: list[float] = []
    for mants in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)):
        out = [t for t in (round(m * 10.0 ** k, 12) for k in ks for m in mants) if lo <= t <= hi]
        if len(out) >= 4:
            break
    if len(out) < 3:  # a narrow range: evenly spaced round numbers instead
        step = float(f"{(hi - lo) / 4:.1g}") or 1.0
        out = [round(float(t), 12) for t in np.arange(math.ceil(lo / step) * step, hi + 1e-12, step)]
    return out[::math.ceil(len(out) / most)] if out else out


def log_if_wide(ax, values, axis: str = "y", ratio: float = 20.0) -> None:
    """Log scale when the positive values span more than `ratio`."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)])
    if v.size and v.min() > 0 and v.max() / v.min() > ratio:
        plain_log(ax, v.min(), v.max(), axis)


def plain_log(ax, lo: float, hi: float, axis: str = "y") -> None:
    """A log axis labelled 0.3, 0.5, 1, 2 rather than 3x10^-1."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    if hi / lo > 1e4:  # many decades: matplotlib's 10^k ticks read best
        return
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(FixedLocator(nice_ticks(lo, hi)))
    a.set_major_formatter(FormatStrFormatter("%g"))
    a.set_minor_locator(NullLocator())


def epoch_rows(history: list[dict]) -> list[dict]:
    return [r for r in history if finite(r.get("epoch")) and float(r["epoch"]).is_integer()]


def subtitle(run: RunFiles) -> str:
    m = run.metrics or {}
    cfg = run.config or {}
    tr = cfg.get("train") or {}
    parts = [run.name]
    if cfg.get("model"):
        parts.append(str(cfg["model"].get("kind")))
    if tr:
        parts.append(f"bs {tr.get('batch_size')}, lr {fmt_value(tr.get('learning_rate', 0))}, "
                     f"α {fmt_value(tr.get('alpha', 0))}")
    if m.get("trained_on") and m.get("trained_on") != "train":
        parts.append(f"trained on {m['trained_on']}")
    return " · ".join(parts)

