"""A fully-connected network (MLP) with hand-written backprop (numpy only, no autograd).

For hidden widths (H1, ..., HL) and K classes, layer l = 1..L is

    h_l = dropout(act(BN(h_{l-1} @ W_l + b_l)))        (BN and dropout optional)

and the output layer is scores = h_L @ W_{L+1} + b_{L+1}, followed by softmax CE.
With batch norm a hidden layer has no bias b_l: BN subtracts the batch mean, so b_l
would get an exactly-zero gradient; BN's beta_l is that layer's bias.

Objective: mean CE + alpha/2 * sum_l ||W_l||^2 (biases and BN gamma/beta not
penalised), so dW_l gets + alpha * W_l. `loss(X, y)` returns the mean CE alone
(the model contract in `dlhw.models`).

Parameters: W1 (D, H1), b1 (H1,) or gamma1, beta1 (H1,), ..., W{L+1} (HL, K), b{L+1} (K,).
Running BN statistics are state, not parameters: saved by `state()`, not trained.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from dlhw.models import layers as L
from dlhw.models.base import Model

# activation -> (forward(x) -> out, cache; backward(dout, cache) -> dx)
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "relu": (L.relu_forward, L.relu_backward),
    "leaky_relu": (L.leaky_relu_forward, L.leaky_relu_backward),
    "sigmoid": (L.sigmoid_forward, L.sigmoid_backward),
    "tanh": (L.tanh_forward, L.tanh_backward),
}
MASKS = {"bernoulli": L.bernoulli_mask, "gaussian": L.gaussian_mask}


def init_std(init: str, fan_in: int, fan_out: int, activation: str = "relu", slope: float = 0.01) -> float:
    """Standard deviation of N(0, std^2) initial weights.

    he (Kaiming): sqrt(2 / ((1 + a^2) fan_in)), a = leaky slope (0 except leaky_relu);
    xavier (Glorot): sqrt(2 / (fan_in + fan_out)).
    """
    if init == "xavier":
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    a = slope if activation == "leaky_relu" else 0.0
    return float(np.sqrt(2.0 / ((1 + a * a) * fan_in)))


class MLP(Model):
    """Fully-connected classifier; see the module docstring for the layers and the objective."""

    kind = "mlp"

    def __init__(self, n_features: int, n_classes: int, hidden: tuple[int, ...] = (256, 128), *,
                 activation: str = "relu", leaky_slope: float = 0.01, init: str = "he",
                 batch_norm: bool = False, dropout: float = 0.0, dropout_kind: str = "bernoulli",
                 alpha: float = 0.0, dtype=np.float32, rng: np.random.Generator | None = None):
        """Weights ~ N(0, init_std^2), drawn in float64 from `rng` (so float32 and float64
        models start from the same numbers); biases and beta 0, gamma 1."""
        rng = rng if rng is not None else np.random.default_rng(0)
        self.dtype = np.dtype(dtype)
        self.alpha = float(alpha)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.leaky_slope = activation, float(leaky_slope)
        self.batch_norm, self.dropout, self.dropout_kind = bool(batch_norm), float(dropout), dropout_kind
        fwd, bwd = ACTIVATIONS[activation]
        if activation == "leaky_relu":
            fwd = partial(fwd, slope=self.leaky_slope)
        self._act_forward, self._act_backward = fwd, bwd
        self.n_layers = len(self.hidden) + 1
        sizes = (n_features, *self.hidden, n_classes)
        self.params: dict[str, np.ndarray] = {}
        self.running: dict[str, np.ndarray] = {}  # BN running mean/var per hidden layer
        for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            std = init_std(init, fan_in, fan_out, activation, self.leaky_slope)
            self.params[f"W{l}"] = (rng.standard_normal((fan_in, fan_out)) * std).astype(self.dtype)
            if self._has_bn(l):
                self.params[f"gamma{l}"] = np.ones(fan_out, self.dtype)
                self.params[f"beta{l}"] = np.zeros(fan_out, self.dtype)
                self.running[f"mean{l}"] = np.zeros(fan_out, self.dtype)
                self.running[f"var{l}"] = np.ones(fan_out, self.dtype)
            else:
                self.params[f"b{l}"] = np.zeros(fan_out, self.dtype)

    @classmethod
    def from_config(cls, cfg, n_features: int, n_classes: int, rng: np.random.Generator | None = None) -> "MLP":
        m = cfg.model
        return cls(n_features, n_classes, m.hidden, activation=m.activation, leaky_slope=m.leaky_slope,
                   init=m.init, batch_norm=m.batch_norm, dropout=m.dropout, dropout_kind=m.dropout_kind,
                   alpha=cfg.train.alpha, dtype=np.dtype(cfg.train.dtype), rng=rng)

    @property
    def decayed(self) -> tuple[str, ...]:  # type: ignore[override]
        """The weight matrices W1..W{L+1}: the only penalised parameters."""
        return tuple(f"W{l}" for l in range(1, self.n_layers + 1))

    def _has_bn(self, l: int) -> bool:
        return self.batch_norm and l < self.n_layers

    # ----------------------------------------------------------------------- forward/backward

    def loss(self, X: np.ndarray, y: np.ndarray | None = None, rng: np.random.Generator | None = None):
        """X (N, D). y None: scores (N, K) in eval mode (no dropout, BN running statistics).

        Else training mode on the mini-batch (X, y (N,)): dropout masks drawn from `rng`
        (required when dropout > 0), BN on batch statistics with the running statistics
        updated; returns (mean CE, grads of mean CE + alpha/2 sum ||W||^2).
        """
        if y is None:
            return self._scores(X)
        if self.dropout > 0 and rng is None:
            raise ValueError("MLP.loss: training with dropout > 0 needs an rng for the masks.")
        scores, caches = self._forward_train(X, rng)
        data_loss, dscores = L.softmax_cross_entropy(scores, y)
        return data_loss, self._backward(dscores, caches)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Eval-mode forward pass: X (N, D) -> scores (N, K)."""
        p, h = self.params, X
        for l in range(1, self.n_layers):
            a = h @ p[f"W{l}"]
            if self._has_bn(l):
                a, _ = L.batchnorm_forward(a, p[f"gamma{l}"], p[f"beta{l}"], self.running[f"mean{l}"],
                                           self.running[f"var{l}"], train=False)
            else:
                a += p[f"b{l}"]
            h, _ = self._act_forward(a)
        out = h @ p[f"W{self.n_layers}"]
        out += p[f"b{self.n_layers}"]
        return out

    def _forward_train(self, X: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, list[dict]]:
        """Training-mode forward pass: scores (N, K) and one dict of caches per layer."""
        p, h = self.params, X
        caches: list[dict] = []
        for l in range(1, self.n_layers):
            c: dict = {}
            a, c["linear"] = L.linear_forward(h, p[f"W{l}"])
            if self._has_bn(l):
                a, c["bn"] = L.batchnorm_forward(a, p[f"gamma{l}"], p[f"beta{l}"], self.running[f"mean{l}"],
                                                 self.running[f"var{l}"], train=True)
            else:
                a += p[f"b{l}"]
            h, c["act"] = self._act_forward(a)
            if self.dropout > 0:
                mask = MASKS[self.dropout_kind](h.shape, self.dropout, rng, h.dtype)
                h, c["drop"] = L.dropout_forward(h, mask)
            caches.append(c)
        scores, out_cache = L.linear_forward(h, p[f"W{self.n_layers}"])
        scores += p[f"b{self.n_layers}"]
        caches.append({"linear": out_cache})
        return scores, caches

    def _backward(self, dscores: np.ndarray, caches: list[dict]) -> dict[str, np.ndarray]:
        """Gradients of every parameter from dL/dscores (N, K); adds alpha * W to each dW."""
        grads: dict[str, np.ndarray] = {}
        dh = dscores  # gradient w.r.t. the current layer's output
        for l in range(self.n_layers, 0, -1):
            c = caches[l - 1]
            da = dh  # output layer: scores = a
            if l < self.n_layers:  # hidden layer: back through dropout, activation, then BN
                if "drop" in c:
                    dh = L.dropout_backward(dh, c["drop"])
                da = self._act_backward(dh, c["act"])
                if "bn" in c:
                    da, grads[f"gamma{l}"], grads[f"beta{l}"] = L.batchnorm_backward(da, c["bn"])
            if f"b{l}" in self.params:
                grads[f"b{l}"] = da.sum(axis=0)
            dh, dW = L.linear_backward(da, c["linear"], need_dx=l > 1)  # no dX for the input layer
            if self.alpha:
                dW += self.alpha * self.params[f"W{l}"]  # L2 on weights only
            grads[f"W{l}"] = dW
        return grads

    # ----------------------------------------------------------------------- state

    def state(self) -> dict[str, np.ndarray]:
        """Parameters (param_*) and BN running statistics (bn_mean<l>, bn_var<l>)."""
        return super().state() | {f"bn_{k}": v for k, v in self.running.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of `state()`; a missing array raises KeyError, a wrong shape ValueError."""
        saved = {f"param_{k}": v for k, v in self.params.items()} | {f"bn_{k}": v for k, v in self.running.items()}
        for key, cur in saved.items():
            if np.shape(arrays[key]) != cur.shape:
                raise ValueError(f"{key} has shape {np.shape(arrays[key])}, the config needs {cur.shape}")
        super().load_state(arrays)
        for k, cur in self.running.items():
            self.running[k] = np.asarray(arrays[f"bn_{k}"], dtype=cur.dtype)

    def first_layer(self) -> np.ndarray:
        """W1 (D, H1): column j is hidden unit j's input weights (a 28x28 image for MNIST)."""
        return self.params["W1"]
