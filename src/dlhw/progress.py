"""tqdm progress bars on stderr, hidden when asked or when stderr is not a terminal."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(total: int, desc: str, unit: str = "it", enabled: bool = True, **kw) -> tqdm:
    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show,
                dynamic_ncols=True, leave=False, mininterval=0.2, **kw)
