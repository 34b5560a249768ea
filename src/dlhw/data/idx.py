"""IDX files (the (Fashion-)MNIST format): gunzip, decode, verify a payload against the registry."""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from dlhw.data.registry import FileSpec
from dlhw.errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8 (0x08), 3 dims: n, rows, cols
LABELS_MAGIC = 0x00000801  # uint8 (0x08), 1 dim: n


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
