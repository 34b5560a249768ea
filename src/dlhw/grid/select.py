"""From job outputs to grid rows: per-setting metrics (means over seeds), selection, ranking."""
from __future__ import annotations

import math

import numpy as np

from dlhw.config import Config
from dlhw.grid.jobs import GridJob, axis_text, settings



def assemble(cfg: Config, jobs: list[GridJob], outputs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(grid rows, per-epoch curve rows) from the job outputs; means over seeds."""
    g = cfg.grid
    E = max(g.epochs)
    seeds = list(g.seeds)
    # (bs, lr, alpha) -> per-seed arrays
    per: dict[tuple, dict[int, dict]] = {}
    for job, out in zip(jobs, outputs):
        for s, (lr, a) in enumerate(zip(job.learning_rates, job.alphas)):
            per.setdefault((job.variant, job.batch_size, lr, a), {})[job.seed] = {
                "val_ce": out["val_ce"][:, s], "val_accuracy": out["val_accuracy"][:, s],
                "train_ce": out["train_ce"][:, s], "diverged_epoch": int(out["diverged_epoch"][s]),
                "recorded": job.record_epochs or range(1, E + 1)}
    variant_of = {tuple(axis_text(v) for v in var.values()): tuple(var.items()) for var in g.variants()}
    epochs_sorted = sorted(g.epochs)
    rows = []
    for st in settings(cfg):
        vkey = variant_of[tuple(st[k] for k in g.axis_keys)]
        runs = [per[(vkey, st["batch_size"], st["learning_rate"], st["alpha"])][sd] for sd in seeds]
        e = st["epochs"]
        div = [r["diverged_epoch"] for r in runs if 0 < r["diverged_epoch"] <= e]
        row = dict(st)
        vce = np.array([r["val_ce"][e - 1] for r in runs])
        vacc = np.array([r["val_accuracy"][e - 1] for r in runs])
        tce = np.array([r["train_ce"][epochs_sorted.index(e)] for r in runs])
        row["train_ce"] = None if div else float(tce.mean())
        row["val_ce"] = None if div else float(vce.mean())
        row["val_accuracy"] = None if div else float(vacc.mean())
        if len(seeds) > 1:
            row["val_ce_std"] = None if div else float(vce.std(ddof=1))
            row["val_accuracy_std"] = None if div else float(vacc.std(ddof=1))
            row["n_seeds"] = len(seeds)
        row["diverged"] = bool(div)
        row["diverged_epoch"] = min(div) if div else None
        rows.append(row)
    curves = []
    order = {v: i for i, v in enumerate(variant_of.values())}
    for (vkey, bs, lr, a), by_seed in sorted(per.items(), key=lambda kv: (order[kv[0][0]], *kv[0][1:])):
        runs = [by_seed[sd] for sd in seeds]
        for e in runs[0]["recorded"]:  # every epoch, or only the grid's (see GridJob.record_epochs)
            vals = [r["val_ce"][e - 1] for r in runs]
            accs = [r["val_accuracy"][e - 1] for r in runs]
            ok = all(np.isfinite(vals))
            curves.append({**{k: axis_text(v) for k, v in vkey}, "batch_size": bs, "learning_rate": lr, "alpha": a,
                           "epoch": e,
                           "val_ce": float(np.mean(vals)) if ok else None,
                           "val_accuracy": float(np.mean(accs)) if ok else None})
    return rows, curves


def rank(rows: list[dict], by: str = "val_ce", n: int | None = None) -> list[dict]:
    """Rows that did not diverge and have a finite `by`, best first (lowest CE, highest accuracy;
    the earlier row first on ties); the first `n` of them."""
    ok = [r for r in rows if not r.get("diverged") and isinstance(r.get(by), (int, float)) and math.isfinite(r[by])]
    ok.sort(key=lambda r: -r[by] if by.endswith("accuracy") else r[by])
    return ok if n is None else ok[:n]


def select(rows: list[dict], by: str = "val_ce") -> dict | None:
    """The best row by `rank`, or None when every setting diverged."""
    best = rank(rows, by, 1)
    return best[0] if best else None
