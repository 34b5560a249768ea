"""The MLP: gradients end to end, the L2 convention, eval vs training mode, batch-norm state,
float32 vs float64, saving, and `dlhw train`/`dlhw eval` on real and MNIST-named data."""
import dataclasses
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw import data
from dlhw.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from dlhw.cli import cli
from dlhw.config import TrainConfig, load_config
from dlhw.models.gradcheck import check_model_gradients
from dlhw.models.layers import BN_EPS, softmax_cross_entropy
from dlhw.models.mlp import MLP, init_std
from dlhw.models import build_model
from dlhw.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["mlp_fashion.yaml", "mlp_mnist.yaml", "mlp_grid_small.yaml"]


def toy(n=6, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def model(seed=1, d=5, k=3, hidden=(6, 4), randomise=True, **kw):
    """A float64 MLP; with `randomise`, biases/gamma/beta random too (no relu exactly at a kink)."""
    kw.setdefault("dtype", np.float64)
    m = MLP(d, k, hidden, rng=np.random.default_rng(seed), **kw)
    if randomise:
        rng = np.random.default_rng(seed + 100)
        for name, p in m.params.items():
            if not name.startswith("W"):
                p += rng.normal(scale=0.5, size=p.shape).astype(p.dtype)
    return m


def reference_scores(m: MLP, X: np.ndarray) -> np.ndarray:
    """Naive eval-mode forward pass, one example and one unit at a time (relu only)."""
    out = np.zeros((X.shape[0], m.params[f"W{m.n_layers}"].shape[1]))
    for i, x in enumerate(X):
        h = x
        for l in range(1, m.n_layers + 1):
            W = m.params[f"W{l}"]
            a = np.array([sum(h[j] * W[j, u] for j in range(len(h))) for u in range(W.shape[1])])
            if l == m.n_layers:
                h = a + m.params[f"b{l}"]
                break
            if m.batch_norm:
                mu, var = m.running[f"mean{l}"], m.running[f"var{l}"]
                a = m.params[f"gamma{l}"] * (a - mu) / np.sqrt(var + BN_EPS) + m.params[f"beta{l}"]
            else:
                a = a + m.params[f"b{l}"]
            h = np.maximum(a, 0)
        out[i] = h
    return out


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("batch_norm, dropout, dropout_kind", [
    (False, 0.0, "bernoulli"), (True, 0.3, "bernoulli"), (True, 0.3, "gaussian"), (False, 0.5, "gaussian"),
])
def test_network_gradients_match_finite_differences(activation, batch_norm, dropout, dropout_kind):
    X, y = toy()
    m = model(activation=activation, batch_norm=batch_norm, dropout=dropout, dropout_kind=dropout_kind,
              alpha=0.2)
    errs = check_model_gradients(m, X, y)
    assert set(errs) == set(m.params)
    assert max(errs.values()) < 1e-6, errs


def test_three_hidden_layers_xavier_leaky_gradients():
    X, y = toy(n=7, d=4, k=5, seed=3)
    m = model(d=4, k=5, hidden=(5, 6, 3), activation="leaky_relu", leaky_slope=0.1, init="xavier",
              batch_norm=True, dropout=0.2, alpha=0.05)
    errs = check_model_gradients(m, X, y)
    assert max(errs.values()) < 1e-6, errs


def test_l2_convention_weights_only():
    X, y = toy()
    kw = dict(batch_norm=True, dropout=0.3)
    m0, m1 = model(alpha=0.0, **kw), model(alpha=0.3, **kw)
    l0, g0 = m0.loss(X, y, rng=np.random.default_rng(0))
    l1, g1 = m1.loss(X, y, rng=np.random.default_rng(0))
    assert l1 == l0  # loss() is the data loss; the penalty is separate
    assert m1.decayed == ("W1", "W2", "W3")
    sq = sum(float((m1.params[k] ** 2).sum()) for k in m1.decayed)
    assert m1.penalty() == pytest.approx(0.15 * sq, rel=1e-12)
    for k in m1.params:
        extra = 0.3 * m1.params[k] if k.startswith("W") else 0.0
        np.testing.assert_allclose(g1[k], g0[k] + extra, rtol=1e-12, atol=1e-15)


def test_params_with_and_without_batch_norm():
    assert list(model(batch_norm=False).params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    m = model(batch_norm=True)
    assert list(m.params) == ["W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"]
    assert [p.shape for p in m.params.values()] == [(5, 6), (6,), (6,), (6, 4), (4,), (4,), (4, 3), (3,)]
    assert sorted(m.running) == ["mean1", "mean2", "var1", "var2"]


def test_loss_at_init_is_near_ln_k_and_matches_softmax_ce():
    X, y = toy(n=50, d=20, k=10)
    m = model(d=20, k=10, hidden=(30,), randomise=False, init="xavier")
    loss, _ = m.loss(X, y)
    assert loss == pytest.approx(softmax_cross_entropy(m.loss(X), y)[0], rel=1e-12)  # no dropout, no BN
    assert 1.5 < loss < 4.0  # ln 10 = 2.30 give or take the random weights


# --------------------------------------------------------------------------- modes


def test_eval_mode_is_deterministic_and_matches_naive_forward():
    X, y = toy(n=4)
    m = model(dropout=0.5)
    s1, s2 = m.loss(X), m.loss(X)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(s1, reference_scores(m, X), rtol=1e-10)
    t1, _ = m._forward_train(X, np.random.default_rng(0))
    t2, _ = m._forward_train(X, np.random.default_rng(1))
    assert not np.allclose(t1, t2)  # training mode does drop units, differently per rng
    assert not np.allclose(t1, s1)


def test_dropout_in_training_needs_an_rng():
    X, y = toy()
    with pytest.raises(ValueError, match="needs an rng"):
        model(dropout=0.2).loss(X, y)
    model(dropout=0.0).loss(X, y)  # no dropout: no rng needed


def test_batch_norm_running_statistics_updated_in_training_and_used_in_eval():
    X, y = toy(n=20)
    m = model(batch_norm=True)
    a1 = X @ m.params["W1"]
    m.loss(X, y)
    np.testing.assert_allclose(m.running["mean1"], 0.1 * a1.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.running["var1"], 0.9 + 0.1 * a1.var(0), rtol=1e-12)
    for _ in range(60):
        m.loss(X, y)
    np.testing.assert_allclose(m.running["mean1"], a1.mean(0), rtol=1e-2)
    before = {k: v.copy() for k, v in m.running.items()}
    scores = m.loss(X)
    for k in m.running:
        np.testing.assert_array_equal(m.running[k], before[k])  # eval mode does not update them
    np.testing.assert_allclose(scores, reference_scores(m, X), rtol=1e-10)
    np.testing.assert_allclose(m.loss(X[:1]), scores[:1], rtol=1e-12)  # a row's score ignores its batch


def test_float32_agrees_with_float64():
    X, y = toy(n=64, d=30, k=10, seed=4)
    kw = dict(d=30, k=10, hidden=(40, 20), batch_norm=True, dropout=0.2, alpha=1e-3)
    m64, m32 = model(**kw), model(dtype=np.float32, **kw)
    for k in m64.params:
        np.testing.assert_allclose(m32.params[k], m64.params[k], rtol=1e-6, atol=1e-7)  # same initial numbers
    l64, g64 = m64.loss(X, y, rng=np.random.default_rng(0))
    X32 = X.astype(np.float32)
    l32, g32 = m32.loss(X32, y, rng=np.random.default_rng(0))
    assert l32 == pytest.approx(l64, rel=1e-5)
    for k in g64:
        assert g32[k].dtype == np.float32, k  # no float64 upcasts anywhere in the hot path
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-5 * np.abs(g64[k]).max())
    for k, v in m32.running.items():
        assert v.dtype == np.float32
        np.testing.assert_allclose(v, m64.running[k], rtol=1e-4, atol=1e-6)
    s32 = m32.loss(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, m64.loss(X), rtol=1e-3, atol=1e-4)


def test_loss_does_not_mutate_inputs():
    X, y = toy()
    X0, y0 = X.copy(), y.copy()
    m = model(batch_norm=True, dropout=0.3, alpha=0.1)
    m.loss(X, y, rng=np.random.default_rng(0))
    m.loss(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# --------------------------------------------------------------------------- init, state


def test_init_formulas_and_seeding():
    big = MLP(2000, 10, (1000,), rng=np.random.default_rng(0), dtype=np.float64)
    assert big.params["W1"].std() == pytest.approx(np.sqrt(2 / 2000), rel=0.01)
    assert big.params["W2"].std() == pytest.approx(np.sqrt(2 / 1000), rel=0.05)
    assert init_std("he", 100, 7, "leaky_relu", 1.0) == pytest.approx(np.sqrt(1 / 100))
    assert init_std("xavier", 300, 100) == pytest.approx(np.sqrt(2 / 400))
    x = MLP(2000, 10, (1000,), init="xavier", rng=np.random.default_rng(0))
    assert x.params["W1"].std() == pytest.approx(np.sqrt(2 / 3000), rel=0.01)
    assert not x.params["b1"].any()
    a, b = (MLP(5, 3, (4,), rng=np.random.default_rng(s)) for s in (7, 7))
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    c = MLP(5, 3, (4,), rng=np.random.default_rng(8))
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_state_round_trip_includes_running_statistics():
    X, y = toy(n=10)
    m = model(batch_norm=True, dropout=0.2)
    for s in range(3):
        m.loss(X, y, rng=np.random.default_rng(s))
    arrays = m.state()
    assert {"bn_mean1", "bn_var1", "bn_mean2", "bn_var2", "param_W1", "param_gamma1"} <= set(arrays)
    fresh = model(seed=9, batch_norm=True, dropout=0.2)
    fresh.load_state(arrays)
    np.testing.assert_array_equal(fresh.loss(X), m.loss(X))
    with pytest.raises(ValueError, match=r"param_W1 has shape \(5, 6\), the config needs \(5, 8\)"):
        model(hidden=(8, 4), batch_norm=True).load_state(arrays)
    with pytest.raises(KeyError):
        model(batch_norm=True).load_state({k: v for k, v in arrays.items() if k != "bn_var2"})


def test_from_config_and_first_layer():
    cfg = load_config(ROOT / "configs" / "mlp_fashion.yaml")
    m = build_model(cfg, 784, 10)
    assert isinstance(m, MLP) and m.hidden == tuple(cfg.model.hidden)
    assert m.first_layer().shape == (784, cfg.model.hidden[0])
    assert m.first_layer().dtype == np.float32
    again = build_model(cfg, 784, 10)
    np.testing.assert_array_equal(again.params["W1"], m.params["W1"])  # seeded by train.seed


# --------------------------------------------------------------------------- training


def blobs(n=400, d=10, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2, size=(k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_fit_learns_blobs_with_batch_norm_and_dropout():
    X, y = blobs()
    m = MLP(10, 4, (32, 16), batch_norm=True, dropout=0.2, alpha=1e-4, rng=np.random.default_rng(0),
            dtype=np.float64)
    cfg = TrainConfig(batch_size=32, learning_rate=0.05, epochs=8, optimizer="momentum", momentum=0.9)
    h = fit(m, (X, y), cfg, {"test": (X, y)})
    assert not h.diverged
    assert h.rows[-1]["train_accuracy"] > 0.97
    assert h.rows[-1]["train_ce"] < 0.5 * h.rows[0]["train_ce"]


def test_evaluation_points_do_not_change_training():
    """Eval mode draws no dropout masks and leaves BN statistics alone, so eval_every is free of side effects."""
    X, y = blobs(n=120)
    runs = []
    for every in (None, 3):
        m = MLP(10, 4, (16,), batch_norm=True, dropout=0.3, rng=np.random.default_rng(0), dtype=np.float64)
        cfg = TrainConfig(batch_size=16, learning_rate=0.05, epochs=2, optimizer="momentum", eval_every=every)
        h = fit(m, (X, y), cfg, {"test": (X, y)})
        runs.append((m.state(), h))
    (a, ha), (b, hb) = runs
    assert len(hb.rows) > len(ha.rows)
    assert ha.batch_loss == hb.batch_loss
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_fit_solves_xor():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    m = MLP(2, 2, (8,), activation="tanh", init="xavier", rng=np.random.default_rng(0), dtype=np.float64)
    fit(m, (X, y), TrainConfig(batch_size=4, learning_rate=0.2, epochs=300, alpha=0.0, optimizer="momentum"))
    np.testing.assert_array_equal(m.predict(X), y)
    assert m.evaluate(X, y)["ce"] < 0.05


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_validate_and_every_value_is_commented(name):
    path = ROOT / "configs" / name
    cfg = load_config(path)
    assert cfg.model.kind == "mlp"
    assert cfg.train.optimizer == "momentum" and cfg.train.eval_every
    for line in path.read_text().splitlines():
        if re.match(r"\s*[\w]+:\s*\S", line) and not line.lstrip().startswith("#"):
            assert "#" in line, f"{name}: value without a comment: {line!r}"


def test_grid_config_is_small():
    cfg = load_config(ROOT / "configs" / "mlp_grid_small.yaml")
    assert cfg.grid is not None and cfg.grid.size == 4
    assert len(cfg.grid.learning_rate) == 2 and len(cfg.grid.alpha) == 2


# --------------------------------------------------------------------------- CLI


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


# Two epochs on the real data, small enough for the test budget (a ~2-core machine).
MLP_FAST = [f"--set={kv}" for kv in (
    "data.val_fraction=0.2", "model.hidden=[128]", "model.batch_norm=true", "model.dropout=0.1",
    "train.batch_size=128", "train.learning_rate=0.05", "train.epochs=2", "train.eval_every=150")]


@pytest.fixture(scope="module")
def mlp_and_softmax_runs(tmp_path_factory, fashion_dir):
    out = tmp_path_factory.mktemp("runs")
    invoke("train", "--config", ROOT / "configs" / "mlp_fashion.yaml", "--out", out / "mlp",
           "--data-dir", fashion_dir, "-q", "--no-plots", *MLP_FAST)
    invoke("train", "--config", ROOT / "configs" / "softmax_train.yaml", "--out", out / "softmax",
           "--data-dir", fashion_dir, "-q", "--no-plots", "--set", "train.epochs=2")
    return out / "mlp", out / "softmax"


@pytest.mark.realdata
def test_mlp_beats_softmax_after_two_epochs(mlp_and_softmax_runs):
    mlp_dir, soft_dir = mlp_and_softmax_runs
    mlp = json.loads((mlp_dir / "metrics.json").read_text())
    soft = json.loads((soft_dir / "metrics.json").read_text())
    assert mlp["epochs_run"] == soft["epochs_run"] == 2
    assert mlp["test_accuracy"] > soft["test_accuracy"] + 0.01, (mlp["test_accuracy"], soft["test_accuracy"])
    assert mlp["test_accuracy"] > 0.84


@pytest.mark.realdata
def test_mlp_run_folder_curves_and_eval(mlp_and_softmax_runs, fashion_dir):
    run, _ = mlp_and_softmax_runs
    metrics = json.loads((run / "metrics.json").read_text())
    n_iter = (run / "iterations.csv").read_text().strip().count("\n")
    assert n_iter == metrics["iterations"] == 2 * 375  # 48,000 / 128 per epoch
    hist = (run / "history.csv").read_text().splitlines()
    assert len(hist) - 1 == 2 + 4  # every 150 iterations (150, 300, 450, 600) plus 2 epoch ends
    assert "test_ce" in hist[0]
    with np.load(run / "model.npz") as z:
        assert z["param_W1"].shape == (784, 128) and z["param_W1"].dtype == np.float32
        assert z["bn_var1"].shape == (128,) and not np.allclose(z["bn_var1"], 1.0)
    for split in ("test", "val"):
        invoke("eval", "--run", run, "--split", split, "--data-dir", fashion_dir)
        got = json.loads((run / f"eval-{split}.json").read_text())
        assert got == {f"{split}_ce": metrics[f"{split}_ce"], f"{split}_accuracy": metrics[f"{split}_accuracy"]}


def idx(arr: np.ndarray) -> bytes:
    magic = IMAGES_MAGIC if arr.ndim == 3 else LABELS_MAGIC
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


def fake_mnist(folder: Path, n_train=300, n_test=100) -> dict[str, data.FileSpec]:
    """Gzipped MNIST-named IDX files of 28x28 images: digit d lights up row block d.

    Returns the FileSpecs (names, payload SHA-256, sizes) those files would have in the registry.
    """
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    specs = {}
    names = {k: fs.filename for k, fs in data.REGISTRY["mnist"].files.items()}
    for part, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        X = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, d in enumerate(y):
            X[i, 2 * d + 4:2 * d + 6, 4:24] = 255
        for key, arr in ((f"{part}_images", X), (f"{part}_labels", y)):
            raw = idx(arr)
            (folder / f"{names[key]}.gz").write_bytes(gzip.compress(raw))
            specs[key] = data.FileSpec(names[key], hashlib.sha256(raw).hexdigest(), len(raw))
    return specs


def test_mnist_config_trains_on_mnist_files(tmp_path, monkeypatch):
    """configs/mlp_mnist.yaml on MNIST-named files, checksums verified against a patched registry
    (the loader itself is unchanged); in float64, the other supported dtype."""
    specs = fake_mnist(tmp_path / "mnist")
    monkeypatch.setitem(data.REGISTRY, "mnist", dataclasses.replace(data.REGISTRY["mnist"], files=specs))
    monkeypatch.setenv("DLHW_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    r = invoke("train", "--config", ROOT / "configs" / "mlp_mnist.yaml", "--data-dir", tmp_path / "mnist",
               "--out", out, "-q", "--no-plots", "--set", "train.epochs=3", "--set", "train.batch_size=32",
               "--set", "train.dtype=float64")
    assert "mlp on mnist, 3 epochs" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == [str(d) for d in range(10)]
    assert metrics["test_accuracy"] > 0.9  # the row blocks are easy to tell apart
    with np.load(out / "model.npz") as z:
        assert z["param_W1"].dtype == np.float64 and z["param_W1"].shape == (784, 256)
    invoke("eval", "--run", out, "--data-dir", tmp_path / "mnist")
    assert json.loads((out / "eval-test.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
