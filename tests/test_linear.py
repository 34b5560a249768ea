"""Linear and logistic regression: gradients, Newton's method, stability, and the four configs end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.models.gradcheck import check_model_gradients
from dlhw.models.layers import sigmoid
from dlhw.models.linear import LinearRegression, LogisticRegression, binary_cross_entropy, newton_step_mse
from dlhw.store.files import load_npz, read_csv

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def toy(n=12, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, 2, n)


def random_model(cls, d=4, alpha=0.0, seed=1):
    rng = np.random.default_rng(seed)
    return cls(rng.normal(size=(d, 1)), rng.normal(size=1), alpha)


@pytest.mark.parametrize("cls", [LinearRegression, LogisticRegression])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gradients_match_finite_differences(cls, alpha):
    X, y = toy()
    errs = check_model_gradients(random_model(cls, alpha=alpha), X, y)
    assert max(errs.values()) < 1e-7, errs


def test_linear_objective_and_mse_conventions():
    X, y = toy()
    m = random_model(LinearRegression, alpha=0.5)
    r = X @ m.params["W"][:, 0] + m.params["b"][0] - y
    loss, grads = m.loss(X, y)
    assert loss == pytest.approx(0.5 * np.mean(r ** 2), rel=1e-14)  # 1/(2n) sum r^2
    assert m.evaluate(X, y)["mse"] == pytest.approx(np.mean(r ** 2), rel=1e-14)  # 1/n sum r^2
    assert m.objective(X, y) == pytest.approx(loss + 0.25 * np.sum(m.params["W"] ** 2), rel=1e-14)
    np.testing.assert_allclose(grads["b"], [r.mean()], rtol=1e-14)  # bias not penalised


def test_logistic_matches_naive_formula_and_is_stable():
    X, y = toy()
    m = random_model(LogisticRegression)
    z = X @ m.params["W"][:, 0] + m.params["b"][0]
    naive = -np.mean(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
    assert m.evaluate(X, y)["ce"] == pytest.approx(naive, rel=1e-12)
    assert m.evaluate(X, y)["accuracy"] == np.mean((z > 0) == y)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = np.array([-1e4, -800.0, 0.0, 800.0, 1e4])
        s = sigmoid(big)
        ce = binary_cross_entropy(big, np.array([1, 1, 1, 0, 0]))
    np.testing.assert_array_equal(s, [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(ce, [1e4, 800.0, np.log(2), 800.0, 1e4])


def test_newton_lands_on_the_normal_equations_in_one_step():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 5)), rng.normal(size=40)
    m = random_model(LinearRegression, d=5, alpha=0.1)
    m.newton_step(X, y)
    A = np.hstack([X, np.ones((40, 1))])
    expected = np.linalg.solve(A.T @ A / 40 + np.diag([0.1] * 5 + [0.0]), A.T @ y / 40)  # ridge, b free
    np.testing.assert_allclose(np.r_[m.params["W"][:, 0], m.params["b"]], expected, atol=1e-12)
    _, g = m.loss(X, y)
    assert np.abs(g["W"]).max() < 1e-12 and abs(g["b"][0]) < 1e-12
    # homework convention: X is d x n, w* = (X X^T)^-1 X y, from any start
    Xc = rng.normal(size=(3, 20))
    for start in (np.zeros(3), 100 * rng.normal(size=3)):
        np.testing.assert_allclose(newton_step_mse(start, Xc.T, y[:20]),
                                   np.linalg.solve(Xc @ Xc.T, Xc @ y[:20]), atol=1e-10)


def test_inputs_not_mutated():
    X, y = toy()
    X0, y0 = X.copy(), y.copy()
    for cls in (LinearRegression, LogisticRegression):
        m = random_model(cls)
        m.loss(X, y), m.evaluate(X, y), m.diagnostics(X, y)
    random_model(LinearRegression).newton_step(X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# --------------------------------------------------------------------------- through the CLI


def train(config, out, *sets):
    args = ["train", "--config", str(CONFIGS / config), "--out", str(out), "-q", "--no-plots"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "metrics.json").read_text()), read_csv(out / "history.csv")


def eval_equals_metrics(out, metrics, splits):
    for split in splits:
        r = CliRunner().invoke(cli, ["eval", "--run", str(out), "--split", split])
        assert r.exit_code == 0, r.output
        got = json.loads((out / f"eval-{split}.json").read_text())
        assert got and all(metrics[k] == v for k, v in got.items()), (got, metrics)


def test_xor_linear_config_finds_w0_b_half(tmp_path):
    out = tmp_path / "xor"
    metrics, hist = train("xor_linear.yaml", out)
    arrays = load_npz(out / "model.npz")
    assert np.abs(arrays["param_W"]).max() < 1e-12
    assert arrays["param_b"][0] == pytest.approx(0.5, abs=1e-12)
    assert metrics["train_mse"] == pytest.approx(0.25, abs=1e-12)
    assert hist[-1]["objective"] == pytest.approx(0.125, abs=1e-12)
    assert hist[-1]["grad_norm"] < 1e-12 and hist[0]["grad_norm"] > 0.1
    eval_equals_metrics(out, metrics, ["train"])
    r = CliRunner().invoke(cli, ["eval", "--run", str(out), "--split", "test"])
    assert r.exit_code == 2 and "no 'test' split" in r.output


def test_xor_with_newton_and_with_logistic(tmp_path):
    metrics, hist = train("xor_linear.yaml", tmp_path / "n", "train.optimizer=newton", "train.epochs=2")
    assert hist[0]["b"] == pytest.approx(0.5, abs=1e-12) and hist[0]["w_norm"] < 1e-12  # one step
    metrics, hist = train("xor_linear.yaml", tmp_path / "l", "model.kind=logistic", "train.epochs=50")
    assert metrics["train_accuracy"] <= 0.75  # no linear classifier gets XOR right
    assert hist[-1]["w_norm"] < 1e-6 and abs(hist[-1]["b"]) < 1e-6  # the logistic optimum is 0 too
    eval_equals_metrics(tmp_path / "l", metrics, ["train"])


@pytest.mark.realdata
def test_newton_linear_config_converges_in_one_step(tmp_path, fashion_dir):
    out = tmp_path / "newton"
    metrics, hist = train("newton_linear.yaml", out, f"data.dir={fashion_dir}", "train.epochs=2")
    assert len(hist) == 2
    assert hist[0]["grad_norm"] < 1e-10  # after one step
    assert hist[1]["objective"] == pytest.approx(hist[0]["objective"], rel=1e-12)
    assert hist[1]["train_mse"] == pytest.approx(hist[0]["train_mse"], rel=1e-12)
    assert metrics["test_mse"] < 0.06
    eval_equals_metrics(out, metrics, ["test"])


@pytest.mark.realdata
def test_logistic_l2_config_reaches_94_percent(tmp_path, fashion_dir):
    out = tmp_path / "logistic"
    metrics, hist = train("logistic_l2.yaml", out, f"data.dir={fashion_dir}")
    assert metrics["classes"] == ["Sneaker", "Ankle boot"]
    assert metrics["test_accuracy"] >= 0.94
    assert metrics["test_ce"] < 0.2
    assert sum(map(sum, metrics["test_confusion"])) == 2000
    eval_equals_metrics(out, metrics, ["train", "val", "test"])


@pytest.mark.realdata
def test_all_positive_config_bias_grows_loss_and_gradient_shrink(tmp_path, fashion_dir):
    out = tmp_path / "allpos"
    metrics, hist = train("all_positive_logistic.yaml", out, f"data.dir={fashion_dir}", "train.epochs=30")
    b, loss = np.array([r["b"] for r in hist]), np.array([r["objective"] for r in hist])
    gnorm, wnorm = np.array([r["grad_norm"] for r in hist]), np.array([r["w_norm"] for r in hist])
    assert (np.diff(b) > 0).all() and (np.diff(wnorm) > 0).all()  # b grows (it does not decrease)
    assert (np.diff(loss) < 0).all() and loss[-1] < 0.02 < 0.5 < loss[0] * 3
    assert (gnorm > 0).all() and (np.diff(gnorm) < 0).all()
    assert metrics["train_accuracy"] == 1.0 and metrics["test_accuracy"] == 1.0
    assert metrics["test_confusion"] == [[0, 0], [0, 1000]]  # one class: every label is 1
    eval_equals_metrics(out, metrics, ["train", "test"])
