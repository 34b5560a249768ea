"""The CLI: help, version, and one clear line with exit code 2 for every user mistake."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

import dlhw
from dlhw.cli import cli

OK = "train: {epochs: 1}\n"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_version_and_help():
    assert run("--version").output.strip().endswith(dlhw.__version__)
    for cmd in ([], ["train"], ["eval"], ["data"], ["data", "fetch"], ["data", "info"]):
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage:" in r.output


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "dlhw", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and dlhw.__version__ in r.stdout


BAD_CONFIGS = [
    ("trian: {}\n", "unknown key 'trian' (did you mean 'train'?)"),
    ("train: {epochs: 0}\n", "'train.epochs' must be an integer >= 1. Got 0 instead."),
    ("train: {batch_size: 3.5}\n", "'train.batch_size' must be an integer >= 1. Got 3.5 instead."),
    ("train: {batch_size: many}\n", "'train.batch_size' must be an integer >= 1. Got 'many' instead."),
    ("train: {learning_rate: -1}\n", "'train.learning_rate' must be a float > 0"),
    ("train: {learning_rate: .nan}\n", "'train.learning_rate' must be a finite number"),
    ("train: {alpha: -0.5}\n", "'train.alpha' must be a float >= 0"),
    ("train: {dtype: half}\n", "'train.dtype' must be one of 'float32', 'float64'"),
    ("train: {optimiser: sgd}\n", "unknown key 'train.optimiser' (did you mean 'optimizer'?)"),
    ("data: {name: cifar10}\n", "'data.name' must be one of"),
    ("data: {val_fraction: 1.5}\n", "'data.val_fraction' must be a float in [0, 1)"),
    ("data: {preprocess: pca}\n", "'data.preprocess' must be one of 'scale', 'standardize', 'none'"),
    ("data: {split_seed: -1}\n", "'data.split_seed' must be an integer >= 0"),
    ("model: {kind: resnet}\n", "'model.kind' must be one of"),
    ("model: softmax\n", "'model' must be a mapping"),
    ("train: {epochs: [1, 2\n", "invalid YAML at line 2"),
    ("", "the config file is empty"),
    ("just a string\n", "the top level must be a mapping"),
    ("data: {dir: /nonexistent/folder}\n", "/nonexistent/folder"),
    ("data: {classes: [Sneaker, Boot]}\nmodel: {kind: logistic}\n", "unknown class 'Boot'"),
]


@pytest.mark.parametrize("text, message", BAD_CONFIGS)
def test_bad_config_through_cli(write_config, tmp_path, text, message):
    r = run("train", "--config", write_config(text), "--out", tmp_path / "out", "-q")
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "missing.yaml"], "missing.yaml: config file not found"),
    (["train", "--config", "."], "is a folder"),
    (["train", "--config", "{cfg}", "--set", "train.epochs"], "expected KEY=VALUE"),
    (["train", "--config", "{cfg}", "--set", "train.epoch=2"], "did you mean 'epochs'?"),
    (["train", "--config", "{cfg}", "--set", "train.epochs=-2"],
     "--set 'train.epochs=-2': 'train.epochs' must be an integer >= 1. Got -2 instead."),
    (["train", "--config", "{cfg}", "--set", "train.average=yes"],
     "--set 'train.average=yes': 'train.average' must be one of 'none', 'epoch'. Got True instead "
     "(YAML reads 'yes' as True)."),
    (["train", "--config", "{cfg}", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (["train", "--config", "{cfg}", "--bogus"], "No such option '--bogus'"),
    (["train"], "Missing option '--config'"),
    (["eval", "--run", "/no/such/run"], "/no/such/run: run folder not found"),
    (["eval", "--run", "{cfg}"], "is a file; give a run folder"),
    (["eval", "--run", "{tmp}"], "not a dlhw run folder"),
    (["eval", "--run", "{tmp}", "--split", "dev"], "Invalid value for '--split'"),
    (["data", "info", "cifar"], "Invalid value for 'NAME'"),
    (["data", "info", "fashion-mnist", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_bad_command_lines(write_config, tmp_path, args, message):
    cfg = write_config(OK)
    args = [a.format(cfg=cfg, tmp=tmp_path) for a in args]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_user_error_through_the_real_entry_point(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {learning_rate: 0}\n")
    r = subprocess.run([sys.executable, "-m", "dlhw", "train", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {bad}: 'train.learning_rate' must be a float > 0. Got 0 instead."
    assert r.stdout == ""


@pytest.mark.parametrize("args, line", [
    (["eval", "--run", "{tmp}", "--split", "tset"],
     "error: dlhw eval: Invalid value for '--split': 'tset' is not one of 'test', 'val', 'train'. "
     "(see `dlhw eval --help`)"),
    (["train"], "error: dlhw train: Missing option '--config'. (see `dlhw train --help`)"),
    (["data", "info", "nope"], "error: dlhw data info: Invalid value for 'NAME': 'nope' is not one of "
                               "'fashion-mnist', 'mnist'. (see `dlhw data info --help`)"),
])
def test_usage_mistakes_get_one_line_through_the_real_entry_point(tmp_path, args, line):
    args = [a.format(tmp=tmp_path) for a in args]
    r = subprocess.run([sys.executable, "-m", "dlhw", *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == line
    assert r.stdout == ""


def test_help_and_version_still_exit_0_through_the_real_entry_point():
    for args in (["--help"], ["grid", "--help"], ["--version"]):
        r = subprocess.run([sys.executable, "-m", "dlhw", *args], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout and not r.stderr


def test_fetch_without_network_fails_cleanly(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    r = CliRunner().invoke(cli, ["data", "fetch", "fashion-mnist", "--dir", str(tmp_path / "d"), "-q"])
    assert r.exit_code == 2
    assert "could not download" in r.output and "apt-get install dataset-fashion-mnist" in r.output
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
