"""`dlhw compare`: several runs side by side, from their result files.

One row per run: its folder, the config keys whose values differ between the runs, then the
metrics. A grid run counts with the setting it chose (best.json overrides its `train.*` values)
and its validation scores are those of the chosen setting during the search (its final model
was retrained on train+val, so it has no validation split of its own).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from dlhw.store import files as results
from dlhw.errors import RunError
from dlhw.report.figkit import FORMATS, figure, plt
from dlhw.report.runfiles import RunFiles, chosen_rows, column, extra_axes, finite, read_run
from dlhw.report.texttable import render

METRICS = ("val_ce", "val_accuracy", "test_ce", "test_accuracy", "epochs_run", "seconds")
HEADINGS = {"val_ce": "val CE", "val_accuracy": "val acc", "test_ce": "test CE", "test_accuracy": "test acc",
            "epochs_run": "epochs run", "seconds": "work (s)", "diverged": "diverged"}
WORK_NOTE = ("work (s): the computing time the run folder records - training, or for a grid the time of "
             "each of its jobs (summed over workers and over resumed sessions) plus the retrain.")
IGNORED = ("name", "output.dir", "data.dir")  # differ between runs without changing what was trained
CHOSEN = ("batch_size", "learning_rate", "epochs", "alpha")


def flat_config(run: RunFiles) -> dict[str, object]:
    """`section.key -> value` of the config, with a grid run's chosen setting as its `train.*` values."""
    out: dict[str, object] = {}
    for sec, body in (run.config or {}).items():
        if isinstance(body, dict):
            for k, v in body.items():
                out[f"{sec}.{k}"] = v
        else:
            out[sec] = body
    if run.best:
        for k in CHOSEN:
            if k in run.best:
                out[f"train.{k}"] = run.best[k]
        for k in extra_axes(run):  # the chosen values of a grid's other axes (model.hidden, ...)
            if k in run.best:
                out[k] = run.best[k]
    return out


def compare_runs(run_dirs: list[str | Path]) -> tuple[list[str], list[dict]]:
    """(columns, rows): each run's differing config values and metrics."""
    if len(run_dirs) < 1:
        raise RunError("give at least one run folder to compare.")
    runs = [read_run(d) for d in run_dirs]
    configs = [flat_config(r) for r in runs]
    keys: list[str] = []
    for c in configs:
        keys += [k for k in c if k not in keys]
    differ = [k for k in keys if k not in IGNORED and len({_hashable(c.get(k)) for c in configs}) > 1]
    labels = _labels([r.dir for r in runs])
    metrics = list(METRICS) + (["diverged"] if any((r.metrics or {}).get("diverged") for r in runs) else [])
    rows = []
    for run, cfg, label in zip(runs, configs, labels):
        m = dict(run.metrics or {})
        if run.best:
            for k in ("val_ce", "val_accuracy"):
                m.setdefault(k, run.best.get(k))
            search = jobs_work(run)
            if search is None:  # no job records: the search's wall time
                search = run.best.get("seconds", ((run.manifest or {}).get("grid") or {}).get("seconds"))
            if finite(search):  # a grid's work is its search plus the retrain
                m["seconds"] = search + (m["seconds"] if finite(m.get("seconds")) else 0.0)
        rows.append({"run": label, **{k: cfg.get(k) for k in differ}, **{k: m.get(k) for k in metrics}})
    return ["run", *differ, *metrics], rows


_JOB_LINE = re.compile(r"^\S+ job (\w+) .*: ([0-9.]+) s\b")


def jobs_work(run: RunFiles) -> float | None:
    """Seconds of a grid's jobs as grid.log records them, summed over workers and sessions: each job
    whose result file is in jobs/ counts once (its last record); None without such records."""
    log = run.dir / "grid.log"
    if not log.is_file():
        return None
    keys = {p.stem for p in (run.dir / "jobs").glob("*.npz")}
    seconds: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _JOB_LINE.match(line)
        if m and m.group(1) in keys:
            seconds[m.group(1)] = float(m.group(2))
    return round(sum(seconds.values()), 3) if seconds else None


def _hashable(v):
    return tuple(map(_hashable, v)) if isinstance(v, list) else (
        tuple(sorted((k, _hashable(x)) for k, x in v.items())) if isinstance(v, dict) else v)


def _labels(dirs: list[Path]) -> list[str]:
    """Folder names, or longer paths where two runs share a name."""
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def _cell(key: str, v, wide: bool = True) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key.endswith("accuracy") and finite(v):
        return f"{100 * v:.2f}%"
    if key.endswith("_ce") and finite(v):
        return f"{v:.4f}"
    if key == "seconds" and finite(v):
        return f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.4g}".replace("e-0", "e-")
    if isinstance(v, list):
        if not wide and len(v) > 4:  # compact: first, last and how many
            return f"[{_cell(key, v[0])} .. {_cell(key, v[-1])}] ({len(v)})"
        return "[" + ", ".join(_cell(key, x) for x in v) + "]"
    return str(v)


def format_table(columns: list[str], rows: list[dict], width: int | None = None, wide: bool = True) -> str:
    """An aligned text table, text columns left, numbers right, no wider than `width` (None: any).

    Not `wide`: long lists are shown as their ends and length, and `train.` keys without their
    section where that is unambiguous (`average` for `train.average`)."""
    head = [HEADINGS.get(c, c) for c in columns]
    if not wide:
        leaves = [c.rpartition(".")[2] for c in columns]
        head = [leaf if c.startswith("train.") and leaves.count(leaf) == 1 else h
                for c, h, leaf in zip(columns, head, leaves)]
    cells = [[_cell(c, r.get(c), wide) for c in columns] for r in rows]
    right = [i > 0 and any(finite(r.get(c)) for r in rows) for i, c in enumerate(columns)]
    return render(head, cells, width, right, blocks=True)


def write_csv(path: str | Path, columns: list[str], rows: list[dict]) -> Path:
    """The comparison as CSV (raw numbers, lists as YAML-like text)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else (_cell(c, r[c]) if isinstance(r.get(c), list) else r[c])
                    for c in columns])
    return results.atomic_write_text(path, buf.getvalue())


def validation_curves(run: RunFiles) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'ce': (epochs, values), 'accuracy': ...}: history.csv's validation columns, or for a grid run
    the chosen setting's per-epoch validation scores from grid_epochs.csv."""
    out = {}
    for m in ("ce", "accuracy"):
        x, y = column(run.history or [], "epoch", f"val_{m}")
        if y.size:
            out[m] = (x, y)
    if not out and run.best and run.grid_epochs:
        key = tuple(float(run.best[k]) for k in ("batch_size", "learning_rate", "alpha"))
        rows = [r for r in chosen_rows(run, run.grid_epochs)
                if np.allclose([float(r[k]) for k in ("batch_size", "learning_rate", "alpha")], key, rtol=1e-9)]
        for m in ("ce", "accuracy"):
            x, y = column(rows, "epoch", f"val_{m}")
            if y.size:
                out[m] = (x, y)
    return out


def plot_validation(run_dirs: list[str | Path], path: str | Path, labels: list[str] | None = None) -> Path:
    """Overlay the runs' validation CE and accuracy vs epochs in one figure."""
    path = Path(path)
    if path.suffix.lstrip(".") not in FORMATS:
        raise RunError(f"--plot {path}: the file name must end in one of "
                       f"{', '.join('.' + f for f in FORMATS)}.")
    runs = [read_run(d) for d in run_dirs]
    labels = labels or _labels([r.dir for r in runs])
    curves = [validation_curves(r) for r in runs]
    from_grid = [bool(r.best) and not any(f"val_{m}" in (r.history or [{}])[0] for m in ("ce", "accuracy"))
                 for r in runs]
    if not any(curves):
        raise RunError("none of these runs has validation curves (history.csv val_* columns or grid_epochs.csv).")
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in ("ce", "accuracy") if any(m in c for c in curves)]
    with figure(path, 1, len(metrics), figsize=(4.8 * len(metrics) + 0.4, 3.8), squeeze=False) as (fig, axes):
        cmap = plt.get_cmap("tab10")
        for ax, m in zip(axes[0], metrics):
            for i, (c, label) in enumerate(zip(curves, labels)):
                if m not in c:
                    continue
                x, y = c[m]
                y = y * 100 if m == "accuracy" else y
                grid = " (grid search, chosen setting)" if from_grid[i] else ""
                ax.plot(x, y, color=cmap(i % 10), lw=1.6, marker="o" if len(x) <= 30 else None, markersize=3,
                        ls=("-", "--", ":", "-.")[i // 10 % 4], label=label + grid)
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation accuracy (%)" if m == "accuracy" else "validation cross-entropy")
            ax.set_title(f"Validation {'accuracy' if m == 'accuracy' else 'cross-entropy'} vs epochs")
            ax.set_xlim(left=0)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, not 2.5
        if len(runs) <= 3:
            axes[0][0].legend(fontsize=8)
        else:  # many runs: below the plots, where the legend hides no curve
            fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center",
                       ncols=min(3, len(runs)), fontsize=8)
        fig.suptitle(f"Comparison of {len(runs)} runs", fontsize=11)
    return path
