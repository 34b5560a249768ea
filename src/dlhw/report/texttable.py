"""Plain-text tables that fit the terminal: columns split into blocks that each repeat the first
column (`dlhw compare`), or long cells wrapped inside their column (`dlhw check`)."""
from __future__ import annotations

import re
import shutil

GAP = 2  # spaces between columns


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (output to a pipe or a file)."""
    return shutil.get_terminal_size((80, 24)).columns


def render(head: list[str], rows: list[list[str]], width: int | None = None, right: list[bool] | None = None,
           blocks: bool = False, keep: tuple[int, ...] = ()) -> str:
    """`head` and `rows` as aligned text no wider than `width` (None: as wide as the cells need).

    `right[i]` right-aligns column i (numbers); they and the columns in `keep` never wrap. Too
    wide: with `blocks`, the columns go into several tables that each start with the first column;
    else text cells wrap (after a space, or a '.', '_' or ',' before a letter; anywhere in a word
    longer than its column)."""
    n = len(head)
    right = right or [False] * n
    natural = [max(len(r[i]) for r in [head, *rows]) for i in range(n)]
    if width is None or _total(natural) <= width:
        return _lines(head, rows, natural, right)
    if blocks and n > 2:
        groups, cur = [], [0]
        for i in range(1, n):
            if len(cur) > 1 and _total([natural[j] for j in (*cur, i)]) > width:
                groups.append(cur)
                cur = [0]
            cur.append(i)
        groups.append(cur)
        if len(groups) > 1:
            return "\n\n".join(render([head[i] for i in g], [[r[i] for i in g] for r in rows], width,
                                      [right[i] for i in g]) for g in groups)
    fixed = [right[i] or i in keep for i in range(n)]
    floor = [natural[i] if fixed[i] else min(natural[i], 6) for i in range(n)]  # widest shrink first
    widths = natural[:]
    while _total(widths) > width:
        i = max(range(n), key=lambda j: (widths[j] > floor[j], widths[j]))
        if widths[i] <= floor[i]:
            break  # cannot narrow further: wider than the terminal
        widths[i] -= 1
    return _lines(head, rows, widths, right)


def _total(widths: list[int]) -> int:
    return sum(widths) + GAP * (len(widths) - 1)


_PIECE = re.compile(r"(?:[^ ._,]|[._,](?![A-Za-z]))*(?:[._,](?=[A-Za-z])| +)?")


def wrap(text: str, width: int) -> list[str]:
    """Greedy wrap that may break after a space, '.', '_' or ',' and splits longer pieces."""
    if len(text) <= width:
        return [text]
    lines, cur = [], ""
    for piece in (p for p in _PIECE.findall(text) if p):
        while len(piece.rstrip()) > width:
            if cur:
                lines.append(cur.rstrip())
                cur = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len((cur + piece).rstrip()) > width:
            lines.append(cur.rstrip())
            cur = ""
        cur += piece.lstrip() if not cur else piece
    if cur.strip():
        lines.append(cur.rstrip())
    return lines or [""]


def _lines(head: list[str], rows: list[list[str]], widths: list[int], right: list[bool]) -> str:
    out = _row(head, widths, [False] * len(widths)) + ["  ".join("-" * w for w in widths)]
    for r in rows:
        out += _row(r, widths, right)
    return "\n".join(line.rstrip() for line in out)


def _row(cells: list[str], widths: list[int], right: list[bool]) -> list[str]:
    parts = [wrap(c, w) for c, w in zip(cells, widths)]
    height = max(len(p) for p in parts)
    return [(" " * GAP).join((p[k] if k < len(p) else "").rjust(w) if r else (p[k] if k < len(p) else "").ljust(w)
                             for p, w, r in zip(parts, widths, right))
            for k in range(height)]
