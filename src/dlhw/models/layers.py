"""Forward/backward pairs and the stable softmax cross-entropy (numpy only).

Convention (CS231n): `*_forward(...) -> out, cache`, `*_backward(dout, cache) -> grads`.
Shapes: N examples, D inputs, K outputs.
"""
from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of logits z (N, K), stable for any finite z (log-sum-exp)."""
    m = z.max(axis=1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of z (N, K); never overflows (max shifted to 0)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits z (N, K) against labels y (N,), and dL/dz.

    L = -1/N * sum_i log softmax(z_i)[y_i];  dL/dz = (softmax(z) - onehot(y)) / N.
    """
    n = z.shape[0]
    logp = log_softmax(z)
    loss = -float(logp[np.arange(n), y].sum(dtype=np.float64)) / n
    dz = np.exp(logp)
    dz[np.arange(n), y] -= 1
    dz /= n
    return loss, dz


def cross_entropy(z: np.ndarray, y: np.ndarray, overwrite: bool = False):
    """Summed CE and count of correct predictions of logits z (N, K) or (N, K, S) against labels y (N,).

    The one metric rule of every training loop (single model and stacked settings alike):
    CE_i = log sum_k exp(z_ik) - z_iy, with the max shifted out and the sum of exponentials
    accumulated in float64; row i is correct when the first argmax of z_i is y_i (a tie goes to
    the lower class index). Returns scalars for 2-D z, arrays (S,) for 3-D z.
    overwrite: z may be used as scratch space (saves a copy of a large stack of logits).
    """
    n = z.shape[0]
    if not overwrite:
        z = z.copy()
    correct = (z.argmax(axis=1) == y.reshape((n,) + (1,) * (z.ndim - 2))).sum(axis=0)
    z -= z.max(axis=1, keepdims=True)
    zy = z[np.arange(n), y]  # (N,) or (N, S)
    np.exp(z, out=z)
    lse = np.log(z.sum(axis=1, dtype=np.float64))
    return (lse - zy).sum(axis=0), correct


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """out = x @ w + b; x (N, D), w (D, M), b (M,) -> out (N, M)."""
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, M) -> dx (N, D), dw (D, M), db (M,)."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


# --------------------------------------------------------------------------- MLP layers
#
# Shapes: x (N, M) activations of N examples, M units; every output and dx has x's shape
# and dtype. Backward passes return new arrays and never modify `dout` or the cache.


def linear_forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, tuple]:
    """out = x @ w, an affine layer without bias (before batch norm, whose beta is the bias).

    x (N, D), w (D, M) -> out (N, M); cache (x, w).
    """
    return x @ w, (x, w)


def linear_backward(dout: np.ndarray, cache: tuple, need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """dout (N, M) -> dx (N, D) (None when not `need_dx`, e.g. for the input layer), dw (D, M)."""
    x, w = cache
    return (dout @ w.T if need_dx else None), x.T @ dout


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """out = max(x, 0); x (N, M) -> out (N, M); cache: out (out > 0 exactly where x > 0)."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout where x > 0, else 0 (the subgradient at 0 is taken as 0)."""
    return dout * (cache > 0)


def leaky_relu_forward(x: np.ndarray, slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """out = x if x > 0 else slope * x; x (N, M) -> out (N, M); cache (x, slope)."""
    return np.where(x > 0, x, x * x.dtype.type(slope)), (x, slope)


def leaky_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dx = dout where x > 0, else slope * dout."""
    x, slope = cache
    return np.where(x > 0, dout, dout * dout.dtype.type(slope))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """out = sigmoid(x), stable for any finite x; x (N, M) -> out (N, M); cache: out."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * s * (1 - s), s = sigmoid(x)."""
    return dout * cache * (1 - cache)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """out = tanh(x); x (N, M) -> out (N, M); cache: out."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * (1 - tanh(x)^2)."""
    return dout * (1 - cache * cache)


BN_EPS = 1e-5  # added to the variance before the square root: keeps 1/std finite (batch of one: var = 0)
BN_MOMENTUM = 0.9  # running <- momentum * running + (1 - momentum) * batch statistic


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                      running_var: np.ndarray, train: bool, momentum: float = BN_MOMENTUM,
                      eps: float = BN_EPS) -> tuple[np.ndarray, tuple | None]:
    """Batch normalisation of x (N, M) per unit: out = gamma * xhat + beta, out (N, M).

    train=True: xhat = (x - mean) / sqrt(var + eps) with the batch's mean and (biased)
    variance, and the running statistics (M,) are updated IN PLACE:
    running <- momentum * running + (1 - momentum) * batch.
    train=False: the running statistics are used instead and the cache is None (no backward).
    gamma, beta, running_mean, running_var: (M,). cache: (xhat, gamma, 1/sqrt(var + eps)).
    """
    if not train:
        scale = gamma / np.sqrt(running_var + eps)
        return x * scale + (beta - running_mean * scale), None
    n = x.shape[0]
    mean = np.add.reduce(x, axis=0) / n  # x.mean's Python wrapper costs more than the sum here
    xc = x - mean
    var = np.einsum("ij,ij->j", xc, xc) / n  # sum of squares without an (N, M) temporary
    inv_std = 1 / np.sqrt(var + eps)
    xhat = xc
    xhat *= inv_std
    running_mean *= momentum
    running_mean += (1 - momentum) * mean
    running_var *= momentum
    running_var += (1 - momentum) * var
    return xhat * gamma + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode backward: dout (N, M) -> dx (N, M), dgamma (M,), dbeta (M,).

    With dbeta = sum(dout) and dgamma = sum(dout * xhat) over the batch,
    dx = gamma / std * (dout - (dbeta + xhat * dgamma) / N).
    A batch of one has xhat = 0 and dbeta = dout, so dx = 0 exactly: its output is beta
    whatever x is.
    """
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.einsum("ij,ij->j", dout, xhat)
    dx = xhat * (dgamma / n)
    dx += dbeta / n
    np.subtract(dout, dx, out=dx)
    dx *= gamma * inv_std
    return dx, dgamma, dbeta


def bernoulli_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Inverted-dropout mask (shape): 0 with probability p, else 1/(1-p), so E[mask] = 1.

    Units are kept where a 16-bit uniform integer u >= t = round(p * 2^16), the integers taken
    from the generator's raw 64-bit output, four per draw (4x cheaper than float uniforms).
    So the drop probability is p rounded to a multiple of 2^-16 (|error| <= 2^-17), and kept
    units get 2^16 / (2^16 - t), which makes E[mask] = 1 exactly.
    """
    n = int(np.prod(shape))
    u = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n].reshape(shape)
    t = min(round(p * 65536), 65535)
    return (u >= t) * np.dtype(dtype).type(65536 / (65536 - t))


def gaussian_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Gaussian multiplicative-dropout mask (shape) ~ N(1, sigma^2), sigma^2 = p / (1 - p).

    That is the variance of the Bernoulli mask with drop probability p, so `dropout: p`
    regularises about equally in both kinds (Srivastava et al. 2014, section 10).
    """
    mask = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    mask *= np.sqrt(p / (1 - p))
    mask += 1
    return mask


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative dropout in training mode: out = x * mask; x, mask, out (N, M); cache: mask.

    The mask comes from `bernoulli_mask` or `gaussian_mask` (mean 1), so eval mode is
    the identity.
    """
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * mask."""
    return dout * cache
