"""Grid axes over any config key (`model.hidden`, `model.activation`, `train.optimizer`, ...):
validation, jobs, exactness against `dlhw train`, and the outputs that follow the axes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import dlhw
from dlhw.cli import cli
from dlhw.config import dump_config, from_dict
from dlhw.grid.jobs import make_jobs, settings
from dlhw.report.compare import compare_runs
from dlhw.store.files import read_csv

MLP = {"name": "arch", "data": {"classes": [0, 1, 2]}, "model": {"kind": "mlp", "hidden": [16]},
       "train": {"batch_size": 256, "epochs": 2, "learning_rate": 0.05, "alpha": 1e-4, "seed": 3}}


# --------------------------------------------------------------------------- validation

AXIS_MISTAKES = [
    ("model.hidden: [128, 256]", "'grid.model.hidden[0]' must be a list (each value of this axis is one model.hidden), "
                                 "e.g. [[128], [256, 128]]. Got 128 instead."),
    ("model.hidden: [[128], [0]]", "'grid.model.hidden[1][0]' must be an integer >= 1. Got 0 instead."),
    ("model.hiden: [[128]]", "unknown grid axis 'grid.model.hiden' (did you mean 'model.hidden'?)"),
    ("model.activation: [relu, sigmoidd]", "'grid.model.activation[1]' must be one of 'relu', 'leaky_relu', "
                                           "'sigmoid', 'tanh'. Got 'sigmoidd' instead."),
    ("model.dropout: [0.1, 1.5]", "'grid.model.dropout[1]' must be a float in [0, 1). Got 1.5 instead."),
    ("model.batch_norm: [true, maybe]", "'grid.model.batch_norm[1]' must be true or false. Got 'maybe' instead."),
    ("model.activation: [relu, relu]", "'grid.model.activation' must not repeat a value. Got 'relu' twice."),
    ("model.activation: []", "'grid.model.activation' must be a non-empty list of values"),
    ("train.optimizer: [sgd, newton]", "'grid.train.optimizer[1]' = newton: 'train.optimizer' newton is only "
                                       "available for model.kind 'linear'"),
    ("train.momentum: [0.5, 1.0]", "'grid.train.momentum[1]' must be a float in [0, 1). Got 1.0 instead."),
    ("data.split_seed: [0, 1]", "'grid.data.split_seed' cannot vary inside one grid: every setting must be "
                                "scored on the same validation split."),
    ("data.name: [mnist, fashion-mnist]", "'grid.data.name' cannot vary inside one grid"),
    ("train.dtype: [float32, float64]", "'grid.train.dtype' cannot vary inside one grid"),
    ("data.val_fraction: [0.1, 0.2]", "'grid.data.val_fraction' cannot vary inside one grid"),
    ("train.seed: [0, 1]", "'grid.train.seed' cannot vary inside one grid: shuffle seeds are 'grid.seeds'"),
    ("modle.hidden: [[128]]", "'grid.modle.hidden': a grid axis is a key of data, model or train "
                              "(did you mean 'model.hidden'?)"),
    ("{train.learning_rate: [0.1], learning_rate: [0.2]}", "'grid.train.learning_rate' and 'grid.learning_rate' "
                                                           "are the same axis; give one."),
]


@pytest.mark.parametrize("axis, message", AXIS_MISTAKES)
def test_a_bad_axis_is_one_line_naming_the_axis_and_index(write_config, tmp_path, axis, message):
    body = axis[1:-1] if axis.startswith("{") else axis
    cfg = write_config(f"model: {{kind: mlp}}\ngrid:\n  {body.replace(', learning_rate', chr(10) + '  learning_rate')}\n")
    r = CliRunner().invoke(cli, ["grid", "--config", str(cfg), "--out", str(tmp_path / "o"), "-q", "--dry-run"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_an_axis_given_with_set_is_checked_there_and_merges_with_the_file(write_config):
    from dlhw.config import load_config

    path = write_config("model: {kind: mlp}\ngrid: {model.hidden: [[32], [64, 32]], learning_rate: [0.1]}\n")
    cfg = load_config(path, ["grid.model.activation=[relu, tanh]"])
    assert cfg.grid.axes == (("model.hidden", ((32,), (64, 32))), ("model.activation", ("relu", "tanh")))
    assert cfg.grid.size == 4
    with pytest.raises(dlhw.ConfigError, match=r"^--set 'grid.model.hidden=\[64\]': 'grid.model.hidden\[0\]' must "):
        load_config(path, ["grid.model.hidden=[64]"])
    # the resolved config (config.yaml) reads back to the same grid
    again = from_dict(yaml.safe_load(dump_config(cfg)))
    assert again.grid == cfg.grid


# --------------------------------------------------------------------------- jobs


def test_settings_that_differ_only_in_lr_and_alpha_still_stack():
    cfg = from_dict({"name": "s", "grid": {"data.preprocess": ["scale", "standardize"], "batch_size": [64, 128],
                                           "learning_rate": [0.1, 0.01], "alpha": [0.0, 1e-4], "epochs": [1, 3]}})
    jobs = make_jobs(cfg)
    assert len(jobs) == 4 and all(j.stacked and j.n_settings == 4 and j.epochs == 3 for j in jobs)
    assert {j.cfg.data.preprocess for j in jobs} == {"scale", "standardize"}
    assert len({j.key for j in jobs}) == 4  # the axis value is part of each job's key
    assert len(settings(cfg)) == cfg.grid.size == 2 * 2 * 2 * 2 * 2
    assert list(settings(cfg)[0]) == ["data.preprocess", "batch_size", "learning_rate", "epochs", "alpha"]


def test_networks_train_one_setting_per_job_with_free_epochs():
    cfg = from_dict({**MLP, "grid": {"model.hidden": [[16], [24, 8]], "learning_rate": [0.1, 0.05],
                                     "epochs": [1, 2]}})
    jobs = make_jobs(cfg)
    assert len(jobs) == 4 and all(j.n_settings == 1 and j.epochs == 2 and not j.stacked for j in jobs)
    assert {j.cfg.model.hidden for j in jobs} == {(16,), (24, 8)}
    assert settings(cfg)[-1]["model.hidden"] == "24-8"


def test_fit_evaluates_only_the_epochs_asked_and_trains_the_same():
    from dlhw.config import TrainConfig
    from dlhw.models import build_model
    from dlhw.training.loop import fit

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 12)).astype(np.float32), rng.integers(0, 3, 300)
    cfg = from_dict({"name": "m", "model": {"kind": "mlp", "hidden": [8], "dropout": 0.2}})
    tc = TrainConfig(batch_size=32, learning_rate=0.05, epochs=4, alpha=1e-4, optimizer="momentum")
    full, lean = build_model(cfg, 12, 3), build_model(cfg, 12, 3)
    h_full = fit(full, (X, y), tc, {"val": (X[:50], y[:50])})
    h_lean = fit(lean, (X, y), tc, {"val": (X[:50], y[:50])}, eval_at={2, 4}, train_at={4})
    assert [r["epoch"] for r in h_lean.rows] == [2, 4]
    assert "train_ce" not in h_lean.rows[0] and "val_ce" in h_lean.rows[0] and "train_ce" in h_lean.rows[1]
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], lean.params[k])
    by_epoch = {r["epoch"]: r for r in h_full.rows}
    assert h_lean.rows[0]["val_ce"] == by_epoch[2]["val_ce"] and h_lean.rows[1]["train_ce"] == by_epoch[4]["train_ce"]


# --------------------------------------------------------------------------- exactness and outputs


@pytest.fixture(scope="module")
def arch_grid(tmp_path_factory, fashion_dir):
    """A small architecture grid on real Fashion-MNIST (3 classes): hidden x activation x optimizer x lr."""
    out = tmp_path_factory.mktemp("axes") / "arch"
    raw = {**MLP, "data": {**MLP["data"], "dir": str(fashion_dir)},
           "grid": {"model.hidden": [[16], [24, 8]], "model.activation": ["relu", "tanh"],
                    "train.optimizer": ["sgd", "momentum"], "learning_rate": [0.05, 0.02], "epochs": [1, 2]}}
    g = dlhw.grid(raw, out=out, jobs=2, progress=False)
    return raw, g, out


@pytest.mark.parametrize("pick", [0, 13, 30])
def test_a_row_over_new_axes_equals_dlhw_train_with_its_values(arch_grid, tmp_path, pick):
    raw, _, out = arch_grid
    row = read_csv(out / "grid.csv")[pick]
    hidden = [int(h) for h in str(row["model.hidden"]).split("-")]
    alone = dlhw.train({k: v for k, v in raw.items() if k != "grid"}, out=tmp_path / "alone", progress=False,
                       plots=False, **{"model.hidden": hidden, "model.activation": row["model.activation"],
                                       "train.optimizer": row["train.optimizer"],
                                       "train.learning_rate": row["learning_rate"], "train.epochs": row["epochs"]})
    m = alone.metrics
    assert row["val_ce"] == pytest.approx(m["val_ce"], abs=1e-4)
    assert row["val_accuracy"] == pytest.approx(m["val_accuracy"], abs=1e-4)
    assert row["train_ce"] == pytest.approx(m["train_ce"], abs=1e-4)


def test_outputs_follow_the_axes(arch_grid, tmp_path):
    raw, g, out = arch_grid
    header = (out / "grid.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["model.hidden", "model.activation", "train.optimizer", "batch_size", "learning_rate"]
    rows = read_csv(out / "grid.csv")
    assert len(rows) == 2 * 2 * 2 * 2 * 2 and {str(r["model.hidden"]) for r in rows} == {"16", "24-8"}
    best = json.loads((out / "best.json").read_text())
    assert isinstance(best["model.hidden"], list) and best["model.activation"] in ("relu", "tanh")
    # the retrain is the chosen architecture: its model.npz and config.yaml say so
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model"]["hidden"] == best["model.hidden"] and conf["train"]["optimizer"] == best["train.optimizer"]
    assert conf["grid"]["model.hidden"] == [[16], [24, 8]]
    report = (out / "report.md").read_text()
    assert "| model.hidden | model.activation | train.optimizer | batch size |" in report
    assert "| # | model.hidden | model.activation | train.optimizer |" in report
    # the figures exist and the heatmaps say which values of the other axes they show
    for name in ("grid_heatmaps", "grid_marginals", "grid_epochs"):
        assert (out / "figures" / f"{name}.png").is_file()
    assert len(g.figure("grid_marginals").axes) == 5  # hidden, activation, optimizer, lr, epochs
    heat = g.figure("grid_heatmaps")
    assert "at the chosen hidden" in heat._suptitle.get_text()
    # compare shows the chosen architecture beside a run of another
    other = dlhw.grid({**raw, "grid": {**raw["grid"], "model.hidden": [[32]]}}, out=tmp_path / "other", jobs=2,
                      progress=False, plots=False)
    cols, table = compare_runs([out, tmp_path / "other"])
    assert "model.hidden" in cols and table[1]["model.hidden"] == [32]


def test_the_estimate_times_each_network_of_the_grid_here():
    from dlhw.grid import estimate

    cfg = from_dict({**MLP, "grid": {"model.hidden": [[16], [256, 128]], "batch_size": [64, 256],
                                     "learning_rate": [0.1], "epochs": [1, 2]}})
    jobs = make_jobs(cfg)
    cal = estimate.calibrate(cfg, jobs, 1)
    assert len(cal.single) == 4 and not cal.step_s  # 2 networks x 2 batch sizes, no stack
    step = {(j.cfg.model.hidden, j.batch_size): cal.single[estimate.single_key(j.cfg, j.batch_size)][0] for j in jobs}
    assert step[(256, 128), 64] > step[(16,), 64] > 0 and step[(256, 128), 256] > step[(256, 128), 64]
    secs = {(j.cfg.model.hidden, j.batch_size): estimate.job_seconds(j, cal) for j in jobs}
    assert secs[(256, 128), 64] > secs[(16,), 64] > 0
    retrain = estimate.retrain_job(cfg)
    assert retrain.cfg.model.hidden == (256, 128) and retrain.batch_size == 64
    assert "4 model(s) timed" in estimate.describe(cal)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-4), ("float64", 1e-9)])
def test_stacked_softmax_rows_over_a_data_axis_equal_dlhw_train(fashion_dir, tmp_path, dtype, tol):
    raw = {"name": "pre", "data": {"classes": [0, 1, 2], "dir": str(fashion_dir)},
           "train": {"batch_size": 128, "epochs": 2, "seed": 1, "dtype": dtype},
           "grid": {"data.preprocess": ["scale", "standardize"], "learning_rate": [0.1, 0.01],
                    "alpha": [0.0, 1e-3], "epochs": [1, 2]}}
    g = dlhw.grid(raw, out=tmp_path / "g", jobs=1, progress=False, plots=False)
    assert len(g.rows) == 16
    for row in (g.rows[3], g.rows[12]):  # one of each preprocessing, trained in a stack of 4
        alone = dlhw.train({k: v for k, v in raw.items() if k != "grid"}, out=tmp_path / "t", progress=False,
                           plots=False, **{"data.preprocess": row["data.preprocess"], "train.epochs": row["epochs"],
                                           "train.learning_rate": row["learning_rate"], "train.alpha": row["alpha"]})
        for k in ("val_ce", "val_accuracy", "train_ce"):
            assert row[k] == pytest.approx(alone.metrics[k], abs=tol), (row, k)
