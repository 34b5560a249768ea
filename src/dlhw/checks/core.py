"""What a check is and returns, and the numerical tools every check uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlhw.models.gradcheck import normwise_error as rel_error  # noqa: F401 - the checks' error measure
from dlhw.models.gradcheck import numerical_gradient

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


def jsonable(x: Any) -> Any:
    """JSON-able numbers: arrays -> nested lists of floats."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    return x.item() if isinstance(x, np.generic) else x


def fd_jacobian(F: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dF/dx (m, n) of F: R^n -> R^m by centred differences."""
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e.flat[j] = h
        cols.append((np.ravel(F(x + e)) - np.ravel(F(x - e))) / (2 * h))
    return np.stack(cols, axis=1)


def fd_grads(f: Callable[[], float], *arrays: np.ndarray) -> list[np.ndarray]:
    """Centred-difference gradients of the scalar f() w.r.t. each array (perturbed in place)."""
    return [numerical_gradient(f, a) for a in arrays]


def sci(x: float) -> str:
    return f"{x:.1e}"

