"""Downloading a data set's IDX files from its mirrors: atomic, verified, one clear error when offline.

    path = fetch("mnist")   # into the user data folder; returns the folder holding the four files
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

from tqdm import tqdm

from dlhw.data.idx import check_payload, idx_payload, parse_idx
from dlhw.data.locate import locate_file
from dlhw.data.registry import DatasetSpec, FileSpec, dataset_spec
from dlhw.errors import DataError

DOWNLOAD_TIMEOUT_S = 30.0  # per connection attempt and per blocking read
Opener = Callable[..., Any]  # urlopen-like: opener(url, timeout=s) -> context-managed response
_DOWNLOAD_ERRORS = (OSError, ValueError, EOFError, zlib.error, http.client.HTTPException)


def _reason(e: BaseException) -> str:
    """A short reason for a failed download attempt."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _download(url: str, out: BinaryIO, opener: Opener, progress: bool, label: str,
              limit: int) -> None:
    """Stream `url` into `out`, refusing more than `limit` bytes; tqdm bar on a tty stderr."""
    with opener(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        headers = getattr(resp, "headers", None)
        total = headers.get("Content-Length") if headers is not None else None
        show = progress and sys.stderr.isatty()
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=label, file=sys.stderr, disable=not show,
                  leave=False) as bar:
            n = 0
            while chunk := resp.read(1 << 16):
                n += len(chunk)
                if n > limit:
                    raise ValueError(f"response larger than {limit} bytes")
                out.write(chunk)
                bar.update(len(chunk))


def _valid_file(path: Path, fs: FileSpec, name: str) -> bool:
    """Does `path` hold the right payload (sha256, or size and header when sha is unknown)?"""
    try:
        payload = idx_payload(path.read_bytes(), path)
        parse_idx(payload, path)
        check_payload(path, fs, hashlib.sha256(payload).hexdigest(), len(payload), name)
    except (OSError, DataError):
        return False
    return True


def _fetch_file(spec: DatasetSpec, fs: FileSpec, dest: Path, progress: bool,
                opener: Opener) -> None:
    """Download `fs` as `dest/NAME.gz` from the first mirror that serves valid data."""
    tried = []
    for mirror in spec.mirrors:
        url = f"{mirror}{fs.filename}.gz"
        try:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{fs.filename}.", suffix=".part")
        except OSError as e:
            raise DataError(f"cannot write into {dest}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                _download(url, out, opener, progress, fs.filename, 2 * fs.size + (1 << 20))
            payload = idx_payload(Path(tmp).read_bytes(), url, limit=fs.size)
            parse_idx(payload, url)
            check_payload(url, fs, hashlib.sha256(payload).hexdigest(), len(payload), spec.name)
            os.replace(tmp, dest / f"{fs.filename}.gz")
            return
        except DataError as e:
            tried.append(e.message)  # already starts with the URL
        except _DOWNLOAD_ERRORS as e:
            tried.append(f"{url}: {_reason(e)}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    where = dest.absolute()
    hint = (f"On Debian: apt-get install {spec.debian_package}, or copy the files into {where}"
            if spec.debian_package else f"Copy the files into {where}")
    raise DataError(f"could not download {spec.name}/{fs.filename}.gz from any mirror "
                    f"(tried: {'; '.join(tried)}). {hint}")


def fetch(name: str, dest: str | Path | None = None, *, progress: bool = True,
          opener: Opener | None = None) -> Path:
    """Download `name`'s missing or invalid files into `dest` (default `./data/<name>`).

    Each file is tried at every mirror in turn and only lands, by rename, once its
    checksum is verified; a failure leaves no partial files (nor folders it made).
    `opener` defaults to `urllib.request.urlopen`; tests pass a fake. Returns the folder.
    """
    spec = dataset_spec(name)
    dest = Path(dest) if dest is not None else Path("data", name)
    made = [p for p in (dest, *dest.parents) if not p.exists()]  # deepest first
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest}: {e.strerror}") from None
    try:
        for fs in spec.files.values():
            old = locate_file(dest, fs)
            if old is not None and _valid_file(old, fs, name):
                continue
            _fetch_file(spec, fs, dest, progress, opener or urllib.request.urlopen)
            if old is not None and old.name == fs.filename:
                old.unlink()  # an invalid uncompressed copy would shadow the new .gz
    except DataError:
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()  # only succeeds while empty
        raise
    return dest.absolute()
