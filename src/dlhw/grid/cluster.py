"""Grid jobs on a Dask distributed cluster (`dlhw grid --scheduler ADDRESS|local`).

The cluster runs jobs; this machine (the client) checks every result and writes `jobs/<key>.npz`,
so workers need no shared folder, and resume works exactly as with the local pool. A job is the
same picklable `GridJob` the local pool runs, with the client's code fingerprint and numeric
environment in its key: a worker running other dlhw code refuses it, and a worker whose numpy,
scipy or BLAS differ from the client's is refused (unless `allow_mixed`), because a result must
not depend on where it ran. Each job runs with one BLAS thread, as in the local pool, so a Dask
run's files equal the local run's bit for bit.

Data: a worker finds the data set through the usual lookup (`data.locate`, verified by SHA-256). A
worker that lacks it gets the client's copy of the files once (`client.run` on that worker), checks
them and keeps them in `$DLHW_DATA/<name>` or its user cache, then runs the job.

Faults: a worker that dies mid-job loses only that job, which the scheduler gives to another worker
(same result: jobs are deterministic). With no worker left for `WORKERLESS_S`, the run stops with
one line; finished jobs stay saved. Ctrl-C cancels the cluster's futures.

Security: a Dask scheduler runs whatever code its clients send. `local` listens on 127.0.0.1 only;
for other machines use `tls://` addresses (CA, certificate and key from the options or Dask's own
config, `distributed.comm.tls.*`) or a private network, never an open port.
"""
from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

from dlhw.errors import ConfigError, DataError, RunError
from dlhw.grid.executor import JOB_THREADS, Done, Finished, Progress, default_jobs
from dlhw.grid.jobs import GridJob
from dlhw.grid.spawn import main_not_rerun

CONNECT_TIMEOUT_S = 10  # reaching the scheduler (an unreachable address fails within this)
WORKERS_TIMEOUT_S = 30  # waiting for the first worker of a cluster that has none yet
WORKERLESS_S = 20  # a run stops after this long with no worker in the cluster
POLL_S = 0.2
# Dask's own background work, made lighter for grid workers. With Dask's defaults an idle scheduler,
# worker or nanny process wakes up ~70 times a second (event-loop tick every 20 ms, memory monitor
# every 100 ms, system monitor every 500 ms) and the profiler samples the job's thread every 10 ms:
# a scheduler and two workers took 11.6% of a core doing nothing, 1.5% with these, and that CPU comes
# out of the jobs when workers use every core. Diagnostics only: results do not depend on them.
QUIET = {
    "distributed.worker.profile.enabled": False,  # statistical profiler of task threads
    "distributed.admin.tick.interval": "1s",  # event-loop responsiveness check (20 ms)
    "distributed.admin.system-monitor.interval": "5s",  # CPU/memory/network samples for the dashboard (500 ms)
    "distributed.worker.memory.monitor-interval": "1s",  # worker and nanny memory checks (100 ms)
}


def quiet_env() -> dict[str, str]:
    """QUIET as the environment variables `dask scheduler` / `dask worker` read (README)."""
    return {"DASK_" + k.upper().replace(".", "__").replace("-", "_"): str(v) for k, v in QUIET.items()}


def _need_dask():
    try:
        import distributed
    except ImportError:
        raise RunError("--scheduler needs Dask: pip install 'dlhw[dask]' (dask and distributed)") from None
    return distributed


class DaskExecutor:
    """Run grid jobs as Dask futures on `address` ("local": a LocalCluster of `workers` processes on
    127.0.0.1, one thread each). TLS: `tls_ca_file`, `tls_cert`, `tls_key` (else Dask's config)."""

    kind = "dask"

    def __init__(self, address: str, workers: int | None = None, *, tls_ca_file: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, allow_mixed: bool = False,
                 data_dir: str | None = None):
        if address != "local":
            _check_address(address)  # before any folder or connection: a typo is one line at once
        self.address, self.local_workers = address, workers or default_jobs()
        self.tls = {k: v for k, v in {"tls_ca_file": tls_ca_file, "tls_client_cert": tls_cert,
                                      "tls_client_key": tls_key}.items() if v}
        self.allow_mixed, self.data_dir = allow_mixed, data_dir
        self.client = self.cluster = None
        self._envs: dict[str, dict] = {}  # worker address -> numeric environment, of the workers seen
        self._quiet: dict[str, bool] = {}  # worker address -> runs with QUIET's settings
        self._blobs: dict[str, bytes] | None = None

    # ---------------------------------------------------------------- connecting

    def __enter__(self) -> "DaskExecutor":
        distributed = _need_dask()
        logging.getLogger("distributed").setLevel(logging.ERROR)  # grid.log and the bar say what matters
        if self.address == "local":
            import dask

            # workers need dlhw only, not the caller's script; Dask's monitors turned down (QUIET)
            with main_not_rerun(), dask.config.set(QUIET), warnings.catch_warnings():
                # its HTTP server (health checks, on 127.0.0.1) takes another port if 8787 is taken: not news
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                self.cluster = distributed.LocalCluster(
                    n_workers=self.local_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster, set_as_default=False)
        else:
            self.client = _connect(distributed, self.address, self.tls)
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except (TimeoutError, OSError):
            self.__exit__(None, None, None)
            raise RunError(f"the Dask scheduler at {self.where_address} has no worker after {WORKERS_TIMEOUT_S} s; "
                           f"start some with `dask worker {self.where_address} --nthreads 1`.") from None
        self._check_workers()
        return self

    def __exit__(self, *exc) -> None:
        for closing in (self.client, self.cluster):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # noqa: BLE001 - closing a broken connection must not hide the real error
                    pass
        self.client = self.cluster = None

    @property
    def where_address(self) -> str:
        return self.cluster.scheduler_address if self.cluster is not None else self.address

    @property
    def where(self) -> str:
        return f" at {self.where_address}"

    @property
    def workers(self) -> int:
        """Threads in the cluster now: jobs that can run at once."""
        return max(1, sum(self.client.nthreads().values()))

    def _check_workers(self) -> None:
        """Every worker present runs this dlhw code, and (unless allowed) this numpy/scipy/BLAS."""
        from dlhw.store.provenance import code_fingerprint, numeric_env

        mine = {"code": code_fingerprint(), "env": numeric_env()}
        for addr, theirs in self.client.run(_worker_facts).items():
            self._envs[addr] = theirs["env"]
            self._quiet[addr] = theirs.get("quiet", False)
            if theirs["code"] != mine["code"]:
                raise RunError(f"Dask worker {addr} runs other dlhw code (fingerprint {theirs['code']}, here "
                               f"{mine['code']}); install the same dlhw version on every worker.")
            if theirs["env"] != mine["env"] and not self.allow_mixed:
                raise RunError(f"Dask worker {addr} has {_env_diff(mine['env'], theirs['env'])}: results would depend "
                               f"on where a job ran. Install the same versions, or pass --allow-mixed.")

    def describe(self) -> dict:
        envs = [json.loads(e) for e in sorted({json.dumps(v, sort_keys=True) for v in self._envs.values()})]
        return {"kind": self.kind, "scheduler": self.where_address,
                "workers": len(self._envs), "threads_per_worker": JOB_THREADS, "worker_envs": envs,
                "workers_quiet": sum(self._quiet.values()), "allow_mixed": self.allow_mixed}

    @property
    def note(self) -> str:
        """A hint when workers run Dask's default monitors (they cost the jobs a few % of each core)."""
        loud = len(self._quiet) - sum(self._quiet.values())
        if not loud:
            return ""
        return (f"{loud} of {len(self._quiet)} Dask workers run Dask's default monitors, which take a few % of "
                f"each core from the jobs; start workers with " + " ".join(f"{k}={v}" for k, v in quiet_env().items()))

    # ---------------------------------------------------------------- running

    def run(self, jobs: list[GridJob], finished: Finished, progress: Progress) -> None:
        distributed = _need_dask()
        client = self.client
        topic = f"dlhw-progress-{uuid.uuid4().hex}"
        events: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        client.subscribe_topic(topic, lambda event: events.put(event[1]))
        futures: dict = {}

        def submit(j: GridJob, priority: int) -> None:
            f = client.submit(_remote, _for_worker(j), topic, self.allow_mixed, key=f"dlhw-job-{j.key}-{uuid.uuid4().hex[:8]}",
                              pure=False, priority=priority)
            futures[f] = (j, priority)

        for i, j in enumerate(jobs):  # longest first: the caller's order, kept by the priorities
            submit(j, len(jobs) - i)
        workerless_since = None
        last_check = time.monotonic()
        try:
            while futures:
                time.sleep(POLL_S)
                _drain(events, progress)
                for f in [f for f in futures if f.done()]:
                    j, priority = futures.pop(f)
                    out = self._result(f, j, distributed)
                    if out.get("need_data"):
                        self._ship_data(j, out["worker"])
                        submit(j, priority)
                        continue
                    self._envs.setdefault(out["worker"], out["env"])
                    finished(Done(j, out["arrays"], out["seconds"], f"dask worker {out['name']} at {out['worker']}"))
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    workerless_since = self._watch_workers(workerless_since)
            _drain(events, progress)
        except BaseException:
            try:
                client.cancel(list(futures), force=True)
            except Exception:  # noqa: BLE001 - the connection may be what failed
                pass
            raise
        finally:
            try:
                client.unsubscribe_topic(topic)
            except Exception:  # noqa: BLE001
                pass

    def _result(self, f, j: GridJob, distributed) -> dict:
        try:
            out = f.result()
        except distributed.client.FutureCancelledError:
            raise RunError(f"job {j.key} was cancelled by the Dask cluster (was the scheduler restarted?); "
                           f"finished jobs are saved: rerun the same command to resume.") from None
        except (OSError, distributed.comm.CommClosedError) as e:
            raise RunError(f"lost the Dask scheduler at {self.where_address} ({e}); finished jobs are saved: "
                           f"rerun the same command to resume.") from None
        except Exception as e:  # noqa: BLE001
            if type(e).__name__ == "KilledWorker":
                raise RunError(f"job {j.key} ({j.n_settings} settings at batch {j.batch_size}) killed every "
                               f"worker that ran it (out of memory?); finished jobs are saved.") from None
            raise  # a worker's own error: a DlhwError prints its line, a bug keeps its traceback
        if not isinstance(out, dict) or not ({"arrays", "seconds", "worker", "name", "env"} <= out.keys()
                                             or out.get("need_data")):
            raise RunError(f"job {j.key} came back from the Dask cluster as {type(out).__name__}, not a dlhw result; "
                           f"check that the workers run the same dlhw as this machine.")
        return out

    def _watch_workers(self, since: float | None) -> float | None:
        """None while workers are present; else when they went; an error after WORKERLESS_S without."""
        try:
            n = len(self.client.nthreads())
        except Exception as e:  # noqa: BLE001
            raise RunError(f"lost the Dask scheduler at {self.where_address} ({type(e).__name__}: {e}); "
                           f"finished jobs are saved: rerun the same command to resume.") from None
        if n:
            return None
        now = time.monotonic()
        if since is not None and now - since > WORKERLESS_S:
            raise RunError(f"no Dask worker left at {self.where_address} for {WORKERLESS_S} s; finished jobs are saved: "
                           f"start workers and rerun the same command to resume.")
        return since if since is not None else now

    def _ship_data(self, j: GridJob, worker: str) -> None:
        """Send this machine's copy of the data set to `worker`, which checks and keeps it."""
        name = j.cfg.data.name
        if self._blobs is None:
            self._blobs = _read_files(name, self.data_dir)
        self.client.run(_install_data, name, self._blobs, workers=[worker])


def _check_address(address: str) -> None:
    """tcp://HOST:PORT or tls://HOST:PORT with a port in 1..65535, else one line (ConfigError: exit 2)."""
    from urllib.parse import urlsplit

    try:  # urlsplit and .port raise ValueError on a bad bracket or a port out of range
        parts = urlsplit(address)
        ok = parts.scheme in ("tcp", "tls") and parts.hostname and parts.port and not (parts.path or parts.query)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"--scheduler {address!r}: give tcp://HOST:PORT, tls://HOST:PORT or 'local' (a port "
                          f"in 1-65535: the address `dask scheduler` prints as 'Scheduler at:')")


def _probe(address: str, security) -> None:
    """Ask the address who it is, with a hard deadline: a port that is not a Dask scheduler's (its dashboard,
    another server) would otherwise hang the client or feed it bytes it reads as a frame length."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    from distributed.comm import connect

    args = security.get_connection_args("client") if security is not None else {}
    parts = urlsplit(address)  # well formed: _check_address

    def unreachable(reason: str) -> RunError:
        return RunError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({reason}); "
                        f"check the address and that `dask scheduler` runs there.")

    async def ask() -> object:
        try:  # a plain TCP connection first: only this failing means nothing is there
            _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), CONNECT_TIMEOUT_S)
            writer.close()
        except (OSError, TimeoutError) as e:
            raise unreachable(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        try:
            comm = await asyncio.wait_for(connect(address, timeout=CONNECT_TIMEOUT_S, **args), CONNECT_TIMEOUT_S)
        except OSError as e:  # a TLS refusal (another CA, no certificate) is said as it is
            if isinstance(e, TimeoutError) or "Timed out" in str(e):
                return None  # connected, but no Dask handshake came back
            raise unreachable(str(e).splitlines()[0]) from None
        except Exception:  # noqa: BLE001 - a foreign server's bytes read as a frame length (MemoryError), ...
            return None
        try:
            await comm.write({"op": "identity"})
            return await asyncio.wait_for(comm.read(), CONNECT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - whatever a foreign server sends, the answer is no
            return None
        finally:
            comm.abort()

    with ThreadPoolExecutor(1) as one:  # its own thread: a notebook's main thread runs an event loop already
        who = one.submit(asyncio.run, ask()).result()
    if not (isinstance(who, dict) and who.get("type") == "Scheduler"):
        raise RunError(f"{address} answers, but not as a Dask scheduler (the dashboard's port or another "
                       f"server?): give the address `dask scheduler` prints as 'Scheduler at:'.")


def _connect(distributed, address: str, tls: dict):
    security = None
    if address.startswith("tls://") or tls:
        from distributed.security import Security

        security = Security(require_encryption=True, **tls)  # what is not given comes from Dask's config
        lacking = [opt for opt, attr in (("--tls-ca-file", "tls_ca_file"), ("--tls-cert", "tls_client_cert"),
                                         ("--tls-key", "tls_client_key")) if not getattr(security, attr, None)]
        if lacking:
            raise RunError(f"--scheduler {address}: TLS needs {', '.join(lacking)} (or Dask's config "
                           f"distributed.comm.tls.ca-file and distributed.comm.tls.client.cert/key)")
    _probe(address, security)
    try:
        return distributed.Client(address, security=security, timeout=CONNECT_TIMEOUT_S, set_as_default=False,
                                  name="dlhw")
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s ({reason}); "
                       f"check the address and that `dask scheduler` runs there.") from None


def _for_worker(j: GridJob) -> GridJob:
    """The job as a worker runs it: the client's --data-dir (data.dir) means nothing there; it is not
    part of the job's key, so the key stays the client's."""
    from dataclasses import replace

    if j.data_dir is None and j.cfg.data.dir is None:
        return j
    moved = replace(j, cfg=j.cfg.replace(data={"dir": None}), data_dir=None)
    assert moved.key == j.key
    return moved


def _env_diff(mine: dict, theirs: dict) -> str:
    return ", ".join(f"{k} {theirs.get(k)} (here {mine.get(k)})" for k in sorted(mine.keys() | theirs.keys())
                     if mine.get(k) != theirs.get(k))


def _drain(events, progress: Progress) -> None:
    while True:
        try:
            units, best = events.get_nowait()
        except queue_mod.Empty:
            return
        progress(int(units), float(best))


# --------------------------------------------------------------------------- worker side


def _worker_facts() -> dict:
    import dask

    from dlhw.store.provenance import code_fingerprint, numeric_env

    return {"code": code_fingerprint(), "env": numeric_env(),
            "quiet": all(str(dask.config.get(k, None)) == str(v) for k, v in QUIET.items())}


def _has_data(name: str) -> bool:
    from dlhw.data import REGISTRY
    from dlhw.data.locate import find_data_dir

    if name not in REGISTRY:  # synthetic sets (xor) have no files
        return True
    try:
        find_data_dir(name)
    except DataError:
        return False
    return True


def _remote(job: GridJob, topic: str, allow_mixed: bool) -> dict:
    """A Dask task: run one job with one BLAS thread; return its arrays (or ask for the data)."""
    from distributed import get_worker

    from dlhw.store.provenance import numeric_env

    w = get_worker()
    env = numeric_env()
    if not allow_mixed and env != json.loads(job.env):
        raise RunError(f"Dask worker {w.address} has {_env_diff(json.loads(job.env), env)}: results would depend on "
                       f"where a job ran. Install the same versions, or pass --allow-mixed.")
    if not _has_data(job.cfg.data.name):
        return {"need_data": True, "worker": w.address}
    _one_blas_thread(w.address)
    t0 = time.perf_counter()
    arrays = job.run(on_progress=lambda units, best: w.log_event(topic, (units, best)))
    return {"arrays": arrays, "seconds": time.perf_counter() - t0, "worker": w.address, "name": str(w.name),
            "env": env}


_BLAS_LOCK = threading.Lock()
_BLAS_LIMIT = None  # the worker process's one BLAS limit, set by its first job and kept


def _one_blas_thread(worker: str) -> None:
    """Every BLAS of this worker process on JOB_THREADS threads from now on, checked.

    Dask's nanny starts workers with OPENBLAS_NUM_THREADS=1 (and MKL/OMP) already; this covers workers
    started otherwise. The limit is process-wide and threadpoolctl lets only one thread set it, so it
    is set once and never given back: jobs in threads of one worker (--nthreads 2) would otherwise
    hand each other multi-threaded BLAS mid-job, and rounding must not depend on where a job ran."""
    global _BLAS_LIMIT
    from threadpoolctl import threadpool_info, threadpool_limits

    with _BLAS_LOCK:
        if _BLAS_LIMIT is None:
            _BLAS_LIMIT = threadpool_limits(JOB_THREADS, user_api="blas")
            malloc_keeps_freed_blocks()
    wrong = sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                    if i["user_api"] == "blas" and i["num_threads"] != JOB_THREADS})
    if wrong:
        raise RunError(f"Dask worker {worker} runs BLAS on more than {JOB_THREADS} thread ({', '.join(wrong)}) and "
                       f"this job cannot change that; start the worker with OPENBLAS_NUM_THREADS={JOB_THREADS} "
                       f"(Dask's nanny does by default).")


def malloc_keeps_freed_blocks() -> bool:
    """Let glibc keep freed blocks of up to 32 MiB for reuse, as it does by default; True if it was set.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (`distributed.nanny.pre-spawn-environ`),
    which also fixes glibc's mmap threshold at 128 KiB: every array of 128 KiB or more a step allocates
    is mapped, page-faulted in and unmapped again, every step. An MLP epoch then took twice as long
    (docs/cluster.md). Set once per worker process, like the BLAS limit; memory only, never numbers."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; musl has none
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 64 << 20))


def _read_files(name: str, data_dir) -> dict[str, bytes]:
    """The data set's files as found on the client (each NAME or NAME.gz), by file name."""
    from dlhw.data.locate import find_data_dir, locate_file
    from dlhw.data.registry import dataset_spec

    folder = find_data_dir(name, data_dir)
    return {p.name: p.read_bytes() for fs in dataset_spec(name).files.values()
            if (p := locate_file(folder, fs)) is not None}


def _install_data(name: str, blobs: dict[str, bytes]) -> str:
    """On a worker: keep the shipped files in `$DLHW_DATA/<name>` (or the user cache) once they check out."""
    from dlhw.data.load import load
    from dlhw.data.locate import shipped_data_dir
    from dlhw.store.files import atomic_write_bytes

    folder = shipped_data_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, blob in blobs.items():
        if not (folder / fname).is_file():
            atomic_write_bytes(folder / fname, blob)
    try:
        load(name, folder, verify=True)  # SHA-256 of every decompressed payload, as any load
    except DataError:
        for fname in blobs:
            Path(folder / fname).unlink(missing_ok=True)
        raise
    return str(folder)


__all__ = ["DaskExecutor"]
