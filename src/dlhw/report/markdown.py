"""`report.md`: a run folder summarised in Markdown that reads well on GitHub as it is.

Built from the result files alone (like the figures): the summary, the chosen hyperparameters and
the ten best settings (grid runs), the metrics, per-class test accuracy, the figures (relative
links to `figures/`), the resolved config and the provenance. `finish_run` is what `dlhw train`
and `dlhw grid` call at their end.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from dlhw.report import plots
from dlhw.store import derived, files as results
from dlhw.report.runfiles import (LOSS_NAMES, SPLITS, RunFiles, axis_label, extra_axes, finite, fmt_value, metric_label,
                                  ranked_settings, read_run)

CAPTIONS = {  # figure -> (heading, what to read in it)
    "loss_curves": ("Loss vs epochs", "Training, validation and test loss of the final run (no L2 term)."),
    "loss_iterations": ("Loss vs iterations", "Mini-batch training loss (faint: every step; dark: moving "
                        "average) and the loss on the whole validation/test split at each evaluation point."),
    "accuracy_curves": ("Accuracy vs epochs", "Training, validation and test accuracy of the final run."),
    "grid_heatmaps": ("Grid: learning rate × α", "Each cell: the best validation score of that (batch size, "
                      "learning rate, α) over the epoch counts (the number in the cell); red box: the chosen "
                      "setting; hatched: diverged."),
    "grid_epochs": ("Grid: the ten best settings over epochs", "Validation score after every epoch for the "
                    "ten best settings; markers at each one's best epoch count, the star at the chosen one."),
    "grid_marginals": ("Grid: each hyperparameter on its own", "The best validation score reached with each "
                       "value of each hyperparameter (all other hyperparameters free)."),
    "confusion_matrix": ("Test confusion matrix", "Rows: true class (recall in brackets); columns: predicted "
                         "class; counts in the cells, colour = share of the true class."),
    "weights": ("Learned weights", "Each class's weight vector drawn as a 28×28 image (red: pixels that are "
                "evidence for the class, blue: evidence against it)."),
}


def finish_run(run_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Draw every figure that applies into `run_dir/figures/` and write `run_dir/report.md`.

    Figures of other formats and the old report.md go first; manifest.json says `figures:
    incomplete` until everything is written (an interrupted folder is recognisable)."""
    run = read_run(run_dir)
    for p in derived.derived_files(run.dir):
        if p.name == "report.md" or p.parent.name == "figures":
            p.unlink()
    derived.record(run.dir, figures="incomplete")
    figs = plots.draw_all(run.dir, fmt=fmt, run=run, track=False)
    derived.record(run.dir, figures="complete")
    return [*figs, write_report(run.dir, run=run, fmt=fmt)]


def write_report(run_dir: str | Path, *, run: RunFiles | None = None, fmt: str = "png") -> Path:
    """(Re)write `run_dir/report.md` from the result files and the figures present."""
    run = run or read_run(run_dir)
    path = results.atomic_write_text(run.dir / "report.md", render(run, fmt))
    derived.record(run.dir)
    return path


def render(run: RunFiles, fmt: str = "png") -> str:
    """The report's Markdown text."""
    parts = [f"# `{run.name}`: dlhw run report", _summary(run)]
    for section in (_chosen, _metrics, _top_settings, _per_class, lambda r: _figures(r, fmt), _config,
                    _provenance):
        text = section(run)
        if text:
            parts.append(text)
    return "\n\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------- sections


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` is one character per column: l or r."""
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _num(v, metric: str = "ce") -> str:
    if not finite(v):
        return "–"
    return f"{100 * v:.2f} %" if metric.endswith("accuracy") else f"{v:.4f}"


def _summary(run: RunFiles) -> str:
    cfg, m = run.config or {}, run.metrics or {}
    model, data, train = cfg.get("model") or {}, cfg.get("data") or {}, cfg.get("train") or {}
    kind = model.get("kind", "?")
    if kind == "mlp":
        kind = f"MLP {model.get('hidden')} ({model.get('activation')})"
    lines = []
    what = "Grid search, then the chosen setting retrained" if run.grid else "One training run"
    lines.append(f"{what}: **{kind}** on **{data.get('name', '?')}**")
    if m:
        steps = f" ({m['iterations']:,} SGD steps)" if isinstance(m.get("iterations"), int) else ""
        lines[-1] += (f", trained on {m.get('trained_on', 'train')} for {m.get('epochs_run')} epoch{'' if m.get('epochs_run') == 1 else 's'}{steps} "
                      f"in {m.get('seconds', 0):.1f} s.")
        if train.get("average") == "epoch":
            lines[-1] += " Its weights are the mean of the last epoch's SGD iterates (`train.average: epoch`)."
        if m.get("diverged"):
            lines.append(f"\n> **Training diverged at epoch {m.get('diverged_epoch')}** (the loss became inf/NaN): "
                         f"try a smaller learning rate than {fmt_value(train.get('learning_rate', 0))}.")
        elif m.get("worse_than_start"):
            lines.append(f"\n\n> **Warning**: {m['warning']}\n>\n> Test accuracy {_num(m.get('test_accuracy'), 'accuracy')}, "
                         f"test cross-entropy {_num(m.get('test_ce'))}.")
        elif finite(m.get("test_accuracy")):
            lines.append(f"Test accuracy **{_num(m['test_accuracy'], 'accuracy')}**, test cross-entropy "
                         f"**{_num(m.get('test_ce'))}**.")
        else:
            losses = [k for k in m if k.startswith("test_") and finite(m[k])]
            if losses:
                lines.append(f"Test {LOSS_NAMES.get(losses[0][5:], losses[0][5:])} **{_num(m[losses[0]])}**.")
    else:
        lines[-1] += "; no metrics.json yet (the run has not finished)."
    return " ".join(lines)


def _chosen(run: RunFiles) -> str:
    b = run.best
    if not b:
        return ""
    sel = b.get("select_by", "val_ce")
    extra = [k for k in extra_axes(run) if k in b]
    head = [*extra, "batch size", "learning rate", "epochs", "α (L2)", "validation CE", "validation accuracy"]
    row = [*(axis_label(b[k]) for k in extra), str(b.get("batch_size")), fmt_value(b.get("learning_rate", 0)),
           str(b.get("epochs")), fmt_value(b.get("alpha", 0)), _num(b.get("val_ce")),
           _num(b.get("val_accuracy"), "accuracy")]
    best_way = "highest" if sel.endswith("accuracy") else "lowest"
    text = [
        "## Chosen hyperparameters",
        "",
        _table(head, [row], "l" * len(extra) + "rrrrrr"),
        "",
        f"Selected by the {best_way} {metric_label(sel)} among {b.get('n_settings', '?'):,} settings"
        if isinstance(b.get("n_settings"), int) else f"Selected by the {best_way} {metric_label(sel)}",
    ]
    timing = b if finite(b.get("seconds")) else (run.manifest or {}).get("grid") or {}
    if finite(timing.get("seconds")):
        rate = timing.get("settings_per_second")
        text[-1] += f" (grid search {timing['seconds']:.1f} s"
        if timing.get("jobs_loaded"):  # a rate over the jobs one session ran would mislead
            text[-1] += (f" in the session that finished it, which ran {timing.get('jobs_run')} of "
                         f"{timing.get('jobs')} jobs; {timing['jobs_loaded']} were saved by an earlier one)")
        else:
            text[-1] += (f", {rate:.1f} settings/s)" if finite(rate) else ")")
    again = {"same": "the same number of epochs", "same_steps": "the same number of SGD steps"}
    text[-1] += (f"; then retrained on {b.get('retrain_on', 'train+val')} with "
                 f"{again.get(b.get('retrain_epochs'), 'the same number of epochs')}.")
    if run.grid:
        div = sum(1 for r in run.grid if r.get("diverged"))
        if div:
            text.append(f"{div:,} of {len(run.grid):,} settings diverged (the loss became inf/NaN).")
    return "\n".join(text)


def _metrics(run: RunFiles) -> str:
    m = dict(run.metrics or {})
    if not m:
        return ""
    names = []
    for k in m:
        split, _, metric = k.partition("_")
        if split in SPLITS and metric not in names and metric != "confusion":
            names.append(metric)
    if run.best and "val_ce" not in m:  # a grid's retrained model has no validation split
        for metric in names:
            if f"val_{metric}" in run.best:
                m[f"val_{metric}"] = run.best[f"val_{metric}"]
    label = {"train": f"training ({m.get('trained_on', 'train')})", "val": "validation", "test": "test"}
    if run.best and "val_ce" not in (run.metrics or {}):
        label["val"] = "validation (chosen setting, trained on train only)"
    rows = [[label[s], *(_num(m.get(f"{s}_{n}"), n) for n in names)]
            for s in SPLITS if any(f"{s}_{n}" in m for n in names)]
    head = ["split", *(LOSS_NAMES.get(n, n) if n != "accuracy" else "accuracy" for n in names)]
    out = ["## Metrics", "", _table(head, rows)]
    extra = []
    if finite(m.get("seconds")):
        extra.append(f"training time {m['seconds']:.1f} s")
    if m.get("epochs_run") is not None:
        extra.append(f"{m['epochs_run']} epochs")
    if isinstance(m.get("iterations"), int):
        extra.append(f"{m['iterations']:,} SGD steps")
    if extra:
        line = ", ".join(extra)
        out.append("\n" + line[0].upper() + line[1:] + ". Loss values are the mean over the whole split, "
                   "without the L2 term.")
    return "\n".join(out)


def _top_settings(run: RunFiles, n: int = 10) -> str:
    ranked = ranked_settings(run)[:n]
    if not ranked:
        return ""
    std = "val_ce_std" in ranked[0]
    extra = extra_axes(run)
    head = ["#", *extra, "batch size", "learning rate", "epochs", "α (L2)", "validation CE", "validation accuracy",
            "training CE"]
    rows = []
    for i, r in enumerate(ranked, 1):
        ce = _num(r.get("val_ce")) + (f" ± {r['val_ce_std']:.4f}" if std and finite(r.get("val_ce_std")) else "")
        acc = _num(r.get("val_accuracy"), "accuracy")
        if std and finite(r.get("val_accuracy_std")):
            acc += f" ± {100 * r['val_accuracy_std']:.2f}"
        rows.append([str(i), *(axis_label(r[k]) for k in extra), str(r["batch_size"]), fmt_value(r["learning_rate"]),
                     str(r["epochs"]),
                     fmt_value(r["alpha"]), ce, acc, _num(r.get("train_ce"))])
    seeds = f" (mean ± std over {ranked[0].get('n_seeds')} shuffle seeds)" if std else ""
    return "\n".join([f"## The {len(ranked)} best settings", "", f"From `grid.csv`, best first{seeds}.", "",
                      _table(head, rows, "r" + "l" * len(extra) + "rrrrrrr")])


def _per_class(run: RunFiles) -> str:
    m = run.metrics or {}
    cm = m.get("test_confusion")
    if not cm:
        return ""
    cm = np.asarray(cm, dtype=np.int64)
    classes = [str(c) for c in m.get("classes") or []]
    classes += [str(i) for i in range(len(classes), cm.shape[0])]
    rows = []
    for i in range(cm.shape[0]):
        total = int(cm[i].sum())
        off = cm[i].copy()
        off[i] = -1
        j = int(off.argmax())
        confused = f"{classes[j]} ({off[j]})" if off[j] > 0 else "–"
        rows.append([classes[i], f"{cm[i, i]:,}", f"{total:,}", _num(cm[i, i] / total if total else None, "accuracy"),
                     confused])
    rows.sort(key=lambda r: float(r[3].rstrip(" %")) if r[3] != "–" else -1)
    return "\n".join(["## Per-class test accuracy", "", "Hardest classes first.", "",
                      _table(["class", "correct", "images", "accuracy", "most often mistaken for"], rows, "lrrrl")])


def _figures(run: RunFiles, fmt: str) -> str:
    out = []
    for name, (heading, caption) in CAPTIONS.items():
        if name == "weights" and run.model and "param_W1" in run.model:
            caption = ("The first-layer units with the largest weight norms, each drawn as a 28×28 image "
                       "on its own symmetric colour scale (red: positive, blue: negative).")
        path = _figure_file(run.dir / "figures", name, fmt)
        if path is None:
            continue
        rel = path.relative_to(run.dir).as_posix()
        link = f"[{heading} (PDF)]({rel})" if path.suffix == ".pdf" else f"![{heading}]({rel})"
        out += ["", f"### {heading}", "", caption, "", link]
    if derived.figures_state(run.dir) == "incomplete":
        return "\n".join(["## Figures", "", f"**Incomplete**: drawing the figures was interrupted; "
                           f"`dlhw report --run {run.dir} --plots` draws them all and rewrites this report.", *out])
    if not out:
        return "## Figures\n\nNo figures yet: `dlhw plot --run " + str(run.dir) + "` draws them."
    return "\n".join(["## Figures", *out])


def _figure_file(folder: Path, name: str, fmt: str) -> Path | None:
    for ext in dict.fromkeys((fmt, "png", "svg", "pdf")):
        p = folder / f"{name}.{ext}"
        if p.is_file():
            return p
    return None


MLP_KEYS = ("hidden", "activation", "leaky_slope", "init", "batch_norm", "dropout", "dropout_kind")


def applicable(config: dict) -> tuple[dict, list[str]]:
    """The config without the keys that do not apply to its model kind and optimizer (an MLP's
    layers for softmax, momentum for plain SGD, ...), and the dotted keys left out."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    model, train = out.get("model") or {}, out.get("train") or {}
    drop = []
    if model.get("kind") != "mlp":
        drop += [f"model.{k}" for k in MLP_KEYS]
    else:
        if model.get("activation") != "leaky_relu":
            drop.append("model.leaky_slope")
        if not model.get("dropout"):
            drop.append("model.dropout_kind")
    if train.get("optimizer") != "momentum":
        drop.append("train.momentum")
    if train.get("optimizer") == "newton":  # full-batch steps: no mini-batches, no step size schedule
        drop += ["train.batch_size", "train.average"]
    gone = []
    for key in drop:
        sec, _, k = key.partition(".")
        if isinstance(out.get(sec), dict) and k in out[sec]:
            del out[sec][k]
            gone.append(key)
    if out.get("grid") is None:
        out.pop("grid", None)
    return out, gone


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists, as config.yaml."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _config(run: RunFiles) -> str:
    if not run.config_text:
        return ""
    if not run.config:
        return "## Resolved config\n\n`config.yaml`, as the run used it:\n\n```yaml\n" + run.config_text.rstrip() + "\n```"
    shown, gone = applicable(run.config)
    text = yaml.dump(shown, Dumper=_Dumper, sort_keys=False, default_flow_style=False).rstrip()
    kind = (run.config.get("model") or {}).get("kind", "?")
    note = (f" Keys that do not apply to this {kind} run are left out ({', '.join(f'`{k}`' for k in gone)}); "
            f"[`config.yaml`](config.yaml) has them all." if gone else "")
    return f"## Resolved config\n\nThe config the run used{'' if gone else ' (`config.yaml`)'}.{note}\n\n```yaml\n{text}\n```"


def _provenance(run: RunFiles) -> str:
    mf = run.manifest
    if not mf:
        return ""
    items = []
    if mf.get("dlhw"):
        commit = mf.get("git_commit")
        items.append(f"dlhw {mf['dlhw']}" + (f", git `{commit[:10]}`" + (" (uncommitted changes)"
                                                                         if mf.get("git_dirty") else "")
                                            if commit else ""))
    if mf.get("python"):
        items.append(f"Python {mf['python']}, numpy {mf.get('numpy', '?')}")
    if mf.get("started"):
        items.append(f"ran {mf['started']} – {mf.get('finished', '?')}")
    if mf.get("command"):
        cmd = mf["command"]
        items.append("command `" + (" ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)) + "`")
    return "## Provenance\n\n" + "\n".join(f"- {i}" for i in items) + "\n\nFull details: [`manifest.json`](manifest.json)."
