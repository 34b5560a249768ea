"""Data sets: the registry, IDX files -> checksummed arrays, found on disk and cached.

Raw files are never modified. Decoded arrays are cached as `.npy` files keyed by the SHA-256
of the decompressed IDX payload, so the same data found in two places is cached once.
Downloading is `dlhw.fetch`; the validation split and preprocessing are `dlhw.preprocess`.

    ds = load("fashion-mnist")                    # X_train (60000, 784) uint8, y_train (60000,) int64
"""
from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import io
import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlhw.errors import DataError

CLASSES_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IMAGES_MAGIC = 0x00000803  # uint8 (0x08), 3 dims: n, rows, cols
LABELS_MAGIC = 0x00000801  # uint8 (0x08), 1 dim: n
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")  # where Debian's dataset-* packages put files

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FileSpec:
    filename: str  # e.g. "train-images-idx3-ubyte"; found on disk as NAME or NAME.gz
    sha256: str | None  # of the DECOMPRESSED IDX payload; None = unknown, check size only
    size: int  # decompressed bytes


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: dict[str, FileSpec]  # keys: FILE_KEYS
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]  # base URLs ending in "/", tried in turn; files fetched as NAME.gz
    debian_package: str | None  # apt package that installs the files under SYSTEM_DATA_ROOT
    checksums_verified_here: bool  # were the sha256 values checked against real files by us?


def _idx_files(sha256: dict[str, str | None]) -> dict[str, FileSpec]:
    """The four standard (Fashion-)MNIST IDX files with the given payload checksums."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    sizes = (47_040_016, 60_008, 7_840_016, 10_008)  # 16 + n*28*28 and 8 + n bytes
    return {k: FileSpec(f, sha256[k], s) for k, f, s in zip(FILE_KEYS, names, sizes)}


REGISTRY: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=_idx_files({
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }),
        classes=CLASSES_FASHION,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        debian_package="dataset-fashion-mnist",
        checksums_verified_here=True,  # checked against /usr/share/datasets/fashion-mnist
    ),
    "mnist": DatasetSpec(
        name="mnist",
        # No MNIST files on the machine where this was written, so these were NOT checked here.
        # They are the widely published SHA-256 sums of the decompressed files (several
        # independent projects list the same four values); the sizes follow from the format.
        files=_idx_files({
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }),
        classes=tuple(str(d) for d in range(10)),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        debian_package=None,
        checksums_verified_here=False,
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`, or a DataError with a did-you-mean hint."""
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, REGISTRY, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DataError(f"unknown data set '{name}'; known: {', '.join(REGISTRY)}.{hint}")


# --------------------------------------------------------------------------- IDX files


def _gunzip(raw: bytes, where: object, limit: int | None = None) -> bytes:
    """Decompress gzip bytes; with `limit`, refuse to inflate past `limit` bytes (downloads)."""
    try:
        if limit is None:
            return gzip.decompress(raw)
        d = zlib.decompressobj(wbits=31)  # 31 = gzip header and trailer
        out = d.decompress(raw, limit + 1)
        if len(out) > limit:
            raise DataError(f"{where}: decompresses to more than the expected {limit} bytes")
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        return out
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{where}: corrupt gzip stream ({e})") from None


def idx_payload(raw: bytes, where: object, limit: int | None = None) -> bytes:
    """The IDX payload of a file's bytes: gunzipped if they start with the gzip magic 1f 8b."""
    return _gunzip(raw, where, limit) if raw[:2] == b"\x1f\x8b" else raw


def parse_idx(payload: bytes, where: object) -> np.ndarray:
    """Decode an IDX payload -> uint8 array of its dims, e.g. (n, 28, 28) or (n,). Read-only."""
    magic = int.from_bytes(payload[:4], "big")
    if len(payload) < 4 or magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(f"{where}: not an IDX image or label file: magic 0x{magic:08x} "
                        f"(expected 0x{IMAGES_MAGIC:08x} or 0x{LABELS_MAGIC:08x})")
    ndim = magic & 0xFF
    start = 4 + 4 * ndim
    if len(payload) < start:
        raise DataError(f"{where}: IDX header truncated: {ndim} dims need {start} bytes, "
                        f"got {len(payload)}")
    dims = tuple(int.from_bytes(payload[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = start + math.prod(dims)
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "has trailing bytes"
        raise DataError(f"{where}: IDX data {what}: dims {list(dims)} need {expected} bytes, "
                        f"got {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8, offset=start).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz) -> read-only uint8 array, (n, rows, cols) or (n,)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return parse_idx(idx_payload(raw, path), path)


def check_payload(where: object, fs: FileSpec, sha: str, size: int, name: str) -> None:
    """Raise unless the payload matches the registry (sha256 if known, else size)."""
    if fs.sha256 is None:
        if size != fs.size:
            raise DataError(f"{where}: expected {fs.size} bytes of {name} data, got {size}")
    elif sha != fs.sha256:
        raise DataError(f"{where}: SHA-256 mismatch for {name}/{fs.filename}: "
                        f"expected {fs.sha256}, got {sha}")


# --------------------------------------------------------------------------- finding files


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


# --------------------------------------------------------------------------- cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    """`cache_dir`, `$DLHW_CACHE`, `$XDG_CACHE_HOME/dlhw` or `~/.cache/dlhw`, first set wins."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("DLHW_CACHE"):
        return Path(os.environ["DLHW_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dlhw"


def _source_entry(root: Path, path: Path) -> Path:
    """Where the cache records which payload a source file held (by its resolved path)."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return root / f"src-{key}.json"


def _atomic_write(dest: Path, data: bytes) -> None:
    """Write `data` to a temp file next to `dest`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _cache_get(root: Path, path: Path) -> tuple[np.ndarray, str] | None:
    """(array, payload sha256) if the cache holds `path` unchanged and intact, else None.

    A hit needs: the source's size and mtime as recorded, and the .npy's bytes matching
    the sha256 stored beside it. Anything else (missing, stale, truncated, altered) is a miss.
    """
    try:
        st = path.stat()
        src = json.loads(_source_entry(root, path).read_text())
        if (src["source"], src["size"], src["mtime_ns"]) != (
                str(path.resolve()), st.st_size, st.st_mtime_ns):
            return None
        sha = src["payload_sha256"]
        meta = json.loads((root / f"{sha}.json").read_text())
        blob = (root / f"{sha}.npy").read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["npy_sha256"]:
            return None
        arr = _npy_view(blob)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    return arr, sha


def _npy_view(blob: bytes) -> np.ndarray:
    """A read-only uint8 array over the bytes of a .npy file, without copying them.

    (np.load on a BytesIO copies in small chunks: ~4x slower on 47 MB.)
    """
    fp = io.BytesIO(blob)  # shares `blob`, no copy
    version = np.lib.format.read_magic(fp)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(fp)
    if fortran_order or dtype != np.uint8:
        raise ValueError("not a C-ordered uint8 array")
    return np.frombuffer(blob, dtype=np.uint8, count=math.prod(shape),
                         offset=fp.tell()).reshape(shape)


def _cache_put(root: Path, path: Path, arr: np.ndarray, sha: str) -> None:
    """Cache `arr` (decoded from `path`, payload `sha`); silently skip if unwritable."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    blob = buf.getvalue()
    st = path.stat()
    src = {"source": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "payload_sha256": sha}
    try:
        root.mkdir(parents=True, exist_ok=True)
        _atomic_write(root / f"{sha}.npy", blob)  # data first, then what vouches for it
        _atomic_write(root / f"{sha}.json",
                      json.dumps({"npy_sha256": hashlib.sha256(blob).hexdigest()}).encode())
        _atomic_write(_source_entry(root, path), json.dumps(src).encode())
    except OSError:
        pass  # a read-only or full cache folder only costs speed


def _load_file(path: Path, fs: FileSpec, name: str, verify: bool,
               root: Path) -> tuple[np.ndarray, str]:
    """Decoded IDX array of `path` and its payload sha256, from the cache when possible."""
    hit = _cache_get(root, path)
    if hit is not None:
        arr, sha = hit
        size = 4 + 4 * arr.ndim + arr.size
    else:
        try:
            payload = idx_payload(path.read_bytes(), path)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror})") from None
        arr = parse_idx(payload, path)  # before the checksum: "truncated" says more
        sha, size = hashlib.sha256(payload).hexdigest(), len(payload)
    if verify:
        check_payload(path, fs, sha, size, name)
    if hit is None:
        _cache_put(root, path, arr, sha)
    return arr, sha


# --------------------------------------------------------------------------- load


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
    root = _cache_root(cache_dir) / "idx"
    paths, arrays, sums = {}, {}, {}
    for key, fs in spec.files.items():
        p = locate_file(folder, fs)
        if p is None:  # vanished since find_data_dir looked
            raise DataError(f"{folder}: missing {fs.filename}[.gz]")
        paths[key] = p
        arrays[key], sums[key] = _load_file(p, fs, name, verify, root)
    n = len(spec.classes)
    X_tr, y_tr = _pair(arrays["train_images"], arrays["train_labels"],
                       paths["train_images"], paths["train_labels"], n)
    X_te, y_te = _pair(arrays["test_images"], arrays["test_labels"],
                       paths["test_images"], paths["test_labels"], n)
    return Dataset(name, X_tr, y_tr, X_te, y_te, spec.classes, folder, sums)


# --------------------------------------------------------------------------- info


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
