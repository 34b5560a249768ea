"""A run folder never contradicts itself: a new run removes the previous run's derived files,
manifest.json lists the derived files that belong to this run, and an interrupted phase says so."""
from __future__ import annotations

import json

from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.store import files as results
from test_plots import make_grid_run, make_train_run

PNGS = {"accuracy_curves.png", "confusion_matrix.png", "loss_curves.png", "loss_iterations.png", "weights.png"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def derived(d):
    return results.read_json(d / "manifest.json")["derived"]


def test_a_rerun_leaves_no_evaluation_figure_or_report_of_the_previous_run(fast_config, tmp_path):
    cfg, out = fast_config(epochs=2), tmp_path / "run"
    assert run("train", "--config", cfg, "--out", out, "-q").exit_code == 0
    r = run("eval", "--run", out)
    assert r.exit_code == 0 and (out / "eval-test.json").is_file()
    assert "eval-test.json" in derived(out)["files"]
    assert run("report", "--run", out, "--plots", "--format", "svg").exit_code == 0
    assert {p.name for p in (out / "figures").iterdir()} == {n.replace(".png", ".svg") for n in PNGS}

    r = run("train", "--config", cfg, "--out", out, "-q", "--set", "train.epochs=1")
    assert r.exit_code == 0, r.output
    assert not (out / "eval-test.json").exists()  # it described the 2-epoch model
    assert {p.name for p in (out / "figures").iterdir()} == PNGS  # no .svg of the earlier run
    d = derived(out)
    assert d["figures"] == "complete"
    assert set(d["files"]) == {"report.md", *(f"figures/{n}" for n in PNGS)}
    metrics = results.read_json(out / "metrics.json")
    assert metrics["epochs_run"] == 1
    assert run("eval", "--run", out).exit_code == 0
    assert results.read_json(out / "eval-test.json")["test_accuracy"] == metrics["test_accuracy"]


def test_plot_in_another_format_replaces_the_figures_and_relinks_the_report(tmp_path):
    out = make_train_run(tmp_path / "run")
    assert run("report", "--run", out, "--plots").exit_code == 0
    r = run("plot", "--run", out, "--format", "svg")
    assert r.exit_code == 0, r.output
    assert {p.suffix for p in (out / "figures").iterdir()} == {".svg"}
    md = (out / "report.md").read_text()
    assert "figures/weights.svg" in md and ".png" not in md
    assert set(derived(out)["files"]) == {"report.md", *(f"figures/{n.replace('.png', '.svg')}" for n in PNGS)}


def test_train_into_a_grid_folder_is_refused(write_config, tmp_path):
    g = make_grid_run(tmp_path / "g")
    before = (g / "metrics.json").read_bytes()
    r = run("train", "--config", write_config("train: {epochs: 1}\n"), "--out", g, "-q")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip() == (f"error: {g}: holds a grid run (grid.csv, jobs/); one training run there would "
                                f"sit beside grid results it does not match. Give another folder, e.g. --out {g}_train.")
    assert (g / "metrics.json").read_bytes() == before
    assert json.loads(before)
