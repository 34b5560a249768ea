"""report.md (`dlhw report`, `finish_run`) and `dlhw compare`, on synthetic run folders."""
from __future__ import annotations

import csv
import re

import pytest
from click.testing import CliRunner

from dlhw.report import compare
from dlhw.store import files as results
from dlhw.cli import cli
from dlhw.errors import RunError
from dlhw.report.markdown import finish_run, write_report
from test_plots import assert_good_png, make_grid_run, make_train_run


def links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", md)


def test_finish_run_on_a_grid_run(tmp_path):
    run = make_grid_run(tmp_path / "grid")
    paths = finish_run(run)
    assert paths[-1] == run / "report.md" and len(paths) == 9
    md = paths[-1].read_text()
    for link in links(md):  # every relative link resolves inside the run folder
        assert not link.startswith(("/", "http")) and (run / link).is_file(), link
    assert sum(1 for link in links(md) if link.startswith("figures/")) == 8
    for section in ("## Chosen hyperparameters", "## Metrics", "## The 10 best settings", "## Per-class test accuracy",
                    "## Figures", "## Resolved config", "## Provenance"):
        assert section in md
    best = results.read_json(run / "best.json")
    chosen = md.split("## Chosen hyperparameters")[1].split("##")[0]
    assert f"| {best['batch_size']} |" in chosen and f"{best['val_ce']:.4f}" in chosen
    top = md.split("## The 10 best settings")[1].split("##")[0]
    assert len([ln for ln in top.splitlines() if re.match(r"\| \d+ \|", ln)]) == 10
    assert "validation (chosen setting, trained on train only)" in md  # the retrained model has no val split
    assert "```yaml\nname: grid\n" in md


def test_report_of_a_train_run(tmp_path):
    run = make_train_run(tmp_path / "run")
    md = write_report(run).read_text()  # no figures yet
    assert "No figures yet" in md and "## Chosen hyperparameters" not in md and "best settings" not in md
    per_class = md.split("## Per-class test accuracy")[1].split("##")[0]
    rows = [ln for ln in per_class.splitlines() if ln.startswith("| ") and "%" in ln]
    assert len(rows) == 10
    accs = [float(r.split("|")[4].strip(" %")) for r in rows]
    assert accs == sorted(accs)  # hardest class first
    r = CliRunner().invoke(cli, ["report", "--run", str(run), "--plots"])
    assert r.exit_code == 0, r.output
    md = (run / "report.md").read_text()
    assert "![Learned weights](figures/weights.png)" in md
    assert all((run / link).is_file() for link in links(md))


def test_report_of_a_diverged_and_a_linear_run(tmp_path):
    md = write_report(make_train_run(tmp_path / "div", diverged_epoch=2)).read_text()
    assert "Training diverged at epoch 2" in md and "Per-class" not in md
    md = finish_run(make_train_run(tmp_path / "lin", kind="linear", loss="mse"))[-1].read_text()
    assert "mean squared error" in md and "accuracy" not in md.split("## Metrics")[1].split("##")[0]


def test_report_links_other_formats(tmp_path):
    run = make_train_run(tmp_path / "run", epochs=2)
    md = finish_run(run, fmt="pdf")[-1].read_text()
    assert "[Loss vs epochs (PDF)](figures/loss_curves.pdf)" in md
    assert all((run / link).is_file() for link in links(md))


def test_compare_two_runs(tmp_path):
    a = make_train_run(tmp_path / "a", lr=0.05)
    b = make_train_run(tmp_path / "b", lr=0.2, alpha=0.0)
    g = make_grid_run(tmp_path / "g")
    out = tmp_path / "cmp.csv"
    r = CliRunner().invoke(cli, ["compare", str(a), str(b), str(g), "--csv", str(out), "--plot", str(tmp_path / "v.png"),
                                 "--wide"])  # one table, however wide (test_tables.py: fitting the terminal)
    assert r.exit_code == 0, r.output
    head, rule, *rows = r.output.splitlines()[:5]
    assert head.split()[:3] == ["run", "train.batch_size", "train.learning_rate"]
    assert "train.alpha" in head and "grid.batch_size" in head and "val CE" in head and "test acc" in head
    assert "output.dir" not in head and "name" not in head.split()
    assert rows[0].startswith("a ") and rows[1].startswith("b ")
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert [t["run"] for t in table] == ["a", "b", "g"]
    assert float(table[1]["train.learning_rate"]) == 0.2
    best = results.read_json(g / "best.json")
    assert float(table[2]["train.batch_size"]) == best["batch_size"]  # a grid counts with its chosen setting
    assert float(table[2]["val_ce"]) == pytest.approx(best["val_ce"])
    retrain_s = results.read_json(g / "metrics.json")["seconds"]
    search_s = results.read_json(g / "manifest.json")["grid"]["seconds"]
    assert float(table[2]["seconds"]) == pytest.approx(search_s + retrain_s)  # search + retrain
    assert_good_png(tmp_path / "v.png")


def test_compare_same_config_has_no_config_columns(tmp_path):
    a = make_train_run(tmp_path / "x" / "run")
    b = make_train_run(tmp_path / "y" / "run")
    columns, rows = compare.compare_runs([a, b])
    assert columns[0] == "run" and columns[1] == "val_ce"
    assert [r["run"] for r in rows] == [str(a), str(b)]  # same folder names: full paths


@pytest.mark.parametrize("args, message", [
    (["compare", "{a}", "{tmp}/nope"], "run folder not found"),
    (["compare", "{a}", "--plot", "{tmp}/v.gif"], "must end in one of .png, .svg, .pdf"),
    (["compare"], "Missing argument 'RUN...'"),
])
def test_compare_errors(tmp_path, args, message):
    a = make_train_run(tmp_path / "a")
    r = CliRunner().invoke(cli, [x.format(a=a, tmp=tmp_path) for x in args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_compare_plot_needs_validation_curves(tmp_path):
    a = make_train_run(tmp_path / "a", trained_on="train+val")
    with pytest.raises(RunError, match="none of these runs has validation curves"):
        compare.plot_validation([a], tmp_path / "v.png")
