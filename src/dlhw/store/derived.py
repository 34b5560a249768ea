"""Files derived from a run's results - evaluations, figures, report.md - and their record in manifest.json.

A run folder must never contradict itself: a new run into a folder removes the derived files of the
previous run before it trains (`clear`), and `manifest.json` lists under `derived` the derived files
that belong to this run, with `figures: incomplete` while figures and report.md are being drawn, so a
folder interrupted then is recognisable as such (`figures: complete` once they are all written).
"""
from __future__ import annotations

from pathlib import Path

from dlhw.store import files

FIGURE_FORMATS = ("png", "svg", "pdf")


def derived_files(run_dir: str | Path) -> list[Path]:
    """The derived files present in `run_dir`: eval-*.json, report.md, figures/*.{png,svg,pdf}."""
    d = Path(run_dir)
    out = sorted(d.glob("eval-*.json"))
    if (d / "report.md").is_file():
        out.append(d / "report.md")
    for fmt in FIGURE_FORMATS:
        out += sorted((d / "figures").glob(f"*.{fmt}"))
    return out


def clear(run_dir: str | Path) -> list[Path]:
    """Remove every derived file of `run_dir` (figures/ is dlhw's folder); returns what was removed."""
    d = Path(run_dir)
    gone = derived_files(d)
    for p in gone:
        p.unlink(missing_ok=True)
    figs = d / "figures"
    if figs.is_dir() and not any(figs.iterdir()):
        figs.rmdir()
    if gone:
        record(d, figures=None)
    return gone


def record(run_dir: str | Path, *, figures: str | None | bool = False) -> None:
    """Rewrite manifest.json's `derived`: the derived files now present, and the figures' state
    ('incomplete', 'complete', None = never drawn; False keeps the current state).
    Nothing to do without a manifest.json (not a run folder dlhw wrote)."""
    d = Path(run_dir)
    path = d / "manifest.json"
    if not path.is_file():
        return
    manifest = files.read_json(path)
    if not isinstance(manifest, dict):
        return
    old = manifest.get("derived") if isinstance(manifest.get("derived"), dict) else {}
    state = old.get("figures") if figures is False else figures
    manifest["derived"] = {"files": [p.relative_to(d).as_posix() for p in derived_files(d)], "figures": state}
    files.write_json(path, manifest)


def figures_state(run_dir: str | Path) -> str | None:
    """'incomplete', 'complete' or None (never drawn, or no manifest)."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        return None
    manifest = files.read_json(path)
    derived = manifest.get("derived") if isinstance(manifest, dict) else None
    return derived.get("figures") if isinstance(derived, dict) else None
