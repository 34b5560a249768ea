"""`dlhw grid`: run the jobs of a grid in parallel processes, resumably; select; retrain; test.

Run folder (results/<name>/):
  jobs/<key>.npz   one per finished job (atomic), reused by a rerun of the same command
  grid.csv         one row per setting
  grid_epochs.csv  validation CE/accuracy after every epoch of every (batch size, lr, alpha)
  best.json        the chosen setting and its validation figures
  grid.log         job-level detail
  + the files of `dlhw train` for the chosen setting retrained (metrics.json, model.npz, ...)
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from dlhw.store import files as results
from dlhw.config import Config
from dlhw.errors import RunError, WriteError
from dlhw.grid import estimate
from dlhw.grid.executor import Done, Executor, LocalExecutor, default_jobs
from dlhw.grid.jobs import GridJob, axis_text, make_jobs, saved_identities, settings_key, stale_reason
from dlhw.grid.select import assemble, rank, select
from dlhw.store import derived
from dlhw.store.lock import RunLock
from dlhw.progress import bar, watched

CSV_COLUMNS = ["batch_size", "learning_rate", "epochs", "alpha", "train_ce", "val_ce", "val_accuracy",
               "val_ce_std", "val_accuracy_std", "n_seeds", "diverged", "diverged_epoch"]


class GridInterrupted(Exception):
    """Ctrl-C during a grid: finished jobs are saved; rerunning resumes."""

    def __init__(self, saved: int, total: int, run_dir: Path):
        super().__init__(f"interrupted: {saved} of {total} jobs are saved in {run_dir / 'jobs'}; "
                         f"rerun the same command to resume.")
        self.saved, self.total = saved, total


@dataclass
class GridResult:
    run_dir: Path
    rows: list[dict]
    best: dict
    metrics: dict
    seconds: float
    jobs_run: int
    jobs_loaded: int
    search_seconds: float = math.nan  # the grid search alone (what manifest.json and report.md give)


# --------------------------------------------------------------------------- parent side


class _Log:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, msg: str) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(f"{datetime.now().isoformat(timespec='seconds')} {msg}\n")
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({e.strerror or e}); saved jobs are intact.") from None


def dry_run(cfg: Config, n_jobs: int | None = None, data_dir=None, executor: Executor | None = None) -> str:
    """What a run would do: settings, jobs (already saved), and a time estimate calibrated here.
    With a cluster executor, the workers it sees now are counted (entering it connects)."""
    executor = executor or LocalExecutor(n_jobs)
    with executor:
        workers = executor.workers
        where, note = executor.where, executor.note
    jobs = make_jobs(cfg, data_dir, workers=workers, saved=cfg.run_dir / "jobs")
    folder = cfg.run_dir / "jobs"
    saved = sum(1 for j in jobs if (folder / f"{j.key}.npz").is_file())
    missing = [j for j in jobs if not (folder / f"{j.key}.npz").is_file()]
    cal = estimate.calibrate(cfg, missing or jobs, min(workers, default_jobs()))
    seconds = estimate.estimate(cfg, missing, workers, estimate.retrain_job(cfg), cal)
    g = cfg.grid
    return (f"{cfg.name}: {g.size} settings ("
            + "".join(f"{len(v)} {k} x " for k, v in g.axes)
            + f"{len(g.batch_size)} batch sizes x {len(g.learning_rate)} learning rates "
            f"x {len(g.epochs)} epoch counts x {len(g.alpha)} alphas) x {len(g.seeds)} seed(s) "
            f"in {len(jobs)} jobs ({saved} already saved); "
            f"estimated {_hms(seconds)} with {workers} worker(s){where} ({estimate.describe(cal)}). "
            f"Nothing was trained." + (f" Note: {note}." if note else ""))


def run_grid(cfg: Config, *, data_dir=None, n_jobs: int | None = None, fresh: bool = False,
             progress: bool | None = None, argv: list[str] | None = None, max_stack: int | None = None,
             executor: Executor | None = None) -> GridResult:
    """Run (or resume) the grid of `cfg`, select the best setting, retrain it and test it.

    The jobs run on `executor` (default: a local process pool of `n_jobs` workers, see
    `grid.executor`; `grid.cluster.DaskExecutor` for a Dask cluster); the retrain runs here."""
    if cfg.grid is None:
        raise RunError(f"{cfg.source}: has no 'grid' section; use `dlhw train` for a single setting.")
    run_dir = cfg.run_dir
    with RunLock(run_dir):
        return _run_locked(cfg, run_dir, data_dir, executor or LocalExecutor(n_jobs), fresh, progress, argv,
                           max_stack)


def _run_locked(cfg, run_dir, data_dir, executor: Executor, fresh, progress, argv, max_stack) -> GridResult:
    t0 = time.perf_counter()
    derived.clear(run_dir)  # an earlier run's evaluations, figures and report would contradict this one
    folder = run_dir / "jobs"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = _Log(run_dir / "grid.log")
    with executor:
        workers = executor.workers
        jobs = make_jobs(cfg, data_dir, workers=workers, saved=folder,
                         **({"max_stack": max_stack} if max_stack else {}))
        outputs = _load_saved(jobs, folder, log)
        missing = [j for j in jobs if j.key not in outputs]
        log(f"grid {cfg.name}: {cfg.grid.size} settings, {len(jobs)} jobs, {len(outputs)} loaded from {folder}, "
            f"{len(missing)} to run with {workers} worker(s) ({executor.kind}{executor.where})")
        if executor.note:
            log(f"note: {executor.note}")
        estimated = _search(cfg, jobs, missing, outputs, folder, executor, progress, log, run_dir)
        ran_on = executor.describe()
    grid_seconds = time.perf_counter() - t0

    rows, curves = assemble(cfg, jobs, [outputs[j.key] for j in jobs])
    g = cfg.grid
    columns = [*g.axis_keys, *(c for c in CSV_COLUMNS if any(c in r for r in rows))]
    results.write_csv(run_dir / "grid.csv", rows, columns)
    results.write_csv(run_dir / "grid_epochs.csv", curves,
                      [*g.axis_keys, "batch_size", "learning_rate", "alpha", "epoch", "val_ce", "val_accuracy"])
    best = select(rows, g.select_by)
    if best is None:
        log("every setting diverged")
        raise RunError(f"{cfg.source}: every setting of the grid diverged; try smaller learning rates.")
    # the extra axes' values as the config gives them (layer widths as lists), then the four short axes
    best_info = {k: _listed(next(v for v in values if axis_text(v) == best[k])) for k, values in g.axes}
    best_info |= {k: best[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")}
    best_info |= {"val_ce": best["val_ce"], "val_accuracy": best["val_accuracy"],
                  "select_by": g.select_by, "retrain_on": g.retrain_on, "retrain_epochs": g.retrain_epochs,
                  "seeds": list(g.seeds), "n_settings": g.size}
    if "val_ce_std" in best:
        best_info |= {"val_ce_std": best["val_ce_std"], "val_accuracy_std": best["val_accuracy_std"]}
    log(f"best: {best_info}")

    final = retrain(cfg, best_info, data_dir, progress, argv,
                    {"grid": {"seconds": round(grid_seconds, 3), "jobs": len(jobs), "jobs_run": len(missing),
                              "jobs_loaded": len(jobs) - len(missing), "workers": workers,
                              "executor": ran_on,
                              "estimated_seconds": round(estimated, 1) if estimated else None,
                              "settings_per_second": g.size / max(round(grid_seconds, 3), 1e-9)}})
    best_info["retrained_epochs"] = final.metrics["epochs_run"]
    best_info["retrained_steps"] = final.metrics["iterations"]
    results.write_json(run_dir / "best.json", best_info)
    seconds = time.perf_counter() - t0
    log(f"done in {seconds:.1f} s; test_ce={final.metrics.get('test_ce')} "
        f"test_accuracy={final.metrics.get('test_accuracy')}")
    return GridResult(run_dir, rows, best_info, final.metrics, seconds, len(missing), len(jobs) - len(missing),
                      round(grid_seconds, 3))


def _search(cfg, jobs, missing, outputs, folder, executor: Executor, progress, log, run_dir) -> float | None:
    """Run the missing jobs under one progress bar; add their results to `outputs`; the first estimate."""
    workers = executor.workers
    total_units = sum(j.n_settings * j.epochs for j in jobs)
    done_units = total_units - sum(j.n_settings * j.epochs for j in missing)
    estimated = None
    if (watched() if progress is None else progress) and missing:  # someone watches: a first ETA (~2 s)
        cal = estimate.calibrate(cfg, missing, min(workers, default_jobs()))
        estimated = estimate.estimate(cfg, missing, workers, estimate.retrain_job(cfg), cal)
        log(f"estimated {_hms(estimated)} ({estimate.describe(cal)})")
    with bar(total=total_units, desc=f"grid {cfg.name}", unit="setting-epoch", enabled=progress,
             initial=done_units) as pbar:
        saved_best = min((np.nanmin(o["val_ce"]) for o in outputs.values() if np.isfinite(o["val_ce"]).any()),
                         default=math.inf)
        note = f"est. {_hms(estimated)} in all" if estimated else ""
        _run_missing(missing, folder, executor, _Progress(pbar, saved_best, note), log, run_dir, len(jobs))
    for j in missing:
        out, why = j.load(folder)
        if out is None:
            raise RuntimeError(f"job {j.key} finished but its result file is {why or 'missing'}")
        outputs[j.key] = out
    return estimated


def _load_saved(jobs: list[GridJob], folder: Path, log) -> dict[str, dict]:
    """The saved results of `jobs` that can be trusted; grid.log says why any other was not reused."""
    outputs: dict[str, dict] = {}
    for j in jobs:
        saved, why = j.load(folder)
        if saved is not None:
            outputs[j.key] = saved
        elif why:
            log(f"job {j.key}: {why}")
    missing = [j for j in jobs if j.key not in outputs]
    if missing:
        others = {settings_key(ident): (name, ident)
                  for name, ident in saved_identities(folder, skip={f"{k}.npz" for k in outputs}).items()}
        for j in missing:
            name, ident = others.get(settings_key(json.loads(j.identity_json)), (None, None))
            why = stale_reason(ident, j) if ident else None
            if why:
                log(f"job {j.key}: not reusing {name}: {why}")
    return outputs


def _listed(v):
    return list(v) if isinstance(v, tuple) else v


def chosen_config(cfg: Config, best: dict) -> Config:
    """The grid's config with the chosen setting's values in data/model/train (the grid kept)."""
    g = cfg.grid
    values = {k: tuple(best[k]) if isinstance(best[k], list) else best[k] for k in g.axis_keys}
    values |= {f"train.{k}": best[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")}
    values["train.seed"] = g.seeds[0]
    return dataclasses.replace(cfg.variant(values), grid=g)


def retrain(cfg: Config, best: dict, data_dir, progress: bool, argv, manifest_extra: dict):
    """Retrain the chosen setting (on train+val by default) and evaluate it on test."""
    from dlhw.training.run import train_run
    from dlhw.data.prepare import prepare
    from dlhw.training.rules import batches_per_epoch

    g = cfg.grid
    chosen = chosen_config(cfg, best)
    prep = prepare(chosen, data_dir, retrain_on=g.retrain_on)
    epochs, max_steps = best["epochs"], None
    if g.retrain_epochs == "same_steps":
        n_sel = len(prepare(chosen, data_dir).train[1])  # the training split the grid selected on
        max_steps = best["epochs"] * batches_per_epoch(n_sel, best["batch_size"])
        epochs = math.ceil(max_steps / batches_per_epoch(len(prep.train[1]), best["batch_size"]))
    return train_run(chosen, data_dir=data_dir, out_dir=cfg.run_dir, progress=progress, argv=argv,
                     retrain_on=g.retrain_on, epochs=epochs, max_steps=max_steps, prep=prep,
                     manifest_extra=manifest_extra)


def _run_missing(missing: list[GridJob], folder: Path, executor: Executor, progress: "_Progress", log, run_dir: Path,
                 total_jobs: int) -> None:
    """Run jobs on `executor`, checking and writing each result as it arrives; Ctrl-C -> GridInterrupted."""
    if not missing:
        return
    missing = sorted(missing, key=lambda j: -j.cost())  # longest first: better balance
    saved_before = total_jobs - len(missing)
    written = 0

    def finished(d: Done) -> None:
        nonlocal written
        problem = d.job.check_arrays(d.arrays)
        if problem:  # a worker running something else than this dlhw, or a bug: never file it
            raise RunError(f"job {d.job.key} came back from {d.worker} malformed ({problem}); nothing of it was "
                           f"saved. Check that the workers run the same dlhw as this machine.")
        d.job.save(folder, d.arrays)
        written += 1
        log(_job_line(d.job, d.seconds) + f" ({d.worker})")

    try:
        executor.run(missing, finished, progress.add)
    except KeyboardInterrupt:
        log(f"interrupted after {saved_before + written} of {total_jobs} jobs")
        raise GridInterrupted(saved_before + written, total_jobs, run_dir) from None


class _Progress:
    """The grid's one bar: setting-epochs done / total, rate, ETA, and the best validation CE so far
    (after the calibrated estimate of the whole run, when there is one)."""

    def __init__(self, pbar, best: float = math.inf, note: str = ""):
        self.pbar, self.best, self.note = pbar, best, note
        self._show()

    def _show(self) -> None:
        parts = [self.note] if self.note else []
        if math.isfinite(self.best):
            parts.append(f"best val CE {self.best:.4f}")
        if parts:
            self.pbar.set_postfix_str(", ".join(parts), refresh=False)

    def add(self, units: int, best: float) -> None:
        if best < self.best:  # NaN compares False: ignored
            self.best = best
            self._show()
        self.pbar.update(units)


def _job_line(j: GridJob, seconds: float) -> str:
    return (f"job {j.key} batch_size={j.batch_size} seed={j.seed} settings={j.n_settings} "
            f"epochs={j.epochs}: {seconds:.1f} s")


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def summary(res: GridResult, cfg: Config) -> list[str]:
    """The homework-style summary printed by `dlhw grid`."""
    b, m, g = res.best, res.metrics, cfg.grid
    widths = {k: max(len(k.split(".")[1]), *(len(str(r[k])) for r in res.rows)) for k in g.axis_keys}
    by = "lowest validation CE" if g.select_by == "val_ce" else "highest validation accuracy"
    avg = ", weights averaged over the last epoch" if cfg.train.average == "epoch" else ""
    lines = [
        f"{cfg.name}: {g.size} settings x {len(g.seeds)} seed(s): search {res.search_seconds:.1f} s "
        + (f"({g.size / max(res.search_seconds, 1e-9):.1f} settings/s; {res.jobs_run} jobs run, 0 resumed)"
           if not res.jobs_loaded else
           f"in this session ({res.jobs_run} jobs run, {res.jobs_loaded} resumed)")
        + f", retrain {m['seconds']:.1f} s, {_hms(res.seconds)} in all",
        f"best ({by}): " + "".join(f"{k}={axis_text(b[k])} " for k in g.axis_keys)
        + f"batch_size={b['batch_size']} learning_rate={b['learning_rate']:g} epochs={b['epochs']} alpha={b['alpha']:g}",
        f"  validation CE {b['val_ce']:.4f}, validation accuracy {b['val_accuracy']:.2%}",
        f"retrained on {g.retrain_on} ({m['epochs_run']} epoch{'' if m['epochs_run'] == 1 else 's'}, "
        f"{m['iterations']} steps{avg}): "
        f"test CE {m['test_ce']:.4f}, test accuracy {m['test_accuracy']:.2%}"
        if m.get("test_ce") is not None else f"retrained on {g.retrain_on}: diverged",
        "",
        "ten best settings:",
        "".join(f"{k.split('.')[1]:>{w}} " for k, w in widths.items())
        + f"{'batch':>6} {'lr':>9} {'epochs':>6} {'alpha':>9} {'train CE':>9} {'val CE':>8} {'val acc':>8}",
    ]
    for r in rank(res.rows, g.select_by, 10):
        lines.append("".join(f"{str(r[k]):>{w}} " for k, w in widths.items())
                     + f"{r['batch_size']:>6} {r['learning_rate']:>9.4g} {r['epochs']:>6} {r['alpha']:>9.3g} "
                     f"{r['train_ce']:>9.4f} {r['val_ce']:>8.4f} {r['val_accuracy']:>8.2%}")
    lines.append(f"results: {res.run_dir}")
    return lines
