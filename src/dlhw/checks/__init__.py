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
from functools import partial

import numpy as np

from dlhw.checks.core import Check, Outcome, Result, Slip, jsonable
from dlhw.checks.networks import (backprop, check_backprop, check_batchnorm, check_gaussian_dropout,
                                  check_hessian, check_worked_network, hessian_f3)
from dlhw.checks.regression import (bias_grad_all_positive, check_all_positive, check_ce_gradient,
                                    check_ce_is_nll, check_logistic_l2, check_newton_mse, check_sigmoid,
                                    check_softmax_jacobian, check_softmax_regression, check_softmax_shift,
                                    check_xor_linear, logistic_model_grad, naive_softmax)
from dlhw.errors import DlhwError
from dlhw.models.layers import softmax
from dlhw.models.layers import sigmoid
from dlhw.models.linear import logistic_l2_update

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


def format_report(results: list[Result], details: bool = False, width: int | None = None) -> str:
    """The table (check, source, claim, computed, expected, verdict), the slips caught, and details;
    no line wider than `width` (None: as wide as the cells need; long cells wrap in their column)."""
    import textwrap

    from dlhw.report.texttable import render

    rows = [[r.check.name, r.check.source, r.check.claim, r.outcome.computed, r.outcome.expected,
             "PASS" if r.outcome.passed else "FAIL"] for r in results]
    head = ["check", "source", "claim", "computed", "expected", "verdict"]
    lines = [render(head, rows, width, keep=(0, 5))]
    n_ok = sum(r.outcome.passed for r in results)
    lines.append(f"{n_ok}/{len(results)} claims hold.")
    slip_rows = [[name, s.label, "FAIL (caught)" if not o.passed else "PASSES: NOT CAUGHT", o.computed]
                 for name, s, o in ((r.check.name, s, o) for r in results for s, o in r.slips)]
    if slip_rows:
        lines += ["", "Slips fed through the same checks (each must FAIL):"]
        table = render(["check", "slip", "verdict", "computed"], slip_rows, None if width is None else width - 2,
                       keep=(0, 2))
        lines += ["  " + line for line in table.splitlines()]
    for r in results if details else []:
        if r.outcome.details:
            lines += ["", f"{r.check.name}: {r.check.claim}"]
            for d in r.outcome.details:
                lines += textwrap.wrap(str(d), width, initial_indent="  ", subsequent_indent="    ") if width else [f"  {d}"]
    return "\n".join(lines)


def to_json(results: list[Result]) -> dict:
    """Every check with its name, source, verdict, numbers, and each slip's verdict and numbers."""
    return {"passed": all(r.ok for r in results), "checks": [{
        "name": r.check.name, "claim": r.check.claim, "source": r.check.source,
        "verdict": "pass" if r.outcome.passed else "fail", "computed": r.outcome.computed,
        "expected": r.outcome.expected, "numbers": jsonable(r.outcome.numbers), "details": r.outcome.details,
        "slips": [{"label": s.label, "verdict": "pass" if o.passed else "fail", "caught": not o.passed,
                   "computed": o.computed, "numbers": jsonable(o.numbers)} for s, o in r.slips],
    } for r in results]}

