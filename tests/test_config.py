"""Config loading and validation: every mistake is one clear ConfigError line."""
import dataclasses
import math

import pytest

from dlhw.config import Config, dump_config, from_dict, load_config
from dlhw.errors import ConfigError

GOOD = """\
name: t
data: {name: fashion-mnist, val_fraction: 0.2}
model: {kind: softmax}
train: {batch_size: 32, learning_rate: 1e-2, epochs: 3, alpha: 0}
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_config_loads_into_frozen_dataclasses(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.name == "t"
    assert cfg.train.batch_size == 32
    assert cfg.train.learning_rate == pytest.approx(0.01)  # YAML 1.1 reads 1e-2 as a string
    assert cfg.grid is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 5  # frozen


def test_name_defaults_to_file_stem(tmp_path):
    cfg = load_config(write(tmp_path, "train: {epochs: 2}\n", "my_run.yaml"))
    assert cfg.name == "my_run"
    assert str(cfg.run_dir) == "results/my_run"


def test_dump_roundtrips(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + "grid: {learning_rate: [0.1, 0.01]}\n"))
    again = load_config(write(tmp_path, dump_config(cfg), "again.yaml"))
    assert again == cfg


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["train.epochs=7", "grid.batch_size=[16, 32]", "name=x"])
    assert cfg.train.epochs == 7
    assert cfg.grid.batch_size == (16, 32)
    assert cfg.grid.learning_rate == (0.01,)  # a missing axis takes the train value
    assert cfg.name == "x"


@pytest.mark.parametrize("text, message", [
    ("trian: {}\n", "unknown key 'trian' (did you mean 'train'?)"),
    ("train: {lerning_rate: 1}\n", "unknown key 'train.lerning_rate' (did you mean 'learning_rate'?)"),
    ("train: {learning_rate: 0}\n", "'train.learning_rate' must be a float > 0. Got 0 instead."),
    ("train: {learning_rate: -0.1}\n", "'train.learning_rate' must be a float > 0. Got -0.1 instead."),
    ("train: {batch_size: 0}\n", "'train.batch_size' must be an integer >= 1. Got 0 instead."),
    ("train: {batch_size: 12.5}\n", "'train.batch_size' must be an integer >= 1. Got 12.5 instead."),
    ("train: {batch_size: true}\n", "'train.batch_size' must be an integer >= 1. Got True instead."),
    ("train: {epochs: 0}\n", "'train.epochs' must be an integer >= 1"),
    ("train: {alpha: -1}\n", "'train.alpha' must be a float >= 0. Got -1 instead."),
    ("train: {alpha: .nan}\n", "'train.alpha' must be a finite number"),
    ("train: {learning_rate: .inf}\n", "'train.learning_rate' must be a finite number"),
    ("train: {learning_rate: fast}\n", "'train.learning_rate' must be a float > 0. Got 'fast' instead."),
    ("train: {dtype: float16}\n", "'train.dtype' must be one of 'float32', 'float64'"),
    ("data: {val_fraction: 1.0}\n", "'data.val_fraction' must be a float in [0, 1). Got 1.0 instead."),
    ("data: {name: cifar}\n", "'data.name' must be one of 'fashion-mnist', 'mnist', 'xor'"),
    ("data: {preprocess: whiten}\n", "'data.preprocess' must be one of 'scale', 'standardize', 'none'"),
    ("model: {kind: svm}\n", "'model.kind' must be one of 'softmax', 'mlp', 'linear', 'logistic'"),
    ("train: 5\n", "'train' must be a mapping"),
    ("grid: {alpha: []}\n", "'grid.alpha' must be a non-empty list"),
    ("grid: {alpha: [0.1, 0.1]}\n", "'grid.alpha' must not repeat a value"),
    ("grid: {learning_rate: [0.1, x]}\n", "'grid.learning_rate[1]' must be a float > 0. Got 'x' instead."),
    ("grid: {batch_size: [16]}\ndata: {val_fraction: 0}\n", "a 'grid' needs a validation set"),
    ("name: a/b\n", "'name' must be a plain folder name"),
    ("- 1\n- 2\n", "the top level must be a mapping"),
    ("train: {epochs: [1\n", "invalid YAML at line"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = e.value.format_message()
    assert message in msg
    assert msg.startswith(str(p))
    assert "\n" not in msg
    assert e.value.exit_code == 2


def test_empty_missing_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="the config file is empty"):
        load_config(write(tmp_path, "\n# only a comment\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


@pytest.mark.parametrize("override, message", [
    ("train.epochs", "expected KEY=VALUE"),
    ("train.epochz=3", "unknown key 'train.epochz' (did you mean 'epochs'?)"),
    ("trains.epochs=3", "unknown key 'trains' (did you mean 'train'?)"),
    ("train.epochs=-3", "'train.epochs' must be an integer >= 1. Got -3 instead."),
    ("train.epochs.x=3", "key must be train.<key>"),
])
def test_bad_override(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, GOOD), [override])
    assert message in e.value.format_message()


def test_combination_rules():
    with pytest.raises(ConfigError, match="newton is only available for model.kind 'linear'"):
        from_dict({"train": {"optimizer": "newton"}})
    with pytest.raises(ConfigError, match="'data.classes' must list 1 or 2 classes"):
        from_dict({"model": {"kind": "logistic"}})


def test_defaults_are_the_documented_ones():
    cfg = Config(name="d")
    assert (cfg.data.val_fraction, cfg.data.preprocess, cfg.train.dtype) == (0.2, "scale", "float32")
    assert not math.isnan(cfg.train.alpha)
