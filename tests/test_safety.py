"""Finished work is never lost and never stale: full disks, damaged or foreign job files, code edits."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

import dlhw.grid.jobs
from dlhw.cli import cli

TRAIN = """\
name: small
data: {{name: fashion-mnist, val_fraction: 0.2, classes: [0, 1, 2]}}
train: {{seed: 0, dtype: float32, batch_size: 512, learning_rate: 0.1, epochs: {epochs}, alpha: 0.0}}
"""
CFG = TRAIN + """\
grid:
  batch_size: [256, 512]
  learning_rate: [0.01, 0.1]
  epochs: [1, 2]
  alpha: [0.0, 0.001]
"""


def _run(*args):
    return CliRunner().invoke(cli, [*map(str, args), "-q", "--no-plots"])


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, mounted for the test (needs root); unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", f"tmpfs-{uuid.uuid4().hex[:8]}", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt, leave: int) -> None:
    """Fill the disk until about `leave` bytes are free."""
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def _no_temp_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.realdata
def test_train_on_a_full_disk_says_so_in_one_line_and_keeps_the_earlier_run(write_config, fashion_dir, tiny_disk):
    out = tiny_disk / "run"
    assert _run("train", "--config", write_config(TRAIN.format(epochs=1)), "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".lock")}
    assert "metrics.json" in before and "model.npz" in before
    _fill(tiny_disk, leave=8 * 1024)  # room for the small files, not for model.npz
    r = _run("train", "--config", write_config(TRAIN.format(epochs=2)), "--out", out)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot write (No space left on device)" in lines[0]
    assert "Traceback" not in r.output
    assert _no_temp_files(out)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".lock")}
    assert after == before  # the earlier complete run, untouched: not half of each


@pytest.mark.realdata
def test_grid_on_a_full_disk_fails_cleanly_and_resumes_once_there_is_room(write_config, fashion_dir, tiny_disk):
    cfg = write_config(CFG.format(epochs=1))
    out = tiny_disk / "grid"
    out.mkdir()
    _fill(tiny_disk, leave=6 * 1024)
    r = _run("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert r.exit_code == 1, r.output
    assert "cannot write (No space left on device)" in r.output and "Traceback" not in r.output
    assert _no_temp_files(out)
    (tiny_disk / "filler").unlink()
    r = _run("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert r.exit_code == 0, r.output


@pytest.mark.realdata
def test_damaged_foreign_and_stale_jobs_are_recomputed_with_a_log_line(write_config, fashion_dir, tmp_path,
                                                                         monkeypatch):
    cfg = write_config(CFG.format(epochs=1))
    out = tmp_path / "grid"
    assert _run("grid", "--config", cfg, "--out", out, "--jobs", "1").exit_code == 0
    reference = (out / "grid.csv").read_text()
    a, b = sorted((out / "jobs").glob("*.npz"))
    a.write_bytes(a.read_bytes()[:100])  # truncated
    b.write_bytes(a.read_bytes())  # damaged in another way: reused below
    (out / "jobs" / f".{b.name}.x1y2.tmp").write_bytes(b"half a file")  # a crashed write's leftover
    r = _run("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert r.exit_code == 0, r.output
    assert "2 jobs run, 0 resumed" in r.output
    log = (out / "grid.log").read_text()
    assert f"{a.name}: unreadable" in log and f"{b.name}: unreadable" in log
    assert (out / "grid.csv").read_text() == reference
    # a foreign result under this job's name (e.g. copied from another run) is not trusted
    with np.load(b, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    ident = json.loads(str(arrays["identity"]))
    ident["learning_rates"] = [9.0] * len(ident["learning_rates"])
    arrays["identity"] = np.array(json.dumps(ident, sort_keys=True))
    np.savez(b, **arrays)
    r = _run("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert "1 jobs run, 1 resumed" in r.output
    assert f"{b.name}: holds another job's result" in (out / "grid.log").read_text()
    with np.load(b, allow_pickle=False) as z:  # recomputed and rewritten with its own identity
        assert json.loads(str(z["identity"])) != ident
    # an edit to the code on the training path: nothing saved is reused, and the log says why
    monkeypatch.setattr(dlhw.grid.jobs, "code_fingerprint", lambda: "0123456789abcdef")
    r = _run("grid", "--config", cfg, "--out", out, "--jobs", "1")
    assert r.exit_code == 0 and "2 jobs run, 0 resumed" in r.output
    assert "computed by other code" in (out / "grid.log").read_text()
    assert (out / "grid.csv").read_text() == reference


def test_code_fingerprint_covers_the_training_path():
    from dlhw.store.provenance import RESULT_CODE, code_fingerprint

    assert len(code_fingerprint()) == 16
    assert {"models", "training", "data", "grid/jobs.py", "config.py"} <= set(RESULT_CODE)
