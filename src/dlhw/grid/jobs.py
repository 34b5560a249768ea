"""Grid jobs: expand a grid into content-keyed jobs, and run one job.

A grid job is a small, self-describing, picklable unit (`GridJob`): one batch
size, one shuffle seed and a chunk of (learning rate, alpha) pairs, trained for
max(epochs) epochs. It loads its data from the local cache itself and its
result is written atomically to `jobs/<key>.npz` in the run folder, where `key`
hashes everything that determines the result: the settings, the data's checksums,
a fingerprint of the code on the training path and the numeric environment
(numpy, BLAS). So an interrupted grid resumes by computing only the missing
jobs, an upgrade or an edit never reuses a stale result, and jobs could run on
any machine that has the data.

Plain-SGD softmax jobs train their settings as one stacked model
(`training.stack`); everything else (other model kinds, momentum) trains one
setting at a time with `training.loop.fit`. Both follow `training.rules`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlhw.config import Config
from dlhw.errors import RunError
from dlhw.models import EVAL_CHUNK
from dlhw.store import files as results
from dlhw.store.provenance import code_fingerprint, numeric_env

MAX_STACK = 64  # settings per stacked job: 8 lr x 8 alpha; bounds memory (a few MB of weights)


@dataclass(frozen=True)
class GridJob:
    """Train `learning_rates[i]` with `alphas[i]` for every i, at one batch size and seed."""

    cfg: Config
    batch_size: int
    seed: int
    learning_rates: tuple[float, ...]
    alphas: tuple[float, ...]
    epochs: int  # trains this many epochs (the grid's largest epoch count)
    grid_epochs: tuple[int, ...]  # the epoch counts the grid reads: training-split CE is computed after each
    data_dir: str | None = None
    variant: tuple[tuple[str, Any], ...] = ()  # the extra axes' values this job trains (grid.axes); in cfg too
    code: str = field(default_factory=lambda: code_fingerprint())  # the client's code and numeric environment:
    env: str = field(default_factory=lambda: json.dumps(numeric_env(), sort_keys=True))  # part of the key

    @property
    def n_settings(self) -> int:
        return len(self.learning_rates)

    @property
    def averaged(self) -> bool:
        return self.cfg.train.average == "epoch"

    @property
    def record_epochs(self) -> tuple[int, ...] | None:
        """Epochs whose validation metrics are recorded: every epoch (a stack without averaging, where
        recording is cheap), else only the grid's epochs (an epoch's mean costs a pass over the stack
        per step; a single model's evaluation costs as much as a third of its training)."""
        return None if self.stacked and not self.averaged else self.grid_epochs

    @property
    def stacked(self) -> bool:
        """Trained as one stack (plain-SGD softmax) rather than one `fit` per setting."""
        return stackable(self.cfg)

    def identity(self) -> dict:
        """Everything that determines this job's result."""
        c = self.cfg
        return {
            "code": self.code, "env": json.loads(self.env),
            "data": asdict(c.data) | {"dir": None, "sha256": _data_checksums(c.data.name)},
            "model": asdict(c.model),
            "train": {k: getattr(c.train, k) for k in ("dtype", "optimizer", "momentum", "average")},
            "batch_size": self.batch_size, "seed": self.seed,
            "learning_rates": list(self.learning_rates), "alphas": list(self.alphas),
            "epochs": self.epochs, "grid_epochs": list(self.grid_epochs),
        }

    @cached_property  # works on a frozen dataclass: it writes the instance __dict__ directly
    def identity_json(self) -> str:
        """`identity()` as stored in a result file (sorted keys, lists): computed once per job."""
        return json.dumps(self.identity(), sort_keys=True, default=str)

    @cached_property
    def key(self) -> str:
        return hashlib.sha256(self.identity_json.encode()).hexdigest()[:20]

    def cost(self, settings: int | None = None) -> float:
        """Estimated seconds on one core with every core busy (this job, or the same job `settings` wide):
        schedules the longest jobs first, cuts stacks for many workers (`grid.cut`) and is the dry-run's
        fallback. The stacked model was fitted by `scripts/bench_cluster.py --part cut` (widths 4..64 x
        batch sizes 16..2048, within 6% per step); the calibration (`grid.estimate`) rescales it to the
        machine it runs on."""
        n_train, n_val, _ = split_sizes(self.cfg)
        per_epoch = math.ceil(n_train / self.batch_size)
        steps = self.epochs * per_epoch
        S = settings or self.n_settings
        if self.stacked:
            B, recorded = self.batch_size, len(self.grid_epochs) if self.averaged else self.epochs
            # per step: a fixed part, the weight update (D x (K-1)S), the mini-batch gather (B x D),
            # then the products and the softmax over B x K x S
            step = 8e-6 + 0.73e-6 * S + 0.69e-6 * B + 0.233e-6 * B * S
            evals = (recorded * n_val + len(self.grid_epochs) * n_train) / EVAL_CHUNK * (3.4e-3 + 1.13e-3 * S)
            avg = len(self.grid_epochs) * per_epoch * 2.7e-6 * S if self.averaged else 0.0
            return steps * step + evals + avg
        sizes = [784, *self.cfg.model.hidden, 10] if self.cfg.model.kind == "mlp" else [784, 10]
        P = sum(a * b for a, b in zip(sizes, sizes[1:]))  # multiply-adds per example
        train = 6 * P * n_train / 50e9 + 40e-6 * per_epoch  # forward and backward of every step
        evals = 2 * P * (n_train + n_val) / 80e9  # after each epoch count the grid reads
        return S * (self.epochs * train + max(1, len(self.grid_epochs)) * evals)

    def run(self, on_progress: Callable[[int, float], None] | None = None) -> dict[str, np.ndarray]:
        """Train and return result arrays (see `save`). Loads data from the local cache.

        on_progress(units, best_val_ce) is called as work finishes (one unit = one
        setting-epoch) with the lowest validation CE seen in that work (NaN if none).
        Refuses to run on other code than the client's: its result would be filed under a key
        that does not describe it.
        """
        if code_fingerprint() != self.code:
            raise RunError(f"dlhw's code on the training path changed since this grid started "
                           f"({self.code} -> {code_fingerprint()}); rerun the command.")
        prep = _prepared(self.cfg, self.data_dir)
        if self.stacked:
            from dlhw.training.stack import train_stack

            r = train_stack(*prep.train, len(prep.classes), self.learning_rates, self.alphas, self.batch_size,
                            self.seed, self.epochs, prep.val, train_ce_epochs=self.grid_epochs,
                            average=self.averaged, record_epochs=self.record_epochs,
                            on_epoch=(lambda e, v: on_progress(self.n_settings, _nanmin(v))) if on_progress else None)
            train_ce = np.array([r.train_ce[e] for e in self.grid_epochs])
            return {"val_ce": r.val_ce, "val_accuracy": r.val_accuracy, "train_ce": train_ce,
                    "diverged_epoch": r.diverged_epoch}
        return self._run_single(prep, on_progress)

    def _run_single(self, prep, on_progress) -> dict[str, np.ndarray]:
        """One `fit` per setting (non-stackable model kinds)."""
        from dlhw.models import build_model
        from dlhw.training.loop import fit

        S, E = self.n_settings, self.epochs
        out = {"val_ce": np.full((E, S), np.nan), "val_accuracy": np.full((E, S), np.nan),
               "train_ce": np.full((len(self.grid_epochs), S), np.nan),
               "diverged_epoch": np.zeros(S, dtype=np.int64)}
        for s, (lr, alpha) in enumerate(zip(self.learning_rates, self.alphas)):
            cfg = self.cfg.replace(train={"batch_size": self.batch_size, "learning_rate": lr, "alpha": alpha,
                                          "seed": self.seed, "epochs": E, "eval_every": None})
            model = build_model(cfg, prep.n_features, len(prep.classes))
            at = set(self.grid_epochs)  # the epochs the grid reads: evaluating the others is wasted work
            hist = fit(model, prep.train, cfg.train, {"val": prep.val}, eval_at=at, train_at=at)
            for row in hist.epoch_rows():
                e = int(row["epoch"])
                out["val_ce"][e - 1, s], out["val_accuracy"][e - 1, s] = row["val_ce"], row["val_accuracy"]
                if e in self.grid_epochs:
                    out["train_ce"][self.grid_epochs.index(e), s] = row["train_ce"]
            if hist.diverged:
                out["diverged_epoch"][s] = hist.diverged_epoch
            if on_progress:
                on_progress(E, _nanmin(out["val_ce"][:, s]))
        return out

    def save(self, folder: Path, arrays: dict[str, np.ndarray]) -> Path:
        """Write the result atomically to folder/<key>.npz, with the job's identity."""
        meta = np.array(self.identity_json)
        return results.save_npz(folder / f"{self.key}.npz", {**arrays, "identity": meta})

    def load(self, folder: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """(saved result, None), or (None, why not): absent, unreadable, or not this job's."""
        path = folder / f"{self.key}.npz"
        if not path.is_file():
            return None, None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any damage (truncated zip, bad header, ...) means recompute
            return None, f"{path.name}: unreadable ({type(e).__name__}: {e}); recomputing"
        if str(arrays.pop("identity", "")) != self.identity_json:
            return None, f"{path.name}: holds another job's result; recomputing"
        problem = self.check_arrays(arrays)
        if problem:
            return None, f"{path.name}: {problem}; recomputing"
        return arrays, None

    def check_arrays(self, arrays: dict) -> str | None:
        """None if `arrays` has exactly this job's result names, shapes and dtypes, else what is wrong."""
        E, S = self.epochs, self.n_settings
        want = {"val_ce": ((E, S), "f"), "val_accuracy": ((E, S), "f"),
                "train_ce": ((len(self.grid_epochs), S), "f"), "diverged_epoch": ((S,), "i")}
        if set(arrays) != set(want):
            return f"arrays {sorted(arrays)} instead of {sorted(want)}"
        for k, (shape, kind) in want.items():
            a = arrays[k]
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype.kind != kind:
                return f"{k!r} is not a {shape} array of kind {kind!r}"
        return None


_NOT_SETTINGS = ("code", "env", "dlhw")  # identity keys that say how a result was computed, not what


def settings_key(identity: dict) -> str:
    """An identity without code and environment: equal for the same job computed by other code."""
    return json.dumps({k: v for k, v in identity.items() if k not in _NOT_SETTINGS}, sort_keys=True)


def stale_reason(saved: dict, job: GridJob) -> str | None:
    """Why a saved identity with `job`'s settings (see `settings_key`) cannot be reused: which of
    the code fingerprint and the numeric environment's entries (numpy, scipy, BLAS) changed."""
    mine = json.loads(job.identity_json)
    why = []
    if saved.get("code") != mine["code"]:
        why.append(f"computed by other code (fingerprint {saved.get('code', 'none')} -> {mine['code']})")
    env0, env1 = saved.get("env") or {}, mine["env"]
    why += [f"{k} {env0.get(k)} -> {env1.get(k)}" for k in sorted(env0.keys() | env1.keys()) if env0.get(k) != env1.get(k)]
    return ", ".join(why) or None


def saved_identities(folder: Path, skip: set[str] = frozenset()) -> dict[str, dict]:
    """file name -> stored identity of every readable jobs/*.npz not in `skip` (for explaining non-reuse)."""
    out = {}
    for p in sorted(folder.glob("*.npz")):
        if p.name in skip:
            continue
        try:
            with np.load(p, allow_pickle=False) as z:
                out[p.name] = json.loads(str(z["identity"]))
        except Exception:  # noqa: BLE001 - unreadable files are reported by GridJob.load
            continue
    return out


def split_sizes(cfg: Config) -> tuple[int, int, int]:
    """(training rows searched on, validation rows, all training rows) of `cfg`'s data, before loading it."""
    d = cfg.data
    n_all = 4 if d.name == "xor" else 60000 * (len(d.classes) if d.classes else 10) // 10
    n_val = round(n_all * d.val_fraction)
    return n_all - n_val, n_val, n_all


def stackable(cfg: Config) -> bool:
    """Whether a grid of `cfg` trains as stacks: softmax regression under plain SGD. Momentum's
    velocity would cost a pass over the whole stack per step, so it trains one setting at a time."""
    return cfg.model.kind == "softmax" and cfg.train.optimizer == "sgd"


def _nanmin(v: np.ndarray) -> float:
    finite = v[np.isfinite(v)]
    return float(finite.min()) if finite.size else float("nan")


_CACHE: dict = {}


def _prepared(cfg: Config, data_dir):
    """prepare() once per process for a given data setup (workers run many jobs)."""
    from dlhw.data.prepare import prepare

    key = (cfg.data, cfg.train.dtype, data_dir)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = prepare(cfg, data_dir)
    return _CACHE[key]


def _data_checksums(name: str) -> dict:
    from dlhw.data import REGISTRY

    spec = REGISTRY.get(name)
    return {k: f.sha256 for k, f in spec.files.items()} if spec else {}


# --------------------------------------------------------------------------- expansion


def make_jobs(cfg: Config, data_dir: str | None = None, max_stack: int = MAX_STACK, *, workers: int = 1,
              saved: Path | None = None) -> list[GridJob]:
    """Split the grid into jobs: per value of the extra axes, seed and batch size, chunks of (lr, alpha) pairs.

    Stacks are `max_stack` wide unless `workers` exceed the jobs (then `grid.cut` narrows the longest);
    a group whose jobs of another width are all saved in `saved` keeps that width. Settings that
    cannot stack (other model kinds, momentum) are jobs of one setting each."""
    from dlhw.grid import cut

    g = cfg.grid
    pairs = [(lr, a) for lr in g.learning_rate for a in g.alpha]
    E, grid_epochs = max(g.epochs), tuple(sorted(g.epochs))
    variants = [tuple(v.items()) for v in g.variants()]
    subs = [cfg.variant(dict(v)) for v in variants]  # what `dlhw train` runs for those values
    groups = [(vi, seed, bs) for vi in range(len(variants)) for seed in g.seeds for bs in g.batch_size]

    def group_jobs(group, width: int) -> list[GridJob]:
        vi, seed, bs = group
        jobs, i = [], 0
        for size in cut.chunk_sizes(len(pairs), width):
            part = pairs[i:i + size]
            i += size
            jobs.append(GridJob(subs[vi], bs, seed, tuple(p[0] for p in part), tuple(p[1] for p in part),
                                E, grid_epochs, data_dir, variants[vi]))
        return jobs

    stacks = [grp for grp in groups if stackable(subs[grp[0]])]
    width = {grp: 1 for grp in groups if grp not in stacks}
    if stacks:
        planned = cut.plan(stacks, len(pairs), max_stack, workers,
                           lambda grp, s: GridJob(subs[grp[0]], grp[2], grp[1], (0.0,) * s, (0.0,) * s, E,
                                                  grid_epochs).cost())
        width |= cut.keep_saved(stacks, planned, len(pairs), max_stack,
                                lambda grp, w: cut.exists(saved, [j.key for j in group_jobs(grp, w)]))
    return [j for grp in groups for j in group_jobs(grp, width[grp])]


def settings(cfg: Config) -> list[dict]:
    """Every setting of the grid, in grid.csv order: the extra axes' values (as `axis_text` shows
    them), batch size, lr, epochs, alpha."""
    g = cfg.grid
    return [{**{k: axis_text(v) for k, v in variant.items()},
             "batch_size": bs, "learning_rate": lr, "epochs": e, "alpha": a}
            for variant in g.variants()
            for bs in g.batch_size for lr in g.learning_rate for e in g.epochs for a in g.alpha]


def axis_text(value: Any) -> Any:
    """An axis value as grid.csv and tables show it: layer widths (a tuple, or best.json's list) as
    `512-256`, the rest as it is."""
    return "-".join(map(str, value)) if isinstance(value, (tuple, list)) else value
