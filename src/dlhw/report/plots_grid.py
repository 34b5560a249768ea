"""Figures of a grid run: heatmaps over learning rate x alpha, per-epoch curves of the best
settings, and the best value reached with each value of each hyperparameter."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, Normalize

from matplotlib.ticker import MaxNLocator

from dlhw.report.figkit import AXIS_LABEL, COLORS, figure, log_if_wide, nice_ticks, plt
from dlhw.report.runfiles import (AXES, RunFiles, axis_label, better, chosen_rows, extra_axes, finite, fmt_value,
                                  metric_label, ranked_settings, usable)


def _grid_table(rows: list[dict]) -> tuple[dict[str, list], dict]:
    """Sorted values of each short axis, and {(bs, lr, epochs, alpha): row} of `rows` (grid.csv rows
    with one value of each extra axis)."""
    values = {a: sorted({float(r[a]) for r in rows}) for a in AXES}
    table = {tuple(float(r[a]) for a in AXES): r for r in rows}
    return values, table


def _others(run: RunFiles) -> str:
    """'hidden 512-256, activation relu': the chosen values of the extra axes ('' without any)."""
    best = run.best or {}
    return ", ".join(f"{k.split('.', 1)[1]} {axis_label(best[k])}" for k in extra_axes(run) if k in best)


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
    pick = better(metric)
    values, table = _grid_table(chosen_rows(run))  # other axes: at the chosen setting's values
    bss, lrs, eps, als = (values[a] for a in AXES)
    nb, nl, na = len(bss), len(lrs), len(als)
    val = np.full((nb, nl, na), np.nan)
    best_ep = np.zeros((nb, nl, na), dtype=int)
    div_ep = np.zeros((nb, nl, na), dtype=int)  # first epoch count that diverged, 0 = none
    for b, bs in enumerate(bss):
        for i, lr in enumerate(lrs):
            for j, a in enumerate(als):
                rows = [table[(bs, lr, e, a)] for e in eps if (bs, lr, e, a) in table]
                ok = [r for r in rows if usable(r, metric)]
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
        others = _others(run)
        if others:
            head += f"\nat the chosen {others}"
        if all(c is not None for c in chosen):
            items = [f"batch size {int(bss[chosen[0]])}", f"lr {fmt_value(lrs[chosen[1]])}",
                     f"α {fmt_value(als[chosen[3]])}", f"{int(eps[chosen[2]])} epochs",
                     f"{metric_label(metric)} {best.get(metric, float('nan')):.4g}"]
            head += "\nchosen (red box): " + ", ".join(_glue(i) for i in items)  # a number stays with its name
        fig.suptitle(_wrap(head, width, 11), fontsize=11)
        notes = ["number in a cell: the epoch count at which the cell is best", "black box: best cell of the panel"]
        hatched, dagger = bool((~np.isfinite(val) & (div_ep > 0)).any()), bool((np.isfinite(val) & (div_ep > 0)).any())
        if hatched:
            notes.append("grey hatched: diverged at every epoch count")
        if dagger:
            notes.append("†: diverged when trained for more epochs")
        fig.supxlabel(_wrap(";  ".join(notes), width, 8), fontsize=8, color="0.3")
    return path


def _wrap(text: str, width_in: float, points: float) -> str:
    """Wrap each line of `text` to fit a figure `width_in` inches wide at a font size of `points`
    (never at a no-break space: see `_glue`)."""
    chars = int(width_in * 72 / (points * 0.55))  # ~0.55 em per character
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.split("\n"))


def _glue(text: str) -> str:
    """Spaces -> no-break spaces: `_wrap` keeps a label and its number on one line."""
    return text.replace(" ", "\u00a0")


def _heat_cell(ax, i: int, j: int, v: float, ep: int, div: int, cmap, norm) -> None:
    if not np.isfinite(v):
        ax.add_patch(plt.Rectangle((j - .5, i - .5), 1, 1, fc="0.82", ec="0.55", hatch="///", lw=0))
        return
    r, g, b, _ = cmap(norm(v))
    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
    ax.text(j, i, f"{ep}†" if div else str(ep), ha="center", va="center", fontsize=7,
            color="white" if dark else "black")


def _curve_key(r: dict, extra: list[str]) -> tuple:
    """(extra axes' values as text..., bs, lr, alpha): one stack's curve."""
    return (*(axis_label(r[k]) for k in extra), float(r["batch_size"]), float(r["learning_rate"]), float(r["alpha"]))


def _stack_curves(run: RunFiles, metric: str) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """{_curve_key: (epochs, values)} from grid_epochs.csv, else from grid.csv's epoch counts."""
    rows = run.grid_epochs or run.grid or []
    extra = extra_axes(run)
    out: dict[tuple, list] = {}
    for r in rows:
        if finite(r.get(metric)) and not (r.get("diverged") is True):
            out.setdefault(_curve_key(r, extra), []).append((float(r.get("epoch", r.get("epochs"))), r[metric]))
    return {k: tuple(np.array(sorted(v)).T) for k, v in out.items()}


def _setting_label(key: tuple, extra: list[str], ep=None) -> str:
    *others, bs, lr, a = key
    s = "".join(f"{k.split('.', 1)[1]} {v}, " for k, v in zip(extra, others))
    s += f"bs {int(bs)}, lr {fmt_value(lr)}, α {fmt_value(a)}"
    return s + (f", {int(ep)} ep" if ep is not None else "")


def grid_epochs(run: RunFiles, path: Path, n: int = 10) -> Path | None:
    """Selection metric vs epochs for the `n` best (batch size, lr, alpha) combinations."""
    ranked = ranked_settings(run)
    if not ranked:
        return None
    metric = run.select_by
    curves = _stack_curves(run, metric)
    extra = extra_axes(run)
    top: list[tuple[tuple, dict]] = []
    for r in ranked:  # best epoch count of each stack, stacks in order of their best
        key = _curve_key(r, extra)
        if key in curves and all(key != k for k, _ in top):
            top.append((key, r))
        if len(top) == n:
            break
    if not top:
        return None
    best = run.best or {}
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    with figure(path, figsize=(7.0, 5.6)) as (fig, ax):
        cmap = plt.get_cmap("tab10")
        shown = []
        for rank, (key, r) in enumerate(top):
            x, y = curves[key]
            is_chosen = _same_setting(best, key, extra)
            ax.plot(x, y * scale, color=cmap(rank % 10), lw=2.6 if is_chosen else 1.3,
                    zorder=4 if is_chosen else 2, marker="o" if len(x) <= 12 else None, markersize=3,
                    label=f"{rank + 1}. {_setting_label(key, extra, r['epochs'])}" + ("  ★ chosen" if is_chosen else ""))
            ax.plot([r["epochs"]], [r[metric] * scale], marker="*" if is_chosen else "o",
                    markersize=16 if is_chosen else 6, color="red" if is_chosen else cmap(rank % 10),
                    mec="black", mew=0.8, zorder=6 if is_chosen else 5)
            shown.append(y * scale)
        allv = np.concatenate(shown)
        allv = allv[np.isfinite(allv)]
        if not metric.endswith("accuracy"):  # every curve inside the axes; log when they span a lot
            log_if_wide(ax, allv, ratio=3.0)
        epochs = np.concatenate([curves[key][0] for key, _ in top])
        lo_e, hi_e = float(epochs.min()), float(epochs.max())
        pad = max(0.3, 0.04 * (hi_e - lo_e))
        ax.set_xlim(lo_e - pad, hi_e + pad)  # the epochs the data has, not from 0
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=2))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric_label(metric) + (" (%)" if scale != 1 else ""))
        ax.set_title(f"Grid: {metric_label(metric)} vs epochs, the {len(top)} best settings")
        long = max(len(_setting_label(key, extra, r["epochs"])) for key, r in top) > 48
        ax.legend(title="rank. setting (●: its best epoch count, ★: chosen)", loc="upper center",
                  bbox_to_anchor=(0.5, -0.14), ncols=1 if long else 2, fontsize=7.5, title_fontsize=8)
    return path


def _same_setting(best: dict, key: tuple, extra: list[str]) -> bool:
    *others, bs, lr, a = key
    try:
        return all(axis_label(best[k]) == v for k, v in zip(extra, others)) and all(
            math.isclose(float(best[n]), k, rel_tol=1e-9, abs_tol=1e-15)
            for n, k in zip(("batch_size", "learning_rate", "alpha"), (bs, lr, a)))
    except (KeyError, TypeError, ValueError):
        return False


def grid_marginals(run: RunFiles, path: Path) -> Path | None:
    """For each value of each hyperparameter: the best selection metric over all the other settings."""
    if not run.grid:
        return None
    metric = run.select_by
    pick = better(metric)
    values: dict[str, list] = {a: list(dict.fromkeys(axis_label(r[a]) for r in run.grid)) for a in extra_axes(run)}
    values |= _grid_table(run.grid)[0]
    axes_used = [a for a in values if len(values[a]) > 1] or list(AXES)
    best = run.best or {}
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    allv, any_div = [], False
    with figure(path, 1, len(axes_used), figsize=(2.6 * len(axes_used) + 0.6, 3.4), sharey=True,
                 squeeze=False) as (fig, axes):
        for ax, a in zip(axes[0], axes_used):
            xs = values[a]
            bests, divs, totals = [], [], []
            short = a in AXES
            for v in xs:
                rows = [r for r in run.grid if (math.isclose(float(r[a]), v, rel_tol=1e-9, abs_tol=1e-15)
                                                if short else axis_label(r[a]) == v)]
                ok = [r[metric] * scale for r in rows if usable(r, metric)]
                bests.append(pick(ok) if ok else np.nan)
                divs.append(sum(1 for r in rows if r.get("diverged")))
                totals.append(len(rows))
            pos = np.arange(len(xs))
            ax.plot(pos, bests, color=COLORS["val"], marker="o", markersize=4.5, lw=1.8, label="best")
            allv += [x for x in bests if np.isfinite(x)]
            c = _index(xs, best.get(a)) if short else (xs.index(axis_label(best[a])) if a in best else None)
            if c is not None and np.isfinite(bests[c]):
                ax.plot([c], [bests[c]], marker="*", markersize=15, color="red", mec="black", mew=0.6,
                        zorder=5, label="chosen", ls="none")
            for p, d, t in zip(pos, divs, totals):
                if d:
                    any_div = True
                    ax.annotate(f"{d / t:.0%}\ndiv.", (p, 1), xycoords=("data", "axes fraction"),
                                xytext=(0, -2), textcoords="offset points", ha="center", va="top",
                                fontsize=6.5, color="red", linespacing=0.9)
            tilt = len(xs) > 4 or (not short and sum(len(x) for x in xs) > 18)  # long labels would collide
            ax.set_xticks(pos, [x if not short else fmt_value(x) if a != "batch_size" else str(int(x)) for x in xs],
                          rotation=45 if tilt else 0, ha="right" if tilt else "center",
                          rotation_mode="anchor", fontsize=8)
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xlabel(AXIS_LABEL[a] if short else a.split(".", 1)[1].replace("_", " "))
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

