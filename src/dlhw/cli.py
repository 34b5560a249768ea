"""The `dlhw` command: a thin layer that parses, loads the config and calls the library."""
from __future__ import annotations

import errno
import sys
import textwrap
from pathlib import Path

import click

import dlhw
from dlhw.config import Config, load_config
from dlhw.errors import ConfigError, DlhwError, RunError


def config_option(example: str):
    return click.option("--config", "config_path", required=True, metavar="FILE",
                        help=f"YAML experiment config, e.g. {example}.")


SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                   help="Override a config value (dotted key, YAML value); repeatable.")
OUT = click.option("--out", "out_dir", default=None, metavar="DIR",
                   help="Run folder (default: output.dir or results/<name>).")
DATA_DIR = click.option("--data-dir", default=None, metavar="DIR",
                        help="Folder holding the data set's IDX files (overrides data.dir).")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")


class _Command(click.Command):
    """A command whose usage mistakes around config values point at `--set KEY=VALUE`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        typed = list(args)  # the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            e.message += _set_hint(self, e.option_name, typed)
            raise
        except click.UsageError as e:
            if "unexpected extra argument" in e.message and _has_set(self):
                e.message = e.message.rstrip(".") + "." + _extra_argument_hint(typed)
            raise


def _has_set(cmd: click.Command) -> bool:
    return any(p.name == "overrides" for p in cmd.params)


def _set_hint(cmd: click.Command, option: str, args: list[str]) -> str:
    """'--epochs 5' -> ' Config values are set with --set KEY=VALUE, e.g. --set train.epochs=5.'"""
    if not _has_set(cmd):
        return ""
    import difflib

    from dlhw.config import SCHEMA

    word = option.lstrip("-").replace("-", "_")
    keys = [f"{sec}.{k}" for sec, (_, rules) in SCHEMA.items() for k in rules]
    prefer = "grid" if cmd.name == "grid" else "train"
    leaf = {k: k.partition(".")[2] for k in keys}
    close = [k for k in keys if word in (k, leaf[k])] or [
        k for k in keys if leaf[k] in difflib.get_close_matches(word, list(leaf.values()), n=1)]
    close.sort(key=lambda k: not k.startswith(prefer + "."))  # the command's own section first
    value = "VALUE"
    for i, a in enumerate(args):
        if a.startswith(option + "="):
            value = a.partition("=")[2]
        elif a == option and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
    if close:
        return f" Config values are set with --set KEY=VALUE, e.g. --set {close[0]}={value}."
    return " Config values are set with --set KEY=VALUE (e.g. --set train.epochs=5)."


def _extra_argument_hint(args: list[str]) -> str:
    """'--set train.epochs 5' -> ' --set takes KEY=VALUE as one word: --set train.epochs=5.'"""
    for i, a in enumerate(args[:-2]):
        if a == "--set" and "=" not in args[i + 1] and not args[i + 2].startswith("-"):
            return f" --set takes KEY=VALUE as one word: --set {args[i + 1]}={args[i + 2]}."
    return " Config values are set with --set KEY=VALUE (one word, e.g. --set train.epochs=5)."


class _UserError(click.ClickException):
    """A library DlhwError as click sees it: one line, its exit code (2 for a mistake, 1 for a failed write)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class _Group(click.Group):
    """`dlhw --help` lists each command with its whole summary (wrapped, not cut off); the library's
    plain DlhwErrors become click's one-line errors."""

    command_class = _Command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DlhwError as e:
            raise _UserError(e.message, e.exit_code) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_Group.group_class = _Group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(dlhw.__version__, prog_name="dlhw")
def cli() -> None:
    """Reproduce deep-learning homework results exactly, quickly and verifiably."""


def _interrupted(message: str) -> None:
    """Ctrl-C: one line saying what is saved and how to finish, exit code 130."""
    click.echo(message, err=True)
    sys.exit(130)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _load(config_path: str, overrides: tuple[str, ...], out_dir: str | None, data_dir: str | None) -> Config:
    cfg = load_config(config_path, overrides)
    if data_dir is not None:
        cfg = cfg.replace(data={"dir": data_dir})
    if out_dir is not None:
        cfg = cfg.replace(output={"dir": out_dir})
    return cfg


@cli.command()
@config_option("configs/softmax_train.yaml")
@SET
@OUT
@DATA_DIR
@QUIET
@click.option("--no-plots", is_flag=True, help="Skip drawing figures/ and writing report.md at the end.")
def train(config_path, overrides, out_dir, data_dir, quiet, no_plots) -> None:
    """Train one setting (the config's `train:` values) and write its run folder."""
    from dlhw.training.run import Interrupted, summary_lines, train_run

    cfg = _load(config_path, overrides, out_dir, data_dir)
    if (cfg.run_dir / "grid.csv").is_file() or (cfg.run_dir / "jobs").is_dir():
        raise RunError(f"{cfg.run_dir}: holds a grid run (grid.csv, jobs/); one training run there would sit beside "
                       f"grid results it does not match. Give another folder, e.g. --out {cfg.run_dir}_train.")
    if cfg.grid is not None:
        added = [o for o in overrides if o.partition("=")[0].strip().startswith("grid.")]
        where = (f"--set {added[0]} adds a 'grid' section" if added and load_config(config_path).grid is None
                 else f"{config_path} has a 'grid' section")
        click.echo(f"note: {where}; `dlhw train` trains the 'train' values only "
                   f"(the grid was not run; use `dlhw grid`).", err=True)
    try:
        res = train_run(cfg, progress=False if quiet else None, argv=sys.argv)
    except Interrupted as e:
        _interrupted(str(e))
    m = res.metrics
    avg = ", weights averaged over the last epoch" if cfg.train.average == "epoch" else ""
    click.echo(f"{cfg.name}: {cfg.model.kind} on {cfg.data.name}, {_count(m['epochs_run'], 'epoch')}{avg}, "
               f"{m['seconds']:.1f} s -> {res.run_dir}")
    if m["diverged"]:
        _finish(res.run_dir, no_plots)
        click.echo(f"error: training diverged at epoch {m['diverged_epoch']} (the loss became inf/NaN); "
                   f"try a smaller learning rate than {cfg.train.learning_rate:g}.", err=True)
        sys.exit(1)
    for line in summary_lines(m):
        click.echo(line)
    if m.get("warning"):
        click.echo(f"warning: {m['warning']}", err=True)
    _finish(res.run_dir, no_plots)


@cli.command()
@config_option("configs/softmax_small.yaml (32 settings) or configs/softmax.yaml (4,096)")
@SET
@OUT
@DATA_DIR
@click.option("--jobs", "-j", "n_jobs", type=click.IntRange(min=1), default=None,
              help="Parallel worker processes (default: the number of cores).")
@click.option("--fresh", is_flag=True, help="Discard saved jobs and start over.")
@click.option("--dry-run", is_flag=True, help="Print the number of settings and jobs and an estimated time; train nothing.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run the jobs on a Dask cluster: tcp://HOST:PORT or tls://HOST:PORT of a `dask scheduler`, "
                   "or 'local' (a local cluster of --jobs workers on 127.0.0.1). Needs dlhw[dask].")
@click.option("--tls-ca-file", metavar="FILE", default=None, help="With a tls:// scheduler: the CA certificate.")
@click.option("--tls-cert", metavar="FILE", default=None, help="With a tls:// scheduler: this client's certificate.")
@click.option("--tls-key", metavar="FILE", default=None, help="With a tls:// scheduler: this client's private key.")
@click.option("--allow-mixed", is_flag=True,
              help="Accept Dask workers whose numpy/scipy/BLAS differ from this machine's (results then depend "
                   "on where each job ran).")
@QUIET
@click.option("--no-plots", is_flag=True, help="Skip drawing figures/ and writing report.md at the end.")
def grid(config_path, overrides, out_dir, data_dir, n_jobs, fresh, dry_run, scheduler, tls_ca_file, tls_cert,
         tls_key, allow_mixed, quiet, no_plots) -> None:
    """Run a hyperparameter grid (resumable), select the best setting, retrain it and test it."""
    from dlhw.grid.run import GridInterrupted, dry_run as plan, run_grid, summary
    from dlhw.training.run import Interrupted

    cfg = _load(config_path, overrides, out_dir, data_dir)
    if cfg.grid is None:
        raise ConfigError(f"{config_path}: has no 'grid' section; add one (see configs/softmax.yaml) "
                          f"or use `dlhw train`.")
    executor = _executor(scheduler, n_jobs, data_dir, allow_mixed, tls_ca_file=tls_ca_file, tls_cert=tls_cert,
                         tls_key=tls_key)
    if dry_run:
        click.echo(plan(cfg, n_jobs, data_dir, executor))
        return
    try:
        res = run_grid(cfg, data_dir=data_dir, n_jobs=n_jobs, fresh=fresh, progress=False if quiet else None,
                       argv=sys.argv, executor=executor)
    except GridInterrupted as e:
        _interrupted(str(e))
    except Interrupted as e:  # in the retrain
        _interrupted(f"interrupted while retraining the chosen setting ({e.phase}): every job of the grid is saved "
                     f"in {cfg.run_dir / 'jobs'}; rerun the same command to finish (only the retrain runs again).")
    except KeyboardInterrupt:  # loading the data, assembling or selecting
        _interrupted(f"interrupted: the jobs finished so far are saved in {cfg.run_dir / 'jobs'}; "
                     f"rerun the same command to resume.")
    for line in summary(res, cfg):
        click.echo(line)
    if res.metrics.get("warning"):
        click.echo(f"warning: the retrained model: {res.metrics['warning']}", err=True)
    _finish(res.run_dir, no_plots)
    if res.metrics.get("diverged"):
        click.echo(f"error: the retrain of the chosen setting diverged at epoch {res.metrics['diverged_epoch']} "
                   f"(the loss became inf/NaN); the search is saved in {res.run_dir / 'grid.csv'}.", err=True)
        sys.exit(1)


def _executor(scheduler, n_jobs, data_dir, allow_mixed, **tls):
    """None (the local pool) or a Dask executor for --scheduler; TLS files must exist."""
    given = [f"--{k.replace('_', '-')}" for k, v in tls.items() if v]
    if scheduler is None:
        if given or allow_mixed:
            raise ConfigError(f"{(given + ['--allow-mixed'])[0]} only applies with --scheduler")
        return None
    for k, v in tls.items():
        if v and not Path(v).is_file():
            raise ConfigError(f"--{k.replace('_', '-')} {v}: no such file")
    if given and not scheduler.startswith("tls://"):
        raise ConfigError(f"{given[0]} needs a tls:// scheduler address, not {scheduler}")
    from dlhw.grid.cluster import DaskExecutor

    return DaskExecutor(scheduler, n_jobs, allow_mixed=allow_mixed, data_dir=data_dir, **tls)


@cli.command(name="eval")
@click.option("--run", "run_dir", required=True, metavar="DIR", help="A finished run folder.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Which split to evaluate.")
@DATA_DIR
def eval_(run_dir, split, data_dir) -> None:
    """Reload a run's model and recompute CE and accuracy on one split."""
    from dlhw.training.run import evaluate_run

    try:
        out = evaluate_run(run_dir, split, data_dir)
    except KeyboardInterrupt:
        _interrupted(f"interrupted: no eval-{split}.json was written; rerun the same command.")
    for k, v in out.items():
        if isinstance(v, float):
            v = f"{v:.2%}" if k.endswith("accuracy") else f"{v:.4f}"
        click.echo(f"{k}: {v}")
    click.echo(f"wrote {Path(run_dir) / f'eval-{split}.json'}")


@cli.group()
def data() -> None:
    """Get and inspect the data sets (fashion-mnist, mnist)."""


DATASET = click.argument("name", metavar="NAME", type=click.Choice(["fashion-mnist", "mnist"]))


@data.command()
@DATASET
@click.option("--data-dir", "--dir", "dest", default=None, metavar="DIR",
              help="Where to put the files (default: data/NAME); --dir is the old name.")
@QUIET
def fetch(name, dest, quiet) -> None:
    """Download NAME from its official mirrors and verify the checksums."""
    from dlhw.data.fetch import fetch as fetch_files

    try:
        path = fetch_files(name, dest, progress=not quiet)
    except KeyboardInterrupt:
        _interrupted("interrupted: the files downloaded and verified so far are kept (each one whole); "
                     "rerun the same command to get the rest.")
    click.echo(f"{name}: files verified in {path}")


@data.command()
@DATASET
@DATA_DIR
def info(name, data_dir) -> None:
    """Where NAME was found, shapes, class counts and checksum status."""
    from dlhw import data as ds

    click.echo(ds.format_info(ds.info(name, data_dir)))


# --------------------------------------------------------------------------- plot, report, compare

RUN = click.option("--run", "run_dir", required=True, metavar="DIR", help="A run folder (of train or grid).")
FORMAT = click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True,
                      help="Image format of the figures.")


def _finish(run_dir: Path, no_plots: bool, fmt: str = "png") -> None:
    """Figures + report.md at the end of a run; with --no-plots, those of an earlier run in the
    folder are removed (they would describe results that are no longer there)."""
    from dlhw.report.markdown import finish_run
    from dlhw.store import derived

    if no_plots:
        derived.clear(run_dir)
        return
    try:
        paths = finish_run(run_dir, fmt)
    except KeyboardInterrupt:
        _interrupted(_drawing_interrupted(run_dir))
    click.echo(f"report: {paths[-1]} ({len(paths) - 1} figures in {Path(run_dir) / 'figures'})")


def _drawing_interrupted(run_dir, redo: str = "") -> str:
    redo = redo or f"dlhw report --run {run_dir} --plots"
    return (f"interrupted while drawing the figures: the results in {run_dir} are complete, its figures and "
            f"report.md are not; `{redo}` finishes them.")


@cli.command()
@RUN
@FORMAT
@click.option("--out", "out_dir", default=None, metavar="DIR", help="Where to write the figures (default: DIR/figures).")
def plot(run_dir, fmt, out_dir) -> None:
    """Draw a run's figures from its result files (no data set, no training)."""
    from dlhw.report.plots import draw_all

    try:
        paths = draw_all(run_dir, out_dir, fmt)
    except KeyboardInterrupt:
        again = f"dlhw plot --run {run_dir}" + (f" --format {fmt}" if fmt != "png" else "") + (
            f" --out {out_dir}" if out_dir else "")
        _interrupted(_drawing_interrupted(run_dir, again) if out_dir is None else
                     f"interrupted while drawing the figures into {out_dir}; `{again}` draws them all.")
    for p in paths:
        click.echo(f"wrote {p}")
    if out_dir is None and paths and (Path(run_dir) / "report.md").is_file():  # it links the figures
        from dlhw.report.markdown import write_report

        click.echo(f"wrote {write_report(run_dir, fmt=fmt)}")
    if not paths:
        click.echo(f"note: {run_dir} holds nothing to plot yet (no history.csv, grid.csv or model.npz).", err=True)


@cli.command()
@RUN
@FORMAT
@click.option("--plots/--no-plots", "draw", default=False, show_default=True,
              help="Also (re)draw the figures the report embeds.")
def report(run_dir, fmt, draw) -> None:
    """(Re)write DIR/report.md: config, chosen setting, metrics, best settings, per-class accuracy, figures."""
    from dlhw.report.markdown import finish_run, write_report
    from dlhw.store.derived import figures_state

    again = f"dlhw report --run {run_dir} --plots" + (f" --format {fmt}" if fmt != "png" else "")
    try:
        path = finish_run(run_dir, fmt)[-1] if draw else write_report(run_dir, fmt=fmt)
    except KeyboardInterrupt:
        _interrupted(_drawing_interrupted(run_dir, again) if draw else
                     f"interrupted: {Path(run_dir) / 'report.md'} was not rewritten; rerun the same command.")
    click.echo(f"wrote {path}")
    if figures_state(run_dir) == "incomplete":
        click.echo(f"note: {run_dir}: drawing its figures was interrupted, so some are missing or out of date; "
                   f"`{again}` draws them and rewrites report.md.", err=True)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN...")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Also write the table as CSV.")
@click.option("--plot", "plot_path", default=None, metavar="FILE",
              help="Overlay the runs' validation curves in one figure (.png, .svg or .pdf).")
@click.option("--wide", is_flag=True, help="Every value in full, however wide the table (default: fit the terminal).")
def compare(run_dirs, csv_path, plot_path, wide) -> None:
    """Runs side by side: the config keys that differ, then validation/test metrics and time."""
    from dlhw.report import compare as cmp
    from dlhw.report.texttable import terminal_width

    columns, rows = cmp.compare_runs(list(run_dirs))
    width = None if wide else terminal_width()
    click.echo(cmp.format_table(columns, rows, width, wide))
    if "seconds" in columns:
        click.echo(cmp.WORK_NOTE if wide else "\n".join(textwrap.wrap(cmp.WORK_NOTE, width)))
    if csv_path:
        click.echo(f"wrote {cmp.write_csv(csv_path, columns, rows)}")
    if plot_path:
        click.echo(f"wrote {cmp.plot_validation(list(run_dirs), plot_path, [r['run'] for r in rows])}")


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--json", "json_path", default=None, metavar="FILE",
              help="Also write every check's verdict and numbers to FILE (JSON).")
@click.option("--verbose", "-v", is_flag=True, help="Print every check's details (named checks always do).")
@click.option("--wide", is_flag=True, help="One line per row, however wide (default: fit the terminal).")
def check(names, json_path, verbose, wide) -> None:
    """Check the homework's claims numerically: claim, source, computed, expected, verdict.

    NAME picks checks (default: all). Each check is also fed the known wrong formulas,
    which it must reject. Exit code 0 when every claim holds and every slip is caught, else 1.
    """
    from dlhw.checks import format_report, run_checks, to_json
    from dlhw.store.files import write_json

    res = run_checks(names)
    from dlhw.report.texttable import terminal_width

    click.echo(format_report(res, details=verbose or bool(names), width=None if wide else terminal_width()))
    if json_path:
        click.echo(f"wrote {write_json(json_path, to_json(res))}")
    sys.exit(0 if all(r.ok for r in res) else 1)


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}  # the disk, not the program


def main() -> None:
    """Entry point. User mistakes (DlhwError, usage errors) exit 2 with one line, no traceback."""
    import os
    import warnings

    os.environ["MPLBACKEND"] = "Agg"  # the CLI only writes files; the library leaves the backend alone
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
    try:
        rv = cli.main(prog_name="dlhw", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # `dlhw` or a group alone: its help text
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:  # a bad option or argument: one line, not click's usage block
        where = e.ctx.command_path if e.ctx else "dlhw"
        click.echo(f"error: {where}: {e.format_message()} (see `{where} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise  # anything else is a bug: keep its traceback
        click.echo(f"error: {e.filename or 'a result file'}: cannot write ({e.strerror}).", err=True)
        sys.exit(1)
    except click.Abort:  # Ctrl-C where a command has nothing of its own to say
        click.echo("interrupted: nothing more was saved; rerun the same command.", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
