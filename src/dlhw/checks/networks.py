"""Checks of the network claims: batch norm, dropout, backpropagation, the Hessian, the worked network."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dlhw.checks.core import FD_TOL, Outcome, fd_grads, fd_jacobian, jsonable, rel_error, sci
from dlhw.checks.regression import sigmoid_prime
from dlhw.models.layers import sigmoid

# --------------------------------------------------------------------------- batch normalisation


def mean_only_bn_jacobian(n: int, gamma: float) -> np.ndarray:
    """d y_i / d x_j = gamma (delta_ij - 1/n) for y_i = gamma (x_i - mean(x)) + beta."""
    return gamma * (np.eye(n) - 1.0 / n)


def bn_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, tuple]:
    """Training-mode batch norm: y = gamma (x - mu) / sqrt(var + eps) + beta; x (N, D)."""
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, np.sqrt(var + eps))


def bn_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = gamma/sigma * (dout - mean(dout) - xhat * mean(dout * xhat)), dgamma, dbeta."""
    xhat, gamma, sd = cache
    dx = gamma / sd * (dout - dout.mean(axis=0) - xhat * (dout * xhat).mean(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def check_batchnorm(mean_only_jacobian: Callable = mean_only_bn_jacobian,
                    backward: Callable = bn_backward) -> Outcome:
    """Mean-only BN: dy_i/dx_j = gamma(delta_ij - 1/n), so 0 for n = 1; full BN backward vs finite diff."""
    rng = np.random.default_rng(10)
    gamma, beta = 1.7, 0.3
    err = 0.0
    for n in (1, 2, 5):
        x = rng.standard_normal(n)
        fd = fd_jacobian(lambda v: gamma * (v - v.mean()) + beta, x)
        err = max(err, float(np.max(np.abs(mean_only_jacobian(n, gamma) - fd))))
    at_one = float(np.abs(mean_only_jacobian(1, gamma)).max())
    x, dout = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    g, bt = rng.standard_normal(3), rng.standard_normal(3)
    fd_x, fd_g, fd_b = fd_grads(lambda: float((bn_forward(x, g, bt)[0] * dout).sum()), x, g, bt)
    dx, dg, db = backward(dout, bn_forward(x, g, bt)[1])
    bn_err = max(rel_error(dx, fd_x), rel_error(dg, fd_g), rel_error(db, fd_b))
    passed = bool(err <= 1e-8 and at_one == 0 and bn_err <= FD_TOL)
    return Outcome(passed, f"mean-only {sci(err)} (n=1: {at_one:g}), BN {sci(bn_err)}", "<= 1e-8 (n=1: 0); <= 1e-7",
                   {"mean_only_max_abs_error": err, "mean_only_jacobian_n1": at_one, "bn_max_rel_error": bn_err},
                   ["with one example, x - mean(x) = 0 whatever x is: no gradient reaches the input",
                    "(full BN with n = 1 outputs beta for every x, so its input gradient is 0 too)"])


# --------------------------------------------------------------------------- dropout


def dropout_expected_grad(W: np.ndarray, x: np.ndarray, y: float, s2: float) -> np.ndarray:
    """E[dJ/dW_i] for J = 1/2 (y - sum_k d_k W_k x_k)^2, d_k ~ N(1, s2): x_i (W.x - y) + s2 x_i^2 W_i."""
    return x * (W @ x - y) + s2 * x ** 2 * W


def check_gaussian_dropout(expected_grad: Callable = dropout_expected_grad, samples: int = 400_000) -> Outcome:
    """Gaussian dropout on a linear unit: the mean gradient is the plain one + s2 x_i^2 W_i (an L2-like term)."""
    rng = np.random.default_rng(11)
    W, x, y, s2 = rng.standard_normal(5), rng.standard_normal(5), 0.7, 0.5
    d = 1 + math.sqrt(s2) * rng.standard_normal((samples, 5))
    g = ((d * W * x).sum(axis=1) - y)[:, None] * d * x  # dJ/dW_i for each draw of the mask
    mean, se = g.mean(axis=0), g.std(axis=0, ddof=1) / math.sqrt(samples)
    z = np.abs(mean - expected_grad(W, x, y, s2)) / se
    reg = lambda w: 0.5 * (y - w @ x) ** 2 + 0.5 * s2 * np.sum(x ** 2 * w ** 2)  # noqa: E731
    pen_err = rel_error(expected_grad(W, x, y, s2), fd_jacobian(lambda w: np.array([reg(w)]), W)[0])
    passed = bool(z.max() <= 4 and pen_err <= FD_TOL)
    return Outcome(passed, f"max |MC - formula|/SE = {z.max():.2f}", "<= 4 standard errors",
                   {"samples": samples, "sigma2": s2, "monte_carlo_mean": mean, "standard_error": se,
                    "formula": expected_grad(W, x, y, s2), "s2_term": s2 * x ** 2 * W, "z_scores": z,
                    "penalty_grad_rel_error": pen_err},
                   [f"MC mean  {np.round(mean, 4)}", f"formula  {np.round(expected_grad(W, x, y, s2), 4)}",
                    f"SE       {np.round(se, 4)}",
                    "= gradient of 1/2 (y - W.x)^2 + s2/2 sum_i x_i^2 W_i^2: an L2 penalty weighted by x_i^2"])


# --------------------------------------------------------------------------- backpropagation


def backprop(Ws: list, bs: list, x: np.ndarray, y: np.ndarray, act: Callable, dact: Callable,
             bp2_dact: bool = True) -> tuple[list, list]:
    """Gradients of C = 1/2 ||a^L - y||^2 by the four equations (columns: W^l is n_l x n_{l-1}).

    BP1 delta^L = (a^L - y) * s'(z^L);  BP2 delta^l = (W^{l+1})^T delta^{l+1} * s'(z^l);
    BP3 dC/db^l = delta^l;  BP4 dC/dW^l = delta^l (a^{l-1})^T.
    """
    acts, zs = [x], []
    for W, b in zip(Ws, bs):
        zs.append(W @ acts[-1] + b)
        acts.append(act(zs[-1]))
    delta = (acts[-1] - y) * dact(zs[-1])
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        dWs[l], dbs[l] = delta @ acts[l].T, delta
        if l:
            delta = Ws[l].T @ delta * (dact(zs[l - 1]) if bp2_dact else 1.0)
    return dWs, dbs


def _net_cost(Ws: list, bs: list, x: np.ndarray, y: np.ndarray, act: Callable) -> float:
    a = x
    for W, b in zip(Ws, bs):
        a = act(W @ a + b)
    return 0.5 * float(np.sum((a - y) ** 2))


def check_backprop(backprop: Callable = backprop) -> Outcome:
    """The four backprop equations on a random 4-5-3-2 network (sigmoid, and linear with s' = 1)."""
    rng = np.random.default_rng(12)
    sizes = (4, 5, 3, 2)
    Ws = [rng.standard_normal((m, n)) for n, m in zip(sizes, sizes[1:])]
    bs = [rng.standard_normal((m, 1)) for m in sizes[1:]]
    x, y = rng.standard_normal((4, 1)), rng.standard_normal((2, 1))
    acts = {"sigmoid": (sigmoid, sigmoid_prime), "linear": (lambda z: z, np.ones_like)}
    errs = {}
    for name, (f, df) in acts.items():
        dWs, dbs = backprop(Ws, bs, x, y, f, df)
        fds = fd_grads(lambda: _net_cost(Ws, bs, x, y, f), *Ws, *bs)
        errs[name] = max(rel_error(a, b) for a, b in zip([*dWs, *dbs], fds))
    # linear network: delta^1 = W2^T W3^T (a^3 - y), so dC/dW^1 = (W3 W2)^T (a^3 - y) x^T
    a3 = Ws[2] @ (Ws[1] @ (Ws[0] @ x + bs[0]) + bs[1]) + bs[2]
    closed = (Ws[2] @ Ws[1]).T @ (a3 - y) @ x.T
    errs["linear_closed_form"] = rel_error(backprop(Ws, bs, x, y, *acts["linear"])[0][0], closed)
    worst = max(errs.values())
    return Outcome(worst <= FD_TOL, f"sigmoid {sci(errs['sigmoid'])}, linear {sci(errs['linear'])}",
                   f"<= {FD_TOL:g} (finite diff.)", {"max_rel_error": errs},
                   ["linear activation (s' = 1): BP1 delta^L = a^L - y; BP2 delta^l = (W^{l+1})^T delta^{l+1};",
                    f"  dC/dW^1 = (W^3 W^2)^T (a^3 - y) x^T, rel err {sci(errs['linear_closed_form'])}"])


# --------------------------------------------------------------------------- Hessian


def _f3(v: np.ndarray) -> float:
    """f(x, y, z) = x^2 y + x sin z + e^{yz}."""
    x, y, z = v
    return x * x * y + x * math.sin(z) + math.exp(y * z)


def _grad_f3(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([2 * x * y + math.sin(z), x * x + z * math.exp(y * z), x * math.cos(z) + y * math.exp(y * z)])


def hessian_f3(v: np.ndarray) -> np.ndarray:
    """Second partial derivatives of f(x, y, z) = x^2 y + x sin z + e^{yz}."""
    x, y, z = v
    e = math.exp(y * z)
    return np.array([[2 * y, 2 * x, math.cos(z)],
                     [2 * x, z * z * e, e * (1 + y * z)],
                     [math.cos(z), e * (1 + y * z), -x * math.sin(z) + y * y * e]])


def _second_differences(f: Callable, v: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """H_ij = (f(v+h_i+h_j) - f(v+h_i-h_j) - f(v-h_i+h_j) + f(v-h_i-h_j)) / 4h^2, from f alone."""
    n, E = v.size, h * np.eye(v.size)
    return np.array([[(f(v + E[i] + E[j]) - f(v + E[i] - E[j]) - f(v - E[i] + E[j]) + f(v - E[i] - E[j]))
                      / (4 * h * h) for j in range(n)] for i in range(n)])


def check_hessian(hessian: Callable = hessian_f3) -> Outcome:
    """The Hessian is the Jacobian of the gradient, for f(x, y, z) = x^2 y + x sin z + e^{yz}."""
    rng = np.random.default_rng(13)
    jac_vs_2nd = formula = grad = 0.0
    for v in rng.uniform(-1, 1, (5, 3)):
        J = fd_jacobian(_grad_f3, v)  # Jacobian of the gradient, numerically
        H2 = _second_differences(_f3, v)  # Hessian from f alone, numerically
        jac_vs_2nd = max(jac_vs_2nd, rel_error(J, H2))
        formula = max(formula, rel_error(hessian(v), J))
        grad = max(grad, rel_error(_grad_f3(v), fd_jacobian(lambda u: np.array([_f3(u)]), v)[0]))
    passed = bool(jac_vs_2nd <= 1e-5 and formula <= FD_TOL and grad <= FD_TOL)
    return Outcome(passed, f"J(grad) vs d2f {sci(jac_vs_2nd)}, H {sci(formula)}", "<= 1e-5; <= 1e-7",
                   {"jacobian_of_grad_vs_second_differences": jac_vs_2nd, "hessian_formula_rel_error": formula,
                    "gradient_rel_error": grad, "points": 5})


# --------------------------------------------------------------------------- the worked network

NET_X, NET_T = np.array([0.05, 0.10]), np.array([0.01, 0.99])
NET_PARAMS = {  # rows: receiving neuron; columns: sending neuron
    "W_h": np.array([[0.15, 0.25], [0.20, 0.30]]),  # h1 <- (i1, i2), h2 <- (i1, i2)
    "b_h": np.array([0.35, 0.35]),
    "W_o": np.array([[0.40, 0.50], [0.45, 0.55]]),  # o1 <- (h1, h2), o2 <- (h1, h2)
    "b_o": np.array([0.60, 0.60]),
}


def _net_forward(p: dict) -> dict:
    """Sigmoid 2-2-2 network; cost = -sum_k [t_k ln o_k + (1 - t_k) ln(1 - o_k)]."""
    net_h = p["W_h"] @ NET_X + p["b_h"]
    h = sigmoid(net_h)
    net_o = p["W_o"] @ h + p["b_o"]
    o = sigmoid(net_o)
    cost = -float(np.sum(NET_T * np.log(o) + (1 - NET_T) * np.log(1 - o)))
    return {"net_h": net_h, "h": h, "net_o": net_o, "o": o, "cost": cost}


def check_worked_network(output_delta: Callable = lambda o, t: o - t) -> Outcome:
    """The worked 2-2-2 example: forward values, CE cost, and every gradient by backprop vs finite diff.

    With sigmoid outputs and CE, dC/dnet_o = o - t (the sigmoid's o(1 - o) cancels).
    """
    p = {k: v.copy() for k, v in NET_PARAMS.items()}
    fw = _net_forward(p)
    d_o = output_delta(fw["o"], NET_T)
    d_h = p["W_o"].T @ d_o * fw["h"] * (1 - fw["h"])
    grads = {"W_h": np.outer(d_h, NET_X), "b_h": d_h, "W_o": np.outer(d_o, fw["h"]), "b_o": d_o}
    fds = dict(zip(p, fd_grads(lambda: _net_forward(p)["cost"], *p.values())))
    err = max(rel_error(grads[k], fds[k]) for k in p)
    names = {"W_h": [["w(i1->h1)", "w(i2->h1)"], ["w(i1->h2)", "w(i2->h2)"]], "b_h": ["b(h1)", "b(h2)"],
             "W_o": [["w(h1->o1)", "w(h2->o1)"], ["w(h1->o2)", "w(h2->o2)"]], "b_o": ["b(o1)", "b(o2)"]}
    flat = {n: (float(p[k][i]), float(grads[k][i]), float(fds[k][i]))
            for k in p for i, n in np.ndenumerate(np.array(names[k]))}
    lines = ["forward: inputs i1 = 0.05, i2 = 0.10; targets t1 = 0.01, t2 = 0.99"]
    for j in range(2):
        lines.append(f"  net_h{j + 1} = {fw['net_h'][j]:.9f}   h{j + 1} = sigma(net_h{j + 1}) = {fw['h'][j]:.9f}")
    for j in range(2):
        lines.append(f"  net_o{j + 1} = {fw['net_o'][j]:.9f}   o{j + 1} = sigma(net_o{j + 1}) = {fw['o'][j]:.9f}")
    lines.append(f"  cost = -sum_k [t_k ln o_k + (1 - t_k) ln(1 - o_k)] = {fw['cost']:.9f}")
    lines.append(f"  dC/dnet_o = o - t = {np.array2string(d_o, precision=9)}")
    lines.append(f"{'parameter':>12} {'value':>7} {'dC/dparam (backprop)':>22} {'finite diff.':>14}")
    lines += [f"{n:>12} {v:>7.2f} {g:>22.12f} {f:>14.9f}" for n, (v, g, f) in flat.items()]
    lines.append(f"  shared biases (one b per layer): dC/db_hidden = {grads['b_h'].sum():.12f}, "
                 f"dC/db_output = {grads['b_o'].sum():.12f}")
    return Outcome(err <= FD_TOL, f"cost {fw['cost']:.6f}, grad err {sci(err)}", f"<= {FD_TOL:g} (finite diff.)",
                   {"forward": {k: jsonable(v) for k, v in fw.items()}, "output_delta": d_o,
                    "gradients": {n: g for n, (_, g, _) in flat.items()},
                    "finite_differences": {n: f for n, (_, _, f) in flat.items()}, "max_rel_error": err}, lines)

