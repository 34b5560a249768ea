"""One-output linear models: least squares (with Newton's method) and binary logistic regression.

Shapes (dlhw convention, rows are examples): X (N, D), y (N,), W (D, 1), b (1,).
The homework writes X as D x N (columns are examples); `dlhw.checks` converts
where it compares with the homework's formulas.
"""
from __future__ import annotations

import numpy as np

from dlhw.models.base import Model
from dlhw.models.layers import sigmoid


def binary_cross_entropy(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example CE of logits z against labels y in {0, 1}: log(1 + e^z) - y z (stable)."""
    return np.logaddexp(0, z) - y * z


def newton_step_mse(theta: np.ndarray, A: np.ndarray, y: np.ndarray,
                    reg: np.ndarray | None = None) -> np.ndarray:
    """One Newton step on J(t) = 1/(2n) ||A t - y||^2 + 1/2 t^T diag(reg) t, A (n, p).

    grad = A^T (A t - y) / n + reg * t and Hessian H = A^T A / n + diag(reg).
    J is quadratic, so t - H^-1 grad is its minimiser from any start t (the
    normal equations). A positive-definite H is solved directly (fast); a
    singular one (e.g. pixels that are 0 in every image, alpha = 0) by lstsq,
    which gives the minimum-norm step. Computed in float64.
    """
    A, y, theta = np.asarray(A, np.float64), np.asarray(y, np.float64), np.asarray(theta, np.float64)
    reg = np.zeros(A.shape[1]) if reg is None else np.asarray(reg, np.float64)
    n = A.shape[0]
    grad = A.T @ (A @ theta - y) / n + reg * theta
    hess = A.T @ A / n + np.diag(reg)
    try:
        np.linalg.cholesky(hess)  # raises unless H is positive definite
        step = np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
    return theta - step


def logistic_l2_update(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, alpha: float,
                       lr: float) -> tuple[np.ndarray, np.ndarray]:
    """One gradient-descent step on mean CE + alpha/2 ||W||^2, written as weight decay.

    W <- (1 - lr * alpha) W - lr * X^T (sigma(z) - y) / N;   b <- b - lr * mean(sigma(z) - y).
    """
    d = (sigmoid(X @ W + b).ravel() - y) / X.shape[0]
    return (1 - lr * alpha) * W - lr * (X.T @ d)[:, None], b - lr * d.sum(keepdims=True)


class _OneOutput(Model):
    """Shared parts: W (D, 1), b (1,), full-batch diagnostics for history.csv."""

    def __init__(self, W: np.ndarray, b: np.ndarray, alpha: float):
        self.alpha = float(alpha)
        self.params = {"W": W, "b": b}

    def scores(self, X: np.ndarray) -> np.ndarray:
        """z = X W + b, (N,)."""
        return (X @ self.params["W"]).ravel() + self.params["b"]

    def loss(self, X, y=None, rng=None):
        z = self.scores(X)
        if y is None:
            return z[:, None]
        data_loss, dz = self._data_loss(z, y.astype(z.dtype))
        dW = X.T @ dz[:, None]
        dW += self.alpha * self.params["W"]  # L2 on W only; the bias is not penalised
        return data_loss, {"W": dW, "b": dz.sum(keepdims=True)}

    def _data_loss(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean data loss and its gradient w.r.t. z (already divided by N)."""
        raise NotImplementedError

    def diagnostics(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Full-batch objective, ||W||, b and the norm of the full gradient (W and b)."""
        data_loss, grads = self.loss(X, y)
        gnorm = np.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads.values()))
        return {"objective": data_loss + self.penalty(),
                "w_norm": float(np.linalg.norm(self.params["W"].astype(np.float64))),
                "b": float(self.params["b"][0]), "grad_norm": gnorm}

    def first_layer(self) -> np.ndarray:
        return self.params["W"]


class LinearRegression(_OneOutput):
    """Least squares on the labels as float targets.

    L(w, b) = 1/(2N) sum_i (x_i.w + b - y_i)^2 + alpha/2 ||w||^2  (b not penalised);
    r = Xw + b - y, dL/dw = X^T r / N + alpha w, dL/db = mean(r).
    `evaluate` reports mse = 1/N sum_i r_i^2 (no 1/2): twice the data loss.
    Starts at random (W ~ N(0, 1/D), b ~ N(0, 1)) so Newton's one step is visible.
    """

    kind = "linear"
    metric_names = ("mse",)

    @classmethod
    def from_config(cls, cfg, n_features: int, n_classes: int, rng: np.random.Generator | None = None):
        rng = rng if rng is not None else np.random.default_rng(0)
        dtype = np.dtype(cfg.train.dtype)
        W = (rng.standard_normal((n_features, 1)) / np.sqrt(n_features)).astype(dtype)
        return cls(W, rng.standard_normal(1).astype(dtype), cfg.train.alpha)

    def _data_loss(self, z, y):
        r = z - y
        n = max(len(r), 1)
        return 0.5 * float(np.square(r, dtype=np.float64).sum()) / n, r / n

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        r = self.scores(X) - y.astype(X.dtype)
        return {"mse": float(np.square(r, dtype=np.float64).sum()) / max(len(r), 1)}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Real-valued predictions (N,)."""
        return self.scores(X)

    def newton_step(self, X: np.ndarray, y: np.ndarray) -> float:
        """Jump to the minimiser of the (quadratic) objective; returns the data loss before the step."""
        W, b = self.params["W"], self.params["b"]
        data_loss = self.loss(X, y)[0]
        A = np.hstack([np.asarray(X, np.float64), np.ones((X.shape[0], 1))])  # [X 1]: bias as a feature
        reg = np.r_[np.full(W.shape[0], self.alpha), 0.0]  # bias not penalised
        theta = newton_step_mse(np.r_[W.ravel(), b], A, y, reg)
        W[:, 0], b[:] = theta[:-1], theta[-1]
        return data_loss


class LogisticRegression(_OneOutput):
    """Binary logistic regression, p(y = 1 | x) = sigma(x.w + b), labels y in {0, 1}.

    L(w, b) = 1/N sum_i [log(1 + e^{z_i}) - y_i z_i] + alpha/2 ||w||^2,  z = Xw + b  (b not penalised);
    dL/dw = X^T (sigma(z) - y) / N + alpha w,  dL/db = mean(sigma(z) - y). Starts at zero.
    """

    kind = "logistic"
    metric_names = ("ce", "accuracy")

    @classmethod
    def from_config(cls, cfg, n_features: int, n_classes: int, rng: np.random.Generator | None = None):
        dtype = np.dtype(cfg.train.dtype)
        return cls(np.zeros((n_features, 1), dtype), np.zeros(1, dtype), cfg.train.alpha)

    def _data_loss(self, z, y):
        n = max(len(z), 1)
        ce = float(binary_cross_entropy(z, y).sum(dtype=np.float64)) / n
        return ce, (sigmoid(z) - y) / n

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        z = self.scores(X)
        n = max(len(z), 1)
        return {"ce": float(binary_cross_entropy(z, y.astype(z.dtype)).sum(dtype=np.float64)) / n,
                "accuracy": int(((z > 0) == (y == 1)).sum()) / n}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels (N,): 1 where sigma(z) > 1/2."""
        return (self.scores(X) > 0).astype(np.int64)
