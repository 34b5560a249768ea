"""Starting spawn workers without re-running the caller's script.

A spawned worker normally re-imports the parent's `__main__` (the script that was run) so that
functions defined there can be unpickled. Grid workers need only dlhw's own modules, and a script
that calls `dlhw.grid(...)` at the top level, without an `if __name__ == "__main__":` guard, would
start the whole grid again in every worker. While the workers start, `__main__` is shown to
multiprocessing as a module with no file, as in an interactive session, so they skip it.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

_HIDDEN = ("__file__", "__spec__")  # what multiprocessing.spawn reads to find the main module


@contextmanager
def main_not_rerun() -> Iterator[None]:
    """Processes started inside do not import the parent's `__main__`."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in _HIDDEN if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)
