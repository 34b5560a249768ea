"""Figures from a run folder's result files: pure, reads files only, never trains or loads data.

`draw_all(run_dir)` writes every figure whose inputs the folder holds into `run_dir/figures/`:

  loss_curves       train / val / test loss vs epochs (every loss column history.csv has)
  loss_iterations   mini-batch loss (raw + moving average) and val/test loss vs iterations
  accuracy_curves   train / val / test accuracy vs epochs
  grid_heatmaps     grid runs: selection metric over learning rate x alpha, a panel per batch size
  grid_epochs       grid runs: the selection metric vs epochs for the ten best (bs, lr, alpha)
  grid_marginals    grid runs: the best value reached with each value of each hyperparameter
  confusion_matrix  test confusion matrix (metrics.json `test_confusion`)
  weights           softmax class templates, or an MLP's first-layer units (784 inputs only)

Every figure is its own `Figure` (never pyplot's), styled inside `rc_context` and saved; no
backend or display is needed. `dlhw.Run.figure(name)` returns the same figures instead of saving them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from dlhw.errors import RunError
from dlhw.store import derived
from dlhw.report.figkit import COLORS, FORMATS, epoch_rows, figure, log_if_wide, plain_log, subtitle
from dlhw.report.plots_grid import grid_epochs, grid_heatmaps, grid_marginals
from dlhw.report.runfiles import LOSS_NAMES, SPLITS, RunFiles, column, finite, loss_metrics, read_run


# --------------------------------------------------------------------------- training curves


def loss_curves(run: RunFiles, path: Path) -> Path | None:
    """Train, validation and test loss vs epochs, a panel per loss metric."""
    losses = loss_metrics(run.history)
    if not losses:
        return None
    with figure(path, 1, len(losses), figsize=(5.2 * len(losses), 3.6), squeeze=False) as (fig, axes):
        for ax, m in zip(axes[0], losses):
            _split_lines(ax, run.history, m)
            ax.set_xlabel("epoch")
            ax.set_ylabel(LOSS_NAMES.get(m, m))
            ax.set_title(f"{LOSS_NAMES.get(m, m).capitalize()} vs epochs")
        fig.suptitle(subtitle(run), fontsize=8.5, color="0.35")
    return path


def _split_lines(ax, history: list[dict], metric: str, scale: float = 1.0) -> None:
    """One line per split; the training split is only evaluated at epoch ends."""
    ys, ends = [], []
    for split in SPLITS:
        x, y = column(history, "epoch", f"{split}_{metric}")
        if not y.size:
            continue
        y = y * scale
        ys.append(y)
        dense = len(y) > 30
        ax.plot(x, y, color=COLORS[split], marker=None if dense else "o", markersize=3.5,
                lw=1.6, label={"train": "training", "val": "validation", "test": "test"}[split])
        ends.append((x[-1], y[-1], f"{y[-1]:.1f}" if scale != 1 else f"{y[-1]:.3f}", COLORS[split]))
    if ys:
        log_if_wide(ax, np.concatenate(ys))
    ax.legend()
    xmax = max((r["epoch"] for r in history if finite(r.get("epoch"))), default=1)
    if xmax <= 12:
        ax.set_xticks(range(0, int(math.ceil(xmax)) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    _end_labels(ax, ends)


def _end_labels(ax, ends: list[tuple], gap: float = 0.06) -> None:
    """Final values written at the right end of their lines, pushed apart so they never overlap."""
    if not ends:
        return
    ax.autoscale_view()
    to_axes = ax.transScale + ax.transLimits  # data -> axes fraction, whatever the scale
    pos = sorted((float(to_axes.transform((x, y))[1]), i) for i, (x, y, _, _) in enumerate(ends))
    placed: list[float] = []
    for f, _ in pos:
        placed.append(max(f, placed[-1] + gap) if placed else f)
    shift = max(0.0, placed[-1] - 0.98)  # keep the top label inside the axes
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for (_, i), f in zip(pos, placed):
        x, _, text, color = ends[i]
        ax.annotate(text, (x, f - shift), xycoords=trans, xytext=(4, 0), textcoords="offset points",
                    fontsize=8, color=color, va="center")


def accuracy_curves(run: RunFiles, path: Path) -> Path | None:
    """Train, validation and test accuracy (%) vs epochs."""
    if not run.history or not any(f"{s}_accuracy" in run.history[0] for s in SPLITS):
        return None
    with figure(path, figsize=(5.2, 3.6)) as (fig, ax):
        _split_lines(ax, run.history, "accuracy", scale=100.0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy vs epochs")
        fig.suptitle(subtitle(run), fontsize=8.5, color="0.35")
    return path


def loss_iterations(run: RunFiles, path: Path) -> Path | None:
    """Mini-batch loss (raw, faint, and a moving average) with val/test loss at evaluation points."""
    if run.iterations is None:
        return None
    # the loss of step i is computed before its update: plot it at i - 1 updates, like the evaluations
    it, loss = run.iterations[:, 0] - 1, run.iterations[:, 1]
    ok = np.isfinite(loss)
    losses = loss_metrics(run.history)
    m = losses[0] if losses else "ce"
    name = LOSS_NAMES.get(m, m)
    kind = str(run.model.get("kind", "")) if run.model else ""
    if m == "mse" and kind == "linear":  # linear's batch loss is the data loss, half the MSE (linear.py)
        loss = 2 * loss
    per = _iterations_per_epoch(run)
    full = per == 1  # full-batch gradient descent: the raw curve is exact, nothing to smooth
    with figure(path, figsize=(6.0, 3.8)) as (fig, ax):
        stride = max(1, int(ok.sum()) // 20000)  # keep vector formats small
        raw_label = ("full batch" if full else "mini-batch (raw)") + (f", every {stride}th" if stride > 1 else "")
        few = full or ok.sum() <= 200  # few points: the raw line is the curve, so draw it solid
        ax.plot(it[ok][::stride], loss[ok][::stride], color="0.35" if few else COLORS["batch"],
                lw=1.2 if few else 0.5, alpha=0.9 if few else 0.35, label=raw_label)
        w = int(np.clip(ok.sum() // 60, min(5, ok.sum() // 10), 1000))
        if w > 1 and not full:
            ax.plot(it[ok], moving_mean(loss[ok], w), color="black", lw=1.5,
                    label=f"mini-batch (mean of {w} iterations)")
        shown, drawn = [loss[ok]], []
        averaged = ((run.config or {}).get("train") or {}).get("average") == "epoch"
        whole = "whole split, epoch-mean weights" if averaged else "whole split"
        for split in ("val", "test"):
            x, y = column(run.history or [], "iteration", f"{split}_{m}")
            if y.size:
                label = "validation" if split == "val" else "test"
                ax.plot(x, y, color=COLORS[split], lw=1.6, marker="o" if len(y) <= 30 else None,
                        markersize=3.5, label=f"{label} ({whole})")
                shown.append(y)
                drawn.append(label)
        if not ok.all():
            ax.axvline(it[~ok][0], color="red", ls="--", lw=1, label="diverged (loss not finite)")
        _loss_ylim(ax, loss[ok], np.concatenate(shown))
        ax.set_xlabel("iteration (updates made)")
        ax.set_ylabel(f"{name} (no L2 term)")
        who = ["Training", *drawn]
        ax.set_title(f"{', '.join(who[:-1])} and {who[-1]}" if len(who) > 1 else who[0])
        ax.set_title(ax.get_title() + f" {name} vs iterations")
        last = max([it[-1], 1.0, *(r["iteration"] for r in run.history or [] if finite(r.get("iteration")))])
        ax.set_xlim(0, last * (1.0 if ok.all() else 1.03))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper right" if ok.sum() > 2000 else "best")  # "best" is slow on many points
        if per:
            sec = ax.secondary_xaxis("top", functions=(lambda i: i / per, lambda e: e * per))
            sec.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, not 2.5
            sec.set_xlabel("epoch", fontsize=9)
    return path


def _iterations_per_epoch(run: RunFiles) -> float | None:
    rows = epoch_rows(run.history or [])
    if not rows or not finite(rows[0].get("iteration")) or rows[0]["epoch"] <= 0:
        return None
    return rows[0]["iteration"] / rows[0]["epoch"]


def moving_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving mean over `w` points; the window shrinks at both ends (same length as x)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    lo, hi = np.maximum(i - w // 2, 0), np.minimum(i + (w - w // 2), len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def _loss_ylim(ax, raw: np.ndarray, shown: np.ndarray) -> None:
    """Log axis when the losses span decades; clip the rare tiny mini-batch losses off the bottom."""
    pos = shown[shown > 0]
    if pos.size and pos.max() / np.percentile(pos, 1) > 5:
        lo = (np.percentile(pos, 0.5) if pos.size > 1000 else pos.min()) * 0.8
        hi = pos.max() * 1.3
        plain_log(ax, lo, hi)
        ax.set_ylim(lo, hi)
    elif raw.size:
        ax.set_ylim(max(0.0, np.percentile(raw, 0.2) * 0.9), np.max(shown) * 1.05)


# --------------------------------------------------------------------------- test-set and model figures


def confusion_matrix(run: RunFiles, path: Path) -> Path | None:
    """Test confusion matrix: colour = share of the true class (row-normalised), text = counts."""
    m = run.metrics or {}
    cm = m.get("test_confusion")
    if not cm:
        return None
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    classes = [str(c) for c in (m.get("classes") or [])]
    classes = classes + [str(i) for i in range(len(classes), k)] if len(classes) < k else classes[:k]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = min(7.0, 2.2 + 0.5 * k)
    with figure(path, figsize=(size + 1.1, size)) as (fig, ax):
        im = ax.imshow(share * 100, cmap="Blues", vmin=0, vmax=100)
        ax.grid(False)
        fs = 8 if k <= 10 else 6
        for i in range(k):
            for j in range(k):
                if cm[i, j] == 0:
                    continue
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fs,
                        fontweight="bold" if i == j else "normal",
                        color="white" if share[i, j] > 0.55 else "black")
        labels = [f"{c} ({share[i, i]:.0%})" if rows[i, 0] else c for i, c in enumerate(classes)]
        ax.set_xticks(range(k), classes, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class (recall)")
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set_title(f"Test confusion matrix: {acc:.2%} of {cm.sum():,} correct")
        cb = fig.colorbar(im, ax=ax, shrink=0.8)
        cb.set_label("% of the true class (row-normalised)")
    return path


def first_layer(model: dict[str, np.ndarray] | None) -> np.ndarray | None:
    """The (D, M) weights applied to the input (`param_W1` for an MLP, else `param_W`)."""
    if not model:
        return None
    W = model.get("param_W1", model.get("param_W"))
    return W if W is not None and W.ndim == 2 else None


def weights(run: RunFiles, path: Path, side: int = 28) -> Path | None:
    """Each class's weight vector as a 28x28 image (softmax), or a grid of first-layer units (MLP)."""
    W = first_layer(run.model)
    if W is None or W.shape[0] != side * side or not np.isfinite(W).all():  # NaN weights: a diverged run
        return None
    W = np.asarray(W, dtype=np.float64)
    if "param_W1" in run.model:
        return _unit_grid(run, W, path, side)
    classes = [str(c) for c in run.model.get("classes", [])]
    k = W.shape[1]
    titles = classes if len(classes) == k else (
        [f"red: {classes[1]}, blue: {classes[0]}"] if k == 1 and len(classes) == 2 else [f"output {i}" for i in range(k)])
    ncols = min(5, k)
    nrows = math.ceil(k / ncols)
    lim = float(np.percentile(np.abs(W), 99.5)) or 1.0  # one bright pixel must not wash the rest out
    size = (max(4.2, 1.5 * ncols + 0.9), max(2.6, 1.65 * nrows + 0.5))
    with figure(path, nrows, ncols, figsize=size, squeeze=False) as (fig, axes):
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < k:
                im = ax.imshow(W[:, i].reshape(side, side), cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_title(titles[i], fontsize=9)
        cb = fig.colorbar(im, ax=axes, shrink=0.85, extend="both" if np.abs(W).max() > lim else "neither")
        cb.set_label("weight (red +, blue −)")
        fig.suptitle(f"Learned weights per class ({run.name})" if k > 1 else f"Learned weights ({run.name})")
    return path


def _unit_grid(run: RunFiles, W: np.ndarray, path: Path, side: int, n: int = 64) -> Path:
    """The `n` first-layer units with the largest weight norm, each on its own symmetric scale."""
    order = np.argsort(-np.linalg.norm(W, axis=0))[:n]
    ncols = int(math.ceil(math.sqrt(len(order))))
    nrows = math.ceil(len(order) / ncols)
    with figure(path, nrows, ncols, figsize=(0.9 * ncols, 0.9 * nrows + 0.7), squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for ax, u in zip(axes.flat, order):
            lim = np.abs(W[:, u]).max() or 1.0
            ax.imshow(W[:, u].reshape(side, side), cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.suptitle(f"First-layer weights: {len(order)} of {W.shape[1]} hidden units, largest norm first\n"
                     f"(red +, blue −; each unit on its own scale)", fontsize=10)
    return path



# --------------------------------------------------------------------------- all figures

FIGURES: dict[str, Callable[[RunFiles, Path], Path | None]] = {
    "loss_curves": loss_curves,
    "loss_iterations": loss_iterations,
    "accuracy_curves": accuracy_curves,
    "grid_heatmaps": grid_heatmaps,
    "grid_epochs": grid_epochs,
    "grid_marginals": grid_marginals,
    "confusion_matrix": confusion_matrix,
    "weights": weights,
}


def draw_all(run_dir: str | Path, out_dir: str | Path | None = None, fmt: str = "png",
             run: RunFiles | None = None, track: bool = True) -> list[Path]:
    """Every figure whose inputs `run_dir` holds, written to `out_dir` (default run_dir/figures).

    Into the run's own figures/ (and `track`), the figures of other formats go first and
    manifest.json records the figures as incomplete until the last one is written."""
    if fmt not in FORMATS:
        raise RunError(f"--format must be one of {', '.join(FORMATS)}. Got {fmt!r} instead.")
    run = run or read_run(run_dir)
    own = out_dir is None or Path(out_dir).resolve() == (run.dir / "figures").resolve()
    out = run.dir / "figures" if own else Path(out_dir)
    if own and track:
        for p in derived.derived_files(run.dir):
            if p.parent.name == "figures":
                p.unlink()
        derived.record(run.dir, figures="incomplete")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        p = draw(run, out / f"{name}.{fmt}")
        if p is not None:
            written.append(p)
        else:  # a figure left from an earlier run in this folder would no longer be true
            (out / f"{name}.{fmt}").unlink(missing_ok=True)
    if own and track:
        derived.record(run.dir, figures="complete")
    return written

