"""Help texts and usage messages a new user meets: example configs that work with their command,
one name for the data folder, hints towards --set KEY=VALUE, full command summaries, percentages."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.config import load_config


def run(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def test_each_commands_example_config_works_with_it():
    grid_help = " ".join(run("grid", "--help").output.split())
    train_help = " ".join(run("train", "--help").output.split())
    assert "configs/softmax_small.yaml" in grid_help and "softmax_train" not in grid_help
    assert "configs/softmax_train.yaml" in train_help
    for path in re.findall(r"configs/\w+\.yaml", grid_help):
        assert load_config(path).grid is not None, path
    assert load_config("configs/softmax_train.yaml").grid is None


def test_top_level_help_lists_whole_summaries():
    r = run("--help", env={"COLUMNS": "80"}, terminal_width=80)
    text = " ".join(r.output.split())
    commands = r.output.split("Commands:")[1]
    assert r.exit_code == 0 and "..." not in commands
    assert "Check the homework's claims numerically: claim, source, computed, expected, verdict." in text
    assert "Train one setting (the config's `train:` values) and write its run folder." in text
    assert max(len(line) for line in r.output.splitlines()) <= 80


@pytest.mark.parametrize("args, hint", [
    (["train", "--config", "{cfg}", "--set", "train.epochs", "5"],
     "Got unexpected extra argument (5). --set takes KEY=VALUE as one word: --set train.epochs=5."),
    (["train", "--config", "{cfg}", "--epochs", "5"],
     "No such option '--epochs'. Config values are set with --set KEY=VALUE, e.g. --set train.epochs=5."),
    (["train", "--config", "{cfg}", "--learning-rate=0.3"], "e.g. --set train.learning_rate=0.3."),
    (["grid", "--config", "{cfg}", "--epochs", "5"], "e.g. --set grid.epochs=5."),
    (["train", "--config", "{cfg}", "--bogus"],
     "No such option '--bogus'. Config values are set with --set KEY=VALUE (e.g. --set train.epochs=5)."),
])
def test_config_values_given_as_options_hint_at_set(write_config, args, hint):
    cfg = write_config("train: {epochs: 1}\n")
    r = run(*[a.format(cfg=cfg) for a in args])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert hint in r.output


def test_commands_without_set_do_not_mention_it(tmp_path):
    r = run("plot", "--run", tmp_path, "--epochs", "5")
    assert r.exit_code == 2 and "--set" not in r.output


def test_one_name_for_the_data_folder(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for cmd in (["train"], ["grid"], ["eval"], ["data", "info"], ["data", "fetch"]):
        assert "--data-dir" in run(*cmd, "--help").output, cmd
    for flag in ("--data-dir", "--dir"):  # --dir: the old name still works
        r = run("data", "fetch", "fashion-mnist", flag, tmp_path / "d", "-q")
        assert r.exit_code == 2 and "could not download" in r.output


def test_a_grid_added_by_set_is_blamed_on_the_set(write_config, tmp_path, monkeypatch):
    import dlhw.training.run as training_run

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "prepare", stop)  # the note comes before any training
    cfg = write_config("train: {epochs: 1}\n")
    r = run("train", "--config", cfg, "--set", "grid.batch_size=[32]", "--out", tmp_path / "o", "-q")
    assert ("note: --set grid.batch_size=[32] adds a 'grid' section; `dlhw train` trains the 'train' values only"
            in r.output)
    assert f"{cfg} has a 'grid' section" not in r.output


def test_eval_prints_accuracy_as_a_percentage(fast_config, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--config", fast_config(epochs=1), "--out", out, "-q").exit_code == 0
    r = run("eval", "--run", out)
    assert r.exit_code == 0
    assert re.search(r"^test_accuracy: \d+\.\d\d%$", r.output, re.M), r.output
    assert re.search(r"^test_ce: \d\.\d{4}$", r.output, re.M), r.output
