"""Run-folder files: atomic writes of text, JSON, CSV and NPZ, and reading them back.

A run folder is a function of (config, data, code version). Every file is
written to a temporary name in the same folder and renamed into place, so a
crash never leaves a half-written file behind.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dlhw.errors import RunError, WriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` via a temp file + fsync + rename; a failure leaves no temp file
    and the previous `path` intact, and raises a WriteError naming the file and the OS error."""
    return write_all([(Path(path), data)])[0]


def write_all(items: list[tuple[Path, bytes]]) -> list[Path]:
    """Write several files as one step: every file goes to a temp file (fsynced) first, and only when
    all are on disk are they renamed into place, in the order given (put the file that marks
    completion last). If any write fails, every temp file is removed and no target changes."""
    tmps: list[str] = []
    try:
        for path, data in items:
            tmps.append(_write_temp(path, data))
        for (path, _), tmp in zip(items, tmps):
            os.replace(tmp, path)
    except OSError as e:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)
        where = e.filename if isinstance(e.filename, str) and not e.filename.endswith(".tmp") else None
        failed = Path(where) if where else items[min(len(tmps), len(items) - 1)][0]
        raise WriteError(f"{failed}: cannot write ({e.strerror or e}); files written before it are intact.") from None
    except BaseException:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [p for p, _ in items]


def _write_temp(path: Path, data: bytes) -> str:
    """`data` in a fsynced temp file beside `path`; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _clean(x: Any) -> Any:
    """JSON-safe: numpy scalars -> Python, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(_clean(obj), indent=2) + "\n").encode("utf-8")


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: file not found; is this a finished dlhw run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e}).") from None


def write_csv(path: str | Path, rows: Iterable[dict], columns: list[str] | None = None) -> Path:
    return atomic_write_bytes(path, csv_bytes(rows, columns))


def csv_bytes(rows: Iterable[dict], columns: list[str] | None = None) -> bytes:
    """CSV text of `rows` (columns: given, or every key in order of appearance), exact float reprs."""
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    return buf.getvalue().encode("utf-8")


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # shortest round-trip repr: files are exact and reproducible
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_csv(path: str | Path) -> list[dict]:
    """Rows as dicts; numeric-looking values converted to int/float, '' to None."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found; is this a finished dlhw run folder?")
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _parse(v: str) -> Any:
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    return atomic_write_bytes(path, npz_bytes(arrays))


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found; is this a finished dlhw run folder?")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: cannot read the model file ({e}).") from None
