#!/usr/bin/env python3
"""Which retrain rule is better? (a measurement, not a test)

A grid selects a setting on the training split (e.g. 48,000 images) and retrains it on train+val
(60,000). `grid.retrain_epochs: same` keeps the epoch count — 25% more SGD steps than the
selected run had; `same_steps` keeps the number of steps. This script retrains the chosen setting
of a finished grid run with both rules over several shuffle seeds and prints test CE and accuracy
(mean and standard deviation), side by side in one run.

    .venv/bin/python scripts/bench_retrain.py --run results/softmax --seeds 0 1 2 3 4
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

from dlhw.config import load_config
from dlhw.training.run import train_run
from dlhw.data.prepare import prepare
from dlhw.training.rules import batches_per_epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="results/softmax", help="a finished grid run folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--json", default="bench_retrain.json")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    best = json.loads((run / "best.json").read_text())
    bs, epochs = best["batch_size"], best["epochs"]
    n_sel = len(prepare(cfg).train[1])
    full = prepare(cfg, retrain_on="train+val")
    steps_sel = epochs * batches_per_epoch(n_sel, bs)
    rules = {"same": (epochs, None),
             "same_steps": (math.ceil(steps_sel / batches_per_epoch(len(full.train[1]), bs)), steps_sel)}
    out: dict = {"setting": {k: best[k] for k in ("batch_size", "learning_rate", "epochs", "alpha")}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for rule, (ep, max_steps) in rules.items():
                c = cfg.replace(train={"seed": seed})
                r = train_run(c, out_dir=Path(tmp) / f"{rule}-{seed}", progress=False, retrain_on="train+val",
                              epochs=ep, max_steps=max_steps, prep=full)
                out.setdefault(rule, []).append({"seed": seed, "test_accuracy": r.metrics["test_accuracy"],
                                                 "test_ce": r.metrics["test_ce"], "steps": r.metrics["iterations"]})
                print(f"{rule:>10} seed {seed}: {r.metrics['iterations']} steps, test CE {r.metrics['test_ce']:.4f}, "
                      f"test accuracy {r.metrics['test_accuracy']:.2%}", flush=True)
    for rule in rules:
        accs = [x["test_accuracy"] for x in out[rule]]
        ces = [x["test_ce"] for x in out[rule]]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{rule:>10}: test accuracy {statistics.mean(accs):.2%} ± {sd:.2%}, "
              f"test CE {statistics.mean(ces):.4f} (n={len(accs)})")
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
