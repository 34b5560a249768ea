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

Every figure is its own `fig` (never pyplot's current figure), styled inside `plt.rc_context`,
saved and closed; the Agg backend needs no display.
"""
from __future__ import annotations

import io
import math
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.ticker import FixedLocator, FormatStrFormatter, MaxNLocator, NullLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from dlhw import results  # noqa: E402
from dlhw.errors import RunError  # noqa: E402

FORMATS = ("png", "svg", "pdf")
SPLITS = ("train", "val", "test")
COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "batch": "#7f7f7f"}
LOSS_NAMES = {"ce": "cross-entropy", "mse": "mean squared error", "loss": "loss"}
AXES = ("batch_size", "learning_rate", "epochs", "alpha")
AXIS_LABEL = {"batch_size": "batch size", "learning_rate": "learning rate", "epochs": "epochs",
              "alpha": "α (L2 strength)"}
STYLE = {  # sized so a 5-inch-wide figure stays legible printed at column width (~3.3 in)
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.framealpha": 0.85,
    "savefig.dpi": 200, "image.interpolation": "nearest",
}


# --------------------------------------------------------------------------- reading a run folder


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


# --------------------------------------------------------------------------- figure plumbing


@contextmanager
def figure(path: Path, nrows: int = 1, ncols: int = 1, **kw) -> Iterator[tuple]:
    """A styled figure saved to `path` on success and closed whatever happens."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, layout="constrained", **kw)
        try:
            yield fig, axes
            buf = io.BytesIO()
            fig.savefig(buf, format=path.suffix.lstrip("."))
            results.atomic_write_bytes(path, buf.getvalue())  # no half-written figure after a crash
        finally:
            plt.close(fig)


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


def _log_if_wide(ax, values, axis: str = "y", ratio: float = 20.0) -> None:
    """Log scale when the positive values span more than `ratio`."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)])
    if v.size and v.min() > 0 and v.max() / v.min() > ratio:
        _plain_log(ax, v.min(), v.max(), axis)


def _plain_log(ax, lo: float, hi: float, axis: str = "y") -> None:
    """A log axis labelled 0.3, 0.5, 1, 2 rather than 3x10^-1."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    if hi / lo > 1e4:  # many decades: matplotlib's 10^k ticks read best
        return
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(FixedLocator(nice_ticks(lo, hi)))
    a.set_major_formatter(FormatStrFormatter("%g"))
    a.set_minor_locator(NullLocator())


def _epoch_rows(history: list[dict]) -> list[dict]:
    return [r for r in history if finite(r.get("epoch")) and float(r["epoch"]).is_integer()]


def _subtitle(run: RunFiles) -> str:
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
        fig.suptitle(_subtitle(run), fontsize=8.5, color="0.35")
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
        _log_if_wide(ax, np.concatenate(ys))
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
        fig.suptitle(_subtitle(run), fontsize=8.5, color="0.35")
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
        for split in ("val", "test"):
            x, y = column(run.history or [], "iteration", f"{split}_{m}")
            if y.size:
                label = "validation" if split == "val" else "test"
                ax.plot(x, y, color=COLORS[split], lw=1.6, marker="o" if len(y) <= 30 else None,
                        markersize=3.5, label=f"{label} (whole split)")
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
            sec.set_xlabel("epoch", fontsize=9)
    return path


def _iterations_per_epoch(run: RunFiles) -> float | None:
    rows = _epoch_rows(run.history or [])
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
        _plain_log(ax, lo, hi)
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


# --------------------------------------------------------------------------- grid figures


def _grid_table(run: RunFiles) -> tuple[dict[str, list], dict]:
    """Sorted values of each axis, and {(bs, lr, epochs, alpha): row} of grid.csv."""
    values = {a: sorted({float(r[a]) for r in run.grid}) for a in AXES}
    table = {tuple(float(r[a]) for a in AXES): r for r in run.grid}
    return values, table


def _usable(row: dict, metric: str) -> bool:
    return not row.get("diverged") and finite(row.get(metric))


def _better(metric: str) -> Callable:
    """min for losses, max for accuracies."""
    return max if metric.endswith("accuracy") else min


def ranked_settings(run: RunFiles) -> list[dict]:
    """grid.csv rows that did not diverge, best first by the run's selection metric."""
    m = run.select_by
    rows = [r for r in run.grid or [] if _usable(r, m)]
    return sorted(rows, key=lambda r: -r[m] if m.endswith("accuracy") else r[m])


def _index(values: list[float], v) -> int | None:
    if not finite(v):
        return None
    for i, x in enumerate(values):
        if math.isclose(x, float(v), rel_tol=1e-9, abs_tol=1e-15):
            return i
    return None


def grid_heatmaps(run: RunFiles, path: Path) -> Path | None:
    """Selection metric over learning rate x alpha, one panel per batch size, each cell at its best epochs."""
    if not run.grid:
        return None
    metric = run.select_by
    pick = _better(metric)
    values, table = _grid_table(run)
    bss, lrs, eps, als = (values[a] for a in AXES)
    nb, nl, na = len(bss), len(lrs), len(als)
    val = np.full((nb, nl, na), np.nan)
    best_ep = np.zeros((nb, nl, na), dtype=int)
    div_ep = np.zeros((nb, nl, na), dtype=int)  # first epoch count that diverged, 0 = none
    for b, bs in enumerate(bss):
        for i, lr in enumerate(lrs):
            for j, a in enumerate(als):
                rows = [table[(bs, lr, e, a)] for e in eps if (bs, lr, e, a) in table]
                ok = [r for r in rows if _usable(r, metric)]
                if ok:
                    r = pick(ok, key=lambda r: r[metric])
                    val[b, i, j], best_ep[b, i, j] = r[metric], int(r["epochs"])
                bad = [int(r["epochs"]) for r in rows if r.get("diverged")]
                div_ep[b, i, j] = min(bad, default=0)
    if not np.isfinite(val).any():
        return None
    acc = metric.endswith("accuracy")
    fin = val[np.isfinite(val)]
    if acc:
        norm, cmap = Normalize(vmin=fin.min(), vmax=fin.max()), plt.get_cmap("viridis")
    else:
        # log colours: the cells worth reading sit near the minimum; 2.5x worse saturates
        vmax = min(fin.max(), fin.min() * 2.5)
        norm, cmap = LogNorm(vmin=fin.min(), vmax=max(vmax, fin.min() * 1.01)), plt.get_cmap("viridis_r")
    best = run.best or {}
    chosen = tuple(_index(values[a], best.get(a)) for a in AXES)
    ncols = min(4, nb)
    nrows = math.ceil(nb / ncols)
    cell = 0.3 if max(nl, na) > 5 else 0.5
    pw, ph = cell * na + 0.55, cell * nl + 0.6
    width = max(7.0, pw * ncols + 1.3)  # room for the titles however small the grid
    with figure(path, nrows, ncols, figsize=(width, max(3.6, ph * nrows + 1.1)), squeeze=False,
                 sharex=True, sharey=True) as (fig, axes):
        for b, ax in enumerate(axes.flat):
            if b >= nb:
                ax.axis("off")
                continue
            ax.grid(False)
            im = ax.imshow(val[b], cmap=cmap, norm=norm, aspect="auto", origin="lower")
            for i in range(nl):
                for j in range(na):
                    _heat_cell(ax, i, j, val[b, i, j], best_ep[b, i, j], div_ep[b, i, j], cmap, norm)
            if np.isfinite(val[b]).any():  # this batch size's best cell: thin outline
                i, j = np.unravel_index(np.nanargmax(val[b]) if acc else np.nanargmin(val[b]), val[b].shape)
                ax.add_patch(plt.Rectangle((j - .5, i - .5), 1, 1, fill=False, ec="black", lw=1.2))
            title = f"batch size {int(bss[b])}"
            if chosen[0] == b and None not in (chosen[1], chosen[3]):
                ax.add_patch(plt.Rectangle((chosen[3] - .5, chosen[1] - .5), 1, 1, fill=False,
                                           ec="red", lw=2.6, zorder=5))
                title += "  ★ chosen"
            ax.set_title(title, fontsize=10, color="red" if chosen[0] == b else "black",
                         fontweight="bold" if chosen[0] == b else "normal")
            ax.set_xticks(range(na), [fmt_value(a) for a in als], rotation=45, ha="right",
                          rotation_mode="anchor", fontsize=8)
            ax.set_yticks(range(nl), [fmt_value(lr) for lr in lrs], fontsize=8)
            ax.tick_params(length=2, pad=1.5)
        for ax in axes[-1]:
            ax.set_xlabel(AXIS_LABEL["alpha"])
        for ax in axes[:, 0]:
            ax.set_ylabel(AXIS_LABEL["learning_rate"])
        cb = fig.colorbar(im, ax=axes, shrink=0.9 if nrows > 1 else 1.0, aspect=30,
                          extend="max" if not acc and fin.max() > norm.vmax else "neither")
        cb.set_label(f"{metric_label(metric)} (best over epochs)")
        if not acc:
            cb.set_ticks(nice_ticks(norm.vmin, norm.vmax), labels=[f"{t:g}" for t in nice_ticks(norm.vmin, norm.vmax)])
            cb.minorticks_off()
        head = f"Grid: {metric_label(metric)} by learning rate × α, per batch size"
        if all(c is not None for c in chosen):
            head += (f"\nchosen (red box): batch size {int(bss[chosen[0]])}, lr {fmt_value(lrs[chosen[1]])}, "
                     f"α {fmt_value(als[chosen[3]])}, {int(eps[chosen[2]])} epochs, "
                     f"{metric_label(metric)} {best.get(metric, float('nan')):.4g}")
        fig.suptitle(_wrap(head, width, 11), fontsize=11)
        fig.supxlabel(_wrap("number in a cell: the epoch count at which the cell is best;  black box: best cell of "
                            "the panel;  grey hatched: diverged at every epoch count (†: diverged when trained "
                            "for more epochs)", width, 8), fontsize=8, color="0.3")
    return path


def _wrap(text: str, width_in: float, points: float) -> str:
    """Wrap each line of `text` to fit a figure `width_in` inches wide at a font size of `points`."""
    chars = int(width_in * 72 / (points * 0.55))  # ~0.55 em per character
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.split("\n"))


def _heat_cell(ax, i: int, j: int, v: float, ep: int, div: int, cmap, norm) -> None:
    if not np.isfinite(v):
        ax.add_patch(plt.Rectangle((j - .5, i - .5), 1, 1, fc="0.82", ec="0.55", hatch="///", lw=0))
        return
    r, g, b, _ = cmap(norm(v))
    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
    ax.text(j, i, f"{ep}†" if div else str(ep), ha="center", va="center", fontsize=7,
            color="white" if dark else "black")


def _stack_curves(run: RunFiles, metric: str) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """{(bs, lr, alpha): (epochs, values)} from grid_epochs.csv, else from grid.csv's epoch counts."""
    rows = run.grid_epochs or run.grid or []
    out: dict[tuple, list] = {}
    for r in rows:
        if finite(r.get(metric)) and not (r.get("diverged") is True):
            key = (float(r["batch_size"]), float(r["learning_rate"]), float(r["alpha"]))
            out.setdefault(key, []).append((float(r.get("epoch", r.get("epochs"))), r[metric]))
    return {k: tuple(np.array(sorted(v)).T) for k, v in out.items()}


def _setting_label(bs, lr, a, ep=None) -> str:
    s = f"bs {int(bs)}, lr {fmt_value(lr)}, α {fmt_value(a)}"
    return s + (f", {int(ep)} ep" if ep is not None else "")


def grid_epochs(run: RunFiles, path: Path, n: int = 10) -> Path | None:
    """Selection metric vs epochs for the `n` best (batch size, lr, alpha) combinations."""
    ranked = ranked_settings(run)
    if not ranked:
        return None
    metric = run.select_by
    curves = _stack_curves(run, metric)
    top: list[tuple[tuple, dict]] = []
    for r in ranked:  # best epoch count of each stack, stacks in order of their best
        key = (float(r["batch_size"]), float(r["learning_rate"]), float(r["alpha"]))
        if key in curves and all(key != k for k, _ in top):
            top.append((key, r))
        if len(top) == n:
            break
    if not top:
        return None
    best = run.best or {}
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    with figure(path, figsize=(7.6, 4.2)) as (fig, ax):
        cmap = plt.get_cmap("tab10")
        shown = []
        for rank, (key, r) in enumerate(top):
            x, y = curves[key]
            is_chosen = _same_setting(best, key)
            ax.plot(x, y * scale, color=cmap(rank % 10), lw=2.6 if is_chosen else 1.3,
                    zorder=4 if is_chosen else 2, marker="o" if len(x) <= 12 else None, markersize=3,
                    label=f"{rank + 1}. {_setting_label(*key, r['epochs'])}" + ("  ★ chosen" if is_chosen else ""))
            ax.plot([r["epochs"]], [r[metric] * scale], marker="*" if is_chosen else "o",
                    markersize=16 if is_chosen else 6, color="red" if is_chosen else cmap(rank % 10),
                    mec="black", mew=0.8, zorder=6 if is_chosen else 5)
            shown.append(y * scale)
        allv = np.concatenate(shown)
        lo, hi = np.nanmin(allv), np.nanmax(allv)
        best_v = top[0][1][metric] * scale
        if not metric.endswith("accuracy") and hi > best_v * 1.3:  # keep the interesting band readable
            ax.set_ylim(lo - 0.02 * (best_v * 1.3 - lo), best_v * 1.3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(metric) + (" (%)" if scale != 1 else ""))
        ax.set_title(f"Grid: {metric_label(metric)} vs epochs, the {len(top)} best settings")
        ax.legend(title="rank. setting (●: its best epoch count, ★: chosen)", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
        ax.set_xlim(left=0)
    return path


def _same_setting(best: dict, key: tuple) -> bool:
    try:
        return all(math.isclose(float(best[a]), k, rel_tol=1e-9, abs_tol=1e-15)
                   for a, k in zip(("batch_size", "learning_rate", "alpha"), key))
    except (KeyError, TypeError, ValueError):
        return False


def grid_marginals(run: RunFiles, path: Path) -> Path | None:
    """For each value of each hyperparameter: the best selection metric over all the other settings."""
    if not run.grid:
        return None
    metric = run.select_by
    pick = _better(metric)
    values, _ = _grid_table(run)
    axes_used = [a for a in AXES if len(values[a]) > 1] or list(AXES)
    best = run.best or {}
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    allv, any_div = [], False
    with figure(path, 1, len(axes_used), figsize=(2.6 * len(axes_used) + 0.6, 3.4), sharey=True,
                 squeeze=False) as (fig, axes):
        for ax, a in zip(axes[0], axes_used):
            xs = values[a]
            bests, divs, totals = [], [], []
            for v in xs:
                rows = [r for r in run.grid if math.isclose(float(r[a]), v, rel_tol=1e-9, abs_tol=1e-15)]
                ok = [r[metric] * scale for r in rows if _usable(r, metric)]
                bests.append(pick(ok) if ok else np.nan)
                divs.append(sum(1 for r in rows if r.get("diverged")))
                totals.append(len(rows))
            pos = np.arange(len(xs))
            ax.plot(pos, bests, color=COLORS["val"], marker="o", markersize=4.5, lw=1.8, label="best")
            allv += [x for x in bests if np.isfinite(x)]
            c = _index(xs, best.get(a))
            if c is not None and np.isfinite(bests[c]):
                ax.plot([c], [bests[c]], marker="*", markersize=15, color="red", mec="black", mew=0.6,
                        zorder=5, label="chosen", ls="none")
            for p, d, t in zip(pos, divs, totals):
                if d:
                    any_div = True
                    ax.annotate(f"{d / t:.0%}\ndiv.", (p, 1), xycoords=("data", "axes fraction"),
                                xytext=(0, -2), textcoords="offset points", ha="center", va="top",
                                fontsize=6.5, color="red", linespacing=0.9)
            ax.set_xticks(pos, [fmt_value(x) if a != "batch_size" else str(int(x)) for x in xs],
                          rotation=45 if len(xs) > 4 else 0, ha="right" if len(xs) > 4 else "center",
                          rotation_mode="anchor", fontsize=8)
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xlabel(AXIS_LABEL[a])
        axes[0][0].set_ylabel(metric_label(metric) + (" (%)" if scale != 1 else ""))
        if allv:  # headroom at the top for the divergence labels
            lo, hi = min(allv), max(allv)
            pad = (hi - lo) or abs(hi) * 0.1 or 1.0
            axes[0][0].set_ylim(lo - 0.08 * pad, hi + (0.35 if any_div else 0.08) * pad)
        axes[0][-1].legend(fontsize=8)
        note = ("red: share of the settings with that value that diverged" if any_div else "no setting diverged")
        fig.suptitle(f"Grid: {metric_label(metric)} reached for each value of each hyperparameter\n"
                     f"(best over all the other settings; {note})", fontsize=10)
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
             run: RunFiles | None = None) -> list[Path]:
    """Every figure whose inputs `run_dir` holds, written to `out_dir` (default run_dir/figures)."""
    if fmt not in FORMATS:
        raise RunError(f"--format must be one of {', '.join(FORMATS)}. Got {fmt!r} instead.")
    run = run or read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        p = draw(run, out / f"{name}.{fmt}")
        if p is not None:
            written.append(p)
        else:  # a figure left from an earlier run in this folder would no longer be true
            (out / f"{name}.{fmt}").unlink(missing_ok=True)
    return written
