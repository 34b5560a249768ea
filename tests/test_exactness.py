"""A grid row is what `dlhw train` gives for that setting: the cases a review found untested."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.config import TrainConfig
from dlhw.grid.select import rank, select
from dlhw.models import SoftmaxRegression
from dlhw.models.layers import cross_entropy
from dlhw.store.files import load_npz, read_csv
from dlhw.training.loop import fit
from dlhw.training.rules import batches_per_epoch
from dlhw.training.stack import RESCALE_LO, stack_metrics, train_stack


def blobs(n=400, d=12, k=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(dtype), y


def lone(X, y, lr, alpha, bs, epochs, val, average="none"):
    m = SoftmaxRegression(X.shape[1], 4, alpha, X.dtype)
    h = fit(m, (X, y), TrainConfig(batch_size=bs, learning_rate=lr, alpha=alpha, epochs=epochs, seed=0,
                                   average=average), {"val": val})
    return m, h


# ------------------------------------------------------------------ the stack's rescale branch


@pytest.mark.parametrize("average", ["none", "epoch"])
def test_surviving_settings_through_the_rescale_branch_equal_lone_runs(average):
    """c = prod(1 - lr*alpha) leaves [1e-3, 1e3] and is folded back into V several times; for
    lr*alpha > 1 it also changes sign every step. These settings learn fine: they must match fit."""
    X, y = blobs()
    val = blobs(n=100, seed=1)
    lrs, alphas, bs, epochs = [1.0, 0.5, 0.3, 0.05], [0.15, 0.4, 5.0, 0.0], 7, 3
    steps = epochs * batches_per_epoch(len(y), bs)
    for lr, a in zip(lrs[:3], alphas[:3]):
        assert abs(1 - lr * a) ** steps < RESCALE_LO ** 3  # the branch fires at least three times
    r = train_stack(X, y, 4, lrs, alphas, bs, seed=0, epochs=epochs, val=val, train_ce_epochs=(epochs,),
                    keep_weights=True, average=average == "epoch")
    assert (r.diverged_epoch == 0).all()
    for s, (lr, a) in enumerate(zip(lrs, alphas)):
        m, h = lone(X, y, lr, a, bs, epochs, val, average)
        assert not h.diverged
        np.testing.assert_allclose(r.W[s], m.params["W"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.b[s], m.params["b"], rtol=0, atol=1e-9)
        for e, row in enumerate(h.epoch_rows()):
            assert r.val_ce[e, s] == pytest.approx(row["val_ce"], abs=1e-9)
            assert r.val_accuracy[e, s] == row["val_accuracy"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_steps_blocks_of_rows_do_not_change_a_single_bit(monkeypatch, dtype):
    """The elementwise passes run on blocks of kernels.ROWS rows (steps and evaluation); every sum
    still runs in row order, so any block size gives the same bits - with a setting that diverges,
    one that rescales and one with lr * alpha == 1 in the stack."""
    from dlhw.training import kernels

    X, y = blobs(n=600, dtype=dtype)
    val = blobs(n=150, seed=1, dtype=dtype)
    lrs, alphas = [0.05, 1.0, 1.0, 1e36], [1e-3, 0.15, 1.0, 0.5]  # plain, rescaling, lr*alpha = 1, diverging

    def run():
        return train_stack(X, y, 4, lrs, alphas, 100, seed=0, epochs=3, val=val, train_ce_epochs=(1, 3),
                           keep_weights=True, average=True, record_epochs=(1, 3))

    runs = []
    for rows in (kernels.ROWS, 7, 1, 100):
        monkeypatch.setattr(kernels, "ROWS", rows)
        runs.append(run())
    assert list(runs[0].diverged_epoch[:3]) == [0, 0, 0] and runs[0].diverged_epoch[3] > 0
    for r in runs[1:]:
        for name in ("val_ce", "val_accuracy", "W", "b", "diverged_epoch"):
            assert np.array_equal(getattr(r, name), getattr(runs[0], name), equal_nan=True), name
        assert all(np.array_equal(r.train_ce[e], runs[0].train_ce[e], equal_nan=True) for e in (1, 3))


# ------------------------------------------------------------------ one metric rule


def test_a_tie_goes_to_the_first_class_in_the_stack_and_in_fit_alike():
    X, y = blobs(n=50)
    Xv, yv = blobs(n=60, seed=2)
    # zero weights: every logit ties, so the prediction is class 0 everywhere
    V, c, b = np.zeros((12, 3 * 2)), np.ones(2), np.zeros((4, 2))
    _, acc = stack_metrics(Xv, yv, V, c, b)
    m = SoftmaxRegression(12, 4, 0.0, np.float64)
    assert acc.tolist() == [np.mean(yv == 0)] * 2 == [m.evaluate(Xv, yv)["accuracy"]] * 2
    assert 0 < np.mean(yv == 0) < 1  # not a vacuous check
    # partial ties: class 1 and 3 tie for the max in some rows
    z = np.array([[0.0, 2.0, 1.0, 2.0], [3.0, 1.0, 1.0, 3.0], [0.0, 0.0, 5.0, 5.0]])
    yz = np.array([3, 3, 2])
    ce, correct = cross_entropy(z, yz)
    assert correct == 1  # row 3: class 2 is the first max; rows 1, 2: classes 1 and 0 come first
    ce3, correct3 = cross_entropy(np.stack([z, z], axis=2), yz)
    assert correct3.tolist() == [1, 1] and ce3 == pytest.approx([ce, ce], abs=0)


# ------------------------------------------------------------------ real grids vs lone runs

TRAIN = """\
name: ex
data: {{name: fashion-mnist, val_fraction: 0.2, classes: [0, 1, 2, 3]}}
train: {{seed: 0, dtype: {dtype}, batch_size: 512, learning_rate: 0.05, epochs: 2, alpha: 0.0{extra}}}
"""
GRID = """\
grid:
  batch_size: [256, 512]
  learning_rate: [0.01, 0.1]
  epochs: [1, 2]
  alpha: [0.0, 0.001]
"""


def _cli(*args):
    return CliRunner().invoke(cli, [*map(str, args), "-q", "--no-plots"], catch_exceptions=False)


def _train_metrics(cfg, out, **sets):
    r = _cli("train", "--config", cfg, "--out", out, *[a for k, v in sets.items() for a in ("--set", f"train.{k}={v}")])
    assert r.exit_code == 0, r.output
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.realdata
def test_a_momentum_grid_trains_unstacked_and_each_row_equals_dlhw_train(write_config, fashion_dir, tmp_path):
    cfg = write_config(TRAIN.format(dtype="float64", extra=", optimizer: momentum, momentum: 0.8") + GRID)
    r = _cli("grid", "--config", cfg, "--out", tmp_path / "g", "--jobs", "1")
    assert r.exit_code == 0, r.output
    log = (tmp_path / "g/grid.log").read_text()
    assert log.count("settings=1 ") == 8  # one fit per (batch size, lr, alpha): no stack without momentum
    rows = read_csv(tmp_path / "g/grid.csv")
    for row in (rows[0], rows[7], rows[13]):
        m = _train_metrics(cfg, tmp_path / "t", **{k: row[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")})
        for k in ("val_ce", "val_accuracy", "train_ce"):
            assert m[k] == pytest.approx(row[k], abs=1e-9), k


@pytest.mark.realdata
def test_float32_training_stays_within_2e4_of_float64_over_a_whole_run(write_config, fashion_dir, tmp_path):
    """float32 is the fast path: over 4 epochs (about 750 SGD steps) its metrics stay within 2e-4 of float64's."""
    ms = {}
    for dt in ("float32", "float64"):
        cfg = write_config(TRAIN.format(dtype=dt, extra=", average: epoch").replace("epochs: 2", "epochs: 4")
                           .replace("batch_size: 512", "batch_size: 64"))
        ms[dt] = _train_metrics(cfg, tmp_path / dt)
    for k in ("train_ce", "val_ce", "test_ce", "train_accuracy", "val_accuracy", "test_accuracy"):
        assert abs(ms["float32"][k] - ms["float64"][k]) < 2e-4, k


@pytest.mark.realdata
def test_jobs_1_and_2_give_bit_identical_files_with_the_pool_used(write_config, fashion_dir, tmp_path):
    cfg = write_config(TRAIN.format(dtype="float32", extra="") + GRID)
    for n in (1, 2):
        assert _cli("grid", "--config", cfg, "--out", tmp_path / f"j{n}", "--jobs", n).exit_code == 0
    log1, log2 = ((tmp_path / f"j{n}/grid.log").read_text() for n in (1, 2))
    assert log1.count("(in process)") == 2 and "(in process)" not in log2 and log2.count(": ") >= 2
    for f in ("grid.csv", "grid_epochs.csv", "best.json", "history.csv", "iterations.csv"):
        assert (tmp_path / "j1" / f).read_bytes() == (tmp_path / "j2" / f).read_bytes(), f
    w1, w2 = load_npz(tmp_path / "j1/model.npz"), load_npz(tmp_path / "j2/model.npz")
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)


@pytest.mark.realdata
def test_fresh_recomputes_every_job_with_the_same_result(write_config, fashion_dir, tmp_path):
    cfg = write_config(TRAIN.format(dtype="float32", extra="") + GRID)
    out = tmp_path / "g"
    assert _cli("grid", "--config", cfg, "--out", out, "--jobs", "1").exit_code == 0
    first = (out / "grid.csv").read_bytes()
    r = _cli("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert "0 jobs run, 2 resumed" in r.output
    r = _cli("grid", "--config", cfg, "--out", out, "--jobs", "1", "--fresh")
    assert "2 jobs run, 0 resumed" in r.output
    assert (out / "grid.csv").read_bytes() == first


@pytest.mark.realdata
def test_more_than_64_pairs_per_batch_size_split_into_jobs_equal_to_lone_runs(write_config, fashion_dir, tmp_path):
    lrs = [round(0.002 * 1.6 ** i, 6) for i in range(9)]
    alphas = [0.0, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]  # 9 x 8 = 72 pairs: two stacks of 36
    cfg = write_config(TRAIN.format(dtype="float64", extra="") + f"grid:\n  batch_size: [512]\n  epochs: [1]\n"
                       f"  learning_rate: {lrs}\n  alpha: {alphas}\n")
    r = _cli("grid", "--config", cfg, "--out", tmp_path / "g", "--jobs", "1")
    assert r.exit_code == 0, r.output
    assert "2 jobs run" in r.output and (tmp_path / "g/grid.log").read_text().count("settings=36 ") == 2
    rows = read_csv(tmp_path / "g/grid.csv")
    assert len(rows) == 72
    for row in (rows[0], rows[35], rows[36], rows[71]):  # both ends of both stacks
        m = _train_metrics(cfg, tmp_path / "t", **{k: row[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")})
        assert m["val_ce"] == pytest.approx(row["val_ce"], abs=1e-9)
        assert m["val_accuracy"] == row["val_accuracy"]


@pytest.mark.realdata
def test_retrain_epochs_same_steps_keeps_the_number_of_sgd_steps(write_config, fashion_dir, tmp_path):
    cfg = write_config(TRAIN.format(dtype="float32", extra="") + GRID + "  retrain_epochs: same_steps\n")
    r = _cli("grid", "--config", cfg, "--out", tmp_path / "g", "--jobs", "1")
    assert r.exit_code == 0, r.output
    best = json.loads((tmp_path / "g/best.json").read_text())
    m = json.loads((tmp_path / "g/metrics.json").read_text())
    n_train, n_all = 4 * 6000 * 4 // 5, 4 * 6000  # 4 classes; 20% held out for the search
    steps = best["epochs"] * batches_per_epoch(n_train, best["batch_size"])
    assert best["retrained_steps"] == m["iterations"] == steps
    assert m["epochs_run"] == math.ceil(steps / batches_per_epoch(n_all, best["batch_size"]))
    assert m["trained_on"] == "train+val"


@pytest.mark.realdata
def test_a_grid_where_every_setting_diverges_is_one_line_and_exit_2(write_config, fashion_dir, tmp_path):
    cfg = write_config(TRAIN.format(dtype="float32", extra="") +
                       "grid:\n  batch_size: [512]\n  learning_rate: [1.0e+5, 2.0e+5]\n  epochs: [1, 2]\n  alpha: [10.0]\n")
    r = CliRunner().invoke(cli, ["grid", "--config", str(cfg), "--out", str(tmp_path / "g"), "-q", "--no-plots"])
    assert r.exit_code == 2
    assert r.output.strip().endswith("every setting of the grid diverged; try smaller learning rates.")
    rows = read_csv(tmp_path / "g/grid.csv")  # the search itself is kept
    assert all(row["diverged"] and row["val_ce"] is None for row in rows)
    assert not (tmp_path / "g/metrics.json").exists()


@pytest.mark.realdata
def test_a_retrain_that_diverges_is_reported_and_exits_1(write_config, fashion_dir, tmp_path, monkeypatch):
    """A setting can survive the search on the training split and still diverge on train+val (other
    batches); here the retrain is made to diverge: |1 - lr * alpha| = 1e6 per step."""
    import dlhw.training.run as tr

    orig = tr.train_run

    def exploding(cfg, **kw):
        return orig(cfg.replace(train={"learning_rate": 1e5, "alpha": 10.0}), **kw)

    monkeypatch.setattr(tr, "train_run", exploding)  # what the grid's retrain calls
    cfg = write_config(TRAIN.format(dtype="float32", extra="") + GRID)
    r = CliRunner().invoke(cli, ["grid", "--config", str(cfg), "--out", str(tmp_path / "g"), "-q", "--no-plots"])
    assert r.exit_code == 1, r.output
    assert "retrained on train+val: diverged" in r.output and "Traceback" not in r.output
    m = json.loads((tmp_path / "g/metrics.json").read_text())
    assert m["diverged"] and m["test_ce"] is None
    assert json.loads((tmp_path / "g/best.json").read_text())["val_ce"] is not None


def test_select_by_accuracy_takes_the_most_accurate_even_when_ce_ranks_otherwise():
    rows = [{"id": 0, "val_ce": 0.30, "val_accuracy": 0.88, "diverged": False},
            {"id": 1, "val_ce": 0.35, "val_accuracy": 0.90, "diverged": False},
            {"id": 2, "val_ce": 0.25, "val_accuracy": 0.87, "diverged": False},
            {"id": 3, "val_ce": None, "val_accuracy": None, "diverged": True},
            {"id": 4, "val_ce": 0.40, "val_accuracy": 0.90, "diverged": False}]
    assert select(rows, "val_ce")["id"] == 2
    assert select(rows, "val_accuracy")["id"] == 1  # the first of the two at 0.90
    assert [r["id"] for r in rank(rows, "val_accuracy")] == [1, 4, 0, 2]
    assert select([rows[3]], "val_ce") is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stack_metrics_follow_the_one_metric_rule(dtype):
    """The stack's compiled evaluation equals layers.cross_entropy on the true logits, ties included."""
    rng = np.random.default_rng(5)
    n, d, K, S = 9000, 6, 4, 5  # more rows than one evaluation chunk
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, K, n)
    V = rng.normal(size=(d, (K - 1) * S)).astype(dtype)
    V[:, 4::S] = 0  # setting 4: zero weights, every row a 4-way tie
    c, b = rng.uniform(0.5, 2, S), rng.normal(size=(K, S)).astype(dtype)
    b[:, 4] = 0
    ce, acc = stack_metrics(X, y, V, c, b)
    W = (V.reshape(d, K - 1, S) * c.astype(dtype))
    W = np.concatenate([W, -W.sum(axis=1, keepdims=True)], axis=1)  # (d, K, S)
    for s in range(S):
        z = X @ W[:, :, s] + b[:, s]
        ref_ce, ref_correct = cross_entropy(z, y)
        assert ce[s] == pytest.approx(ref_ce / n, rel=1e-6 if dtype == np.float32 else 1e-12)
        assert acc[s] == ref_correct / n
    assert acc[4] == np.mean(y == 0)
