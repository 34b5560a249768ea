"""The grid engine: stacked training equals one-at-a-time training; selection; resume; lock."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from dlhw.cli import cli
from dlhw.config import TrainConfig, from_dict, load_config
from dlhw.grid.jobs import make_jobs, settings
from dlhw.grid.select import assemble, rank, select
from dlhw.models import SoftmaxRegression
from dlhw.store.files import load_npz, read_csv
from dlhw.training.stack import train_stack
from dlhw.training.loop import fit


def blobs(n=400, d=12, k=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(dtype), y


def lone(X, y, lr, alpha, bs, epochs, val, seed=0, average="none"):
    """One setting trained alone by train.fit: the reference the stack must equal."""
    m = SoftmaxRegression(X.shape[1], 4, alpha, X.dtype)
    cfg = TrainConfig(batch_size=bs, learning_rate=lr, alpha=alpha, epochs=epochs, seed=seed, average=average)
    h = fit(m, (X, y), cfg, {"val": val})
    return m, h


LRS = [0.003, 0.03, 0.3, 0.3, 1.0, 0.5]
ALPHAS = [0.0, 1e-3, 0.0, 1e-2, 1e-4, 2.0]  # the last: lr * alpha == 1 exactly


@pytest.mark.parametrize("average", ["none", "epoch"])
@pytest.mark.parametrize("bs", [1, 7, 32])
def test_stack_float64_weights_equal_lone_runs(bs, average):
    X, y = blobs()
    val = blobs(n=100, seed=1)
    r = train_stack(X, y, 4, LRS, ALPHAS, bs, seed=3, epochs=3, val=val, train_ce_epochs=(1, 3), keep_weights=True,
                    average=average == "epoch")
    for s, (lr, a) in enumerate(zip(LRS, ALPHAS)):
        m, h = lone(X, y, lr, a, bs, 3, val, seed=3, average=average)
        np.testing.assert_allclose(r.W[s], m.params["W"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.b[s], m.params["b"], rtol=0, atol=1e-9)
        for e, row in enumerate(h.epoch_rows()):
            assert r.val_ce[e, s] == pytest.approx(row["val_ce"], abs=1e-9)
            assert r.val_accuracy[e, s] == row["val_accuracy"]
        assert r.train_ce[3][s] == pytest.approx(h.rows[-1]["train_ce"], abs=1e-9)


@pytest.mark.parametrize("average", ["none", "epoch"])
def test_stack_float32_metrics_within_1e4_of_lone_runs(average):
    X, y = blobs(dtype=np.float32)
    val = blobs(n=100, seed=1, dtype=np.float32)
    r = train_stack(X, y, 4, LRS, ALPHAS, 16, seed=0, epochs=2, val=val, train_ce_epochs=(2,),
                    average=average == "epoch")
    for s, (lr, a) in enumerate(zip(LRS, ALPHAS)):
        _, h = lone(X, y, lr, a, 16, 2, val, average=average)
        assert abs(r.val_ce[1, s] - h.rows[-1]["val_ce"]) < 1e-4
        assert abs(r.val_accuracy[1, s] - h.rows[-1]["val_accuracy"]) < 1e-4
        assert abs(r.train_ce[2][s] - h.rows[-1]["train_ce"]) < 1e-4


@pytest.mark.parametrize("average", ["none", "epoch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_diverging_setting_leaves_the_others_equal_to_their_lone_runs(dtype, average):
    X, y = blobs(dtype=dtype)
    val = blobs(n=100, seed=1, dtype=dtype)
    lrs, alphas = [0.1, 1e5, 0.01], [1e-3, 10.0, 0.0]  # |1 - lr*alpha| = 1e6 per step: explodes
    with np.errstate(all="raise"):  # nothing may leak a floating-point warning
        r = train_stack(X, y, 4, lrs, alphas, 20, seed=0, epochs=4, val=val, keep_weights=True,
                        average=average == "epoch")
    assert r.diverged_epoch.tolist()[1] >= 1 and r.diverged_epoch[0] == r.diverged_epoch[2] == 0
    assert np.isnan(r.val_ce[-1, 1]) and np.isfinite(r.val_ce[:, [0, 2]]).all()
    assert (r.W[1] == 0).all() and (r.b[1] == 0).all()  # frozen at zero, nothing non-finite kept
    _, hd = lone(X, y, 1e5, 10.0, 20, 4, val, average=average)
    assert hd.diverged and hd.diverged_epoch == r.diverged_epoch[1]
    for s in (0, 2):
        m, h = lone(X, y, lrs[s], alphas[s], 20, 4, val, average=average)
        tol = 1e-9 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(r.W[s], m.params["W"], atol=tol)
        assert r.val_ce[-1, s] == pytest.approx(h.rows[-1]["val_ce"], abs=tol)


def test_averaged_stack_forms_the_mean_only_in_recorded_epochs():
    X, y = blobs()
    val = blobs(n=100, seed=1)
    r = train_stack(X, y, 4, LRS, ALPHAS, 16, seed=0, epochs=4, val=val, train_ce_epochs=(2,), record_epochs=(2,),
                    keep_weights=True, average=True)
    assert np.isnan(r.val_ce[[0, 2]]).all() and np.isfinite(r.val_ce[[1, 3]]).all()  # the last epoch always
    for s, (lr, a) in enumerate(zip(LRS, ALPHAS)):
        m, h = lone(X, y, lr, a, 16, 4, val, average="epoch")
        rows = h.epoch_rows()
        for e in (2, 4):
            assert r.val_ce[e - 1, s] == pytest.approx(rows[e - 1]["val_ce"], abs=1e-9)
        assert r.train_ce[2][s] == pytest.approx(rows[1]["train_ce"], abs=1e-9)
        np.testing.assert_allclose(r.W[s], m.params["W"], rtol=0, atol=1e-9)


# ------------------------------------------------------------------ expansion and selection

GRID = {"name": "g", "grid": {"batch_size": [16, 64], "learning_rate": [0.1, 0.01, 0.001],
                              "epochs": [1, 3], "alpha": [0.0, 1e-4]}}


def fake_outputs(cfg, jobs, diverge=None):
    """Job outputs with val_ce = lr + alpha + 1/epoch (+0.01 per batch-size index)."""
    outs = []
    for j in jobs:
        E, S = j.epochs, j.n_settings
        vce = np.array([[lr + a + 1 / e + 0.01 * cfg.grid.batch_size.index(j.batch_size)
                         for lr, a in zip(j.learning_rates, j.alphas)] for e in range(1, E + 1)])
        div = np.zeros(S, dtype=int)
        if diverge and j.batch_size == diverge[0]:
            for s, lr in enumerate(j.learning_rates):
                if lr == diverge[1]:
                    div[s] = diverge[2]
                    vce[diverge[2] - 1:, s] = np.nan
        outs.append({"val_ce": vce, "val_accuracy": 1 - vce / 10, "train_ce": vce[[0, 2]] - 0.1,
                     "diverged_epoch": div})
    return outs


def test_grid_rows_one_per_setting_and_missing_axes_take_train_values():
    cfg = from_dict(GRID)
    rows, curves = assemble(cfg, jobs := make_jobs(cfg), fake_outputs(cfg, jobs))
    assert len(rows) == 2 * 3 * 2 * 2 == cfg.grid.size
    assert len({(r["batch_size"], r["learning_rate"], r["epochs"], r["alpha"]) for r in rows}) == len(rows)
    assert len(curves) == 2 * 3 * 2 * 3  # every epoch of every (bs, lr, alpha)
    cfg2 = from_dict({"name": "g", "train": {"epochs": 4}, "grid": {"learning_rate": [0.1, 0.2]}})
    assert [s["epochs"] for s in settings(cfg2)] == [4, 4]


def test_selection_takes_min_val_ce_or_max_accuracy_and_skips_diverged():
    cfg = from_dict(GRID)
    jobs = make_jobs(cfg)
    rows, _ = assemble(cfg, jobs, fake_outputs(cfg, jobs))
    best = select(rows, "val_ce")
    assert (best["batch_size"], best["learning_rate"], best["epochs"], best["alpha"]) == (16, 0.001, 3, 0.0)
    assert select(rows, "val_accuracy") == best  # accuracy = 1 - ce/10 here
    # the best stack diverges at epoch 2: its 3-epoch setting is out, its 1-epoch one is still valid
    rows, _ = assemble(cfg, jobs, fake_outputs(cfg, jobs, diverge=(16, 0.001, 2)))
    div = [r for r in rows if r["diverged"]]
    assert {(r["batch_size"], r["learning_rate"], r["epochs"]) for r in div} == {(16, 0.001, 3)}
    assert all(r["val_ce"] is None and r["diverged_epoch"] == 2 for r in div)
    best = select(rows, "val_ce")
    assert (best["batch_size"], best["learning_rate"], best["epochs"], best["alpha"]) == (16, 0.01, 3, 0.0)
    assert [r["val_ce"] for r in rank(rows, n=10)] == sorted(r["val_ce"] for r in rows if not r["diverged"])[:10]


def test_jobs_are_small_picklable_and_keyed_by_what_determines_them():
    import pickle

    cfg = from_dict(GRID)
    jobs = make_jobs(cfg)
    assert len(jobs) == 2 and all(j.n_settings == 6 and j.epochs == 3 for j in jobs)
    assert pickle.loads(pickle.dumps(jobs[0])).key == jobs[0].key
    assert len(pickle.dumps(jobs[0])) < 5000
    other = make_jobs(from_dict({**GRID, "data": {"split_seed": 1}}))
    assert other[0].key != jobs[0].key
    renamed = make_jobs(from_dict({**GRID, "name": "other", "output": {"dir": "/tmp/x"}}))
    assert renamed[0].key == jobs[0].key  # the name and folder do not change results
    seeds = make_jobs(from_dict({**GRID, "grid": {**GRID["grid"], "seeds": [0, 1, 2]}}))
    assert len(seeds) == 6


def test_grid_without_section_or_validation_set_is_a_config_error(write_config):
    r = CliRunner().invoke(cli, ["grid", "--config", str(write_config("train: {epochs: 1}\n"))])
    assert r.exit_code == 2 and "has no 'grid' section" in r.output
    r = CliRunner().invoke(cli, ["grid", "--config", str(write_config(
        "data: {val_fraction: 0}\ngrid: {batch_size: [8]}\n"))])
    assert r.exit_code == 2 and "needs a validation set" in r.output


# ------------------------------------------------------------------ on the real Fashion-MNIST

SMALL = """\
name: small
data: {{name: fashion-mnist, val_fraction: 0.2}}
train: {{seed: 0, dtype: float32}}
grid:
  batch_size: {bs}
  learning_rate: [0.01, 0.1]  # stable settings: lr 0.3 is chaotic at these batch sizes
  epochs: [1, 2]
  alpha: [0.0, 0.001]
"""


def _grid(cfg, out, *extra):
    return CliRunner().invoke(cli, ["grid", "--config", str(cfg), "--out", str(out), "-q", "--no-plots", *extra],
                              catch_exceptions=False)


@pytest.mark.realdata
@pytest.mark.parametrize("average", ["none", "epoch"])
def test_grid_equals_dlhw_train_for_each_setting(write_config, fashion_dir, tmp_path, average):
    cfg = write_config(SMALL.format(bs="[512]").replace("dtype: float32", f"dtype: float32, average: {average}"))
    r = _grid(cfg, tmp_path / "g", "--jobs", "1")
    assert r.exit_code == 0, r.output
    rows = read_csv(tmp_path / "g/grid.csv")
    assert len(rows) == 8
    for row in rows[::3]:
        sets = [f"train.{k}={row[k]}" for k in ("batch_size", "learning_rate", "epochs", "alpha")]
        t = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", str(tmp_path / "t"), "-q", "--no-plots",
                                     *[a for s in sets for a in ("--set", s)]], catch_exceptions=False)
        assert t.exit_code == 0, t.output
        m = json.loads((tmp_path / "t/metrics.json").read_text())
        assert abs(m["val_ce"] - row["val_ce"]) < 1e-4
        assert abs(m["val_accuracy"] - row["val_accuracy"]) < 1e-4
        assert abs(m["train_ce"] - row["train_ce"]) < 1e-4


@pytest.mark.realdata
def test_end_to_end_small_grid_on_fashion_mnist(fashion_dir, tmp_path):
    out = tmp_path / "small"
    r = CliRunner().invoke(cli, ["grid", "--config", "configs/softmax_small.yaml", "--out", str(out), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = read_csv(out / "grid.csv")
    assert len(rows) == 32
    assert list(rows[0]) == ["batch_size", "learning_rate", "epochs", "alpha", "train_ce", "val_ce",
                             "val_accuracy", "diverged", "diverged_epoch"]
    best = json.loads((out / "best.json").read_text())
    assert best["val_ce"] == min(r["val_ce"] for r in rows)
    m = json.loads((out / "metrics.json").read_text())
    assert m["trained_on"] == "train+val" and m["test_accuracy"] > 0.82 and "val_ce" not in m
    assert m["epochs_run"] == best["epochs"]
    for f in ("config.yaml", "history.csv", "model.npz", "manifest.json", "grid_epochs.csv", "grid.log",
              "report.md", "figures/grid_heatmaps.png", "figures/grid_epochs.png", "figures/grid_marginals.png"):
        assert (out / f).is_file(), f
    assert "best (lowest validation CE)" in r.output and "test accuracy" in r.output
    assert "ten best settings" in r.output
    # softmax_small averages each epoch's iterates: said in the summary and the report; the stacks
    # recorded the grid's epochs only
    assert "weights averaged over the last epoch" in r.output
    assert "mean of the last epoch's SGD iterates" in (out / "report.md").read_text()
    assert {int(c["epoch"]) for c in read_csv(out / "grid_epochs.csv")} == {2, 5}
    # eval of a grid run reproduces its test metrics (trained on train+val)
    e = CliRunner().invoke(cli, ["eval", "--run", str(out)], catch_exceptions=False)
    assert e.exit_code == 0
    assert json.loads((out / "eval-test.json").read_text())["test_ce"] == m["test_ce"]


def _start(cfg, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "dlhw", "grid", "--config", str(cfg), "--out", str(out),
                             "-q", "--no-plots", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_jobs(out, n=1, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if len(list((out / "jobs").glob("*.npz"))) >= n:
            return
        time.sleep(0.01)
    raise AssertionError("no job finished in time")


def _same_results(a, b):
    for f in ("grid.csv", "grid_epochs.csv", "best.json", "history.csv", "iterations.csv"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ca, cb = ((x / "config.yaml").read_text().replace(str(x), "<out>") for x in (a, b))
    assert ca == cb
    wa, wb = load_npz(a / "model.npz"), load_npz(b / "model.npz")
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((x / "metrics.json").read_text()) for x in (a, b))
    ma.pop("seconds"), mb.pop("seconds")
    assert ma == mb


@pytest.mark.realdata
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(write_config, fashion_dir, tmp_path):
    cfg = write_config(SMALL.format(bs="[16, 32, 64, 128, 256]"))
    out = tmp_path / "killed"
    p = _start(cfg, out, "--jobs", "1")
    _wait_for_jobs(out)
    p.send_signal(signal.SIGKILL)
    p.wait()
    saved = {f.name: f.stat().st_mtime_ns for f in (out / "jobs").glob("*.npz")}
    assert 1 <= len(saved) < 5
    assert (out / ".lock").exists()  # left behind by the killed process: it blocks nothing below
    r = _grid(cfg, out, "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert f"{5 - len(saved)} jobs run, {len(saved)} resumed" in r.output
    for name, mtime in saved.items():
        assert (out / "jobs" / name).stat().st_mtime_ns == mtime  # not recomputed
    assert f"{len(saved)} loaded" in (out / "grid.log").read_text()
    clean = tmp_path / "clean"
    assert _grid(cfg, clean, "--jobs", "1").exit_code == 0
    _same_results(out, clean)
    assert not (out / ".lock.info").exists()


@pytest.mark.realdata
def test_ctrl_c_saves_finished_jobs_and_says_how_to_resume(write_config, fashion_dir, tmp_path):
    cfg = write_config(SMALL.format(bs="[16, 32, 64, 128]"))
    out = tmp_path / "run"
    p = _start(cfg, out, "--jobs", "2")
    _wait_for_jobs(out)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "jobs are saved in" in lines[0] and "rerun the same command to resume" in lines[0]
    assert "Traceback" not in err


HOLD = """
import sys, time
from dlhw.store.lock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder):
    """A real process that holds `folder`'s lock until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.parametrize("command", ["grid", "train"])
def test_a_folder_in_use_is_refused_and_a_killed_holder_blocks_nothing(write_config, tmp_path, command):
    cfg = write_config(SMALL.format(bs="[512]"))
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        r = CliRunner().invoke(cli, [command, "--config", str(cfg), "--out", str(out), "-q", "--no-plots"])
        assert r.exit_code == 2
        assert f"in use by another dlhw process (pid {holder.pid}" in r.output
        assert not (out / "metrics.json").exists()  # refused before any work
    finally:
        holder.kill()  # SIGKILL: no clean-up runs; the kernel drops the lock
        holder.wait()
    from dlhw.store.lock import RunLock

    assert (out / ".lock").exists()  # the file stays; it no longer means anything
    with RunLock(out):
        with RunLock(out):  # re-entrant in one process (the grid's retrain)
            pass
        assert (out / ".lock.info").read_text().startswith(f"pid {os.getpid()}")
    assert not (out / ".lock.info").exists()


def test_a_left_over_lock_file_blocks_nothing(tmp_path):
    from dlhw.store.lock import RunLock

    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")  # e.g. from a crash, or another tool's empty file
    (out / ".lock.info").write_text("pid 1: dlhw grid\n")
    with RunLock(out):
        pass


@pytest.mark.parametrize("command", ["grid", "train"])
def test_an_out_that_is_a_file_is_refused_before_training(write_config, tmp_path, command):
    cfg = write_config(SMALL.format(bs="[512]"))
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    r = CliRunner().invoke(cli, [command, "--config", str(cfg), "--out", str(f), "-q", "--no-plots"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == f"error: {f}: is a file, not a folder; give --out a folder path."
    r = CliRunner().invoke(cli, [command, "--config", str(cfg), "--out", str(f / "sub"), "-q", "--no-plots"])
    assert r.exit_code == 2 and "cannot create the run folder" in r.output and "Traceback" not in r.output


def test_dry_run_trains_nothing(write_config, tmp_path):
    cfg = write_config(SMALL.format(bs="[16, 32]"))
    r = CliRunner().invoke(cli, ["grid", "--config", str(cfg), "--out", str(tmp_path / "d"), "--dry-run"])
    assert r.exit_code == 0
    assert "16 settings" in r.output and "2 jobs" in r.output and "estimated" in r.output
    assert not (tmp_path / "d").exists()


def test_several_seeds_are_averaged_and_their_spread_reported():
    cfg = from_dict({**GRID, "grid": {**GRID["grid"], "seeds": [0, 1]}})
    jobs = make_jobs(cfg)
    outs = fake_outputs(cfg, jobs)
    for j, o in zip(jobs, outs):  # seed 1 is 0.1 worse everywhere
        if j.seed == 1:
            o["val_ce"] = o["val_ce"] + 0.1
    rows, curves = assemble(cfg, jobs, outs)
    r = next(r for r in rows if (r["batch_size"], r["learning_rate"], r["epochs"], r["alpha"]) == (16, 0.1, 1, 0.0))
    assert r["val_ce"] == pytest.approx(0.1 + 1 + 0.05)
    assert r["val_ce_std"] == pytest.approx(np.std([1.1, 1.2], ddof=1))
    assert r["n_seeds"] == 2
    assert len(rows) == cfg.grid.size


def test_progress_bar_shows_the_best_validation_ce_so_far():
    from dlhw.grid.run import _Progress

    class Bar:
        n, postfix = 0, ""

        def update(self, k):
            self.n += k

        def set_postfix_str(self, s, refresh=True):
            self.postfix = s

    bar = Bar()
    p = _Progress(bar)
    p.add(64, 0.52)
    p.add(64, float("nan"))
    p.add(64, 0.61)
    assert bar.n == 192 and bar.postfix == "best val CE 0.5200"


MLP_GRID = """\
name: mlpgrid
data: {name: fashion-mnist, val_fraction: 0.2}
model: {kind: mlp, hidden: [16], dropout: 0.0}
train: {seed: 0, dtype: float32, batch_size: 256, optimizer: sgd}
grid: {learning_rate: [0.05, 0.2], alpha: [0.0, 0.001], epochs: [1, 2]}
"""


@pytest.mark.realdata
def test_mlp_grid_runs_one_job_per_setting_and_equals_dlhw_train(write_config, fashion_dir, tmp_path):
    cfg = write_config(MLP_GRID)
    r = _grid(cfg, tmp_path / "g")
    assert r.exit_code == 0, r.output
    assert "4 jobs run" in r.output  # 2 learning rates x 2 alphas, one job each
    rows = read_csv(tmp_path / "g/grid.csv")
    assert len(rows) == 8
    row = next(x for x in rows if (x["learning_rate"], x["alpha"], x["epochs"]) == (0.2, 0.001, 2))
    t = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", str(tmp_path / "t"), "-q", "--no-plots",
                                 "--set", "train.learning_rate=0.2", "--set", "train.alpha=0.001",
                                 "--set", "train.epochs=2"], catch_exceptions=False)
    assert t.exit_code == 0, t.output
    m = json.loads((tmp_path / "t/metrics.json").read_text())
    assert m["val_ce"] == pytest.approx(row["val_ce"], abs=1e-6)
    assert m["train_ce"] == pytest.approx(row["train_ce"], abs=1e-6)


def test_the_estimate_schedules_longest_first_and_is_calibrated_here(write_config, tmp_path):
    from dlhw.grid.estimate import Calibration, estimate, job_seconds, makespan

    assert makespan([3, 5, 3, 4, 3], 2) == 10  # longest first: 5 | 4, then 3 -> 4+3, 3 -> 5+3, 3 -> 7+3
    assert makespan([1, 1, 1, 1], 4) == 1 and makespan([], 3) == 0
    cfg = load_config(write_config(SMALL.format(bs="[64, 512]")))
    jobs = make_jobs(cfg)
    cal = Calibration({64: 1e-3, 512: 4e-3}, 4, 0.01, 1e-4, {64: 1e-4, 512: 2e-4}, 1e-3)
    small, large = sorted(jobs, key=lambda j: j.batch_size)
    steps = lambda B: 2 * -(-48000 // B)  # noqa: E731 - 2 epochs of the 48,000 search rows
    assert job_seconds(small, cal) == pytest.approx(steps(64) * 1e-3 + (2 * 12000 + 2 * 48000) / 8192 * 0.01)
    assert job_seconds(large, cal) == pytest.approx(steps(512) * 4e-3 + (2 * 12000 + 2 * 48000) / 8192 * 0.01)
    one, two = (estimate(cfg, jobs, w, None, cal) for w in (1, 2))
    assert one > two and one - two == pytest.approx(min(job_seconds(j, cal) for j in jobs))
    r = CliRunner().invoke(cli, ["grid", "--config", str(write_config(SMALL.format(bs="[512]"))), "--dry-run",
                                 "--jobs", "1"])
    assert r.exit_code == 0 and "calibrated here: a 4-setting step at batch 512 takes" in r.output


_FAULTS_PER_STEP = """
import resource, numpy as np
from dlhw.training.stack import train_stack
rng = np.random.default_rng(0)
X = rng.random((128 * 400, 784), dtype=np.float32); y = rng.integers(0, 10, X.shape[0])
run = lambda n: train_stack(X[:n], y[:n], 10, [0.01] * 64, [1e-4] * 64, 128, 0, 1, (X[:1], y[:1]))
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run(128 * 100)
a = faults(); run(128 * 100); b = faults(); run(128 * 400); c = faults()
print(((c - b) - (b - a)) / 300)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and ru_minflt")
def test_a_stacked_step_allocates_nothing_where_malloc_returns_memory_at_once():
    """Dask's workers run with MALLOC_TRIM_THRESHOLD_=65536 (glibc then gives every freed block back at
    once): a step that allocated its mini-batch afresh page-faulted it in every step (a batch of 128
    rows: ~100 pages), which made jobs on Dask workers ~15% slower than in the pool."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[-1]) < 30  # the products' own small buffers: a few pages per step
