"""Checks of the softmax, cross-entropy, logistic-regression and least-squares claims."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dlhw.checks.core import FD_TOL, Outcome, fd_grads, fd_jacobian, rel_error, sci
from dlhw.models.layers import softmax, softmax_cross_entropy
from dlhw.models.layers import sigmoid
from dlhw.models.linear import LinearRegression, LogisticRegression, logistic_l2_update, newton_step_mse
from dlhw.models import SoftmaxRegression
from dlhw.models.optim import sgd
from dlhw.data.prepare import XOR_X
from dlhw.data.prepare import XOR_Y as XOR_LABELS

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
    return Outcome(passed, f"shift {sci(shift_err)}, vs naive {sci(naive_err)}", "both <= 1e-12",
                   {"shifts": shifts, "max_shift_error": shift_err, "max_error_vs_naive": naive_err})


def _ce_rows(z: np.ndarray, Y: np.ndarray) -> float:
    """sum_i CE(softmax(z_i), y_i) for one-hot rows Y."""
    return -float((Y * np.log(softmax(z))).sum())


def check_ce_gradient(grad: Callable = lambda z, Y: softmax(z) - Y) -> Outcome:
    """dCE/dz = softmax(z) - y for CE(z) = -sum_k y_k log softmax(z)_k, against finite differences."""
    rng = np.random.default_rng(2)
    z = 2 * rng.standard_normal((20, 6))
    Y = np.eye(6)[rng.integers(0, 6, 20)]
    (fd,) = fd_grads(lambda: _ce_rows(z, Y), z)
    err = rel_error(grad(z, Y), fd)
    return Outcome(err <= FD_TOL, f"max rel err {sci(err)}", f"<= {FD_TOL:g} (finite diff.)",
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
        fd_jac = fd_jacobian(lambda v: softmax(v[None])[0], z)
        fd_hess = fd_jacobian(lambda v: softmax(v[None])[0] - y, z)  # Jacobian of dCE/dz = Hessian of CE
        fd_err = max(fd_err, rel_error(J, fd_jac), rel_error(J, fd_hess))
    min_eig = np.inf
    for k in (2, 3, 10):
        P = softmax(4 * rng.standard_normal((1000, k)))
        H = np.stack([jacobian(p) for p in P])
        min_eig = min(min_eig, float(np.linalg.eigvalsh((H + H.transpose(0, 2, 1)) / 2).min()))
    passed = bool(fd_err <= FD_TOL and min_eig >= -1e-12)
    return Outcome(passed, f"rel err {sci(fd_err)}, min eig {min_eig:.1e}", "<= 1e-7; min eig >= -1e-12",
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
    fd_W, fd_b = fd_grads(lambda: m.objective(X, y), m.params["W"], m.params["b"])
    dW, db = grad(X, np.eye(3)[y], m.params["W"], m.params["b"], 0.3)
    _, g = m.loss(X, y)
    err = max(rel_error(dW, fd_W), rel_error(db, fd_b))
    model_err = max(rel_error(g["W"], fd_W), rel_error(g["b"], fd_b))
    return Outcome(bool(err <= FD_TOL and model_err <= FD_TOL), f"formula {sci(err)}, model {sci(model_err)}",
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
        fd = fd_jacobian(lambda v: sigmoid(v), z).diagonal()  # elementwise: the Jacobian is diagonal
        d_err = float(np.max(np.abs(dsigmoid(z) - fd)))
        r_err = float(np.max(np.abs(sigmoid(-z) - (1 - sigmoid(z)))))
        extreme = sigmoid(np.array([-1000.0, 1000.0]))
    passed = bool(d_err <= 1e-9 and r_err <= 1e-14 and np.isfinite(extreme).all())
    return Outcome(passed, f"sigma' {sci(d_err)}, sigma(-z) {sci(r_err)}", "<= 1e-9; <= 1e-14",
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
    fd_W, fd_b = fd_grads(lambda: _logistic_objective(W, b, X, y, alpha), W, b)
    dW, db = grad(W, b, X, y, alpha)
    g_err = max(rel_error(dW, fd_W), rel_error(db, fd_b))
    W1, b1 = update(W, b, X, y, alpha, lr)
    u_err = float(max(np.max(np.abs(W1 - (W - lr * fd_W))), np.max(np.abs(b1 - (b - lr * fd_b)))))
    passed = bool(g_err <= FD_TOL and u_err <= 1e-8)
    return Outcome(passed, f"grad {sci(g_err)}, update {sci(u_err)}", "<= 1e-7; <= 1e-8 (one GD step)",
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
    return Outcome(passed, f"{sci(err)}; model {sci(model_err)}", "<= 1e-10 (normal eqs.)",
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

