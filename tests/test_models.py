"""Softmax regression numerics: gradients, stability, dtypes."""
import numpy as np
import pytest

from dlhw.models.gradcheck import check_model_gradients
from dlhw.models.layers import log_softmax, softmax, softmax_cross_entropy
from dlhw.models import SoftmaxRegression


def toy(n=12, d=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.1, 2.0])
def test_softmax_gradients_match_finite_differences(alpha):
    X, y = toy()
    m = SoftmaxRegression(5, 4, alpha, np.float64)
    rng = np.random.default_rng(1)
    m.params["W"][:] = rng.normal(size=(5, 4))
    m.params["b"][:] = rng.normal(size=4)
    errs = check_model_gradients(m, X, y)
    assert max(errs.values()) < 1e-7, errs


def test_loss_at_zero_weights_is_ln_k():
    X, y = toy(k=10)
    m = SoftmaxRegression(5, 10, alpha=0.5, dtype=np.float64)
    assert m.objective(X, y) == pytest.approx(np.log(10), abs=1e-12)


def test_regulariser_convention_bias_not_penalised():
    X, y = toy()
    m = SoftmaxRegression(5, 4, alpha=0.3, dtype=np.float64)
    m.params["W"][:] = 1.0
    m.params["b"][:] = 5.0
    loss, grads = m.loss(X, y)
    data_loss, dz = softmax_cross_entropy(X @ m.params["W"] + m.params["b"], y)
    assert loss == pytest.approx(data_loss)  # loss() reports the data loss; penalty() the rest
    assert m.objective(X, y) == pytest.approx(data_loss + 0.5 * 0.3 * 20.0)
    np.testing.assert_allclose(grads["W"], X.T @ dz + 0.3 * m.params["W"])
    np.testing.assert_allclose(grads["b"], dz.sum(axis=0))


def test_softmax_is_shift_invariant_and_matches_naive():
    z = np.random.default_rng(0).normal(size=(6, 10))
    naive = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(z), naive, rtol=1e-12)
    np.testing.assert_allclose(softmax(z + 1234.5), softmax(z), rtol=1e-12)


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_no_overflow_for_huge_logits(big):
    z = np.zeros((3, 10))
    z[:, 2] = big
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        p = softmax(z)
        lp = log_softmax(z)
        loss, dz = softmax_cross_entropy(z, np.array([2, 0, 5]))
    assert np.isfinite(p).all() and np.isfinite(lp).all() and np.isfinite(dz).all()
    assert np.isfinite(loss)
    if big > 0:
        assert loss == pytest.approx((0 + 1e4 + 1e4) / 3)


def test_float32_agrees_with_float64():
    X, y = toy(n=200, d=30, k=10, seed=3)
    m64 = SoftmaxRegression(30, 10, 1e-3, np.float64)
    m32 = SoftmaxRegression(30, 10, 1e-3, np.float32)
    W = np.random.default_rng(4).normal(scale=0.5, size=(30, 10))
    m64.params["W"][:] = W
    m32.params["W"][:] = W
    l64, g64 = m64.loss(X, y)
    l32, g32 = m32.loss(X.astype(np.float32), y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32["W"], g64["W"], rtol=1e-4, atol=1e-6)
    assert g32["W"].dtype == np.float32


def test_loss_does_not_mutate_inputs():
    X, y = toy()
    X0, y0 = X.copy(), y.copy()
    SoftmaxRegression(5, 4, 0.1, np.float64).loss(X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
