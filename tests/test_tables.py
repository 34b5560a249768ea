"""Terminal tables fit $COLUMNS (`dlhw compare`, `dlhw check`); compare's time of a grid is the work
its folder records, resumed or not; the terminal and report.md give the same search time and rate."""
from __future__ import annotations

import re

from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.report import compare
from dlhw.report.texttable import render, wrap
from test_plots import CANONICAL, make_grid_run, make_train_run


def run(*args, columns: int | None = 80):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": str(columns) if columns else None})


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_compare_fits_80_columns_and_wide_shows_everything(tmp_path):
    a = make_train_run(tmp_path / "a", lr=0.05)
    b = make_train_run(tmp_path / "b", lr=0.3)
    g = make_grid_run(tmp_path / "g", **CANONICAL)
    r = run("compare", a, b, g)
    assert r.exit_code == 0, r.output
    assert widest(r.output) <= 80
    assert r.output.count("\nrun ") + r.output.startswith("run ") >= 2  # split into blocks, each with the runs
    g_cells = " ".join(ln for ln in r.output.splitlines() if ln.startswith("g ")).split()
    for value in ("0.4805", "85.59%", "0.4400", "85.00%", "13.5"):  # val CE, val acc, test CE, test acc, work
        assert value in g_cells, r.output
    assert "[16 .. 2048] (8)" in r.output  # a long list: its ends and length
    r = run("compare", a, b, g, "--wide")
    assert widest(r.output) > 200 and "[16, 32, 64, 128, 256, 512, 1024, 2048]" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("run ")]) == 1


def test_check_fits_80_columns():
    r = run("check")
    assert r.exit_code == 0
    assert widest(r.output) <= 80
    assert "15/15 claims hold." in r.output
    names = [ln.split()[0] for ln in r.output.split("claims hold")[0].splitlines()[2:] if ln[:1].strip()]
    assert "softmax_regression" in names and "worked_network" in names  # names are never broken
    wide = run("check", "--wide")
    assert widest(wide.output) > 120 and len(wide.output.splitlines()) < len(r.output.splitlines())


def test_render_wraps_text_and_keeps_numbers_whole():
    text = render(["name", "what", "value"], [["a", "a long description that wraps", "0.123456"]], 30,
                  [False, False, True])
    assert widest(text) <= 30 and "0.123456" in text
    assert wrap("grid.learning_rate", 10) == ["grid.", "learning_", "rate"]
    assert wrap("1.9e-14, vs naive", 9) == ["1.9e-14,", "vs naive"]


def _grid_with_log(d, sessions: list[list[tuple[str, float]]]):
    g = make_grid_run(d)
    (g / "jobs").mkdir()
    lines = []
    for jobs in sessions:
        lines.append(f"2026-12-01T10:00:00 grid grid: 54 settings, 3 jobs, 0 loaded, {len(jobs)} to run")
        for key, s in jobs:
            (g / "jobs" / f"{key}.npz").write_bytes(b"")
            lines.append(f"2026-12-01T10:00:01 job {key} batch_size=32 seed=0 settings=9 epochs=5: {s:.1f} s")
    lines.append("2026-12-01T10:00:02 job 0000stale batch_size=32 seed=0 settings=9 epochs=5: 99.0 s")  # no file
    (g / "grid.log").write_text("\n".join(lines) + "\n")
    return g


def test_compare_counts_a_resumed_grid_with_the_work_of_every_session(tmp_path):
    whole = _grid_with_log(tmp_path / "whole", [[("aaa1", 2.0), ("bbb2", 3.0), ("ccc3", 1.5)]])
    resumed = _grid_with_log(tmp_path / "resumed", [[("aaa1", 2.0), ("bbb2", 3.0)], [("ccc3", 1.5)]])
    columns, rows = compare.compare_runs([whole, resumed])
    retrain = 1.5  # make_train_run's seconds
    assert [r["seconds"] for r in rows] == [6.5 + retrain, 6.5 + retrain]
    r = run("compare", whole, resumed)
    assert "work (s)" in r.output and "summed over workers and over resumed sessions" in " ".join(r.output.split())


def test_terminal_and_report_give_the_same_search_time_and_rate(write_config, fashion_dir, tmp_path):
    cfg = write_config("data: {name: fashion-mnist, val_fraction: 0.2}\nmodel: {kind: softmax}\n"
                       "train: {batch_size: 512, epochs: 1, seed: 0}\n"
                       "grid: {learning_rate: [0.05, 0.1], epochs: [1]}\n")
    out = tmp_path / "g"
    r = run("grid", "--config", cfg, "--out", out, "-q", "--jobs", "1")
    assert r.exit_code == 0, r.output
    seconds, rate = re.search(r"search (\d+\.\d) s \((\d+\.\d) settings/s", r.output).groups()
    assert f"(grid search {seconds} s, {rate} settings/s)" in (out / "report.md").read_text()


def test_report_of_a_resumed_grid_gives_no_rate_over_the_jobs_of_one_session(tmp_path):
    from dlhw.report.markdown import write_report
    from dlhw.store import files as results

    g = make_grid_run(tmp_path / "g")
    best = results.read_json(g / "best.json")
    best.pop("seconds", None), best.pop("settings_per_second", None)
    results.write_json(g / "best.json", best)
    manifest = results.read_json(g / "manifest.json")
    manifest["grid"] = {"seconds": 0.4, "settings_per_second": 135.0, "jobs": 2, "jobs_run": 0, "jobs_loaded": 2}
    results.write_json(g / "manifest.json", manifest)
    md = write_report(g).read_text()
    assert ("(grid search 0.4 s in the session that finished it, which ran 0 of 2 jobs; 2 were saved by an "
            "earlier one)") in md
    assert "settings/s" not in md
