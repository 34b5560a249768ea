"""`dlhw check`: every claim holds, every slip is caught, and the numbers are the right ones."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw import checks
from dlhw.checks import CHECKS, Check, run_checks
from dlhw.cli import cli

REQUIRED = ["softmax_shift", "ce_gradient", "softmax_jacobian", "softmax_regression", "ce_is_nll", "sigmoid",
            "logistic_l2", "newton_mse", "xor_linear", "all_positive", "batchnorm", "gaussian_dropout",
            "backprop", "hessian", "worked_network"]


@pytest.fixture(scope="module")
def outcomes():
    """Each check run once with its correct formula: name -> Outcome."""
    return {r.check.name: r.outcome for r in run_checks(slips=False)}


def test_the_catalogue_is_complete_and_every_check_has_a_slip():
    assert list(CHECKS) == REQUIRED
    for c in CHECKS.values():
        assert c.slips, f"{c.name} has no wrong formula to reject"


@pytest.mark.parametrize("name", REQUIRED)
def test_every_claim_holds(outcomes, name):
    o = outcomes[name]
    assert o.passed, (name, o.computed, o.expected)
    json.dumps(checks.jsonable(o.numbers))  # JSON-able


@pytest.mark.parametrize("name, slip", [(c.name, s) for c in CHECKS.values() for s in c.slips],
                         ids=lambda v: getattr(v, "label", v))
def test_every_slip_fails(name, slip):
    assert not checks._run_slip(CHECKS[name], slip).passed


def test_fd_precision(outcomes):
    n = outcomes
    assert n["ce_gradient"].numbers["max_rel_error"] < 1e-8
    assert n["softmax_jacobian"].numbers["min_eigenvalue"] > -1e-12
    assert n["softmax_regression"].numbers["model_max_rel_error"] < 1e-7
    assert n["newton_mse"].numbers["max_abs_error"] < 1e-12
    assert n["hessian"].numbers["jacobian_of_grad_vs_second_differences"] < 1e-6
    assert n["backprop"].numbers["max_rel_error"]["linear_closed_form"] < 1e-12


def test_xor_and_newton_numbers(outcomes):
    x = outcomes["xor_linear"].numbers
    assert np.abs(x["w"]).max() < 1e-12 and x["b"] == pytest.approx(0.5, abs=1e-12)
    assert x["mse_1_over_n"] == pytest.approx(0.25, abs=1e-12)
    assert x["objective_1_over_2n"] == pytest.approx(0.125, abs=1e-12)
    nw = outcomes["newton_mse"].numbers
    np.testing.assert_allclose(nw["w1"], nw["normal_equations"], atol=1e-10)
    assert np.abs(np.subtract(nw["w0"], nw["w1"])).max() > 1  # a real step from a far start


def test_all_positive_bias_grows_like_log_t(outcomes):
    rows = outcomes["all_positive"].numbers["rows"]
    assert [r["t"] for r in rows] == [10, 100, 1000, 10_000, 100_000]
    b = [r["b"] for r in rows]
    assert all(b2 - b1 == pytest.approx(math.log(10), abs=0.06) for b1, b2 in zip(b[1:], b[2:]))
    assert b[-1] == pytest.approx(math.log1p(1e5), abs=1e-3)
    assert all(r["grad"] < 0 for r in rows)  # dL/db < 0, so gradient descent increases b
    assert rows[-1]["loss"] == pytest.approx(1e-5, rel=1e-3)
    model = outcomes["all_positive"].numbers["model"]
    assert np.all(np.asarray(model["per_decade"]) > 0.9)  # ||w|| and b each gain ~1 per decade of t


def test_dropout_monte_carlo_within_error_bars(outcomes):
    d = outcomes["gaussian_dropout"].numbers
    assert max(d["z_scores"]) <= 4
    # dropout's extra term s2 x_i^2 W_i is many standard errors away from 0: the MC run can see it
    assert np.max(np.abs(d["s2_term"]) / np.asarray(d["standard_error"])) > 10


def test_worked_network_values(outcomes):
    n = outcomes["worked_network"].numbers
    h1 = 1 / (1 + math.exp(-(0.15 * 0.05 + 0.25 * 0.10 + 0.35)))
    assert n["forward"]["h"][0] == pytest.approx(h1, rel=1e-15)
    assert n["forward"]["o"] == pytest.approx([0.756931915, 0.767717880], abs=1e-9)
    assert n["forward"]["cost"] == pytest.approx(1.679342028, abs=1e-9)
    g = n["gradients"]
    assert len(g) == 12
    assert g["b(o1)"] == pytest.approx(n["forward"]["o"][0] - 0.01, rel=1e-14)  # o - t
    assert g["w(h1->o1)"] == pytest.approx(g["b(o1)"] * n["forward"]["h"][0], rel=1e-14)
    for k, v in g.items():
        assert v == pytest.approx(n["finite_differences"][k], rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------- the command


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_dlhw_check_all_passes_and_writes_json(tmp_path):
    r = run("check", "--json", tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    assert "15/15 claims hold." in r.output
    assert "NOT CAUGHT" not in r.output and r.output.count("FAIL (caught)") == sum(len(c.slips) for c in CHECKS.values())
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["passed"] is True
    assert [c["name"] for c in data["checks"]] == REQUIRED
    assert all(c["verdict"] == "pass" and c["source"] and c["numbers"] for c in data["checks"])
    assert all(s["caught"] for c in data["checks"] for s in c["slips"])


def test_dlhw_check_named_prints_details():
    r = run("check", "worked_network")
    assert r.exit_code == 0, r.output
    for text in ("net_h1 = 0.382500000", "o1 = sigma(net_o1) = 0.756931915", "cost = ", "w(i1->h1)", "b(o2)"):
        assert text in r.output
    assert "softmax_shift" not in r.output


def test_unknown_check_is_one_line_exit_2():
    r = run("check", "softmax_shfit")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: unknown check 'softmax_shfit' (did you mean 'softmax_shift'?). Available: " + ", ".join(REQUIRED) + "."]


def test_a_failing_check_exits_1(monkeypatch):
    c = CHECKS["ce_gradient"]
    wrong = c.slips[0].kwargs
    monkeypatch.setitem(CHECKS, "ce_gradient", Check(c.name, c.claim, c.source,
                                                     lambda **kw: c.run(**(kw or wrong)), c.slips))
    r = run("check", "ce_gradient")
    assert r.exit_code == 1 and "FAIL" in r.output
