"""Loading a data set: find its files, verify and decode them (through the cache); `dlhw data info`."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlhw.data.cache import cache_root, load_file
from dlhw.data.locate import find_data_dir, locate_file
from dlhw.data.registry import dataset_spec
from dlhw.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set. Arrays are read-only: copy before changing them."""

    name: str
    X_train: np.ndarray  # (n_train, rows*cols) uint8, images flattened row-major
    y_train: np.ndarray  # (n_train,) int64 in [0, len(classes))
    X_test: np.ndarray  # (n_test, rows*cols) uint8
    y_test: np.ndarray  # (n_test,) int64
    classes: tuple[str, ...]
    source: Path  # folder the files were read from
    sha256: dict[str, str]  # file key -> sha256 of its decompressed payload

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, X_train={self.X_train.shape}, "
                f"X_test={self.X_test.shape}, source={str(self.source)!r})")


def _pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lab_path: Path,
          n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Check an image/label file pair -> (X (n, rows*cols) uint8, y (n,) int64), read-only."""
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected an image file (3 dims), got dims {list(images.shape)}")
    if labels.ndim != 1:
        raise DataError(f"{lab_path}: expected a label file (1 dim), got dims {list(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds "
                        f"{len(labels)} labels")
    if labels.size and int(labels.max()) >= n_classes:
        raise DataError(f"{lab_path}: label {int(labels.max())} out of range for "
                        f"{n_classes} classes")
    X = images.reshape(len(images), -1)
    y = labels.astype(np.int64)
    X.flags.writeable = y.flags.writeable = False
    return X, y


def load(name: str, data_dir: str | Path | None = None, *, verify: bool = True,
         cache_dir: str | Path | None = None) -> Dataset:
    """Find, check and decode `name` (see `find_data_dir`); cached under `cache_dir`.

    With `verify`, each decompressed payload must match the registry's SHA-256.
    """
    spec = dataset_spec(name)
    folder = find_data_dir(name, data_dir)
    root = cache_root(cache_dir) / "idx"
    paths, arrays, sums = {}, {}, {}
    for key, fs in spec.files.items():
        p = locate_file(folder, fs)
        if p is None:  # vanished since find_data_dir looked
            raise DataError(f"{folder}: missing {fs.filename}[.gz]")
        paths[key] = p
        arrays[key], sums[key] = load_file(p, fs, name, verify, root)
    n = len(spec.classes)
    X_tr, y_tr = _pair(arrays["train_images"], arrays["train_labels"],
                       paths["train_images"], paths["train_labels"], n)
    X_te, y_te = _pair(arrays["test_images"], arrays["test_labels"],
                       paths["test_images"], paths["test_labels"], n)
    return Dataset(name, X_tr, y_tr, X_te, y_te, spec.classes, folder, sums)


def _idx_dims(path: Path) -> list[int]:
    """The dims in an IDX file's header, read without decoding the data."""
    with path.open("rb") as fh:
        is_gz = fh.read(2) == b"\x1f\x8b"
        fh.seek(0)
        f = gzip.GzipFile(fileobj=fh) if is_gz else fh
        head = f.read(4)
        ndim = head[3] if len(head) == 4 else 0
        raw = f.read(4 * ndim)
    return [int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4)]


def info(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """JSON-able summary: where the files are, their shapes, class counts, checksum status.

    Checksum status per file: "ok", "MISMATCH", or "unknown" (no sha256 in the registry).
    """
    spec = dataset_spec(name)
    ds = load(name, data_dir, verify=False)
    files = {}
    for key, fs in spec.files.items():
        path = locate_file(ds.source, fs)
        got = ds.sha256[key]
        status = "unknown" if fs.sha256 is None else "ok" if got == fs.sha256 else "MISMATCH"
        files[key] = {"path": str(path), "shape": _idx_dims(path), "sha256": got,
                      "expected_sha256": fs.sha256, "checksum": status}
    counts = {part: dict(zip(spec.classes, np.bincount(y, minlength=len(spec.classes)).tolist()))
              for part, y in (("train", ds.y_train), ("test", ds.y_test))}
    warnings = []
    unknown = [fs.filename for fs in spec.files.values() if fs.sha256 is None]
    if unknown:
        warnings.append(f"no SHA-256 on record for {', '.join(unknown)}: only sizes checked")
    if not spec.checksums_verified_here:
        warnings.append(f"the registry's {name} checksums were not checked against real files "
                        "when the registry was written")
    return {"name": name, "source": str(ds.source), "classes": list(spec.classes),
            "n_train": len(ds.y_train), "n_test": len(ds.y_test), "files": files,
            "class_counts": counts, "checksums_verified_here": spec.checksums_verified_here,
            "warnings": warnings}


def format_info(d: dict[str, Any]) -> str:
    """Human-readable, multi-line text of `info()`."""
    lines = [f"{d['name']}: {d['n_train']} train / {d['n_test']} test, "
             f"{len(d['classes'])} classes, from {d['source']}"]
    for key, f in d["files"].items():
        shape = "x".join(map(str, f["shape"]))
        lines.append(f"  {key:<13} {Path(f['path']).name:<28} {shape:<12} sha256 {f['checksum']}")
    width = max(len(c) for c in d["classes"])
    lines.append(f"  {'class':<{width}}  {'train':>6}  {'test':>6}")
    for c in d["classes"]:
        lines.append(f"  {c:<{width}}  {d['class_counts']['train'][c]:>6}  "
                     f"{d['class_counts']['test'][c]:>6}")
    lines += [f"warning: {w}" for w in d["warnings"]]
    return "\n".join(lines)
