"""`dlhw grid --scheduler`: jobs on a Dask cluster, with real scheduler and worker processes.

Every cluster here listens on 127.0.0.1 with ephemeral ports; every process a test starts is
stopped by the test (fixtures kill their process groups).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")  # the dask extra: `make test` installs it

from dlhw.errors import RunError  # noqa: E402
from dlhw.grid import cluster as cluster_mod  # noqa: E402

pytestmark = pytest.mark.realdata
DASK = str(Path(sys.executable).with_name("dask"))
# 4 jobs of 8 settings (batch 64..512, 4 lr x 2 alpha), 6 epochs: ~2 s each on one core
SET = ["--set", "grid.batch_size=[64, 128, 256, 512]", "--set", "grid.epochs=[2, 6]"]
CONFIG = "configs/softmax_small.yaml"


def dlhw(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlhw", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def grid_args(out: Path, *extra: str) -> list[str]:
    return ["grid", "--config", CONFIG, "--out", str(out), "-q", "--no-plots", *SET, *extra]


class Cluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, tmp: Path, tls: dict | None = None):
        self.tmp, self.tls, self.procs, self.workers = tmp, tls or {}, [], []
        self.file = tmp / "scheduler.json"
        self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(self.file), *self._tls_args()], "scheduler")
        deadline = time.time() + 60
        while not self.file.is_file() and time.time() < deadline:
            time.sleep(0.2)
        assert self.file.is_file(), (tmp / "scheduler.log").read_text()
        self.address = json.loads(self.file.read_text())["address"]

    def _tls_args(self) -> list[str]:
        t = self.tls
        return ["--tls-ca-file", t["ca"], "--tls-cert", t["cert"], "--tls-key", t["key"]] if t else []

    def _start(self, cmd: list[str], name: str, env=None, prefix=()) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen([*prefix, *cmd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, **(env or {})}, cwd=self.tmp)
        self.procs.append(p)
        return p

    def add_worker(self, env=None, prefix=(), nanny=True) -> subprocess.Popen:
        n = len(self.workers)
        p = self._start([DASK, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                         "--name", f"w{n}", *([] if nanny else ["--no-nanny"]), *self._tls_args()],
                        f"worker{n}", env, prefix)
        self.workers.append(p)
        return p

    def client(self):
        sec = None
        if self.tls:
            from distributed.security import Security

            sec = Security(tls_ca_file=self.tls["ca"], tls_client_cert=self.tls["cert"],
                           tls_client_key=self.tls["key"], require_encryption=True)
        return distributed.Client(self.address, security=sec, timeout=30, set_as_default=False)

    def wait_workers(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=90)

    @staticmethod
    def kill(p: subprocess.Popen) -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=30)

    def stop(self) -> None:
        for p in reversed(self.procs):
            self.kill(p)


@pytest.fixture()
def cluster(tmp_path, fashion_dir):
    c = Cluster(tmp_path)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, fashion_dir) -> Path:
    """The reference: the same grid through the local process pool."""
    out = tmp_path_factory.mktemp("local") / "run"
    r = dlhw(*grid_args(out))
    assert r.returncode == 0, r.stderr
    return out


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN where NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same_files(a: Path, b: Path) -> None:
    """Every result file of run `b` equals run `a`'s bit for bit (timings and provenance aside)."""
    for name in ("grid.csv", "grid_epochs.csv", "best.json", "history.csv", "iterations.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if k != "seconds"} == {k: v for k, v in mb.items() if k != "seconds"}
    with np.load(a / "model.npz") as za, np.load(b / "model.npz") as zb:
        assert za.files == zb.files and all(same_array(za[k], zb[k]) for k in za.files)
    ja, jb = sorted(p.name for p in (a / "jobs").glob("*.npz")), sorted(p.name for p in (b / "jobs").glob("*.npz"))
    assert ja == jb and ja
    for name in ja:
        with np.load(a / "jobs" / name) as za, np.load(b / "jobs" / name) as zb:
            assert za.files == zb.files and all(same_array(za[k], zb[k]) for k in za.files), name


def test_scheduler_and_two_workers_give_the_local_runs_files(cluster, local_run, tmp_path):
    from dlhw.grid.cluster import quiet_env

    cluster.add_worker(env=quiet_env())  # as the README starts workers
    cluster.add_worker()  # with Dask's default monitors
    cluster.wait_workers(2)
    out = tmp_path / "dask"
    r = dlhw(*grid_args(out, "--scheduler", cluster.address))
    assert r.returncode == 0, r.stderr
    same_files(local_run, out)
    log = (out / "grid.log").read_text()
    assert f"(dask at {cluster.address})" in log
    ran = {line.split("(dask worker ")[1].split()[0] for line in log.splitlines() if "(dask worker " in line}
    assert ran <= {"w0", "w1"} and len([ln for ln in log.splitlines() if "(dask worker " in ln]) == 4
    ex = json.loads((out / "manifest.json").read_text())["grid"]["executor"]
    assert ex["kind"] == "dask" and ex["scheduler"] == cluster.address and ex["workers"] == 2
    assert ex["worker_envs"] and "numpy" in ex["worker_envs"][0] and "blas" in ex["worker_envs"][0]
    assert ex["workers_quiet"] == 1  # the README's variables reach Dask's config; w1 is told how to match
    assert "note: 1 of 2 Dask workers run Dask's default monitors" in log
    assert "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=1s" in log

    # --dry-run sees the workers; a rerun resumes everything from jobs/ and trains nothing new
    r = dlhw(*grid_args(out, "--scheduler", cluster.address, "--dry-run"))
    assert r.returncode == 0 and f"with 2 worker(s) at {cluster.address}" in r.stdout and "(4 already saved)" in r.stdout
    assert "Note: 1 of 2 Dask workers run Dask's default monitors" in r.stdout
    r = dlhw(*grid_args(out, "--scheduler", cluster.address))
    starts = [ln for ln in (out / "grid.log").read_text().splitlines() if " jobs, " in ln and " loaded from " in ln]
    assert r.returncode == 0 and len(starts) == 2 and "4 jobs, 4 loaded" in starts[-1] and "0 to run" in starts[-1]


def test_a_worker_killed_mid_job_loses_nothing(cluster, local_run, tmp_path):
    doomed = cluster.add_worker(nanny=False)
    cluster.add_worker(nanny=False)
    cluster.wait_workers(2)
    out = tmp_path / "dask"
    client = subprocess.Popen([sys.executable, "-m", "dlhw", *grid_args(out, "--scheduler", cluster.address)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with cluster.client() as c:  # wait until the doomed worker is running a job, then kill it
            deadline = time.time() + 120
            victim = None
            while victim is None and time.time() < deadline:
                for addr, tasks in c.processing().items():
                    name = c.scheduler_info()["workers"].get(addr, {}).get("name")
                    if name == "w0" and any(str(t).startswith("dlhw-job-") for t in tasks):
                        victim = addr
                time.sleep(0.05)
            assert victim, "the doomed worker never got a job"
            time.sleep(0.5)  # mid-job: a job takes ~2 s
            cluster.kill(doomed)
        stdout, stderr = client.communicate(timeout=300)
    finally:
        client.kill()
    assert client.returncode == 0, stderr
    same_files(local_run, out)
    log = (out / "grid.log").read_text()
    assert "(dask worker w1 at" in log  # the survivor did the rest, the lost job included


def test_a_worker_without_the_data_gets_it_from_the_client(cluster, local_run, tmp_path, fashion_dir):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("hiding the system data set from one worker needs root (a private mount namespace)")
    empty = tmp_path / "empty"
    empty.mkdir()
    # the worker's own view of the machine: Debian's data folder hidden under an empty tmpfs
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /usr/share/datasets && exec "$@"', "sh"]
    cluster.add_worker(env={"DLHW_DATA": str(empty), "DLHW_CACHE": str(tmp_path / "wcache")}, prefix=hide)
    cluster.wait_workers(1)
    out = tmp_path / "dask"
    r = dlhw(*grid_args(out, "--scheduler", cluster.address, "--data-dir", str(fashion_dir)))
    assert r.returncode == 0, r.stderr
    same_files(local_run, out)
    shipped = sorted(p.name for p in (empty / "fashion-mnist").iterdir())
    assert len(shipped) == 4 and all(n.startswith(("train-", "t10k-")) for n in shipped)


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, fashion_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    t = time.time()
    r = dlhw(*grid_args(tmp_path / "run", "--scheduler", f"tcp://127.0.0.1:{port}"), timeout=60)
    assert r.returncode == 2 and time.time() - t < 30
    assert r.stderr.count("\n") == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in r.stderr
    r = dlhw(*grid_args(tmp_path / "run", "--scheduler", "127.0.0.1:8786"))
    assert r.returncode == 2 and "give tcp://HOST:PORT, tls://HOST:PORT or 'local'" in r.stderr


@pytest.mark.parametrize("address", ["http://127.0.0.1:8786", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                                     "tcp://127.0.0.1:0", "tcp://:8786", "tcp://[::1:8786", "locall"])
def test_a_malformed_scheduler_address_is_refused_at_once_and_leaves_no_folder(address, tmp_path):
    t = time.time()
    r = dlhw(*grid_args(tmp_path / "run", "--scheduler", address), timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"--scheduler {address!r}: give tcp://HOST:PORT, tls://HOST:PORT or 'local'" in r.stderr
    assert time.time() - t < 15 and not (tmp_path / "run").exists()


def _foreign_server(reply: bytes | None):
    """A TCP server on 127.0.0.1 that is not a Dask scheduler: it answers `reply` to anything, or stays silent."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []  # accepted connections stay open: a silent server must not look closed

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            if reply is not None:
                conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", None],
                         ids=["http", "silent"])
def test_an_address_that_is_not_a_dask_scheduler_is_one_line_and_exit_2(reply, tmp_path):
    srv = _foreign_server(reply)
    try:
        address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        for extra in (["--dry-run"], []):
            t = time.time()
            r = dlhw(*grid_args(tmp_path / "run", "--scheduler", address, *extra), timeout=90)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert f"{address} answers, but not as a Dask scheduler" in r.stderr
            assert time.time() - t < 30
    finally:
        srv.close()


@pytest.mark.parametrize("args, says", [
    (["--tls-cert", "x.pem"], "--tls-cert only applies with --scheduler"),
    (["--allow-mixed"], "--allow-mixed only applies with --scheduler"),
    (["--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", "pyproject.toml"], "needs a tls:// scheduler address"),
    (["--scheduler", "tls://127.0.0.1:1", "--tls-key", "missing.pem"], "--tls-key missing.pem: no such file"),
])
def test_cluster_option_mistakes(args, says, tmp_path):
    r = dlhw(*grid_args(tmp_path / "run", *args))
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1


def test_local_cluster_listens_on_loopback_and_matches_the_pool(local_run, tmp_path):
    out = tmp_path / "dask"
    r = dlhw(*grid_args(out, "--scheduler", "local", "--jobs", "2"))
    assert r.returncode == 0, r.stderr
    same_files(local_run, out)
    log = (out / "grid.log").read_text()
    assert "(dask at tcp://127.0.0.1:" in log and "note:" not in log
    assert json.loads((out / "manifest.json").read_text())["grid"]["executor"]["workers_quiet"] == 2


def _self_signed(tmp: Path) -> dict:
    """A CA and a certificate it signed for 127.0.0.1, both made here (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dlhw test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = {"ca": tmp / "ca.pem", "cert": tmp / "cert.pem", "key": tmp / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {k: str(v) for k, v in paths.items()}


def test_tls_scheduler_with_a_self_signed_ca(tmp_path, local_run):
    tls = _self_signed(tmp_path)
    c = Cluster(tmp_path, tls)
    try:
        assert c.address.startswith("tls://127.0.0.1:")
        c.add_worker()
        c.wait_workers(1)
        out = tmp_path / "dask"
        r = dlhw(*grid_args(out, "--scheduler", c.address, "--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"],
                            "--tls-key", tls["key"]))
        assert r.returncode == 0, r.stderr
        same_files(local_run, out)
        # without TLS settings, or with a certificate of another CA, this client does not get in
        r = dlhw(*grid_args(tmp_path / "nocert", "--scheduler", c.address), timeout=60)
        assert r.returncode == 2 and "TLS needs --tls-ca-file, --tls-cert, --tls-key" in r.stderr
        (tmp_path / "other").mkdir()
        other = _self_signed(tmp_path / "other")
        r = dlhw(*grid_args(tmp_path / "nocert", "--scheduler", c.address, "--tls-ca-file", other["ca"],
                            "--tls-cert", other["cert"], "--tls-key", other["key"]), timeout=60)
        assert r.returncode == 2 and "cannot reach the Dask scheduler" in r.stderr and r.stderr.count("\n") == 1
    finally:
        c.stop()


def test_all_workers_gone_is_a_clear_error_and_finished_jobs_stay(cluster, tmp_path, monkeypatch):
    from dlhw.config import load_config
    from dlhw.grid.run import run_grid

    monkeypatch.setattr(cluster_mod, "WORKERLESS_S", 3)
    w = cluster.add_worker(nanny=False)
    cluster.wait_workers(1)
    cfg = load_config(CONFIG, ["grid.batch_size=[64, 128, 256, 512]", "grid.epochs=[2, 12]",
                               f"output.dir={tmp_path / 'run'}"])
    ex = cluster_mod.DaskExecutor(cluster.address)
    saved = tmp_path / "run" / "jobs"
    killer = subprocess.Popen([sys.executable, "-c", KILL_AFTER_FIRST, str(saved), str(w.pid)])
    try:
        with pytest.raises(RunError, match=r"no Dask worker left at tcp://127\.0\.0\.1:\d+ for 3 s; finished jobs "
                                           r"are saved"):
            run_grid(cfg, progress=False, executor=ex)
    finally:
        killer.kill()
    assert len(list(saved.glob("*.npz"))) >= 1


KILL_AFTER_FIRST = """
import os, signal, sys, time
from pathlib import Path
folder, pid = Path(sys.argv[1]), int(sys.argv[2])
while not (folder.is_dir() and any(folder.glob('*.npz'))):
    time.sleep(0.05)
os.killpg(pid, signal.SIGKILL)
"""


def test_ctrl_c_cancels_the_clusters_jobs_and_says_how_to_resume(cluster, tmp_path):
    cluster.add_worker()
    cluster.wait_workers(1)
    out = tmp_path / "dask"
    p = subprocess.Popen([sys.executable, "-m", "dlhw", *grid_args(out, "--scheduler", cluster.address)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "jobs").glob("*.npz")) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "rerun the same command to resume" in err
    with cluster.client() as c:  # the cluster holds no task of the interrupted run
        deadline = time.time() + 20
        while any(c.processing().values()) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(c.processing().values())


# --------------------------------------------------------------------------- without processes


class FakeClient:
    def __init__(self, facts):
        self.facts = facts

    def run(self, fn):
        return self.facts


def test_workers_with_other_numerics_are_refused_unless_allowed():
    from dlhw.store.provenance import code_fingerprint, numeric_env

    env = numeric_env()
    other = {**env, "numpy": "1.0.0"}
    ex = cluster_mod.DaskExecutor("tcp://x:1")
    ex.client = FakeClient({"tcp://a:1": {"code": code_fingerprint(), "env": env},
                            "tcp://b:1": {"code": code_fingerprint(), "env": other}})
    with pytest.raises(RunError, match=r"Dask worker tcp://b:1 has numpy 1\.0\.0 \(here .*\): results would depend on "
                                       r"where a job ran\. .* or pass --allow-mixed\."):
        ex._check_workers()
    ex.allow_mixed = True
    ex._check_workers()
    assert len(ex.describe()["worker_envs"]) == 2 and ex.describe()["allow_mixed"]
    ex.client = FakeClient({"tcp://c:1": {"code": "0" * 16, "env": env}})
    with pytest.raises(RunError, match="runs other dlhw code"):
        ex._check_workers()


def test_the_readme_starts_workers_with_dlhws_quiet_settings():
    """The variables the README exports are the ones `--scheduler local` sets and grid.log asks for."""
    from dlhw.grid.cluster import QUIET, quiet_env

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert len(quiet_env()) == len(QUIET)
    for name, value in quiet_env().items():
        assert f"{name}={value}" in readme, name


_FAULTS_PER_ARRAY = """
import resource, sys, numpy as np
from dlhw.grid.cluster import malloc_keeps_freed_blocks
if sys.argv[1] == "set":
    assert malloc_keeps_freed_blocks()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = faults()
for _ in range(200):
    np.ones(1 << 18)  # 2 MiB, freed at once, as a step's temporaries are
print((faults() - a) / 200)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and ru_minflt")
def test_a_dask_worker_reuses_freed_memory_despite_the_nannys_trim_setting():
    """The nanny's MALLOC_TRIM_THRESHOLD_=65536 fixes glibc's mmap threshold at 128 KiB, so each big
    temporary was page-faulted in afresh (an MLP epoch took twice as long); jobs undo that."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    per_array = {}
    for mode in ("nanny", "set"):
        r = subprocess.run([sys.executable, "-c", _FAULTS_PER_ARRAY, mode], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        per_array[mode] = float(r.stdout.split()[-1])
    assert per_array["nanny"] > 400  # 512 pages per array: the cost this guards against is real here
    assert per_array["set"] < 5
