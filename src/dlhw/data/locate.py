"""Finding a data set's files on disk: --data-dir, $DLHW_DATA, ./data/NAME, the user cache, Debian's folder."""
from __future__ import annotations

import os
from pathlib import Path

from dlhw.data.registry import DatasetSpec, FileSpec, dataset_spec
from dlhw.errors import DataError

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")  # where Debian's dataset-* packages put files


def locate_file(folder: Path, fs: FileSpec) -> Path | None:
    """`folder/NAME` or else `folder/NAME.gz`, whichever exists first; None if neither."""
    for p in (folder / fs.filename, folder / f"{fs.filename}.gz"):
        if p.is_file():
            return p
    return None


def _has_files(folder: Path, spec: DatasetSpec) -> bool:
    return folder.is_dir() and all(locate_file(folder, fs) for fs in spec.files.values())


def _how_to_get(spec: DatasetSpec) -> str:
    ways = [f"run `dlhw data fetch {spec.name}`"]
    if spec.debian_package:
        ways.append(f"on Debian `apt-get install {spec.debian_package}`")
    names = ", ".join(f"{fs.filename}[.gz]" for fs in spec.files.values())
    ways.append(f"or point $DLHW_DATA or the data dir at a folder holding {names}")
    return "To get it: " + "; ".join(ways) + "."


def shipped_data_dir(name: str, env: bool = True) -> Path:
    """Where a grid worker keeps a data set shipped to it: `$DLHW_DATA/<name>` when set (and `env`),
    else `datasets/<name>` in the user cache (see `data.cache.cache_root`)."""
    from dlhw.data.cache import cache_root

    if env and os.environ.get("DLHW_DATA"):
        return Path(os.environ["DLHW_DATA"]) / name
    return cache_root(None) / "datasets" / name


def find_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding `name`'s four IDX files (each as NAME or NAME.gz).

    Looks at, in order: `data_dir` (or `data_dir/<name>`) if given, else `$DLHW_DATA`
    (or `$DLHW_DATA/<name>`), `./data/<name>`, the user cache's `datasets/<name>` (where a Dask
    worker keeps files shipped from the client), `/usr/share/datasets/<name>`.
    """
    spec = dataset_spec(name)
    if data_dir is not None:
        d = Path(data_dir)
        if not d.is_dir():
            raise DataError(f"data dir {d}: no such folder")
        for cand in (d, d / name):
            if _has_files(cand, spec):
                return cand.absolute()
        missing = [fs.filename for fs in spec.files.values() if locate_file(d, fs) is None]
        raise DataError(f"data dir {d}: missing {name} files {', '.join(missing)} "
                        f"(each as NAME or NAME.gz, here or in {d / name})")
    cands: list[Path] = []
    looked = []
    env = os.environ.get("DLHW_DATA")
    if env:
        cands += [Path(env), Path(env) / name]
        looked += [f"$DLHW_DATA={env}", str(Path(env) / name)]
    else:
        looked.append("$DLHW_DATA (not set)")
    cands += [Path("data", name).absolute(), shipped_data_dir(name, env=False), SYSTEM_DATA_ROOT / name]
    looked += [str(c) for c in cands[-3:]]
    for cand in cands:
        if _has_files(cand, spec):
            return cand.absolute()
    raise DataError(f"{name} data not found; looked in: {', '.join(looked)}. {_how_to_get(spec)}")
