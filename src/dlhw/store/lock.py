"""One writer per run folder: an OS-level lock that the kernel releases when its holder dies.

The lock is `folder/.lock`, held with `filelock` (flock on Linux and macOS, msvcrt on Windows), so
there is no pid-liveness guessing: a crashed or killed holder never blocks the next run, and two
runs that start at once cannot both win. The holder's pid and command are written to
`folder/.lock.info` only so that a refused run can say who holds the folder.

Re-entrant within a process: the grid holds its folder's lock and its retrain (`dlhw train`'s
code) takes the same lock again.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from dlhw.errors import RunError

_HELD: dict[str, list] = {}  # resolved lock path -> [FileLock, depth], this process's locks


class RunLock:
    """`with RunLock(folder):` holds `folder/.lock`; a folder in use is a RunError (exit 2).

    Creates `folder` first: a path that is a file, or cannot be created, is a RunError too,
    before any work starts.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.info = self.folder / ".lock.info"

    def acquire(self) -> None:
        make_run_dir(self.folder)
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            return
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunError(f"{self.folder}: in use by another dlhw process{self._holder()}; "
                           f"wait for it to finish, or use another --out folder.") from None
        except OSError as e:
            raise RunError(f"{self.path}: cannot take the lock ({e.strerror or e}).") from None
        _HELD[key] = [lock, 1]
        try:
            self.info.write_text(f"pid {os.getpid()}: {' '.join(sys.argv)}\n", encoding="utf-8")
        except OSError:
            pass  # information only

    def _holder(self) -> str:
        try:
            text = self.info.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return f" ({text})" if text else ""

    def release(self) -> None:
        key = str(self.path.resolve())
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            try:
                self.info.unlink(missing_ok=True)
            except OSError:
                pass
            held[0].release()

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def make_run_dir(folder: Path) -> None:
    """Create the run folder, or one line saying why it cannot be one."""
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder}: is a file, not a folder; give --out a folder path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{folder}: cannot create the run folder ({e.strerror or e}).") from None
