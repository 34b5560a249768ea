"""Every layer's backward pass against centred finite differences (float64), plus each
layer's forward maths against a naive formula."""
import numpy as np
import pytest

from dlhw.models import layers as L
from dlhw.models.gradcheck import numerical_gradient, rel_error

TOL = 1e-6  # float64, h = 1e-6: a wrong gradient is off by ~1e-1; rounding leaves < 1e-6


def rnd(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def num_grad_of(forward, x, dout):
    """Numerical d(sum(forward() * dout)) / dx: the backward pass of `forward` applied to dout."""
    return numerical_gradient(lambda: float((forward() * dout).sum()), x)


def test_affine_and_linear_backward():
    x, w, b, dout = rnd(5, 4, seed=1), rnd(4, 3, seed=2), rnd(3, seed=3), rnd(5, 3, seed=4)
    out, cache = L.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dx, dw, db = L.affine_backward(dout, cache)
    f = lambda: L.affine_forward(x, w, b)[0]  # noqa: E731
    for analytic, var in ((dx, x), (dw, w), (db, b)):
        assert rel_error(analytic, num_grad_of(f, var, dout)) < TOL
    out, cache = L.linear_forward(x, w)
    np.testing.assert_allclose(out, x @ w)
    dx2, dw2 = L.linear_backward(dout, cache)
    np.testing.assert_allclose(dx2, dx)
    np.testing.assert_allclose(dw2, dw)
    assert L.linear_backward(dout, cache, need_dx=False)[0] is None


# Inputs kept at least 1e-3 away from 0: the relu kinks are not differentiable there.
ACTS = {
    "relu": (L.relu_forward, L.relu_backward, lambda x: np.maximum(x, 0)),
    "leaky_relu": (lambda x: L.leaky_relu_forward(x, 0.01), L.leaky_relu_backward,
                   lambda x: np.where(x > 0, x, 0.01 * x)),
    "sigmoid": (L.sigmoid_forward, L.sigmoid_backward, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (L.tanh_forward, L.tanh_backward, np.tanh),
}


def away_from_zero(x):
    return np.where(np.abs(x) < 1e-3, 0.5, x)


@pytest.mark.parametrize("name", ACTS)
def test_activation_forward_and_backward(name):
    fwd, bwd, naive = ACTS[name]
    x, dout = away_from_zero(rnd(6, 5, seed=5, scale=2)), rnd(6, 5, seed=6)
    out, cache = fwd(x)
    np.testing.assert_allclose(out, naive(x), rtol=1e-12, atol=1e-300)
    dx = bwd(dout, cache)
    assert rel_error(dx, num_grad_of(lambda: fwd(x)[0], x, dout)) < TOL


def test_leaky_relu_slope_is_used():
    x = np.array([[-2.0, 3.0]])
    out, cache = L.leaky_relu_forward(x, slope=0.25)
    np.testing.assert_array_equal(out, [[-0.5, 3.0]])
    np.testing.assert_array_equal(L.leaky_relu_backward(np.ones_like(x), cache), [[0.25, 1.0]])


def test_relu_and_leaky_relu_keep_float32():
    x = rnd(3, 4).astype(np.float32)
    for fwd, bwd, _ in ACTS.values():
        out, cache = fwd(x)
        assert out.dtype == np.float32 and bwd(out, cache).dtype == np.float32


def test_sigmoid_is_stable_for_huge_inputs():
    x = np.array([[-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s, cache = L.sigmoid_forward(x)
        ds = L.sigmoid_backward(np.ones_like(x), cache)
    assert np.isfinite(s).all() and np.isfinite(ds).all()
    assert s[0, 0] == 0.0 and s[0, -1] == 1.0 and s[0, 3] == 0.5
    assert s[0, 2] == pytest.approx(np.exp(-50.0), rel=1e-12)  # the tail keeps full precision
    np.testing.assert_allclose(s + L.sigmoid(-x), 1.0)


# --------------------------------------------------------------------------- batch norm


def bn_inputs(n, m=4, seed=7):
    return rnd(n, m, seed=seed, scale=3) + 2, 1 + rnd(m, seed=seed + 1, scale=0.3), rnd(m, seed=seed + 2)


def bn_train(x, gamma, beta):
    """Training-mode batch norm on throwaway running statistics."""
    m = x.shape[1]
    return L.batchnorm_forward(x, gamma, beta, np.zeros(m), np.ones(m), train=True)


def test_batchnorm_forward_normalises_with_batch_statistics():
    x, gamma, beta = bn_inputs(50)
    out, _ = bn_train(x, np.ones(4), np.zeros(4))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), x.var(axis=0) / (x.var(axis=0) + L.BN_EPS), rtol=1e-12)
    out, _ = bn_train(x, gamma, beta)
    np.testing.assert_allclose(out, gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + L.BN_EPS) + beta, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_batchnorm_backward(n):
    x, gamma, beta = bn_inputs(n)
    dout = rnd(n, 4, seed=11)
    out, cache = bn_train(x, gamma, beta)
    dx, dgamma, dbeta = L.batchnorm_backward(dout, cache)
    f = lambda: bn_train(x, gamma, beta)[0]  # noqa: E731
    assert rel_error(dgamma, num_grad_of(f, gamma, dout)) < TOL
    assert rel_error(dbeta, num_grad_of(f, beta, dout)) < TOL
    num_dx = num_grad_of(f, x, dout)
    if n == 1:  # the output is beta whatever x is: zero gradient, exactly
        np.testing.assert_array_equal(dx, 0.0)
        np.testing.assert_array_equal(num_dx, 0.0)
        np.testing.assert_array_equal(out, beta[None, :])
    else:
        assert rel_error(dx, num_dx) < TOL
        assert np.abs(dx).max() > 1e-3


def test_batchnorm_running_statistics_update_and_eval_mode():
    x, gamma, beta = bn_inputs(30)
    rm, rv = np.full(4, 1.0), np.full(4, 2.0)
    rm0, rv0 = rm.copy(), rv.copy()
    L.batchnorm_forward(x, gamma, beta, rm, rv, train=True, momentum=0.9)
    np.testing.assert_allclose(rm, 0.9 * rm0 + 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.9 * rv0 + 0.1 * x.var(0), rtol=1e-12)
    out, cache = L.batchnorm_forward(x[:3], gamma, beta, rm, rv, train=False)
    assert cache is None
    np.testing.assert_allclose(out, gamma * (x[:3] - rm) / np.sqrt(rv + L.BN_EPS) + beta, rtol=1e-12)
    rm1 = rm.copy()
    L.batchnorm_forward(x, gamma, beta, rm, rv, train=False)
    np.testing.assert_array_equal(rm, rm1)  # eval mode leaves the running statistics alone


def test_batchnorm_does_not_mutate_its_input():
    x, gamma, beta = bn_inputs(5)
    x0 = x.copy()
    out, cache = bn_train(x, gamma, beta)
    L.batchnorm_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(x, x0)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("make_mask", [L.bernoulli_mask, L.gaussian_mask])
def test_dropout_backward_with_fixed_mask(make_mask):
    x, dout = rnd(6, 5, seed=12), rnd(6, 5, seed=13)
    mask = make_mask(x.shape, 0.4, np.random.default_rng(0), np.float64)
    out, cache = L.dropout_forward(x, mask)
    np.testing.assert_array_equal(out, x * mask)
    dx = L.dropout_backward(dout, cache)
    assert rel_error(dx, num_grad_of(lambda: L.dropout_forward(x, mask)[0], x, dout)) < TOL


def test_bernoulli_mask_is_inverted_dropout():
    p = 0.3
    mask = L.bernoulli_mask((400, 500), p, np.random.default_rng(1), np.float32)
    assert mask.dtype == np.float32 and mask.shape == (400, 500)
    values = np.unique(mask)
    assert values[0] == 0.0 and len(values) == 2
    assert values[1] == pytest.approx(1 / (1 - p), rel=2e-5)
    assert (mask == 0).mean() == pytest.approx(p, abs=0.005)
    assert mask.mean() == pytest.approx(1.0, abs=0.01)
    assert mask.var() == pytest.approx(p / (1 - p), rel=0.02)


def test_bernoulli_mask_odd_sizes_and_extreme_p():
    rng = np.random.default_rng(3)
    assert L.bernoulli_mask((3, 5), 0.5, rng).shape == (3, 5)  # 15 is not a multiple of 4
    np.testing.assert_array_equal(L.bernoulli_mask((7, 9), 1e-9, rng), 1.0)  # rounds to "keep all"
    assert (L.bernoulli_mask((100, 100), 0.99999, rng) == 0).mean() > 0.999


def test_gaussian_mask_matches_bernoulli_mean_and_variance():
    p = 0.3
    mask = L.gaussian_mask((400, 500), p, np.random.default_rng(2), np.float64)
    assert mask.dtype == np.float64
    assert mask.mean() == pytest.approx(1.0, abs=0.01)
    assert mask.var() == pytest.approx(p / (1 - p), rel=0.02)  # = the bernoulli mask's variance


def test_masks_come_from_the_given_generator_only():
    a = L.bernoulli_mask((3, 4), 0.5, np.random.default_rng(5))
    b = L.bernoulli_mask((3, 4), 0.5, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(5)
    assert not np.array_equal(L.gaussian_mask((3, 4), 0.5, g), L.gaussian_mask((3, 4), 0.5, g))
