"""Training loop: shuffling contract, divergence, determinism, eval == train metrics."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.config import TrainConfig
from dlhw.models import SoftmaxRegression
from dlhw.store.files import load_npz
from dlhw.training.loop import fit
from dlhw.training.rules import epoch_permutation


def blobs(n=300, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_permutation_depends_only_on_seed_and_epoch():
    a = epoch_permutation(100, 3, 2)
    np.testing.assert_array_equal(a, epoch_permutation(100, 3, 2))
    assert not np.array_equal(a, epoch_permutation(100, 3, 3))
    assert not np.array_equal(a, epoch_permutation(100, 4, 2))
    assert sorted(a) == list(range(100))


def test_last_partial_batch_is_kept():
    X, y = blobs(n=103)
    h = fit(SoftmaxRegression(6, 3, 0.0, np.float64), (X, y), TrainConfig(batch_size=10, epochs=2))
    assert h.iterations == 2 * 11
    assert len(h.batch_loss) == 22


def test_sgd_learns_separable_blobs_and_history_is_per_epoch():
    X, y = blobs()
    m = SoftmaxRegression(6, 3, 1e-4, np.float64)
    h = fit(m, (X, y), TrainConfig(batch_size=32, learning_rate=0.1, epochs=5), {"val": (X, y)})
    assert [r["epoch"] for r in h.rows] == [1, 2, 3, 4, 5]
    assert h.rows[-1]["val_accuracy"] > 0.95
    assert h.rows[-1]["train_ce"] < h.rows[0]["train_ce"]


def test_eval_every_adds_intermediate_points():
    X, y = blobs(n=100)
    cfg = TrainConfig(batch_size=10, epochs=2, eval_every=4)
    h = fit(SoftmaxRegression(6, 3, 0.0, np.float64), (X, y), cfg, {"test": (X, y)})
    its = [r["iteration"] for r in h.rows]
    assert its == [4, 8, 10, 12, 16, 20]
    assert all("test_ce" in r for r in h.rows)


def test_divergence_stops_training_without_warnings():
    X, y = blobs()
    cfg = TrainConfig(batch_size=16, learning_rate=1e4, alpha=1.0, epochs=50)  # lr*alpha > 2: explodes
    with np.errstate(all="raise"):  # fit must contain its own floating-point errors
        h = fit(SoftmaxRegression(6, 3, 1.0, np.float32), (X.astype(np.float32), y), cfg)
    assert h.diverged and h.diverged_epoch is not None and h.epochs_run == h.diverged_epoch < 50


def _iterates(X, y, cfg):
    """The weights after every SGD step, epoch by epoch, from a plain loop of the same math."""
    m = SoftmaxRegression(6, 3, cfg.alpha, np.float64)
    out = []
    for epoch in range(1, cfg.epochs + 1):
        order, ws = epoch_permutation(len(y), cfg.seed, epoch), []
        for s in range(0, len(y), cfg.batch_size):
            _, g = m.loss(X[order[s:s + cfg.batch_size]], y[order[s:s + cfg.batch_size]])
            for k in m.params:
                m.params[k] -= cfg.learning_rate * g[k]
            ws.append({k: w.copy() for k, w in m.params.items()})
        out.append(ws)
    return out


def test_epoch_average_reports_the_mean_of_each_epochs_iterates():
    X, y = blobs(n=100)
    cfg = TrainConfig(batch_size=10, learning_rate=0.5, alpha=1e-3, epochs=3, average="epoch", eval_every=4)
    m = SoftmaxRegression(6, 3, cfg.alpha, np.float64)
    h = fit(m, (X, y), cfg, {"val": (X, y)})
    its = _iterates(X, y, cfg)
    mean = {k: np.mean([w[k] for w in its[-1]], axis=0) for k in m.params}
    np.testing.assert_allclose(m.params["W"], mean["W"], atol=1e-12)  # the returned model: last epoch's mean
    np.testing.assert_allclose(m.params["b"], mean["b"], atol=1e-12)
    ref = SoftmaxRegression(6, 3, cfg.alpha, np.float64)
    for r in h.rows:  # every point evaluates the mean of its epoch's iterates so far
        e, k = int(np.ceil(r["epoch"])), (r["iteration"] - 1) % 10 + 1
        ref.params = {p: np.mean([w[p] for w in its[e - 1][:k]], axis=0) for p in m.params}
        assert r["val_ce"] == pytest.approx(ref.evaluate(X, y)["ce"], abs=1e-12)
    last = {k: its[-1][-1][k] for k in m.params}  # the last iterate is not what is reported
    assert np.abs(m.params["W"] - last["W"]).max() > 1e-3


def test_epoch_average_ends_on_max_steps_mid_epoch():
    X, y = blobs(n=100)
    cfg = TrainConfig(batch_size=10, learning_rate=0.5, epochs=3, average="epoch", alpha=0.0)
    m = SoftmaxRegression(6, 3, 0.0, np.float64)
    h = fit(m, (X, y), cfg, max_steps=14)
    assert h.iterations == 14 and [r["epoch"] for r in h.rows] == [1, 2]
    its = _iterates(X, y, cfg)
    np.testing.assert_allclose(m.params["W"], np.mean([w["W"] for w in its[1][:4]], axis=0), atol=1e-12)


def test_momentum_optimizer_runs_and_learns():
    X, y = blobs()
    m = SoftmaxRegression(6, 3, 0.0, np.float64)
    h = fit(m, (X, y), TrainConfig(batch_size=32, learning_rate=0.05, epochs=3, optimizer="momentum"))
    assert h.rows[-1]["train_accuracy"] > 0.95


# ---------------------------------------------------------------- on the real Fashion-MNIST

def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.realdata
def test_same_config_gives_bit_identical_results(fast_config, tmp_path):
    cfg = fast_config(epochs=1)
    for out in ("a", "b"):
        assert _run(["train", "--config", str(cfg), "--out", str(tmp_path / out), "-q", "--no-plots"]).exit_code == 0
    ma = json.loads((tmp_path / "a/metrics.json").read_text())
    mb = json.loads((tmp_path / "b/metrics.json").read_text())
    ma.pop("seconds"), mb.pop("seconds")
    assert ma == mb
    wa, wb = load_npz(tmp_path / "a/model.npz"), load_npz(tmp_path / "b/model.npz")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert (tmp_path / "a/history.csv").read_bytes() == (tmp_path / "b/history.csv").read_bytes()


@pytest.mark.realdata
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eval_equals_train_metrics(fast_config, tmp_path, dtype):
    run = tmp_path / "run"
    assert _run(["train", "--config", str(fast_config(1, dtype)), "--out", str(run), "-q", "--no-plots"]).exit_code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("test", "val", "train"):
        r = _run(["eval", "--run", str(run), "--split", split])
        assert r.exit_code == 0, r.output
        ev = json.loads((run / f"eval-{split}.json").read_text())
        assert ev == {f"{split}_ce": metrics[f"{split}_ce"], f"{split}_accuracy": metrics[f"{split}_accuracy"]}


@pytest.mark.realdata
def test_end_to_end_train_on_fashion_mnist(fast_config, tmp_path):
    run = tmp_path / "run"
    r = _run(["train", "--config", str(fast_config(epochs=3)), "--out", str(run), "-q"])
    assert r.exit_code == 0, r.output
    assert "test" in r.output and "%" in r.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.80
    assert m["epochs_run"] == 3 and m["diverged"] is False
    assert 0 < m["train_ce"] < m["test_ce"] < 1.0
    assert np.array(m["test_confusion"]).sum() == 10000
    for f in ("config.yaml", "history.csv", "iterations.csv", "model.npz", "manifest.json", "report.md",
              "figures/loss_curves.png", "figures/loss_iterations.png", "figures/weights.png"):
        assert (run / f).is_file(), f
    man = json.loads((run / "manifest.json").read_text())
    assert man["data_sha256"]["train_images"].startswith("c59f468a")
    assert {"dlhw", "python", "numpy", "blas", "started", "finished", "command"} <= set(man)
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,iteration,train_ce") and len(rows) == 4
    z = load_npz(run / "model.npz")
    assert z["param_W"].shape == (784, 10) and z["param_W"].dtype == np.float32
    assert list(z["classes"])[0] == "T-shirt/top" and str(z["pre_kind"]) == "scale"


@pytest.mark.realdata
def test_averaged_train_on_fashion_mnist_says_so_and_eval_reproduces_it(fast_config, tmp_path):
    run = tmp_path / "avg"
    r = _run(["train", "--config", str(fast_config(epochs=1)), "--set", "train.average=epoch", "--out", str(run),
              "-q", "--no-plots"])
    assert r.exit_code == 0, r.output
    assert ", 1 epoch, weights averaged over the last epoch, " in r.output
    m = json.loads((run / "metrics.json").read_text())
    e = _run(["eval", "--run", str(run)])
    assert e.exit_code == 0, e.output
    assert json.loads((run / "eval-test.json").read_text())["test_ce"] == m["test_ce"]  # the saved model is the mean


@pytest.mark.realdata
def test_diverging_run_exits_1_with_advice(fast_config, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--config", str(fast_config(2)), "--out", str(run), "-q", "--no-plots",
                                 "--set", "train.learning_rate=1e4", "--set", "train.alpha=1"])
    assert r.exit_code == 1
    assert "diverged at epoch 1" in r.output and "smaller learning rate" in r.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["diverged"] is True and m["diverged_epoch"] == 1 and m["test_ce"] is None
    assert "RuntimeWarning" not in r.output
