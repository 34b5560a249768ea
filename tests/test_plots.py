"""`dlhw plot`: every figure from result files alone, on synthetic run folders and one real run.

The run folders are built here with `dlhw.results` helpers, shaped like what `dlhw train` and
`dlhw grid` write; `make_train_run` and `make_grid_run` are also used by test_report.py.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from dlhw.report import plots
from dlhw.store import files as results
from dlhw.cli import cli
from dlhw.errors import RunError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
CONFIG = """\
name: {name}
data: {{name: fashion-mnist, dir: null, val_fraction: 0.2, split_seed: 0, preprocess: scale, classes: null}}
model: {{kind: {kind}, hidden: [256, 128], activation: relu, leaky_slope: 0.01, init: he, batch_norm: false,
  dropout: 0.0, dropout_kind: bernoulli}}
train: {{batch_size: {bs}, learning_rate: {lr}, epochs: {epochs}, alpha: {alpha}, seed: 0, dtype: float32,
  optimizer: sgd, momentum: 0.9, eval_every: null}}
grid: {grid}
output: {{dir: null}}
"""


# --------------------------------------------------------------------------- synthetic run folders


def make_train_run(d: Path, *, name: str = "synth", epochs: int = 5, per_epoch: int = 40, eval_every: int = 10,
                   kind: str = "softmax", loss: str = "ce", trained_on: str = "train", bs: int = 64,
                   lr: float = 0.05, alpha: float = 1e-4, diverged_epoch: int | None = None,
                   grid: str = "null") -> Path:
    """A run folder like `dlhw train` writes (kind softmax | mlp | linear; loss ce | mse)."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    results.atomic_write_text(d / "config.yaml", CONFIG.format(name=name, kind=kind, bs=bs, lr=lr, alpha=alpha,
                                                               epochs=epochs, grid=grid))
    splits = ("train", "test") if trained_on == "train+val" else ("train", "val", "test")
    acc = loss == "ce"
    rows, batch = [], []
    last = epochs * per_epoch if diverged_epoch is None else (diverged_epoch - 1) * per_epoch + 3
    for it in range(1, last + 1):
        t = it / per_epoch
        batch.append(0.45 + 1.85 * math.exp(-3 * t) + 0.15 * rng.standard_normal())
        if it % eval_every == 0 or it % per_epoch == 0:
            row = {"epoch": round(t, 6), "iteration": it}
            for k, s in enumerate(splits):
                if s == "train" and it % per_epoch:
                    continue
                row[f"{s}_{loss}"] = 0.42 + 0.02 * k + 1.8 * math.exp(-3 * t)
                if acc:
                    row[f"{s}_accuracy"] = 0.86 - 0.01 * k - 0.5 * math.exp(-3 * t)
            rows.append(row)
    if diverged_epoch is not None:
        batch[-1] = float("inf")
    results.write_csv(d / "history.csv", rows)
    results.write_csv(d / "iterations.csv", ({"iteration": i + 1, "batch_loss": v} for i, v in enumerate(batch)),
                      ["iteration", "batch_loss"])
    m: dict = {"trained_on": trained_on, "epochs_run": diverged_epoch or epochs, "iterations": len(batch),
               "diverged": diverged_epoch is not None, "diverged_epoch": diverged_epoch}
    for s in splits:
        m[f"{s}_{loss}"] = None if diverged_epoch else rows[-1][f"{s}_{loss}"]
        if acc:
            m[f"{s}_accuracy"] = None if diverged_epoch else rows[-1][f"{s}_accuracy"]
    if acc and not diverged_epoch:
        cm = rng.integers(0, 30, (10, 10)) * (rng.random((10, 10)) < 0.5)
        np.fill_diagonal(cm, rng.integers(700, 980, 10))
        m["test_confusion"] = cm.tolist()
    m["classes"] = CLASSES if acc else []
    m["seconds"] = 1.5
    arrays = {"kind": np.array(kind), "classes": np.array(m["classes"] or ["y"])}
    yy, xx = np.mgrid[0:28, 0:28]
    blob = lambda cy, cx, s: np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s ** 2)).ravel()  # noqa: E731
    if kind == "softmax":
        arrays["param_W"] = np.stack([blob(8 + c, 6 + 2 * c, 4) - blob(20 - c, 22 - c, 5) for c in range(10)], 1)
        arrays["param_b"] = np.zeros(10)
    elif kind == "mlp":
        arrays["param_W1"] = np.stack([blob(*rng.uniform(4, 24, 2), 3) * rng.choice([-1, 1])
                                       + 0.05 * rng.standard_normal(784) for _ in range(96)], 1)
        arrays["param_W2"] = rng.standard_normal((96, 10))
    else:
        arrays["param_W"] = rng.standard_normal((2, 1))
    results.save_npz(d / "model.npz", arrays)
    results.write_json(d / "manifest.json", {"dlhw": "0.1.0", "git_commit": "abc1234", "git_dirty": False,
                                             "python": "3.11", "numpy": np.__version__})
    results.write_json(d / "metrics.json", m)
    return d


def _val_ce(bs, lr, epochs, alpha):
    """A made-up but plausible validation CE surface (more steps help, big lr/bs ratio hurts)."""
    t = lr * epochs * math.ceil(48000 / bs)
    ce = 0.40 + 1.9 / (1 + (t / 3) ** 0.6)
    ce += 0.06 * (t / 300) ** 0.5 * math.exp(-alpha / 3e-4) + 6 * alpha ** 0.8  # overfitting, L2 bias
    return ce + 0.5 * (lr * 64 / bs) ** 1.5


def _diverges_at(bs, lr) -> int:
    r = lr * 64 / bs
    return 1 if r > 1.5 else (10 if r > 1.0 else 0)


def make_grid_run(d: Path, bss=(32, 256), lrs=(0.01, 0.1, 1.0), eps=(1, 2, 5), alphas=(0.0, 1e-4, 1e-2),
                  *, retrained: bool = True) -> Path:
    """A grid run folder: grid.csv, grid_epochs.csv, best.json (+ the retrained best's files)."""
    rng = np.random.default_rng(1)
    rows, per_epoch = [], []
    for bs in bss:
        for lr in lrs:
            div = _diverges_at(bs, lr)
            for a in alphas:
                noise = 0.004 * rng.standard_normal(max(eps))
                for e in range(1, max(eps) + 1):
                    bad = div and e >= div
                    v = None if bad else _val_ce(bs, lr, e, a) + noise[e - 1]
                    per_epoch.append({"batch_size": bs, "learning_rate": lr, "alpha": a, "epoch": e, "val_ce": v,
                                      "val_accuracy": None if bad else 1.0 - 0.3 * v})
                    if e in eps:
                        rows.append({"batch_size": bs, "learning_rate": lr, "epochs": e, "alpha": a,
                                     "train_ce": None if bad else v - 0.02, "val_ce": v,
                                     "val_accuracy": None if bad else 1.0 - 0.3 * v, "diverged": bool(bad),
                                     "diverged_epoch": div if bad else None})
    ok = [r for r in rows if not r["diverged"]]
    b = min(ok, key=lambda r: r["val_ce"])
    if retrained:
        grid = (f"{{batch_size: {list(bss)}, learning_rate: {list(lrs)}, epochs: {list(eps)}, "
                f"alpha: {list(alphas)}, seeds: [0], select_by: val_ce, retrain_on: train+val, retrain_epochs: same}}")
        make_train_run(d, name="grid", epochs=int(b["epochs"]), trained_on="train+val", bs=b["batch_size"],
                       lr=b["learning_rate"], alpha=b["alpha"], grid=grid)
    d.mkdir(parents=True, exist_ok=True)
    cols = ["batch_size", "learning_rate", "epochs", "alpha", "train_ce", "val_ce", "val_accuracy", "diverged",
            "diverged_epoch"]
    results.write_csv(d / "grid.csv", rows, cols)
    results.write_csv(d / "grid_epochs.csv", per_epoch)
    results.write_json(d / "best.json", {**{k: b[k] for k in ("batch_size", "learning_rate", "epochs", "alpha",
                                                              "val_ce", "val_accuracy")},
                                         "select_by": "val_ce", "retrain_on": "train+val", "retrain_epochs": "same",
                                         "n_settings": len(rows)})
    if retrained:  # where a real grid run records its search time: manifest.json's "grid" section
        man = results.read_json(d / "manifest.json")
        man["grid"] = {"seconds": 12.0, "jobs": 8, "jobs_run": 8, "jobs_loaded": 0, "workers": 2,
                       "settings_per_second": len(rows) / 12.0}
        results.write_json(d / "manifest.json", man)
    return d


CANONICAL = dict(bss=(16, 32, 64, 128, 256, 512, 1024, 2048), lrs=tuple(np.logspace(-3, 0, 8)),
                 eps=(1, 2, 5, 10, 20, 30, 40, 50), alphas=(0.0, *np.logspace(-6, -2, 7)))


# --------------------------------------------------------------------------- checks


def assert_good_png(path: Path, min_px: int = 300) -> None:
    """A readable, non-blank PNG."""
    assert path.suffix == ".png" and path.is_file(), path
    img = imread(path)
    h, w = img.shape[:2]
    assert min(h, w) >= min_px and max(h, w) <= 6000, (path, img.shape)
    assert img[..., :3].var() > 1e-3, f"{path} looks blank"


TRAIN_FIGS = {"loss_curves", "loss_iterations", "accuracy_curves", "confusion_matrix", "weights"}
GRID_FIGS = {"grid_heatmaps", "grid_epochs", "grid_marginals"}


def test_train_run_figures(tmp_path):
    run = make_train_run(tmp_path / "run")
    paths = plots.draw_all(run)
    assert {p.stem for p in paths} == TRAIN_FIGS
    for p in paths:
        assert p.parent == run / "figures"
        assert_good_png(p)


def test_grid_run_with_the_data_set_hidden(tmp_path):
    """`dlhw plot` on a grid run with DLHW_DATA pointing at an empty folder; the data module is never loaded."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    run = make_grid_run(tmp_path / "grid")
    code = ("import sys; from dlhw.cli import cli; cli(['plot', '--run', sys.argv[1]], standalone_mode=False); "
            "assert 'dlhw.data' not in sys.modules and 'dlhw.prepare' not in sys.modules, 'data touched'")
    r = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                       env={**os.environ, "DLHW_DATA": str(empty)})
    assert r.returncode == 0, r.stderr
    got = {p.stem for p in (run / "figures").glob("*.png")}
    assert got == TRAIN_FIGS | GRID_FIGS
    for p in (run / "figures").glob("*.png"):
        assert_good_png(p)
    assert "grid_heatmaps.png" in r.stdout


def test_canonical_grid_shape(tmp_path):
    """The 8x8x8x8 grid: every grid figure drawn, no warnings (e.g. overlapping layout)."""
    run = make_grid_run(tmp_path / "grid", **CANONICAL, retrained=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plots.draw_all(run)
    assert {p.stem for p in paths} == GRID_FIGS
    for p in paths:
        assert_good_png(p, min_px=600)


def test_partial_inputs_skip_figures(tmp_path):
    lin = plots.draw_all(make_train_run(tmp_path / "lin", kind="linear", loss="mse"))
    assert {p.stem for p in lin} == {"loss_curves", "loss_iterations"}
    mlp = plots.read_run(make_train_run(tmp_path / "mlp", kind="mlp"))
    assert_good_png(plots.weights(mlp, tmp_path / "mlp.png"))  # a grid of first-layer units
    div = plots.read_run(make_train_run(tmp_path / "div", diverged_epoch=3))
    assert plots.confusion_matrix(div, tmp_path / "c.png") is None  # no test_confusion
    assert_good_png(plots.loss_iterations(div, tmp_path / "div.png"))  # curves up to the divergence
    (tmp_path / "bare").mkdir()
    results.write_json(tmp_path / "bare" / "metrics.json", {"test_ce": 0.5})
    assert plots.draw_all(tmp_path / "bare") == []


def test_svg_and_out_dir(tmp_path):
    run = make_train_run(tmp_path / "run", epochs=2, kind="linear", loss="mse")  # two figures: quick
    r = CliRunner().invoke(cli, ["plot", "--run", str(run), "--format", "svg", "--out", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "figs").iterdir())
    assert [p.name for p in files] == ["loss_curves.svg", "loss_iterations.svg"]
    assert all(p.read_text().lstrip().startswith("<?xml") for p in files)
    assert all(p.stat().st_size > 1000 for p in files)
    assert not (run / "figures").exists()


@pytest.mark.parametrize("cmd", ["plot", "report"])
@pytest.mark.parametrize("what, message", [
    ("missing", "run folder not found"),
    ("file", "is a file; give a run folder"),
    ("empty", "not a dlhw run folder"),
])
def test_bad_run_paths(tmp_path, cmd, what, message):
    p = tmp_path / what
    if what == "file":
        p.write_text("x")
    elif what == "empty":
        p.mkdir()
    r = CliRunner().invoke(cli, [cmd, "--run", str(p)])
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"error: {p}: ")
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    with pytest.raises(RunError, match=message):
        plots.read_run(p)


def test_corrupt_result_file_is_a_run_error(tmp_path):
    run = make_train_run(tmp_path / "run")
    (run / "metrics.json").write_text("{not json")
    r = CliRunner().invoke(cli, ["plot", "--run", str(run)])
    assert r.exit_code == 2 and "metrics.json: not valid JSON" in r.output


@pytest.mark.realdata
def test_real_train_draws_figures_and_report(tmp_path, fast_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "real"
    r = CliRunner().invoke(cli, ["train", "--config", str(fast_config(epochs=1)), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert f"report: {out / 'report.md'} (5 figures in {out / 'figures'})" in r.output
    assert {p.stem for p in (out / "figures").glob("*.png")} == TRAIN_FIGS
    for p in (out / "figures").glob("*.png"):
        assert_good_png(p)
    md = (out / "report.md").read_text()
    assert "Test accuracy **" in md and "![Learned weights](figures/weights.png)" in md


@pytest.mark.parametrize("flag, diverged", [("--no-plots", False), (None, True)])
def test_train_no_plots_and_diverged(tmp_path, write_config, monkeypatch, flag, diverged):
    """--no-plots skips figures and report.md; a diverged run still gets them, then exits 1.
    (Training is faked: only the end of `dlhw train` is under test here.)"""
    import dlhw.training.run

    def fake_train_run(cfg, **kw):
        d = make_train_run(cfg.run_dir, epochs=1, diverged_epoch=1 if diverged else None)
        return dlhw.training.run.RunResult(d, results.read_json(d / "metrics.json"), None, None, None)

    monkeypatch.setattr(dlhw.training.run, "train_run", fake_train_run)
    out = tmp_path / "out"
    args = ["train", "--config", str(write_config("train: {epochs: 1}\n")), "--out", str(out), "-q"]
    r = CliRunner().invoke(cli, args + ([flag] if flag else []))
    assert r.exit_code == (1 if diverged else 0), r.output
    drawn = flag is None
    assert (out / "figures").exists() == drawn and (out / "report.md").exists() == drawn
    assert ("training diverged at epoch 1" in r.output) == diverged


def test_no_plots_removes_an_earlier_runs_figures_and_report(tmp_path, write_config, monkeypatch):
    """A rerun with --no-plots must not leave figures and a report of results that were replaced."""
    import dlhw.training.run

    def fake_train_run(cfg, **kw):
        d = make_train_run(cfg.run_dir, epochs=1)
        return dlhw.training.run.RunResult(d, results.read_json(d / "metrics.json"), None, None, None)

    monkeypatch.setattr(dlhw.training.run, "train_run", fake_train_run)
    out = tmp_path / "out"
    args = ["train", "--config", str(write_config("train: {epochs: 1}\n")), "--out", str(out), "-q"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (out / "report.md").is_file() and (out / "figures" / "loss_curves.png").is_file()
    (out / "figures" / "mine.txt").write_text("a user's own file")
    assert CliRunner().invoke(cli, args + ["--no-plots"]).exit_code == 0
    assert not (out / "report.md").exists()
    assert [p.name for p in (out / "figures").iterdir()] == ["mine.txt"]  # only dlhw's figures go
    assert (out / "metrics.json").is_file()
