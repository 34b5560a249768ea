"""Finding a data set's files on disk: --data-dir, $DLHW_DATA, ./data/NAME, Debian's folder."""
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


def find_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding `name`'s four IDX files (each as NAME or NAME.gz).

    Looks at, in order: `data_dir` (or `data_dir/<name>`) if given, else `$DLHW_DATA`
    (or `$DLHW_DATA/<name>`), `./data/<name>`, `/usr/share/datasets/<name>`.
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
    cands += [Path("data", name).absolute(), SYSTEM_DATA_ROOT / name]
    looked += [str(c) for c in cands[-2:]]
    for cand in cands:
        if _has_files(cand, spec):
            return cand.absolute()
    raise DataError(f"{name} data not found; looked in: {', '.join(looked)}. {_how_to_get(spec)}")
