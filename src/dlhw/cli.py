"""The `dlhw` command: a thin layer that parses, loads the config and calls the library."""
from __future__ import annotations

import sys
from pathlib import Path

import click

import dlhw
from dlhw.config import Config, load_config
from dlhw.errors import ConfigError, DlhwError

CONFIG = click.option("--config", "config_path", required=True, metavar="FILE",
                      help="YAML experiment config, e.g. configs/softmax_train.yaml.")
SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                   help="Override a config value (dotted key, YAML value); repeatable.")
OUT = click.option("--out", "out_dir", default=None, metavar="DIR",
                   help="Run folder (default: output.dir or results/<name>).")
DATA_DIR = click.option("--data-dir", default=None, metavar="DIR",
                        help="Folder holding the data set's IDX files (overrides data.dir).")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")


class _UserError(click.ClickException):
    """A library DlhwError as click sees it: one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class _Cli(click.Group):
    """The library raises plain DlhwErrors; every command maps them to click's one-line exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DlhwError as e:
            raise _UserError(e.message) from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(dlhw.__version__, prog_name="dlhw")
def cli() -> None:
    """Reproduce deep-learning homework results exactly, quickly and verifiably."""


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
@CONFIG
@SET
@OUT
@DATA_DIR
@QUIET
@click.option("--no-plots", is_flag=True, help="Skip drawing figures/ and writing report.md at the end.")
def train(config_path, overrides, out_dir, data_dir, quiet, no_plots) -> None:
    """Train one setting (the config's `train:` values) and write its run folder."""
    from dlhw.training.run import summary_lines, train_run

    cfg = _load(config_path, overrides, out_dir, data_dir)
    if cfg.grid is not None:
        click.echo(f"note: {config_path} has a 'grid' section; `dlhw train` trains the 'train' values only "
                   f"(the grid was not run; use `dlhw grid`).", err=True)
    res = train_run(cfg, progress=False if quiet else None, argv=sys.argv)
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
    _finish(res.run_dir, no_plots)


@cli.command()
@CONFIG
@SET
@OUT
@DATA_DIR
@click.option("--jobs", "-j", "n_jobs", type=click.IntRange(min=1), default=None,
              help="Parallel worker processes (default: the number of cores).")
@click.option("--fresh", is_flag=True, help="Discard saved jobs and start over.")
@click.option("--dry-run", is_flag=True, help="Print the number of settings and jobs and an estimated time; train nothing.")
@QUIET
@click.option("--no-plots", is_flag=True, help="Skip drawing figures/ and writing report.md at the end.")
def grid(config_path, overrides, out_dir, data_dir, n_jobs, fresh, dry_run, quiet, no_plots) -> None:
    """Run a hyperparameter grid (resumable), select the best setting, retrain it and test it."""
    from dlhw.grid.run import GridInterrupted, dry_run as plan, run_grid, summary

    cfg = _load(config_path, overrides, out_dir, data_dir)
    if cfg.grid is None:
        raise ConfigError(f"{config_path}: has no 'grid' section; add one (see configs/softmax.yaml) "
                          f"or use `dlhw train`.")
    if dry_run:
        click.echo(plan(cfg, n_jobs, data_dir))
        return
    try:
        res = run_grid(cfg, data_dir=data_dir, n_jobs=n_jobs, fresh=fresh, progress=False if quiet else None,
                       argv=sys.argv)
    except GridInterrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    for line in summary(res, cfg):
        click.echo(line)
    _finish(res.run_dir, no_plots)


@cli.command(name="eval")
@click.option("--run", "run_dir", required=True, metavar="DIR", help="A finished run folder.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Which split to evaluate.")
@DATA_DIR
def eval_(run_dir, split, data_dir) -> None:
    """Reload a run's model and recompute CE and accuracy on one split."""
    from dlhw.training.run import evaluate_run

    out = evaluate_run(run_dir, split, data_dir)
    for k, v in out.items():
        click.echo(f"{k}: {v:.6f}" if isinstance(v, float) else f"{k}: {v}")
    click.echo(f"wrote {Path(run_dir) / f'eval-{split}.json'}")


@cli.group()
def data() -> None:
    """Get and inspect the data sets (fashion-mnist, mnist)."""


DATASET = click.argument("name", metavar="NAME", type=click.Choice(["fashion-mnist", "mnist"]))


@data.command()
@DATASET
@click.option("--dir", "dest", default=None, metavar="DIR", help="Where to put the files (default: data/NAME).")
@QUIET
def fetch(name, dest, quiet) -> None:
    """Download NAME from its official mirrors and verify the checksums."""
    from dlhw.data.fetch import fetch as fetch_files

    path = fetch_files(name, dest, progress=not quiet)
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
    from dlhw.report.markdown import finish_run, remove_derived

    if no_plots:
        remove_derived(run_dir)
        return

    paths = finish_run(run_dir, fmt)
    click.echo(f"report: {paths[-1]} ({len(paths) - 1} figures in {Path(run_dir) / 'figures'})")


@cli.command()
@RUN
@FORMAT
@click.option("--out", "out_dir", default=None, metavar="DIR", help="Where to write the figures (default: DIR/figures).")
def plot(run_dir, fmt, out_dir) -> None:
    """Draw a run's figures from its result files (no data set, no training)."""
    from dlhw.report.plots import draw_all

    paths = draw_all(run_dir, out_dir, fmt)
    for p in paths:
        click.echo(f"wrote {p}")
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

    path = finish_run(run_dir, fmt)[-1] if draw else write_report(run_dir, fmt=fmt)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN...")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Also write the table as CSV.")
@click.option("--plot", "plot_path", default=None, metavar="FILE",
              help="Overlay the runs' validation curves in one figure (.png, .svg or .pdf).")
def compare(run_dirs, csv_path, plot_path) -> None:
    """Runs side by side: the config keys that differ, then validation/test metrics and time."""
    from dlhw.report import compare as cmp

    columns, rows = cmp.compare_runs(list(run_dirs))
    click.echo(cmp.format_table(columns, rows))
    if csv_path:
        click.echo(f"wrote {cmp.write_csv(csv_path, columns, rows)}")
    if plot_path:
        click.echo(f"wrote {cmp.plot_validation(list(run_dirs), plot_path, [r['run'] for r in rows])}")


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--json", "json_path", default=None, metavar="FILE",
              help="Also write every check's verdict and numbers to FILE (JSON).")
@click.option("--verbose", "-v", is_flag=True, help="Print every check's details (named checks always do).")
def check(names, json_path, verbose) -> None:
    """Check the homework's claims numerically: claim, source, computed, expected, verdict.

    NAME picks checks (default: all). Each check is also fed the known wrong formulas,
    which it must reject. Exit code 0 when every claim holds and every slip is caught, else 1.
    """
    from dlhw.checks import format_report, run_checks, to_json
    from dlhw.store.files import write_json

    res = run_checks(names)
    click.echo(format_report(res, details=verbose or bool(names)))
    if json_path:
        click.echo(f"wrote {write_json(json_path, to_json(res))}")
    sys.exit(0 if all(r.ok for r in res) else 1)


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
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
