"""Benchmark the MLP: training throughput vs PyTorch (CPU), and `dlhw train` end to end.

    .venv/bin/python scripts/bench_mlp.py                       # both parts, configs/mlp_fashion.yaml
    .venv/bin/python scripts/bench_mlp.py --skip-train --repeats 7
    .venv/bin/python scripts/bench_mlp.py --torch-python /tmp/torchenv/bin/python

1. Throughput (samples/s) of the training step exactly as `train.fit` runs it — gather a
   shuffled mini-batch, forward, backward, optimiser update — on the real training split,
   same architecture, batch size, dtype (float32), optimiser and thread count for both.
   Evaluation is excluded. Rounds alternate numpy and torch; medians are reported.
   PyTorch is a benchmark-only comparison, never a dlhw dependency: it is imported when
   this interpreter has it, else run in `--torch-python` (a separate venv) as a subprocess
   on the same arrays; without either, the torch column says so.
2. End to end: `dlhw train --config CONFIG` in a subprocess: wall time, the run's own
   `seconds`, and the test accuracy from metrics.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- numpy side


def numpy_rounds(cfg, X: np.ndarray, y: np.ndarray, steps: int, warmup: int):
    """A generator: each next() times `steps` dlhw training steps and yields samples/s."""
    from dlhw.models import build_model
    from dlhw.models.optim import OPTIMIZERS
    from dlhw.training.rules import epoch_permutation

    t = cfg.train
    model = build_model(cfg, X.shape[1], int(y.max()) + 1)
    update = OPTIMIZERS[t.optimizer]
    states = {k: {} for k in model.params}
    drop_rng = np.random.default_rng([t.seed, 2])
    order = np.concatenate([epoch_permutation(len(y), t.seed, e) for e in (1, 2)])
    pos = 0

    def run(n: int) -> float:
        nonlocal pos
        t0 = time.perf_counter()
        for _ in range(n):  # the body of train.fit's loop
            if pos + t.batch_size > len(order):
                pos = 0
            idx = order[pos:pos + t.batch_size]
            pos += t.batch_size
            loss, grads = model.loss(X[idx], y[idx], rng=drop_rng)
            for k, w in model.params.items():
                update(w, grads[k], states[k], t.learning_rate, t.momentum)
        return n * t.batch_size / (time.perf_counter() - t0)

    run(warmup)
    while True:
        yield run(steps)


# --------------------------------------------------------------------------- torch side

TORCH_WORKER = r'''
import json, sys, time
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)
data = np.load(spec["data"])
X, y = torch.from_numpy(data["X"]), torch.from_numpy(data["y"])
order = torch.from_numpy(data["order"])
act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(spec["leaky_slope"]),
       "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[spec["activation"]]


class GaussianDropout(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.sigma = (p / (1 - p)) ** 0.5

    def forward(self, x):
        return x * (1 + self.sigma * torch.randn_like(x)) if self.training else x


layers, d = [], X.shape[1]
for h in spec["hidden"]:
    layers.append(nn.Linear(d, h, bias=not spec["batch_norm"]))
    if spec["batch_norm"]:
        layers.append(nn.BatchNorm1d(h, eps=1e-5, momentum=0.1))
    layers.append(act())
    if spec["dropout"] > 0:
        layers.append(nn.Dropout(spec["dropout"]) if spec["dropout_kind"] == "bernoulli"
                      else GaussianDropout(spec["dropout"]))
    d = h
layers.append(nn.Linear(d, spec["n_classes"]))
model = nn.Sequential(*layers).train()
weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]
others = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.ndim == 2)]
opt = torch.optim.SGD([{"params": weights, "weight_decay": spec["alpha"]},
                       {"params": others, "weight_decay": 0.0}],
                      lr=spec["lr"], momentum=spec["momentum"])
bs, pos = spec["batch_size"], 0


def run(n):
    global pos
    t0 = time.perf_counter()
    for _ in range(n):
        if pos + bs > len(order):
            pos = 0
        idx = order[pos:pos + bs]
        pos += bs
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        loss.item()  # dlhw reads every mini-batch loss (divergence check, iterations.csv)
    return n * bs / (time.perf_counter() - t0)


run(spec["warmup"])
print("torch", torch.__version__, torch.get_num_threads(), flush=True)
for line in sys.stdin:  # one round per line, in step with the numpy rounds
    print(run(spec["steps"]), flush=True)
'''


def torch_spec(cfg, n_classes: int, threads: int, steps: int, warmup: int, data_path: str) -> dict:
    m, t = cfg.model, cfg.train
    return {"hidden": list(m.hidden), "activation": m.activation, "leaky_slope": m.leaky_slope,
            "batch_norm": m.batch_norm, "dropout": m.dropout, "dropout_kind": m.dropout_kind,
            "n_classes": n_classes, "alpha": t.alpha, "lr": t.learning_rate,
            "momentum": t.momentum if t.optimizer == "momentum" else 0.0, "batch_size": t.batch_size,
            "threads": threads, "steps": steps, "warmup": warmup, "data": data_path}


def find_torch_python(explicit: str | None) -> str | None:
    """An interpreter that can import torch: --torch-python, this one, or /tmp/torchenv."""
    cands = [explicit] if explicit else [sys.executable, "/tmp/torchenv/bin/python"]
    for py in cands:
        if py and Path(py).exists() and subprocess.run([py, "-c", "import torch"],
                                                       capture_output=True).returncode == 0:
            return py
    return None


# --------------------------------------------------------------------------- parts


def throughput(cfg, args, threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    from dlhw.data.prepare import prepare
    from dlhw.training.rules import epoch_permutation

    prep = prepare(cfg)
    X, y = prep.train
    n_classes = len(prep.classes)
    out: dict = {"batch_size": cfg.train.batch_size, "hidden": list(cfg.model.hidden), "threads": threads,
                 "steps_per_round": args.steps, "rounds": args.repeats, "numpy": [], "torch": []}
    py = None if args.skip_torch else find_torch_python(args.torch_python)
    worker = None
    with tempfile.TemporaryDirectory() as tmp:
        if py:
            order = np.concatenate([epoch_permutation(len(y), cfg.train.seed, e) for e in (1, 2)])
            data_path = str(Path(tmp) / "data.npz")
            np.savez(data_path, X=X, y=y, order=order)
            spec = torch_spec(cfg, n_classes, threads, args.steps, args.warmup, data_path)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            worker = subprocess.Popen([py, "-c", TORCH_WORKER, json.dumps(spec)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env)
            out["torch_version"] = worker.stdout.readline().split()[1]
        else:
            out["torch_version"] = None
        with threadpool_limits(limits=threads, user_api="blas"):
            rounds = numpy_rounds(cfg, X, y, args.steps, args.warmup)
            for r in range(args.repeats):
                out["numpy"].append(next(rounds))
                if worker:
                    worker.stdin.write("go\n")
                    worker.stdin.flush()
                    out["torch"].append(float(worker.stdout.readline()))
                print(f"  round {r + 1}: numpy {out['numpy'][-1]:,.0f}/s"
                      + (f", torch {out['torch'][-1]:,.0f}/s" if worker else ""), file=sys.stderr)
        if worker:
            worker.stdin.close()
            worker.wait()
    out["numpy_median"] = statistics.median(out["numpy"])
    if out["torch"]:
        out["torch_median"] = statistics.median(out["torch"])
        out["ratio_numpy_over_torch"] = out["numpy_median"] / out["torch_median"]
    return out


def end_to_end(config: Path, runs: int) -> dict:
    dlhw = Path(sys.executable).with_name("dlhw")
    cmd = [str(dlhw), "train", "--config", str(config), "-q"]
    walls, seconds, acc = [], [], None
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = subprocess.run(cmd + ["--out", tmp], capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
            m = json.loads((Path(tmp) / "metrics.json").read_text())
            seconds.append(m["seconds"])
            acc = m["test_accuracy"]  # deterministic: the same in every run
            print(f"  run: {walls[-1]:.1f} s wall, {m['seconds']:.1f} s in train_run, "
                  f"test accuracy {acc:.4f}", file=sys.stderr)
    return {"command": " ".join(cmd), "runs": runs, "wall_s": walls, "wall_median_s": statistics.median(walls),
            "train_run_median_s": statistics.median(seconds), "test_accuracy": acc}


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    n = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
    return n[0] if n else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "mlp_fashion.yaml")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per side (medians reported)")
    p.add_argument("--steps", type=int, default=300, help="training steps per timed round")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="threads for both sides (default: numpy's BLAS)")
    p.add_argument("--train-runs", type=int, default=1, help="end-to-end `dlhw train` runs")
    p.add_argument("--torch-python", default=None, help="a python that has torch (default: this one, "
                                                         "else /tmp/torchenv/bin/python)")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-train", action="store_true", help="throughput only")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    from dlhw.config import load_config

    cfg = load_config(args.config)
    threads = args.threads or blas_threads()
    res: dict = {"config": str(args.config), "cpu_count": os.cpu_count(), "numpy": np.__version__}
    print(f"throughput: {cfg.model.hidden} {cfg.model.activation}, batch {cfg.train.batch_size}, "
          f"{threads} thread(s), {args.repeats} x {args.steps} steps", file=sys.stderr)
    res["throughput"] = tp = throughput(cfg, args, threads)
    line = f"numpy (dlhw) {tp['numpy_median']:,.0f} samples/s"
    if "torch_median" in tp:
        line += (f" | torch {tp['torch_version']} {tp['torch_median']:,.0f} samples/s"
                 f" | ratio numpy/torch {tp['ratio_numpy_over_torch']:.2f}")
    else:
        line += " | torch: not available (install it in a separate venv; see --torch-python)"
    print(line)
    if not args.skip_train:
        print(f"end to end: dlhw train --config {args.config}", file=sys.stderr)
        res["end_to_end"] = e2e = end_to_end(args.config, args.train_runs)
        print(f"dlhw train: test accuracy {e2e['test_accuracy']:.2%}, median wall {e2e['wall_median_s']:.1f} s "
              f"(train_run {e2e['train_run_median_s']:.1f} s) over {e2e['runs']} run(s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
