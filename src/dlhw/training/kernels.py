"""Compiled per-step kernels of the stacked engine (numba), and its two matrix products (BLAS gemm).

A stacked SGD step is two matrix products plus elementwise work over a (B, K, S) array: B rows,
K classes, S settings. Written as NumPy expressions that work took ~25 calls and ~10 passes over the
array per step - as much time as the products themselves at batch 16. Here it is two compiled
loops whose inner loop runs over the S settings (contiguous, so it vectorises) with NumPy's own
`exp` between them (the same SIMD exp the single-model loop uses), run on blocks of `ROWS` rows so
that a block stays in the core's cache through the three passes; the weight update is folded
into the second product by gemm's `beta = 1` (`V <- V - X^T G` in one call, no pass over V; NumPy
has no such call, so it comes from scipy's BLAS wrapper).

The arithmetic is the NumPy version's, operation for operation and in the same order (no fused
multiply-adds: numba's default does not contract), so only the products' rounding can differ.
Layouts (all C-order): `Zl`, `G` (B, (K-1)*S), column k*S + s = class k of setting s; `P` (rows, K, S);
`V` (D, (K-1)*S).
"""
from __future__ import annotations

import numba as nb
import numpy as np
from scipy.linalg import blas

_JIT = dict(nogil=True, cache=True, error_model="numpy")

# Rows per block of the elementwise passes (training steps and evaluation): a block's (ROWS, K, S)
# array, 160 KiB at K = 10 and S = 64, stays in a core's L2 cache from the logits through exp to
# the gradient. The blocks only split the passes (the products run on the whole mini-batch or
# evaluation chunk) and every sum still runs in row order, so results do not depend on ROWS.
ROWS = 64


@nb.njit(**_JIT)
def shifted_logits(Zl, c, b, yb, P, zy):
    """P[i, :, s] = true logits of row i, setting s, minus their max; zy[i, s] = P[i, y_i, s].

    True logits: c_s * (x V)[k] + b[k] for the K-1 stored classes, c_s * -(sum of them) + b[K-1]
    for the last (its weights are minus the sum of the others')."""
    B = Zl.shape[0]
    K, S = b.shape
    cf = c.astype(b.dtype)
    m = np.empty(S, dtype=b.dtype)
    for i in range(B):
        for s in range(S):
            P[i, K - 1, s] = Zl[i, s]
        for k in range(1, K - 1):
            for s in range(S):
                P[i, K - 1, s] += Zl[i, k * S + s]
        for s in range(S):
            v = (-P[i, K - 1, s]) * cf[s] + b[K - 1, s]
            P[i, K - 1, s] = v
            m[s] = v
        for k in range(K - 1):
            for s in range(S):
                v = Zl[i, k * S + s] * cf[s] + b[k, s]
                P[i, k, s] = v
                m[s] = max(m[s], v)
        for k in range(K):
            for s in range(S):
                P[i, k, s] -= m[s]
        y = yb[i]
        for s in range(S):
            zy[i, s] = P[i, y, s]


@nb.njit(**_JIT)
def ce_gradient(P, zy, yb, coef, ce, G, db):
    """For a block of rows (P holds exponentials by now): ce[s] += sum_i log(sum_k P) - zy (the
    mini-batch CE, checked for divergence by the caller); G = (P / sum_k P - Y) * coef for the K-1
    stored classes (coef = lr / (c B) per setting: the step size folded in); db += the bias
    gradient, summed in row order over the blocks (the caller applies it: `bias_step`)."""
    B, K, S = P.shape
    ssum = np.empty(S, dtype=P.dtype)
    sc = np.empty(S, dtype=P.dtype)
    for i in range(B):
        for s in range(S):
            ssum[s] = P[i, 0, s]
        for k in range(1, K):
            for s in range(S):
                ssum[s] += P[i, k, s]
        for s in range(S):
            ce[s] += np.log(ssum[s]) - zy[i, s]
            sc[s] = coef[s] / ssum[s]
        y = yb[i]
        for k in range(K - 1):
            for s in range(S):
                g = P[i, k, s] * sc[s]
                G[i, k * S + s] = g
            if k == y:
                for s in range(S):
                    G[i, k * S + s] -= coef[s]
            for s in range(S):
                db[k, s] += G[i, k * S + s]
        for s in range(S):
            g = P[i, K - 1, s] * sc[s]
            if y == K - 1:
                g -= coef[s]
            db[K - 1, s] += g


@nb.njit(**_JIT)
def begin_step(c, decay, hard, step_lr, B, c_next, coef, ce, db):
    """The step's scalars per setting: c_next = c * decay (1 where lr * alpha == 1), coef = lr / (c_next B)
    in the weights' dtype; zeroes the sums `ce_gradient` adds to."""
    for s in range(c.shape[0]):
        v = c[s] * decay[s]
        if hard[s]:
            v = 1.0
        c_next[s] = v
        coef[s] = step_lr[s] / (v * B)
    ce[:] = 0
    db[:] = 0


@nb.njit(**_JIT)
def bias_step(b, db, c):
    """b -= c * db: the bias step, lr/B * sum (P - Y) (db carries the factor 1/c of coef)."""
    K, S = b.shape
    cf = c.astype(b.dtype)
    for k in range(K):
        for s in range(S):
            b[k, s] -= db[k, s] * cf[s]


@nb.njit(**_JIT)
def end_step(alive, ce, b, db, c, lo, hi):
    """After the blocks: 2 if an alive setting's mini-batch CE is not finite (it diverged; nothing
    done), else the bias step (`bias_step`) and 1 if a scale |c| left [lo, hi] (or is NaN), else 0."""
    for s in range(ce.shape[0]):
        if alive[s] and not np.isfinite(ce[s]):
            return 2
    bias_step(b, db, c)
    for s in range(c.shape[0]):
        a = abs(c[s])
        if not (a >= lo and a <= hi):
            return 1
    return 0


@nb.njit(**_JIT)
def add_true_weights(V, ct, A):
    """A += V * ct, ct (N,) the per-column scale (c of each column's setting): one pass over V and A
    for iterate averaging, as fast as a copy (the inner loop runs along contiguous rows)."""
    D, N = V.shape
    for d in range(D):
        for j in range(N):
            A[d, j] += V[d, j] * ct[j]


@nb.njit(**_JIT)
def eval_logits(Zl, c, b, y, P, zy, correct):
    """Evaluation's first half (`models.layers.cross_entropy`'s rule, compiled for a stack):
    `shifted_logits`, and correct[s] += rows whose first argmax is their label (ties: lower class)."""
    shifted_logits(Zl, c, b, y, P, zy)
    B, K, S = P.shape
    best = np.empty(S, dtype=P.dtype)
    arg = np.empty(S, dtype=np.int64)
    for i in range(B):
        for s in range(S):
            best[s] = P[i, 0, s]
            arg[s] = 0
        for k in range(1, K):
            for s in range(S):
                if P[i, k, s] > best[s]:
                    best[s] = P[i, k, s]
                    arg[s] = k
        for s in range(S):
            if arg[s] == y[i]:
                correct[s] += 1


@nb.njit(**_JIT)
def eval_ce(P, zy, ce):
    """Evaluation's second half, after exp: ce[s] += sum_i log(sum_k P) - zy with the sum of the
    exponentials and the log in float64, row by row (as `models.layers.cross_entropy`)."""
    B, K, S = P.shape
    acc = np.empty(S)
    for i in range(B):
        for s in range(S):
            acc[s] = P[i, 0, s]
        for k in range(1, K):
            for s in range(S):
                acc[s] += P[i, k, s]
        for s in range(S):
            ce[s] += np.log(acc[s]) - zy[i, s]


def gemm_for(dtype):
    """BLAS gemm of `dtype` (scipy's wrapper: it takes alpha, beta and an output to overwrite)."""
    return blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm


def forward(xb, V, out):
    """out (B, N) <- x V (NumPy's matmul: the faster call here for the shapes of a step)."""
    return np.matmul(xb, V, out=out)


def update(gemm, xb, G, V):
    """V <- V - x^T G in one gemm (beta = 1): no separate pass over V. V (D, N) C-order is the
    Fortran-order (N, D) matrix V^T, updated in place as V^T - G^T x."""
    gemm(-1.0, G.T, xb.T, trans_b=1, beta=1.0, c=V.T, overwrite_c=1)
    return V


def limit_like_numpy():
    """A threadpool limit that gives scipy's BLAS (loaded after the caller may have limited NumPy's)
    the thread count NumPy's BLAS has: the stack's products then run as the caller set them."""
    from threadpoolctl import threadpool_info, threadpool_limits

    n = min((i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"
             and "numpy" in i.get("filepath", "")), default=None)
    return threadpool_limits(limits=n, user_api="blas") if n else threadpool_limits(limits=None)
