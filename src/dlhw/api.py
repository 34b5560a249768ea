"""The Python API, for notebooks and scripts: `dlhw.train`, `dlhw.grid`, `dlhw.load_run`, ...

    import dlhw
    run = dlhw.train("configs/softmax_train.yaml", **{"train.epochs": 5})
    run.metrics["test_accuracy"]; run.figure("loss_curves"); run.predict(images)
    g = dlhw.grid("configs/softmax_small.yaml", jobs=2)
    g.best; g.rows; g.retrained
    dlhw.load_run("results/softmax_small")          # no data set needed

The same code path as the CLI: configs are validated by the same rules with the same
messages, run folders hold the same files. Mistakes raise `dlhw.ConfigError`,
`dlhw.DataError` or `dlhw.RunError` (all `dlhw.DlhwError`); nothing calls `sys.exit`.
"""
from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dlhw.config import SCHEMA, Config, from_dict, load_config as _load_file, set_values
from dlhw.errors import ConfigError, DataError, RunError

# --------------------------------------------------------------------------- configs


def load_config(config: str | Path | dict | Config, **overrides: Any) -> Config:
    """A validated `Config` from a YAML path, a dict (as the YAML would read) or a `Config`.

    overrides: dotted keys, `**{"train.epochs": 5}`, or sections as dicts, `train={"epochs": 5}`
    (only the keys given change); each is checked like the CLI's `--set`. `grid=None` drops the grid.
    """
    if isinstance(config, Config):
        raw, src, default = config.to_dict(), config.source, config.name
    elif isinstance(config, dict):
        raw, src, default = dict(config), "<dict>", "run"
    elif isinstance(config, (str, Path)):
        if not overrides:
            return _load_file(config)
        cfg = _load_file(config)
        raw, src, default = cfg.to_dict(), cfg.source, cfg.name
    else:
        raise ConfigError(f"config must be a YAML file path, a dict or a dlhw.Config. "
                          f"Got {type(config).__name__} instead.")
    flat, drop_grid = _flatten(overrides)
    raw = set_values(raw, flat)
    if drop_grid:
        raw["grid"] = None
    return from_dict(raw, src, default_name=default)


def _flatten(overrides: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`train={"epochs": 5}, name="x"` -> `{"train.epochs": 5, "name": "x"}`; and whether grid=None was given."""
    flat: dict[str, Any] = {}
    drop_grid = False
    for key, value in overrides.items():
        if key in SCHEMA and "." not in key:
            if key == "grid" and value is None:
                drop_grid = True
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key}={value!r}: '{key}' must be a dict of its keys "
                                  f"({', '.join(SCHEMA[key][1])}), e.g. {key}={{...}}, or use a dotted key "
                                  f"like '{key}.{next(iter(SCHEMA[key][1]))}'.")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat, drop_grid


def _resolve(config, out, overrides) -> Config:
    cfg = load_config(config, **overrides)
    if out is not None:
        cfg = cfg.replace(output={"dir": str(out)})
    return cfg


# --------------------------------------------------------------------------- training


def train(config: str | Path | dict | Config, out: str | Path | None = None, progress: bool | None = None,
          *, plots: bool = True, **overrides: Any) -> "Run":
    """Train the config's `train:` setting and write its run folder (default `results/<name>`).

    progress: None shows a bar where a person is watching (a terminal or a Jupyter kernel),
    True always, False never. plots: also write figures/ and report.md, as `dlhw train` does.
    A run that diverges is returned (`run.diverged`) with a warning.
    """
    from dlhw.training.run import train_run

    cfg = _resolve(config, out, overrides)
    if cfg.grid is not None:
        warnings.warn(f"{cfg.name}: the config has a 'grid' section; dlhw.train trains the 'train' values only "
                      f"(use dlhw.grid to run the grid).", stacklevel=2)
    res = train_run(cfg, progress=progress, argv=_argv("train", cfg))
    _finish(res.run_dir, plots)
    run = Run(res.run_dir)
    if res.metrics.get("diverged"):
        warnings.warn(f"{cfg.name}: training diverged at epoch {res.metrics.get('diverged_epoch')} (the loss "
                      f"became inf/NaN); try a smaller learning rate than {cfg.train.learning_rate:g}.",
                      stacklevel=2)
    return run


def grid(config: str | Path | dict | Config, out: str | Path | None = None, jobs: int | None = None,
         progress: bool | None = None, *, fresh: bool = False, plots: bool = True, scheduler: str | None = None,
         allow_mixed: bool = False, **overrides: Any) -> "GridRun":
    """Run (or resume) the config's grid, select on validation, retrain the best setting and test it.

    jobs: worker processes (default: one per core). fresh: discard saved jobs. scheduler: run the
    jobs on a Dask cluster, as `dlhw grid --scheduler`: "tcp://HOST:PORT", "tls://HOST:PORT" (TLS
    files from Dask's config) or "local" (`jobs` workers on 127.0.0.1); allow_mixed as
    `--allow-mixed`. The other arguments as in `train`. Works from a plain script without an
    `if __name__ == "__main__":` guard: the workers never re-run the calling script.
    """
    from dlhw.grid.run import run_grid

    cfg = _resolve(config, out, overrides)
    if cfg.grid is None:
        raise ConfigError(f"{_where(cfg)}has no 'grid' section; add one (see configs/softmax_small.yaml), "
                          f"e.g. grid={{'learning_rate': [0.01, 0.1]}}, or use dlhw.train.")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"'jobs' must be an integer >= 1 or None. Got {jobs!r} instead.")
    executor = None
    if scheduler is not None:
        from dlhw.grid.cluster import DaskExecutor

        if not isinstance(scheduler, str):
            raise ConfigError(f"'scheduler' must be 'tcp://HOST:PORT', 'tls://HOST:PORT' or 'local'. "
                              f"Got {scheduler!r} instead.")
        executor = DaskExecutor(scheduler, jobs, allow_mixed=allow_mixed)
    elif allow_mixed:
        raise ConfigError("'allow_mixed' only applies with a scheduler.")
    res = run_grid(cfg, n_jobs=jobs, fresh=fresh, progress=progress, argv=_argv("grid", cfg), executor=executor)
    _finish(res.run_dir, plots)
    return GridRun(res.run_dir)


def _where(cfg: Config) -> str:
    return "" if cfg.source.startswith("<") else f"{cfg.source}: "


def _argv(command: str, cfg: Config) -> list[str]:
    """What manifest.json records as the command of a run made from Python."""
    return [f"dlhw.{command}", cfg.source]


def _finish(run_dir: Path, plots: bool) -> None:
    from dlhw.report.markdown import finish_run
    from dlhw.store import derived

    if plots:
        finish_run(run_dir)
    else:
        derived.clear(run_dir)


# --------------------------------------------------------------------------- reading runs back


def load_run(path: str | Path) -> "Run | GridRun":
    """A finished run folder read back (a `GridRun` when it holds a grid); no data set needed."""
    from dlhw.report.runfiles import check_run_dir

    p = check_run_dir(path)
    if not (p / "metrics.json").is_file():
        raise RunError(f"{p}: the run has not finished (no metrics.json); run it again to complete it.")
    return GridRun(p) if (p / "grid.csv").is_file() else Run(p)


def load_data(name: str = "fashion-mnist", data_dir: str | Path | None = None):
    """A data set's raw arrays (`X_train`, `y_train`, `X_test`, `y_test` as uint8 pixels and labels,
    `classes`), found and verified as training finds them."""
    from dlhw.data.load import load

    return load(name, data_dir)


class Run:
    """A run folder: its config, metrics, history, model and figures. Files are read when first used."""

    def __init__(self, path: str | Path):
        from dlhw.report.runfiles import check_run_dir

        self.path = check_run_dir(path)
        self._files = None
        self._config: Config | None = None
        self._model = None

    # ---- result files
    @property
    def files(self):
        """Every result file of the folder (`dlhw.report.runfiles.RunFiles`)."""
        if self._files is None:
            from dlhw.report.runfiles import read_run

            self._files = read_run(self.path)
        return self._files

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def config(self) -> Config:
        """The resolved config the run was made with (its config.yaml)."""
        if self._config is None:
            if not (self.path / "config.yaml").is_file():
                raise RunError(f"{self.path}: no config.yaml; is this a finished dlhw run folder?")
            self._config = _load_file(self.path / "config.yaml")
        return self._config

    @property
    def metrics(self) -> dict:
        """metrics.json: train/val/test CE and accuracy, test_confusion, epochs_run, diverged, seconds, ..."""
        if self.files.metrics is None:
            raise RunError(f"{self.path}: no metrics.json; the run has not finished.")
        return self.files.metrics

    @property
    def history(self) -> list[dict]:
        """history.csv: one dict per evaluation point (epoch, iteration, train/val/test CE and accuracy)."""
        return list(self.files.history or [])

    def history_frame(self):
        """`history` as a pandas DataFrame (needs pandas)."""
        return _frame(self.history, "history_frame")

    @property
    def diverged(self) -> bool:
        return bool(self.metrics.get("diverged"))

    @property
    def classes(self) -> list[str]:
        """Class names; `predict` returns indices into this list."""
        return [str(c) for c in self.metrics.get("classes") or self.files.model.get("classes", [])]

    # ---- the model
    def predict(self, images, *, preprocessed: bool = False) -> np.ndarray:
        """Predicted class indices (n,) for raw images: 0-255 pixels, shaped (n, 784), (n, 28, 28)
        or one image (784,) / (28, 28) - e.g. `dlhw.load_data().X_test`. The run's stored
        preprocessing (scale or standardize, with its training statistics) is applied first;
        pass preprocessed=True for arrays that already went through it."""
        from threadpoolctl import threadpool_limits

        from dlhw.data.preprocess import Preprocessor
        from dlhw.training.run import TRAIN_THREADS, load_run as load_model

        if self.diverged:
            raise RunError(f"{self.path}: this run diverged at epoch {self.metrics.get('diverged_epoch')}; "
                           f"there is no model to predict with.")
        if self._model is None:
            cfg, model, _, arrays = load_model(self.path)
            pre = Preprocessor.from_arrays(arrays) if "pre_kind" in arrays else None
            self._model = (cfg, model, pre)
        cfg, model, pre = self._model
        d = model.first_layer().shape[0]
        X = np.asarray(images)
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"predict: images must be a numeric array. Got dtype {X.dtype} instead.")
        if X.size == d and X.ndim <= 2 and (X.ndim < 2 or X.shape[0] != 1 or X.shape[1] != d):
            X = X.reshape(1, d)  # one image
        elif X.ndim >= 2 and int(np.prod(X.shape[1:])) == d:
            X = X.reshape(len(X), d)
        else:
            raise DataError(f"predict: expected images with {d} pixels each, shaped (n, {d}) or (n, 28, 28) "
                            f"or one image. Got shape {X.shape} instead.")
        if not preprocessed and X.size:
            lo, hi = float(X.min()), float(X.max())
            kind = pre.kind if pre is not None else "none"
            if lo < 0 or hi > 255:
                raise DataError(f"predict: expected raw pixels in [0, 255]. Got values in [{lo:g}, {hi:g}]; "
                                f"if the images already went through the run's preprocessing ({kind}), "
                                f"pass preprocessed=True.")
            if kind == "scale" and np.issubdtype(X.dtype, np.floating) and 0 < hi <= 1:
                raise DataError(f"predict: these images look already scaled (every value in [0, 1]); "
                                f"predict takes raw 0-255 pixels and divides by 255 itself. "
                                f"Pass preprocessed=True if they already went through it.")
        if not preprocessed and pre is not None:
            X = pre.transform(X, cfg.train.dtype)
        else:
            X = np.asarray(X, dtype=cfg.train.dtype)
        with threadpool_limits(TRAIN_THREADS, user_api="blas"):  # as in training: the same rounding
            return np.asarray(model.predict(X), dtype=np.int64)

    # ---- figures
    def figures(self) -> list[str]:
        """Names of the figures this run can draw (those `dlhw plot` writes)."""
        return [n for n in _figure_table() if self._draw(n) is not None]

    def figure(self, name: str):
        """One of the figures `dlhw plot` draws, as a `matplotlib.figure.Figure` (shown inline in
        Jupyter; saved with `fig.savefig(path)`): loss_curves, loss_iterations, accuracy_curves,
        confusion_matrix, weights, and for grids grid_heatmaps, grid_epochs, grid_marginals."""
        table = _figure_table()
        if name not in table:
            from dlhw.config import _hint

            raise RunError(f"unknown figure {name!r}{_hint(name, table)}. Available: {', '.join(table)}.")
        fig = self._draw(name)
        if fig is None:
            raise RunError(f"{self.path}: nothing to draw {name!r} from ({_NEEDS.get(name, 'its inputs are missing')}); "
                           f"this run can draw: {', '.join(self.figures()) or 'nothing'}.")
        return fig

    def _draw(self, name: str):
        from dlhw.report.figkit import keep_figures

        with keep_figures() as kept:
            drawn = _figure_table()[name](self.files, self.path / "figures" / f"{name}.png")
        return kept[0] if drawn is not None and kept else None

    # ---- display
    def summary(self) -> list[tuple[str, dict]]:
        """(split, {metric: value}) rows of the metrics table."""
        m = self.metrics
        return [(s, {k: m.get(f"{s}_{k}") for k in ("ce", "accuracy") if f"{s}_{k}" in m})
                for s in ("train", "val", "test") if any(f"{s}_{k}" in m for k in ("ce", "accuracy"))]

    def _headline(self) -> str:
        m = self.metrics
        cfg = self.files.config or {}
        tr = cfg.get("train") or {}
        what = f"{(cfg.get('model') or {}).get('kind', '?')} on {(cfg.get('data') or {}).get('name', '?')}"
        setting = (f"batch {tr.get('batch_size')}, lr {tr.get('learning_rate'):g}, alpha {tr.get('alpha'):g}"
                   if isinstance(tr.get("learning_rate"), (int, float)) and isinstance(tr.get("alpha"), (int, float))
                   else "")
        runs = f"{m.get('epochs_run')} epochs" + (", diverged at epoch %s" % m.get("diverged_epoch")
                                                  if m.get("diverged") else "")
        return f"{self.name}: {what}; {setting}; {runs}; {m.get('seconds', 0):.1f} s"

    def __repr__(self) -> str:
        try:
            m = self.metrics
        except RunError:
            return f"{type(self).__name__}({str(self.path)!r}, unfinished)"
        test = (f", test accuracy {m['test_accuracy']:.2%}, test CE {m['test_ce']:.4f}"
                if isinstance(m.get("test_accuracy"), float) and isinstance(m.get("test_ce"), float) else "")
        return f"{type(self).__name__}({str(self.path)!r}{test})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{s}</td>" + "".join(f"<td>{_cell(k, v.get(k))}</td>" for k in ("ce", "accuracy"))
                       + "</tr>" for s, v in self.summary())
        return (f"<p><b>{html.escape(self._headline())}</b><br><code>{html.escape(str(self.path))}</code></p>"
                f"<table><tr><th>split</th><th>CE</th><th>accuracy</th></tr>{rows}</table>" + self._extra_html())

    def _extra_html(self) -> str:
        return ""


class GridRun(Run):
    """A grid run folder: the settings tried (`rows`), the chosen one (`best`), its retrain (`retrained`).

    `metrics`, `history`, `predict` and the training figures are those of the retrained setting.
    """

    @property
    def rows(self) -> list[dict]:
        """grid.csv: one dict per setting (its values of any other axes such as model.hidden, then batch_size,
        learning_rate, epochs, alpha, train_ce, val_ce, ...)."""
        return list(self.files.grid or [])

    def rows_frame(self):
        """`rows` as a pandas DataFrame (needs pandas)."""
        return _frame(self.rows, "rows_frame")

    @property
    def best(self) -> dict:
        """best.json: the chosen setting, its validation CE and accuracy, and the selection rules."""
        if self.files.best is None:
            raise RunError(f"{self.path}: no best.json; the grid has not finished.")
        return self.files.best

    @property
    def retrained(self) -> Run:
        """The chosen setting retrained (on train+val by default) and tested."""
        return Run(self.path)

    def top(self, n: int = 10) -> list[dict]:
        """The `n` best settings by the grid's selection metric (diverged ones left out)."""
        from dlhw.report.runfiles import ranked_settings

        return ranked_settings(self.files)[:n]

    def _extra_html(self) -> str:
        from dlhw.report.runfiles import axis_label, extra_axes

        b = self.best
        by = b.get("select_by", "val_ce")
        extra = extra_axes(self.files)
        head = "".join(f"<th>{html.escape(h)}</th>"
                       for h in (*extra, "batch", "lr", "epochs", "alpha", "val CE", "val accuracy"))
        rows = "".join("<tr>" + "".join(f"<td>{_cell(k, r.get(k))}</td>" for k in
                                        (*extra, "batch_size", "learning_rate", "epochs", "alpha", "val_ce",
                                         "val_accuracy"))
                       + "</tr>" for r in self.top(5))
        secs = ((self.files.manifest or {}).get("grid") or {}).get("seconds")
        took = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
        chosen = "".join(f"{html.escape(k)} {html.escape(axis_label(b[k]))}, " for k in extra if k in b)
        return (f"<p>{b.get('n_settings', len(self.rows))} settings{took}; chosen by {by}: {chosen}"
                f"batch {b['batch_size']}, lr {b['learning_rate']:g}, {b['epochs']} epochs, alpha {b['alpha']:g}; "
                f"retrained on {b.get('retrain_on')}</p><table><tr>{head}</tr>{rows}</table>")


def _cell(key: str, v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-" if v is None else html.escape(str(v))
    if key.endswith("accuracy"):
        return f"{v:.2%}"
    if isinstance(v, float) and key.endswith("ce"):
        return f"{v:.4f}"
    return f"{v:g}"


def _frame(rows: list[dict], what: str):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"{what}() needs pandas: pip install pandas (or use the list of dicts).") from None
    return pd.DataFrame(rows)


def _figure_table() -> dict:
    from dlhw.report.plots import FIGURES

    return FIGURES


_NEEDS = {
    "loss_curves": "history.csv", "accuracy_curves": "history.csv with accuracies",
    "loss_iterations": "iterations.csv", "confusion_matrix": "a test confusion matrix in metrics.json",
    "weights": "a 784-input model in model.npz", "grid_heatmaps": "grid.csv (a grid run)",
    "grid_epochs": "grid.csv (a grid run)", "grid_marginals": "grid.csv (a grid run)",
}
