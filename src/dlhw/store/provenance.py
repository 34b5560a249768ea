"""Provenance: what produced a result (code version, numpy, BLAS, platform, data checksums)."""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import dlhw



def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict:
    """dlhw version, and the git commit + dirty flag when run from a checkout."""
    commit = _git("rev-parse", "HEAD")
    info: dict = {"dlhw": dlhw.__version__, "git_commit": commit}
    if commit:
        info["git_dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return info


def blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
        return [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
    except Exception:  # informational only
        return []


def manifest(*, seed: int, data_sha256: dict, started: datetime, argv: list[str] | None = None,
             extra: dict | None = None) -> dict:
    """Provenance for a run folder: versions, BLAS, git, data checksums, times."""
    return {
        **code_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "blas": blas_info(),
        "data_sha256": data_sha256,
        "seed": seed,
        "command": argv if argv is not None else sys.argv,
        "started": started.isoformat(timespec="seconds"),
        "finished": now().isoformat(timespec="seconds"),
        **(extra or {}),
    }


def now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- fingerprints

# The modules whose code decides what a grid job computes: the models, the training rules and
# loops, the data pipeline (decoding, split, preprocessing), the config defaults and the jobs.
RESULT_CODE = ("config.py", "models", "training", "data", "grid/jobs.py")


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the source of every module in `RESULT_CODE`, once per process.

    Any edit there, a comment included, changes it: a saved job is then recomputed rather
    than trusted (it is cheaper to recompute than to prove an edit harmless)."""
    pkg = Path(dlhw.__file__).resolve().parent
    h = hashlib.sha256()
    for entry in RESULT_CODE:
        p = pkg / entry
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def numeric_env() -> dict:
    """What decides the rounding of the same code: numpy's and scipy's versions and every BLAS they
    load (implementation, version, CPU architecture kernel) as threadpoolctl reports them, once per
    process (every grid job carries it). scipy's BLAS is loaded first (the stacked engine's gemm), so
    the answer does not depend on what ran before. Do not mutate the returned dict."""
    import scipy
    import scipy.linalg.blas  # noqa: F401 - load its BLAS so that it is listed

    blas = sorted(({k: b.get(k) for k in ("internal_api", "version", "architecture")} for b in blas_info()),
                  key=lambda b: json.dumps(b, sort_keys=True))
    return {"numpy": np.__version__, "scipy": scipy.__version__, "blas": blas}
