"""How wide a grid's stacks are: as wide as possible, narrower only when workers would sit idle.

A stacked job trains up to `MAX_STACK` (lr, alpha) settings at one batch size and seed. The canonical
grid is 8 such jobs, so a 9th worker has nothing to do and the batch-16 job alone bounds the wall
time. With more workers than jobs, stacks are cut into halves, quarters, ... (never below
`MIN_WIDTH` settings) so that the predicted wall time (jobs longest first on the workers,
`estimate.makespan`) is shortest. A narrower stack costs more in all (each step has parts that do
not shrink with the width: `GridJob.cost`, fitted to widths 4..64 measured by
`scripts/bench_cluster.py --part cut`), so of the plans about as short as the shortest, the one
with the least work wins.

Cutting changes the jobs and so their keys. A rerun keeps any cut whose jobs are all saved already:
resuming with another worker count reuses every finished job instead of recomputing it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

MIN_WIDTH = 4  # settings per stack at the narrowest: below, the per-step fixed cost dominates
MIN_GAIN = 0.02  # a cut must shorten the predicted wall time by 2% to be made


def chunk_sizes(n: int, width: int) -> list[int]:
    """`n` settings in even chunks of at most `width` (e.g. 64 at width 24 -> 22, 21, 21)."""
    k = math.ceil(n / max(1, width))
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def widths(n: int, max_width: int) -> list[int]:
    """The widths the planner tries: max_width, halved down to MIN_WIDTH."""
    out = [min(n, max_width)]
    while out[-1] // 2 >= MIN_WIDTH:
        out.append(out[-1] // 2)
    return out


def plan(groups: list, n: int, max_width: int, workers: int,
         cost: Callable[[object, int], float]) -> dict:
    """group -> width. `cost(group, width)` is one job's estimated seconds at that width.

    With no more jobs than workers at `max_width`, every group keeps it. Else each candidate bound T on
    a job's length (every job length any width gives) cuts every group to its widest width whose jobs
    fit under T; of the plans whose predicted wall time is within `MIN_GAIN` of the shortest, the one
    with the least work in all wins, and only if it beats full stacks by `MIN_GAIN`."""
    from dlhw.grid.estimate import makespan

    full = {g: min(n, max_width) for g in groups}
    if workers <= sum(len(chunk_sizes(n, w)) for w in full.values()):
        return full  # every worker has a job already: full stacks are cheapest
    ws = widths(n, max_width)
    job_s = {(g, w): cost(g, max(chunk_sizes(n, w))) for g in groups for w in ws}

    def judged(width: dict) -> tuple[float, float]:
        costs = [cost(g, s) for g in groups for s in chunk_sizes(n, width[g])]
        return makespan(costs, workers), sum(costs)

    plans = [judged(full) + (full,)]
    for bound in sorted(set(job_s.values()), reverse=True):
        width = {g: next((w for w in ws if job_s[g, w] <= bound), ws[-1]) for g in groups}
        plans.append(judged(width) + (width,))
    shortest = min(p[0] for p in plans)
    span, _, width = min((p for p in plans if p[0] <= shortest * (1 + MIN_GAIN)), key=lambda p: p[1])
    return width if span < plans[0][0] * (1 - MIN_GAIN) else full


def keep_saved(groups: list, planned: dict, n: int, max_width: int,
               saved: Callable[[object, int], bool]) -> dict:
    """`planned`, except that a group whose jobs at another width are all saved keeps that width."""
    out = dict(planned)
    for g in groups:
        if saved(g, planned[g]):
            continue
        for w in widths(n, max_width):
            if w != planned[g] and saved(g, w):
                out[g] = w
                break
    return out


def exists(folder: Path | None, keys: list[str]) -> bool:
    return folder is not None and bool(keys) and all((folder / f"{k}.npz").is_file() for k in keys)
