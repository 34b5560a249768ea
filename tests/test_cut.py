"""How a grid is cut into jobs for many workers (`grid.cut`), and results checked before they are filed."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dlhw.config import load_config
from dlhw.errors import RunError
from dlhw.grid import cut
from dlhw.grid.estimate import makespan
from dlhw.grid.executor import Done
from dlhw.grid.jobs import make_jobs, settings

CANONICAL = load_config("configs/softmax.yaml")


def covered(jobs) -> Counter:
    return Counter((j.seed, j.batch_size, lr, a) for j in jobs for lr, a in zip(j.learning_rates, j.alphas))


def test_chunks_are_even_and_widths_halve_down_to_the_minimum():
    assert cut.chunk_sizes(64, 24) == [22, 21, 21]
    assert cut.chunk_sizes(64, 64) == [64] and cut.chunk_sizes(5, 64) == [5]
    assert cut.widths(64, 64) == [64, 32, 16, 8, 4]
    assert cut.widths(6, 64) == [6]  # too few settings to halve above the minimum


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_no_more_workers_than_full_stacks_keeps_full_stacks(workers):
    jobs = make_jobs(CANONICAL, workers=workers)
    assert len(jobs) == 8 and all(j.n_settings == 64 for j in jobs)


@pytest.mark.parametrize("workers", [9, 16, 32, 128])
def test_more_workers_cut_stacks_and_every_setting_is_in_exactly_one_job(workers):
    jobs = make_jobs(CANONICAL, workers=workers)
    n = covered(jobs)
    assert set(n.values()) == {1} and len(n) == 8 * 64
    assert all(j.n_settings >= cut.MIN_WIDTH for j in jobs)
    full = [j.cost() for j in make_jobs(CANONICAL)]
    span = makespan([j.cost() for j in jobs], workers)
    assert len(jobs) > 8 and span < makespan(full, workers) * (1 - cut.MIN_GAIN)
    assert len({j.key for j in jobs}) == len(jobs)
    # the smallest batch sizes are the longest jobs: they are cut at least as finely as the largest
    width = {j.batch_size: j.n_settings for j in jobs}
    assert width[16] <= width[2048]


def test_32_workers_predict_the_search_ten_times_faster_than_2():
    span = {w: makespan([j.cost() for j in make_jobs(CANONICAL, workers=w)], w) for w in (2, 32)}
    assert span[2] / span[32] >= 10


def test_a_resume_with_another_worker_count_keeps_the_cut_already_saved(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir()
    full = make_jobs(CANONICAL, workers=2)
    for j in full:
        if j.batch_size in (16, 32):
            (folder / f"{j.key}.npz").write_bytes(b"")  # only presence matters to the planner
    jobs = make_jobs(CANONICAL, workers=32, saved=folder)
    kept = [j for j in jobs if j.batch_size in (16, 32)]
    assert {j.key for j in kept} == {j.key for j in full if j.batch_size in (16, 32)}
    assert any(j.n_settings < 64 for j in jobs if j.batch_size not in (16, 32))
    assert set(covered(jobs).values()) == {1}
    # and a rerun on 2 workers after a 32-worker run reuses the narrow jobs
    for j in make_jobs(CANONICAL, workers=32):
        (folder / f"{j.key}.npz").write_bytes(b"")
    again = make_jobs(CANONICAL, workers=2, saved=folder)
    assert {j.key for j in again} <= {p.stem for p in folder.iterdir()}


def test_grid_rows_do_not_depend_on_the_cut():
    assert len(settings(CANONICAL)) == 4096
    a, b = covered(make_jobs(CANONICAL)), covered(make_jobs(CANONICAL, workers=128))
    assert a == b


class BadExecutor:
    """Returns, for every job, what a worker running some other code might send back."""

    kind, where, note, workers = "fake", "", "", 1

    def __init__(self, mangle):
        self.mangle = mangle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def describe(self):
        return {"kind": "fake"}

    def run(self, jobs, finished, progress):
        for j in jobs:
            E, S = j.epochs, j.n_settings
            arrays = {"val_ce": np.ones((E, S)), "val_accuracy": np.ones((E, S)),
                      "train_ce": np.ones((len(j.grid_epochs), S)), "diverged_epoch": np.zeros(S, np.int64)}
            finished(Done(j, self.mangle(arrays), 1.0, "worker tcp://10.0.0.9:4242"))


@pytest.mark.parametrize("mangle, says", [
    (lambda a: {k: v for k, v in a.items() if k != "val_ce"}, "val_ce"),
    (lambda a: {**a, "val_ce": a["val_ce"][:, :1]}, "val_ce"),
    (lambda a: {**a, "diverged_epoch": a["diverged_epoch"].astype(object)}, "diverged_epoch"),
    (lambda a: {**a, "extra": np.zeros(3)}, "extra"),
])
def test_a_malformed_result_from_a_worker_is_refused_and_nothing_is_filed(mangle, says, write_config, tmp_path,
                                                                         fashion_dir):
    from dlhw.grid.run import run_grid

    cfg = load_config(write_config(f"""
name: bad
data: {{dir: {fashion_dir}}}
grid: {{batch_size: [64], learning_rate: [0.1, 0.01], epochs: [1, 2], alpha: [0.0]}}
output: {{dir: {tmp_path / 'out'}}}
"""))
    with pytest.raises(RunError) as e:
        run_grid(cfg, progress=False, executor=BadExecutor(mangle))
    assert "malformed" in e.value.message and says in e.value.message and "10.0.0.9" in e.value.message
    assert not list((tmp_path / "out" / "jobs").glob("*.npz"))


BLAS_IN_THREADS = """
import sys, threading
import numpy
from threadpoolctl import threadpool_info, threadpool_limits
from dlhw.errors import RunError
from dlhw.grid.cluster import _one_blas_thread

blas = lambda: sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
if sys.argv[1] == "controlled":  # something else in the worker set BLAS threads from its main thread first
    threadpool_limits(2, user_api="blas")
seen = []
first_in, second_in = threading.Event(), threading.Event()

def first():  # starts first, ends first
    try:
        _one_blas_thread("tcp://w:1")
    except RunError as e:
        seen.append(e.message)
        second_in.set()
    first_in.set()
    second_in.wait(5)

def second():  # starts while the first runs, still running after it ended
    first_in.wait(5)
    try:
        _one_blas_thread("tcp://w:1")
    except RunError as e:
        seen.append(e.message)
        return
    second_in.set()
    t1.join()
    seen.append(blas())

t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
t1.start(); t2.start(); t2.join(10)
print(seen[0] if seen else "none")
"""


@pytest.mark.parametrize("case", ["free", "controlled"])
def test_jobs_in_threads_of_a_dask_worker_run_one_blas_thread_or_are_refused(case):
    """Two jobs in threads of one worker (--nthreads 2): BLAS's limit is process-wide, and threadpoolctl
    lets only one thread set it. The second job still runs on one BLAS thread after the first ended;
    a worker whose BLAS someone else holds at 2 threads is refused with one line."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", BLAS_IN_THREADS, case], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")})
    assert r.returncode == 0, r.stderr
    if case == "free":
        assert r.stdout.strip() == "[1]"
    else:
        assert "runs BLAS on more than 1 thread (openblas 2)" in r.stdout and "OPENBLAS_NUM_THREADS=1" in r.stdout
