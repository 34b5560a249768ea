"""A run folder never contradicts itself: a new run removes the previous run's derived files,
manifest.json lists the derived files that belong to this run, and an interrupted phase says so."""
from __future__ import annotations

import json
import math

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


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_while_drawing_figures_says_what_is_saved_and_report_says_so(fast_config, tmp_path, monkeypatch):
    from dlhw.report import plots

    out = tmp_path / "run"
    monkeypatch.setitem(plots.FIGURES, "confusion_matrix", _ctrl_c)
    r = run("train", "--config", fast_config(epochs=1), "--out", out, "-q")
    assert r.exit_code == 130
    assert r.output.splitlines()[-1] == (
        f"interrupted while drawing the figures: the results in {out} are complete, its figures and report.md "
        f"are not; `dlhw report --run {out} --plots` finishes them.")
    assert (out / "metrics.json").is_file() and not (out / "report.md").exists()
    assert derived(out)["figures"] == "incomplete"

    r = run("report", "--run", out)  # without --plots: the report and the terminal say figures are missing
    assert r.exit_code == 0
    assert f"note: {out}: drawing its figures was interrupted" in r.output
    assert "**Incomplete**: drawing the figures was interrupted" in (out / "report.md").read_text()

    monkeypatch.undo()
    assert run("report", "--run", out, "--plots").exit_code == 0
    assert derived(out)["figures"] == "complete"
    assert "Incomplete" not in (out / "report.md").read_text()


def test_ctrl_c_while_training_leaves_no_half_written_run(fast_config, tmp_path, monkeypatch):
    import dlhw.training.run as training_run

    out = tmp_path / "run"
    assert run("train", "--config", fast_config(epochs=1), "--out", out, "-q").exit_code == 0
    monkeypatch.setattr(training_run, "fit", _ctrl_c)
    r = run("train", "--config", fast_config(epochs=1), "--out", out, "-q")
    assert r.exit_code == 130
    assert r.output.splitlines()[-1] == (f"interrupted while training: nothing of this run is saved in {out}; "
                                         f"rerun the same command.")
    assert not (out / "report.md").exists() and not (out / "figures").exists()


def test_ctrl_c_in_a_grids_retrain_says_the_jobs_are_saved(write_config, tmp_path, monkeypatch):
    import dlhw.grid.run as grid_run
    from dlhw.training.run import Interrupted

    def retrain_interrupted(cfg, **kwargs):
        raise Interrupted("training", cfg.run_dir)

    monkeypatch.setattr(grid_run, "run_grid", retrain_interrupted)
    out = tmp_path / "g"
    cfg = write_config("grid: {learning_rate: [0.1, 0.2]}\n")
    r = run("grid", "--config", cfg, "--out", out, "-q")
    assert r.exit_code == 130
    assert r.output.strip() == (f"interrupted while retraining the chosen setting (training): every job of the grid "
                                f"is saved in {out / 'jobs'}; rerun the same command to finish (only the retrain "
                                f"runs again).")


def test_a_finite_run_that_ends_worse_than_the_zero_model_is_reported(write_config, fashion_dir, tmp_path):
    cfg = write_config("data: {name: fashion-mnist, val_fraction: 0.2}\nmodel: {kind: softmax}\n"
                       "train: {batch_size: 256, learning_rate: 500, epochs: 1, alpha: 0.0001, seed: 0}\n")
    out = tmp_path / "run"
    r = run("train", "--config", cfg, "--out", out, "-q")
    assert r.exit_code == 0, r.output  # finite: not "diverged", so not exit 1
    m = results.read_json(out / "metrics.json")
    assert m["diverged"] is False and m["worse_than_start"] is True
    assert m["train_ce"] > math.log(10)
    warning = (f"training ended worse than it started: training CE {m['train_ce']:.4g} is above ln 10 = 2.3026, "
               f"the CE of the zero model (every class equally likely); try a smaller learning rate than 500.")
    assert m["warning"] == warning
    assert f"warning: {warning}" in r.output
    assert f"> **Warning**: {warning}" in (out / "report.md").read_text()


def test_a_run_that_learned_says_nothing(fast_config, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--config", fast_config(epochs=1), "--out", out, "-q")
    m = results.read_json(out / "metrics.json")
    assert m["worse_than_start"] is False and "warning" not in m and "warning" not in r.output


def test_report_shows_the_config_keys_of_the_runs_model_kind_only(tmp_path):
    from dlhw.report.markdown import write_report

    def resolved(md: str) -> str:
        return md.split("## Resolved config")[1].split("```yaml")[1].split("```")[0]

    soft = resolved(write_report(make_train_run(tmp_path / "s")).read_text())
    assert "kind: softmax" in soft and "learning_rate: 0.05" in soft and "optimizer: sgd" in soft
    for key in ("hidden:", "dropout:", "activation:", "momentum:", "batch_norm:"):
        assert key not in soft
    mlp = resolved(write_report(make_train_run(tmp_path / "m", kind="mlp")).read_text())
    assert "hidden: [256, 128]" in mlp and "activation: relu" in mlp and "dropout: 0.0" in mlp
    assert "momentum:" not in mlp and "leaky_slope" not in mlp and "dropout_kind" not in mlp
    assert "hidden: [256, 128]" in (tmp_path / "s" / "config.yaml").read_text()  # the file keeps everything
