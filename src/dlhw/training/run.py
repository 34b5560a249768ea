"""One training run, end to end: config -> data -> model -> fit -> run folder.

`dlhw train` is this; the grid's final retrain is this too; `dlhw eval` reloads
what it wrote.
"""
from __future__ import annotations


import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from threadpoolctl import threadpool_limits

from dlhw.store import derived, files as results
from dlhw.store import provenance
from dlhw.store.lock import RunLock
from dlhw.config import Config, dump_config, load_config
from dlhw.data.preprocess import Preprocessor
from dlhw.errors import RunError
from dlhw.models import Model, build_model
from dlhw.data.prepare import Prepared, prepare
from dlhw.progress import bar
from dlhw.training.loop import History, fit
from dlhw.training.rules import batches_per_epoch


TRAIN_THREADS = 1  # BLAS threads for a training run


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    history: History
    model: Model
    prepared: Prepared


def train_run(cfg: Config, *, data_dir=None, out_dir: str | Path | None = None, progress: bool | None = None,
              argv: list[str] | None = None, retrain_on: str = "train", epochs: int | None = None,
              prep: Prepared | None = None, extra: dict | None = None, max_steps: int | None = None,
              manifest_extra: dict | None = None) -> RunResult:
    """Train `cfg` and write its run folder (default `cfg.run_dir`).

    retrain_on='train+val' trains on the training and validation splits together;
    epochs/max_steps override the config's epoch count (max_steps may end mid-epoch);
    extra/manifest_extra are merged into metrics.json/manifest.json.
    """
    run_dir = Path(out_dir) if out_dir else cfg.run_dir
    with RunLock(run_dir):  # refuses a folder in use, or a path that cannot be a folder, before any work
        return _train_locked(cfg, run_dir, data_dir, progress, argv, retrain_on, epochs, prep, extra, max_steps,
                             manifest_extra)


def _train_locked(cfg, run_dir, data_dir, progress, argv, retrain_on, epochs, prep, extra, max_steps,
                  manifest_extra) -> RunResult:
    started = provenance.now()
    t0 = time.perf_counter()
    derived.clear(run_dir)  # evaluations, figures and report of an earlier run here would contradict this one
    phase = "loading the data"
    try:
        prep = prep or prepare(cfg, data_dir, retrain_on=retrain_on)
        model = build_model(cfg, prep.n_features, len(prep.classes))
        epochs = epochs or cfg.train.epochs
        steps = epochs if cfg.train.optimizer == "newton" else epochs * batches_per_epoch(len(prep.train[1]), cfg.train.batch_size)
        if max_steps is not None:
            steps = min(steps, max_steps)
        phase = "training"
        # One BLAS thread: these products are too small to gain from two, and several threads per
        # process on shared cores oversubscribe them (measured: up to 50x slower under load).
        with bar(total=steps, desc=f"train {cfg.name}", unit="step", enabled=progress) as pbar, \
                threadpool_limits(TRAIN_THREADS, user_api="blas"):
            hist = fit(model, prep.train, cfg.train, prep.evals(), epochs=epochs, max_steps=max_steps,
                       on_step=pbar.update)
        metrics = final_metrics(model, prep, hist)
        metrics |= worse_than_start(metrics, len(prep.classes), cfg.train.learning_rate)
        metrics["seconds"] = round(time.perf_counter() - t0, 3)
        if extra:
            metrics.update(extra)
        phase = "writing the run files"
        write_run(run_dir, cfg, model, prep, hist, metrics,
                  provenance.manifest(seed=cfg.train.seed, data_sha256=prep.sha256, started=started, argv=argv,
                                      extra=manifest_extra))
    except KeyboardInterrupt:
        raise Interrupted(phase, run_dir) from None
    return RunResult(run_dir, metrics, hist, model, prep)


class Interrupted(Exception):
    """Ctrl-C during a run, before its results were written: nothing of this run is saved
    (write_run writes the folder's files as one step)."""

    def __init__(self, phase: str, run_dir: Path):
        super().__init__(f"interrupted while {phase}: nothing of this run is saved in {run_dir}; "
                         f"rerun the same command.")
        self.phase, self.run_dir = phase, run_dir


def final_metrics(model: Model, prep: Prepared, hist: History) -> dict:
    """Unregularised metrics of the final weights on every split (None if diverged).

    `fit` evaluated every split with the final weights at the last epoch end, so
    they are read from history's last row rather than computed again.
    """
    m: dict = {"trained_on": prep.trained_on, "epochs_run": hist.epochs_run, "iterations": hist.iterations,
               "diverged": hist.diverged, "diverged_epoch": hist.diverged_epoch}
    last = hist.rows[-1] if hist.rows and not hist.diverged else {}
    for name in ("train", "val", "test"):
        split = prep.split(name)
        if split is not None and len(split[1]):
            for k in model.metric_names:
                m[f"{name}_{k}"] = last.get(f"{name}_{k}")
    if prep.test is not None and "accuracy" in model.metric_names and not hist.diverged:
        m["test_confusion"] = confusion(prep.test[1], model.predict(prep.test[0]), len(prep.classes)).tolist()
    m["classes"] = list(prep.classes)
    return m


def worse_than_start(metrics: dict, k: int, lr: float) -> dict:
    """{'worse_than_start': bool, 'warning': ...} for a finite run whose training CE ended above ln k,
    the CE of the zero model (every class equally likely) that softmax training starts from: a
    learning rate too large to converge that did not overflow either, so `diverged` stays false."""
    ce = metrics.get("train_ce")
    if metrics.get("diverged") or not isinstance(ce, float) or not np.isfinite(ce) or k < 2:
        return {}
    if ce <= np.log(k):
        return {"worse_than_start": False}
    return {"worse_than_start": True,
            "warning": f"training ended worse than it started: training CE {ce:.4g} is above ln {k} = "
                       f"{np.log(k):.4f}, the CE of the zero model (every class equally likely); "
                       f"try a smaller learning rate than {lr:g}."}


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Counts (k, k): rows true class, columns predicted class (k grows to fit the labels)."""
    k = max(k, int(y.max(initial=0)) + 1, int(pred.max(initial=0)) + 1)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def write_run(run_dir: Path, cfg: Config, model: Model, prep: Prepared, hist: History, metrics: dict,
              manifest: dict) -> None:
    """Every file of a run folder as one step (`files.write_all`): all are on disk before any is renamed
    into place, metrics.json last (it marks completion). A failed write changes nothing in the folder."""
    arrays = {"kind": np.array(cfg.model.kind), "classes": np.array(prep.classes), **model.state()}
    if prep.pre is not None:
        arrays |= prep.pre.to_arrays()
    results.write_all([
        (run_dir / "config.yaml", dump_config(cfg).encode("utf-8")),
        (run_dir / "history.csv", results.csv_bytes(hist.rows)),
        (run_dir / "iterations.csv", results.csv_bytes(
            ({"iteration": i + 1, "batch_loss": v} for i, v in enumerate(hist.batch_loss)), ["iteration", "batch_loss"])),
        (run_dir / "model.npz", results.npz_bytes(arrays)),
        (run_dir / "manifest.json", results.json_bytes({**manifest, "derived": {"files": [], "figures": None}})),
        (run_dir / "metrics.json", results.json_bytes(metrics)),
    ])


# --------------------------------------------------------------------------- reloading


def load_run(run_dir: str | Path) -> tuple[Config, Model, dict, dict]:
    """(config, model, metrics, stored arrays) of a finished run folder."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"{run_dir}: run folder not found.")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: is a file; give a run folder (e.g. results/softmax_train).")
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir}: not a dlhw run folder (no config.yaml).")
    cfg = load_config(run_dir / "config.yaml")
    metrics = results.read_json(run_dir / "metrics.json")
    arrays = results.load_npz(run_dir / "model.npz")
    classes = tuple(str(c) for c in arrays["classes"])
    n_features = _n_features(arrays)
    model = build_model(cfg, n_features, len(classes))
    try:
        model.load_state(arrays)
    except (KeyError, ValueError) as e:
        raise RunError(f"{run_dir / 'model.npz'}: does not match config.yaml ({e}).") from None
    return cfg, model, metrics, arrays


def _n_features(arrays: dict) -> int:
    for k, v in arrays.items():
        if k.startswith("param_") and v.ndim == 2:
            return int(v.shape[0])
    raise RunError("model.npz holds no weight matrix.")


def evaluate_run(run_dir: str | Path, split: str = "test", data_dir=None) -> dict:
    """Recompute `split` metrics of a run with its stored preprocessing; writes eval-<split>.json."""
    run_dir = Path(run_dir)
    cfg, model, metrics, arrays = load_run(run_dir)
    if metrics.get("diverged"):
        raise RunError(f"{run_dir}: this run diverged at epoch {metrics.get('diverged_epoch')}; "
                       f"there is no model to evaluate.")
    pre = Preprocessor.from_arrays(arrays) if "pre_kind" in arrays else None
    prep = prepare(cfg, data_dir, retrain_on=metrics.get("trained_on", "train"), pre=pre)
    data = prep.split(split)
    if data is None or len(data[1]) == 0:
        raise RunError(f"{run_dir}: this run has no {split!r} split "
                       f"(trained on {metrics.get('trained_on')}, data.val_fraction={cfg.data.val_fraction}).")
    with threadpool_limits(TRAIN_THREADS, user_api="blas"):  # as in training: the same rounding
        out = {f"{split}_{k}": v for k, v in model.evaluate(*data).items()}
    results.write_json(run_dir / f"eval-{split}.json", out)
    derived.record(run_dir)
    return out


def summary_lines(metrics: dict) -> list[str]:
    """A short table of a run's metrics for stdout: a row per split, a column per metric."""
    splits = [s for s in ("train", "val", "test") if any(k.startswith(f"{s}_") for k in metrics)]
    names: list[str] = []
    for k in metrics:
        split, _, metric = k.partition("_")
        if split in splits and metric not in names and metric != "confusion":
            names.append(metric)
    lines = [f"{'split':<8}" + "".join(f"{_LABEL.get(m, m):>11}" for m in names)]
    for s in splits:
        lines.append(f"{s:<8}" + "".join(_f(metrics.get(f"{s}_{m}"), m) for m in names))
    return lines


_LABEL = {"ce": "CE"}


def _f(v, metric: str) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "-".rjust(11)
    return format(v, "11.2%") if metric == "accuracy" else format(v, "11.4f")





