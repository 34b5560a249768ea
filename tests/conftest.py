"""Shared pytest fixtures.

`fashion_dir`: the folder holding the real Fashion-MNIST files (for tests marked `realdata`).
When the data cannot be found the test fails under CI (env CI == "true") and is skipped elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlhw.data import find_data_dir
from dlhw.errors import DataError


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Folder with the real Fashion-MNIST IDX files, found the way `dlhw` finds them."""
    try:
        return find_data_dir("fashion-mnist")
    except DataError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real Fashion-MNIST data is required under CI: {e.message}")
        pytest.skip(f"real Fashion-MNIST data not available: {e.message}")


@pytest.fixture()
def write_config(tmp_path):
    """Write a YAML config into tmp_path; returns its path. Results go under tmp_path/results."""
    def write(text: str, name: str = "cfg.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p
    return write


FAST = """\
name: fast
data: {{name: fashion-mnist, val_fraction: 0.2, preprocess: scale}}
model: {{kind: softmax}}
train: {{batch_size: 256, learning_rate: 0.1, epochs: {epochs}, alpha: 0.0001, seed: 0, dtype: {dtype}}}
"""


@pytest.fixture()
def fast_config(write_config, fashion_dir):
    """A quick softmax run on the real Fashion-MNIST (needs the data)."""
    def make(epochs: int = 2, dtype: str = "float32") -> Path:
        return write_config(FAST.format(epochs=epochs, dtype=dtype))
    return make
