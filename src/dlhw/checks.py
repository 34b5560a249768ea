"""The homework's claims, each checked numerically (`dlhw check`).

A check is a function `check_*(**formulas) -> Outcome`: it computes the claim with
the formula under test (a keyword argument that defaults to the correct formula)
and compares it with a closed form or with centred finite differences. `CHECKS`
maps each name to its claim, its source in the homework and its known slips:
wrong formulas that the check must reject, so that no check passes vacuously.
Every check is deterministic (its own seeded Generator) and float64.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

from dlhw.errors import DlhwError
from dlhw.gradcheck import numerical_gradient
from dlhw.layers import softmax, softmax_cross_entropy
from dlhw.linear import LinearRegression, LogisticRegression, logistic_l2_update, newton_step_mse, sigmoid
from dlhw.models import SoftmaxRegression
from dlhw.optim import sgd
from dlhw.prepare import XOR_X
from dlhw.prepare import XOR_Y as XOR_LABELS

FD_TOL = 1e-7  # max relative error of an analytic gradient vs centred differences (h = 1e-6)


@dataclass
class Outcome:
    """What one run of a check found: a verdict, one-line summaries, and every number (for JSON)."""

    passed: bool
    computed: str
    expected: str
    numbers: dict[str, Any]
    details: list[str] = field(default_factory=list)  # lines shown by `dlhw check NAME`


@dataclass(frozen=True)
class Slip:
    """A wrong formula the check must reject: `label` says what it is, `kwargs` feed it in."""

    label: str
    kwargs: dict[str, Callable]


@dataclass(frozen=True)
class Check:
    name: str
    claim: str
    source: str
    run: Callable[..., Outcome]
    slips: tuple[Slip, ...]


@dataclass
class Result:
    """A check's outcome with the correct formula, and its outcome with each slip."""

    check: Check
    outcome: Outcome
    slips: list[tuple[Slip, Outcome]]

    @property
    def ok(self) -> bool:
        """The claim holds and every slip was caught."""
        return self.outcome.passed and not any(o.passed for _, o in self.slips)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the error relative to the gradient's scale (b is the reference).

    Normwise rather than elementwise, so that components near 0 (a softmax
    probability of 1e-5, say) are not judged by their own tiny size.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _num(x: Any) -> Any:
    """JSON-able numbers: arrays -> nested lists of floats."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    if isinstance(x, dict):
        return {k: _num(v) for k, v in x.items()}
    return x.item() if isinstance(x, np.generic) else x


def _jacobian(F: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dF/dx (m, n) of F: R^n -> R^m by centred differences."""
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e.flat[j] = h
        cols.append((np.ravel(F(x + e)) - np.ravel(F(x - e))) / (2 * h))
    return np.stack(cols, axis=1)


def _fd(f: Callable[[], float], *arrays: np.ndarray) -> list[np.ndarray]:
    """Centred-difference gradients of the scalar f() w.r.t. each array (perturbed in place)."""
    return [numerical_gradient(f, a) for a in arrays]


def _e(x: float) -> str:
    return f"{x:.1e}"


# --------------------------------------------------------------------------- softmax and CE


def naive_softmax(z: np.ndarray) -> np.ndarray:
    """exp(z) / sum exp(z) without the max shift: overflows for z > ~709."""
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_softmax_shift(softmax: Callable = softmax) -> Outcome:
    """softmax(z + c) = softmax(z) for any c (rows of z), and the stable form equals the naive one."""
    rng = np.random.default_rng(1)
    z = 3 * rng.standard_normal((8, 10))
    shifts = [-1000.0, -3.7, 2.5, 1000.0]
    with np.errstate(all="ignore"):
        base = softmax(z)
        shift_err = max(float(np.max(np.abs(softmax(z + c) - base))) for c in shifts)
        row_c = 500 * rng.standard_normal((8, 1))
        shift_err = max(shift_err, float(np.max(np.abs(softmax(z + row_c) - base))))
        naive_err = float(np.max(np.abs(base - naive_softmax(z))))  # |z| < 15: naive is safe here
    passed = bool(shift_err <= 1e-12 and naive_err <= 1e-12)
    return Outcome(passed, f"shift {_e(shift_err)}, vs naive {_e(naive_err)}", "both <= 1e-12",
                   {"shifts": shifts, "max_shift_error": shift_err, "max_error_vs_naive": naive_err})


def _ce_rows(z: np.ndarray, Y: np.ndarray) -> float:
    """sum_i CE(softmax(z_i), y_i) for one-hot rows Y."""
    return -float((Y * np.log(softmax(z))).sum())


def check_ce_gradient(grad: Callable = lambda z, Y: softmax(z) - Y) -> Outcome:
    """dCE/dz = softmax(z) - y for CE(z) = -sum_k y_k log softmax(z)_k, against finite differences."""
    rng = np.random.default_rng(2)
    z = 2 * rng.standard_normal((20, 6))
    Y = np.eye(6)[rng.integers(0, 6, 20)]
    (fd,) = _fd(lambda: _ce_rows(z, Y), z)
    err = rel_error(grad(z, Y), fd)
    return Outcome(err <= FD_TOL, f"max rel err {_e(err)}", f"<= {FD_TOL:g} (finite diff.)",
                   {"max_rel_error": err, "draws": 20, "classes": 6})


def softmax_jacobian(p: np.ndarray) -> np.ndarray:
    """d softmax / dz = diag(p) - p p^T for p = softmax(z) (K,)."""
    return np.diag(p) - np.outer(p, p)


def check_softmax_jacobian(jacobian: Callable = softmax_jacobian) -> Outcome:
    """The softmax Jacobian is diag(p) - p p^T; it is the Hessian of CE in z and is PSD (CE convex in z)."""
    rng = np.random.default_rng(3)
    fd_err = 0.0
    for _ in range(10):
        z = 2 * rng.standard_normal(5)
        y = np.eye(5)[rng.integers(0, 5)]
        J = jacobian(softmax(z[None])[0])
        fd_jac = _jacobian(lambda v: softmax(v[None])[0], z)
        fd_hess = _jacobian(lambda v: softmax(v[None])[0] - y, z)  # Jacobian of dCE/dz = Hessian of CE
        fd_err = max(fd_err, rel_error(J, fd_jac), rel_error(J, fd_hess))
    min_eig = np.inf
    for k in (2, 3, 10):
        P = softmax(4 * rng.standard_normal((1000, k)))
        H = np.stack([jacobian(p) for p in P])
        min_eig = min(min_eig, float(np.linalg.eigvalsh((H + H.transpose(0, 2, 1)) / 2).min()))
    passed = bool(fd_err <= FD_TOL and min_eig >= -1e-12)
    return Outcome(passed, f"rel err {_e(fd_err)}, min eig {min_eig:.1e}", "<= 1e-7; min eig >= -1e-12",
                   {"max_rel_error_vs_fd": fd_err, "min_eigenvalue": min_eig, "psd_draws": 3000})


def softmax_regression_grad(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray,
                            alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """grad_W = X^T (P - Y) / n + alpha W, grad_b = mean(P - Y), P = softmax(X W + b)."""
    D = softmax(X @ W + b) - Y
    return X.T @ D / len(X) + alpha * W, D.mean(axis=0)


def check_softmax_regression(grad: Callable = softmax_regression_grad) -> Outcome:
    """Softmax-regression gradients (and dlhw's SoftmaxRegression) against finite differences."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((15, 4)), rng.integers(0, 3, 15)
    m = SoftmaxRegression(4, 3, alpha=0.3, dtype=np.float64)
    m.params["W"][:], m.params["b"][:] = rng.standard_normal((4, 3)), rng.standard_normal(3)
    fd_W, fd_b = _fd(lambda: m.objective(X, y), m.params["W"], m.params["b"])
    dW, db = grad(X, np.eye(3)[y], m.params["W"], m.params["b"], 0.3)
    _, g = m.loss(X, y)
    err = max(rel_error(dW, fd_W), rel_error(db, fd_b))
    model_err = max(rel_error(g["W"], fd_W), rel_error(g["b"], fd_b))
    return Outcome(bool(err <= FD_TOL and model_err <= FD_TOL), f"formula {_e(err)}, model {_e(model_err)}",
                   f"<= {FD_TOL:g} (finite diff.)", {"max_rel_error": err, "model_max_rel_error": model_err})


def _mean_ce(Z: np.ndarray, y: np.ndarray) -> float:
    return softmax_cross_entropy(Z, y)[0]


def check_ce_is_nll(ce: Callable = _mean_ce) -> Outcome:
    """Mean CE = -(1/n) log prod_i prod_k p_ik^{y_ik}, the categorical model's negative log-likelihood."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 3))
    P_true = softmax(X @ rng.standard_normal((3, 4)))
    y = np.array([rng.choice(4, p=p) for p in P_true])  # labels drawn from the categorical model
    Z = X @ rng.standard_normal((3, 4))  # some other model's logits
    P, Y = softmax(Z), np.eye(4)[y]
    nll = -math.log(float(np.prod(P ** Y))) / len(y)  # the likelihood itself, not a sum of logs
    got = float(ce(Z, y))
    err = abs(got - nll) / nll
    return Outcome(err <= 1e-12, f"CE {got:.12f}", f"NLL {nll:.12f}", {"ce": got, "nll": nll, "rel_error": err})


# --------------------------------------------------------------------------- logistic regression


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """sigma'(z) = sigma(z) (1 - sigma(z))."""
    s = sigmoid(z)
    return s * (1 - s)


def check_sigmoid(dsigmoid: Callable = sigmoid_prime, sigmoid: Callable = sigmoid) -> Outcome:
    """sigma'(z) = sigma(z)(1 - sigma(z)) (vs finite differences of `sigmoid`) and sigma(-z) = 1 - sigma(z)."""
    z = np.r_[np.linspace(-20, 20, 81), np.random.default_rng(6).standard_normal(20)]
    with np.errstate(all="ignore"):
        fd = _jacobian(lambda v: sigmoid(v), z).diagonal()  # elementwise: the Jacobian is diagonal
        d_err = float(np.max(np.abs(dsigmoid(z) - fd)))
        r_err = float(np.max(np.abs(sigmoid(-z) - (1 - sigmoid(z)))))
        extreme = sigmoid(np.array([-1000.0, 1000.0]))
    passed = bool(d_err <= 1e-9 and r_err <= 1e-14 and np.isfinite(extreme).all())
    return Outcome(passed, f"sigma' {_e(d_err)}, sigma(-z) {_e(r_err)}", "<= 1e-9; <= 1e-14",
                   {"max_abs_error_derivative": d_err, "max_abs_error_reflection": r_err,
                    "sigmoid_at_-1000_1000": extreme})


def _logistic_objective(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Reference: -mean[y log s + (1 - y) log(1 - s)] + alpha/2 ||W||^2, s = 1/(1 + e^-z) (naive)."""
    s = 1 / (1 + np.exp(-(X @ W).ravel() - b))
    return float(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)) + 0.5 * alpha * np.sum(W ** 2))


def logistic_model_grad(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray,
                        alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """dlhw's LogisticRegression gradient: X^T (sigma(z) - y)/n + alpha W, mean(sigma(z) - y)."""
    _, g = LogisticRegression(W.copy(), b.copy(), alpha).loss(X, y)
    return g["W"], g["b"]


def check_logistic_l2(grad: Callable = logistic_model_grad, update: Callable = logistic_l2_update) -> Outcome:
    """L2 logistic regression: the gradient, and the update W <- (1 - lr alpha) W - lr X^T(s - y)/n."""
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    W, b, alpha, lr = rng.standard_normal((3, 1)), rng.standard_normal(1), 0.7, 0.3
    fd_W, fd_b = _fd(lambda: _logistic_objective(W, b, X, y, alpha), W, b)
    dW, db = grad(W, b, X, y, alpha)
    g_err = max(rel_error(dW, fd_W), rel_error(db, fd_b))
    W1, b1 = update(W, b, X, y, alpha, lr)
    u_err = float(max(np.max(np.abs(W1 - (W - lr * fd_W))), np.max(np.abs(b1 - (b - lr * fd_b)))))
    passed = bool(g_err <= FD_TOL and u_err <= 1e-8)
    return Outcome(passed, f"grad {_e(g_err)}, update {_e(u_err)}", "<= 1e-7; <= 1e-8 (one GD step)",
                   {"grad_max_rel_error": g_err, "update_max_abs_error": u_err, "alpha": alpha, "lr": lr},
                   ["objective: mean binary CE + alpha/2 ||w||^2 (bias not penalised)",
                    "update:    w <- (1 - lr*alpha) w - lr * X^T (sigma(z) - y) / n;  b <- b - lr * mean(sigma(z) - y)"])


# --------------------------------------------------------------------------- least squares


def check_newton_mse(step: Callable = newton_step_mse) -> Outcome:
    """One Newton step on 1/(2n)||X^T w - y||^2 from a random start gives (X X^T)^-1 X y (X is d x n)."""
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((4, 30)), rng.standard_normal(30)  # homework convention: columns = examples
    w0 = 10 * rng.standard_normal(4)
    w1 = step(w0, X.T, y)  # dlhw's functions take rows = examples
    w_star = np.linalg.solve(X @ X.T, X @ y)
    err = float(np.max(np.abs(w1 - w_star)))
    # the model (with a bias) from its random start: one step to lstsq([X 1], y), a second changes nothing
    m = LinearRegression(rng.standard_normal((4, 1)), rng.standard_normal(1), 0.0)
    m.newton_step(X.T, y)
    theta1 = np.r_[m.params["W"].ravel(), m.params["b"]]
    m.newton_step(X.T, y)
    theta2 = np.r_[m.params["W"].ravel(), m.params["b"]]
    A = np.hstack([X.T, np.ones((30, 1))])
    model_err = float(np.max(np.abs(theta1 - np.linalg.lstsq(A, y, rcond=None)[0])))
    again = float(np.max(np.abs(theta2 - theta1)))
    passed = bool(err <= 1e-10 and model_err <= 1e-10 and again <= 1e-12)
    return Outcome(passed, f"{_e(err)}; model {_e(model_err)}", "<= 1e-10 (normal eqs.)",
                   {"w0": w0, "w1": w1, "normal_equations": w_star, "max_abs_error": err,
                    "model_max_abs_error": model_err, "model_second_step_change": again},
                   [f"w0 = {np.round(w0, 6)}", f"one step: {np.round(w1, 10)}",
                    f"(X X^T)^-1 X y = {np.round(w_star, 10)}"])


XOR_Y = XOR_LABELS.astype(np.float64)  # the 4 points `data.name: xor` trains on


def fit_least_squares(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """(w, b) minimising 1/(2n)||Xw + b - y||^2: dlhw's LinearRegression, one Newton step from random."""
    rng = np.random.default_rng(9)
    m = LinearRegression(rng.standard_normal((X.shape[1], 1)), rng.standard_normal(1), 0.0)
    m.newton_step(X, y)
    return m.params["W"].ravel(), float(m.params["b"][0])


def check_xor_linear(fit: Callable = fit_least_squares) -> Outcome:
    """Least squares on XOR: w = (0, 0), b = 1/2, MSE (1/n) 1/4; gradient descent gets there too."""
    w, b = fit(XOR_X, XOR_Y)
    mse = float(np.mean((XOR_X @ w + b - XOR_Y) ** 2))
    m = LinearRegression(np.array([[0.3], [-0.8]]), np.array([1.2]), 0.0)
    state: dict = {}
    for _ in range(300):  # full-batch gradient descent, lr 1 (< 2 / largest Hessian eigenvalue 1.593)
        _, g = m.loss(XOR_X, XOR_Y)
        for k in m.params:
            sgd(m.params[k], g[k], state, 1.0)
    gd_err = float(max(np.abs(m.params["W"]).max(), abs(m.params["b"][0] - 0.5)))
    err = float(max(np.abs(w).max(), abs(b - 0.5), abs(mse - 0.25)))
    passed = bool(err <= 1e-12 and gd_err <= 1e-12)
    return Outcome(passed, f"w=({w[0]:.2g}, {w[1]:.2g}) b={b:.6g} mse={mse:.6g}", "w=0, b=0.5, mse=0.25",
                   {"w": w, "b": b, "mse_1_over_n": mse, "objective_1_over_2n": mse / 2,
                    "gd_w": m.params["W"].ravel(), "gd_b": m.params["b"][0]},
                   ["MSE convention: mse = 1/n sum r^2 = 1/4; objective 1/(2n) sum r^2 = 1/8",
                    f"gradient descent, 300 steps of lr 1: w = {m.params['W'].ravel()}, b = {float(m.params['b'][0])!r}"])


# --------------------------------------------------------------------------- all-positive labels


def bias_grad_all_positive(b: float) -> float:
    """dL/db for L(b) = log(1 + e^-b) (every label 1): sigma(b) - 1 = -1/(1 + e^b) < 0."""
    return -1.0 / (1.0 + math.exp(b))


def check_all_positive(grad_b: Callable[[float], float] = bias_grad_all_positive) -> Outcome:
    """All labels 1: gradient descent on the bias gives b_t ~ log(1 + lr t), loss -> 0, gradient != 0.

    Also the full model on 3 positive 2-d points: b and ||w|| both grow by a constant per decade of t.
    """
    lr, b, loss_prev = 1.0, 0.0, math.log(2)
    marks, rows, monotone, nonzero = (10, 100, 1000, 10_000, 100_000), [], True, True
    for t in range(1, 100_001):
        g = grad_b(b)
        nonzero &= g != 0
        b -= lr * g
        loss = math.log1p(math.exp(-b)) if b > -700 else -b
        monotone &= loss < loss_prev
        loss_prev = loss
        if t in marks:
            rows.append({"t": t, "b": b, "log(1+lr t)": math.log1p(lr * t), "loss": loss, "grad": grad_b(b)})
    gap = abs(rows[-1]["b"] - rows[-1]["log(1+lr t)"])
    decade = rows[-1]["b"] - rows[-2]["b"]
    tgrad = abs(rows[-1]["grad"]) * rows[-1]["t"] * lr
    model = _all_positive_model()
    passed = bool(gap <= 1e-3 and abs(decade - math.log(10)) <= 1e-3 and monotone and nonzero
                  and abs(tgrad - 1) <= 1e-3 and rows[-1]["loss"] < 1e-4 and model["grows_like_log_t"])
    details = [f"{'t':>7} {'b_t':>10} {'log(1+t)':>10} {'loss':>10} {'dL/db':>11}"]
    details += [f"{r['t']:>7} {r['b']:>10.6f} {r['log(1+lr t)']:>10.6f} {r['loss']:>10.3e} {r['grad']:>11.3e}"
                for r in rows]
    details += ["model on 3 positive points (t, ||w||, b): "
                + "; ".join(f"{t}: {w:.3f}, {bb:.3f}" for t, w, bb in model["rows"])]
    return Outcome(passed, f"b(1e5)={rows[-1]['b']:.5f}, +{decade:.4f}/decade",
                   f"log(1+1e5)={rows[-1]['log(1+lr t)']:.5f}, +ln10",
                   {"lr": lr, "rows": rows, "monotone_loss": monotone, "gradient_never_zero": nonzero,
                    "t_times_abs_grad": tgrad, "model": model}, details)


def _all_positive_model(steps: int = 10_000) -> dict:
    """GD (lr 1) on LogisticRegression, 3 positive points all labelled 1: b and ||w|| per decade of t."""
    X, y = np.array([[1.0, 0.5], [0.5, 1.0], [1.0, 1.0]]), np.ones(3, dtype=np.int64)
    m = LogisticRegression(np.zeros((2, 1)), np.zeros(1), 0.0)
    rows = []
    for t in range(1, steps + 1):
        _, g = m.loss(X, y)
        m.params["W"] -= g["W"]
        m.params["b"] -= g["b"]
        if t in (10, 100, 1000, 10_000):
            rows.append((t, float(np.linalg.norm(m.params["W"])), float(m.params["b"][0])))
    inc = np.diff(np.array(rows)[:, 1:], axis=0)  # growth per decade of ||w|| and b
    steady = bool((inc > 0).all() and np.all(np.abs(inc[-1] / inc[-2] - 1) < 0.1))
    return {"rows": rows, "per_decade": inc, "grows_like_log_t": steady}


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
        fd = _jacobian(lambda v: gamma * (v - v.mean()) + beta, x)
        err = max(err, float(np.max(np.abs(mean_only_jacobian(n, gamma) - fd))))
    at_one = float(np.abs(mean_only_jacobian(1, gamma)).max())
    x, dout = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    g, bt = rng.standard_normal(3), rng.standard_normal(3)
    fd_x, fd_g, fd_b = _fd(lambda: float((bn_forward(x, g, bt)[0] * dout).sum()), x, g, bt)
    dx, dg, db = backward(dout, bn_forward(x, g, bt)[1])
    bn_err = max(rel_error(dx, fd_x), rel_error(dg, fd_g), rel_error(db, fd_b))
    passed = bool(err <= 1e-8 and at_one == 0 and bn_err <= FD_TOL)
    return Outcome(passed, f"mean-only {_e(err)} (n=1: {at_one:g}), BN {_e(bn_err)}", "<= 1e-8 (n=1: 0); <= 1e-7",
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
    pen_err = rel_error(expected_grad(W, x, y, s2), _jacobian(lambda w: np.array([reg(w)]), W)[0])
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
        fds = _fd(lambda: _net_cost(Ws, bs, x, y, f), *Ws, *bs)
        errs[name] = max(rel_error(a, b) for a, b in zip([*dWs, *dbs], fds))
    # linear network: delta^1 = W2^T W3^T (a^3 - y), so dC/dW^1 = (W3 W2)^T (a^3 - y) x^T
    a3 = Ws[2] @ (Ws[1] @ (Ws[0] @ x + bs[0]) + bs[1]) + bs[2]
    closed = (Ws[2] @ Ws[1]).T @ (a3 - y) @ x.T
    errs["linear_closed_form"] = rel_error(backprop(Ws, bs, x, y, *acts["linear"])[0][0], closed)
    worst = max(errs.values())
    return Outcome(worst <= FD_TOL, f"sigmoid {_e(errs['sigmoid'])}, linear {_e(errs['linear'])}",
                   f"<= {FD_TOL:g} (finite diff.)", {"max_rel_error": errs},
                   ["linear activation (s' = 1): BP1 delta^L = a^L - y; BP2 delta^l = (W^{l+1})^T delta^{l+1};",
                    f"  dC/dW^1 = (W^3 W^2)^T (a^3 - y) x^T, rel err {_e(errs['linear_closed_form'])}"])


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
        J = _jacobian(_grad_f3, v)  # Jacobian of the gradient, numerically
        H2 = _second_differences(_f3, v)  # Hessian from f alone, numerically
        jac_vs_2nd = max(jac_vs_2nd, rel_error(J, H2))
        formula = max(formula, rel_error(hessian(v), J))
        grad = max(grad, rel_error(_grad_f3(v), _jacobian(lambda u: np.array([_f3(u)]), v)[0]))
    passed = bool(jac_vs_2nd <= 1e-5 and formula <= FD_TOL and grad <= FD_TOL)
    return Outcome(passed, f"J(grad) vs d2f {_e(jac_vs_2nd)}, H {_e(formula)}", "<= 1e-5; <= 1e-7",
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
    fds = dict(zip(p, _fd(lambda: _net_forward(p)["cost"], *p.values())))
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
    return Outcome(err <= FD_TOL, f"cost {fw['cost']:.6f}, grad err {_e(err)}", f"<= {FD_TOL:g} (finite diff.)",
                   {"forward": {k: _num(v) for k, v in fw.items()}, "output_delta": d_o,
                    "gradients": {n: g for n, (_, g, _) in flat.items()},
                    "finite_differences": {n: f for n, (_, _, f) in flat.items()}, "max_rel_error": err}, lines)


# --------------------------------------------------------------------------- the registry


def _naive_bn_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slip: batch statistics treated as constants."""
    xhat, gamma, sd = cache
    return gamma / sd * dout, (dout * xhat).sum(axis=0), dout.sum(axis=0)


CHECKS: dict[str, Check] = {c.name: c for c in [
    Check("softmax_shift", "softmax(z + c) = softmax(z); stable = naive", "softmax", check_softmax_shift,
          (Slip("naive exp(z)/sum exp(z): nan at z + 1000", {"softmax": naive_softmax}),)),
    Check("ce_gradient", "dCE/dz = softmax(z) - y", "softmax + CE", check_ce_gradient,
          (Slip("homework: -1 + N*softmax(z_i)", {"grad": lambda z, Y: -1 + z.shape[1] * softmax(z)}),
           Slip("sign: y - softmax(z)", {"grad": lambda z, Y: Y - softmax(z)}))),
    Check("softmax_jacobian", "J = diag(p) - pp^T = Hessian of CE, PSD", "softmax + CE convexity",
          check_softmax_jacobian,
          (Slip("pp^T - diag(p) (sign)", {"jacobian": lambda p: np.outer(p, p) - np.diag(p)}),
           Slip("diag(p) (cross terms dropped)", {"jacobian": np.diag}))),
    Check("softmax_regression", "grad_W = X^T(P-Y)/n + aW, grad_b = mean(P-Y)", "softmax regression",
          check_softmax_regression,
          (Slip("1/n missing: X^T(P-Y) + aW",
                {"grad": lambda X, Y, W, b, a: (X.T @ (softmax(X @ W + b) - Y) + a * W,
                                                (softmax(X @ W + b) - Y).mean(axis=0))}),)),
    Check("ce_is_nll", "CE = NLL of the categorical model", "softmax + CE", check_ce_is_nll,
          (Slip("one-vs-rest binary CE summed over classes",
                {"ce": lambda Z, y: -float(np.mean(np.sum(np.eye(Z.shape[1])[y] * np.log(softmax(Z)) + (
                    1 - np.eye(Z.shape[1])[y]) * np.log(1 - softmax(Z)), axis=1)))}),)),
    Check("sigmoid", "s'(z) = s(1 - s); s(-z) = 1 - s(z)", "logistic regression", check_sigmoid,
          (Slip("s' = 1 - s^2 (tanh's rule)", {"dsigmoid": lambda z: 1 - sigmoid(z) ** 2}),
           Slip("s(z) = 1/(1 + e^z)", {"sigmoid": lambda z: sigmoid(-z)}))),
    Check("logistic_l2", "L2 logistic: grad and w <- (1 - lr a)w - lr g", "logistic regression + L2",
          check_logistic_l2,
          (Slip("update with (1 - 2 lr a) w",
                {"update": lambda W, b, X, y, a, lr: logistic_l2_update(W, b, X, y, 2 * a, lr)}),
           Slip("update with (1 - lr a / 2) w",
                {"update": lambda W, b, X, y, a, lr: logistic_l2_update(W, b, X, y, a / 2, lr)}),
           Slip("bias penalised too", {"grad": lambda W, b, X, y, a: (
               logistic_model_grad(W, b, X, y, a)[0], logistic_model_grad(W, b, X, y, a)[1] + a * b)}))),
    Check("newton_mse", "Newton on MSE: 1 step -> (XX^T)^-1 Xy", "Newton's method", check_newton_mse,
          (Slip("Hessian XX^T without the 1/n of the gradient",
                {"step": lambda t, A, y: t - np.linalg.solve(A.T @ A, A.T @ (A @ t - y) / len(y))}),)),
    Check("xor_linear", "XOR least squares: w = 0, b = 1/2", "XOR", check_xor_linear,
          (Slip("no bias (line through the origin)",
                {"fit": lambda X, y: (np.linalg.lstsq(X, y, rcond=None)[0], 0.0)}),)),
    Check("all_positive", "all labels 1: b ~ log t, loss -> 0, grad != 0", "logistic, all-positive labels",
          check_all_positive,
          (Slip("homework: the bias keeps decreasing (gradient sign)",
                {"grad_b": lambda b: -bias_grad_all_positive(b)}),)),
    Check("batchnorm", "mean-only BN: dy_i/dx_j = g(d_ij - 1/n); BN grad", "batch normalisation",
          check_batchnorm,
          (Slip("mean-only Jacobian g*I (mean treated as constant)",
                {"mean_only_jacobian": lambda n, g: g * np.eye(n)}),
           Slip("BN backward with constant batch statistics", {"backward": _naive_bn_backward}))),
    Check("gaussian_dropout", "E[dJ/dW_i] = plain grad + s2 x_i^2 W_i", "dropout", check_gaussian_dropout,
          (Slip("no s2 term", {"expected_grad": lambda W, x, y, s2: x * (W @ x - y)}),
           Slip("s2 x_i W_i (x not squared)", {"expected_grad": lambda W, x, y, s2: x * (W @ x - y) + s2 * x * W}))),
    Check("backprop", "four backprop equations (and s' = 1)", "backpropagation", check_backprop,
          (Slip("BP2 without * s'(z^l)", {"backprop": partial(backprop, bp2_dact=False)}),)),
    Check("hessian", "Hessian = Jacobian of the gradient", "Hessian", check_hessian,
          (Slip("diagonal only (cross terms dropped)", {"hessian": lambda v: np.diag(np.diag(hessian_f3(v)))}),)),
    Check("worked_network", "worked 2-2-2 network: cost and all gradients", "worked example",
          check_worked_network,
          (Slip("output delta (o - t) o(1 - o): squared-error rule with CE",
                {"output_delta": lambda o, t: (o - t) * o * (1 - o)}),)),
]}


def run_checks(names: tuple[str, ...] | list[str] = (), slips: bool = True) -> list[Result]:
    """Run the named checks (all when empty), each also with its slips; unknown name -> DlhwError."""
    for n in names:
        if n not in CHECKS:
            close = difflib.get_close_matches(n, list(CHECKS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DlhwError(f"unknown check {n!r}{hint}. Available: {', '.join(CHECKS)}.")
    out = []
    for name in dict.fromkeys(names or CHECKS):
        c = CHECKS[name]
        out.append(Result(c, c.run(), [(s, _run_slip(c, s)) for s in c.slips] if slips else []))
    return out


def _run_slip(check: Check, slip: Slip) -> Outcome:
    """The check fed a wrong formula; a formula that raises counts as caught."""
    try:
        with np.errstate(all="ignore"):
            return check.run(**slip.kwargs)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as e:
        return Outcome(False, f"raises {type(e).__name__}", "", {"error": str(e)})


def format_report(results: list[Result], details: bool = False) -> str:
    """The table (check, source, claim, computed, expected, verdict), the slips caught, and details."""
    rows = [[r.check.name, r.check.source, r.check.claim, r.outcome.computed, r.outcome.expected,
             "PASS" if r.outcome.passed else "FAIL"] for r in results]
    head = ["check", "source", "claim", "computed", "expected", "verdict"]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    fmt = lambda row: "  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip()  # noqa: E731
    lines = [fmt(head), "-" * len(fmt(head))] + [fmt(row) for row in rows]
    n_ok = sum(r.outcome.passed for r in results)
    lines.append(f"{n_ok}/{len(results)} claims hold.")
    slip_rows = [(r.check.name, s, o) for r in results for s, o in r.slips]
    if slip_rows:
        lines += ["", "Slips fed through the same checks (each must FAIL):"]
        wn, wl = max(len(n) for n, _, _ in slip_rows), max(len(s.label) for _, s, _ in slip_rows)
        lines += [f"  {name:<{wn}}  {s.label:<{wl}}  {'FAIL (caught)' if not o.passed else 'PASSES: NOT CAUGHT'}"
                  f"  {o.computed}" for name, s, o in slip_rows]
    for r in results if details else []:
        if r.outcome.details:
            lines += ["", f"{r.check.name}: {r.check.claim}"] + [f"  {d}" for d in r.outcome.details]
    return "\n".join(lines)


def to_json(results: list[Result]) -> dict:
    """Every check with its name, source, verdict, numbers, and each slip's verdict and numbers."""
    return {"passed": all(r.ok for r in results), "checks": [{
        "name": r.check.name, "claim": r.check.claim, "source": r.check.source,
        "verdict": "pass" if r.outcome.passed else "fail", "computed": r.outcome.computed,
        "expected": r.outcome.expected, "numbers": _num(r.outcome.numbers), "details": r.outcome.details,
        "slips": [{"label": s.label, "verdict": "pass" if o.passed else "fail", "caught": not o.passed,
                   "computed": o.computed, "numbers": _num(o.numbers)} for s, o in r.slips],
    } for r in results]}
