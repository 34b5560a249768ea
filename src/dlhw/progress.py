"""tqdm progress bars where a person is watching: a terminal, or a Jupyter (or Colab) kernel."""
from __future__ import annotations

import sys

from tqdm import tqdm as text_tqdm


def in_notebook() -> bool:
    """Is this code running in a Jupyter kernel (its shell has a kernel; terminal IPython has none)?"""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def watched() -> bool:
    """A person sees stderr: a terminal, or a notebook's output area."""
    return in_notebook() or bool(sys.stderr is not None and sys.stderr.isatty())


def _notebook_tqdm() -> type:
    """tqdm's widget bar when ipywidgets is installed, else its text bar (which notebooks show too)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm
    except ImportError:
        return text_tqdm
    return tqdm


def bar(total: int, desc: str, unit: str = "it", enabled: bool | None = None, **kw) -> text_tqdm:
    """A progress bar. enabled: None = where a person is watching (see `watched`), True = always, False = never."""
    show = watched() if enabled is None else bool(enabled)
    cls = _notebook_tqdm() if show and in_notebook() else text_tqdm
    return cls(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show,
               dynamic_ncols=True, leave=False, mininterval=0.2, **kw)
