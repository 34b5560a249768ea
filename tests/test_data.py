"""Tests for dlhw.data, dlhw.fetch and dlhw.preprocess: IDX reading, registry lookup, checksums, cache, fetch, split, preprocess.

All but the `realdata` test use tiny IDX files written into tmp_path.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import dlhw.data.cache
import dlhw.data.idx
import dlhw.data.locate
from dlhw import data
from dlhw.data import DatasetSpec, FileSpec, find_data_dir, format_info, info, load, read_idx
from dlhw.errors import DataError
from dlhw.data.fetch import fetch
from dlhw.data.preprocess import Preprocessor, split

MNIST_NAMES = {k: fs.filename for k, fs in data.REGISTRY["mnist"].files.items()}
TINY_NAMES = {"train_images": "tiny-train-images", "train_labels": "tiny-train-labels",
              "test_images": "tiny-test-images", "test_labels": "tiny-test-labels"}
MIRRORS = ("http://mirror-a.invalid/tiny/", "http://mirror-b.invalid/tiny/")


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array of 1 (labels) or 3 (images) dims."""
    magic = dlhw.data.idx.IMAGES_MAGIC if arr.ndim == 3 else dlhw.data.idx.LABELS_MAGIC
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def tiny_arrays(seed: int = 0, n_train: int = 40, n_test: int = 8) -> dict[str, np.ndarray]:
    """Random 3x2 images; labels 4 classes, balanced."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 3, 2), dtype=np.uint8),
        "train_labels": rng.permutation(np.arange(n_train) % 4).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 3, 2), dtype=np.uint8),
        "test_labels": rng.permutation(np.arange(n_test) % 4).astype(np.uint8),
    }


def write_set(folder: Path, names: dict[str, str], arrays: dict[str, np.ndarray],
              gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{names[key]}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / names[key]).write_bytes(raw)
    return folder


def tiny_spec(arrays: dict[str, np.ndarray], known: bool = True) -> DatasetSpec:
    files = {}
    for key, arr in arrays.items():
        raw = idx_bytes(arr)
        sha = hashlib.sha256(raw).hexdigest() if known else None
        files[key] = FileSpec(TINY_NAMES[key], sha, len(raw))
    return DatasetSpec("tiny", files, ("a", "b", "c", "d"), MIRRORS, "dataset-tiny", True)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered 4-class "tiny" data set: (arrays, folder holding its raw IDX files)."""
    arrays = tiny_arrays()
    monkeypatch.setitem(data.REGISTRY, "tiny", tiny_spec(arrays))
    return arrays, write_set(tmp_path / "tiny", TINY_NAMES, arrays)


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No data anywhere: empty cwd, no $DLHW_DATA, system root an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLHW_DATA", raising=False)
    monkeypatch.setattr(dlhw.data.locate, "SYSTEM_DATA_ROOT", tmp_path / "system")
    return tmp_path


def assert_same(ds, arrays):
    n, m = len(arrays["train_images"]), len(arrays["test_images"])
    np.testing.assert_array_equal(ds.X_train, arrays["train_images"].reshape(n, -1))
    np.testing.assert_array_equal(ds.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(ds.X_test, arrays["test_images"].reshape(m, -1))
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])


# --------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_raw_and_gz(tmp_path, gz):
    arrays = tiny_arrays()
    folder = write_set(tmp_path, TINY_NAMES, arrays, gz=gz)
    suffix = ".gz" if gz else ""
    images = read_idx(folder / f"tiny-train-images{suffix}")
    labels = read_idx(folder / f"tiny-train-labels{suffix}")
    assert images.shape == (40, 3, 2) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays["train_images"])
    np.testing.assert_array_equal(labels, arrays["train_labels"])


def test_read_idx_truncated(tmp_path):
    p = tmp_path / "x-idx3"
    p.write_bytes(idx_bytes(np.zeros((2, 3, 2), np.uint8))[:-1])
    with pytest.raises(DataError, match=r"x-idx3: IDX data truncated: dims \[2, 3, 2\] "
                                        r"need 28 bytes, got 27"):
        read_idx(p)


def test_read_idx_trailing_bytes(tmp_path):
    p = tmp_path / "y-idx1.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8)) + b"\0"))
    with pytest.raises(DataError, match=r"y-idx1.gz: IDX data has trailing bytes: dims \[5\] "
                                        r"need 13 bytes, got 14"):
        read_idx(p)


def test_read_idx_truncated_header(tmp_path):
    p = tmp_path / "h"
    p.write_bytes(idx_bytes(np.zeros((2, 3, 2), np.uint8))[:10])
    with pytest.raises(DataError, match=r"h: IDX header truncated"):
        read_idx(p)


def test_read_idx_wrong_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(bytes.fromhex("00000d03") + b"\0" * 20)  # 0x0d = float32 data
    with pytest.raises(DataError, match=r"bad: not an IDX image or label file: magic 0x00000d03"):
        read_idx(p)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_read_idx_corrupt_gzip(tmp_path, damage):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    if damage == "truncate":
        blob = blob[:-12]
    else:
        blob[-6] ^= 0xFF  # inside the CRC/size trailer
    p = tmp_path / "c.gz"
    p.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"c.gz: corrupt gzip stream"):
        read_idx(p)


# --------------------------------------------------------------------------- load


def test_load_mnist_names_unverified(tmp_path):
    """The MNIST loader works unchanged on MNIST-named files (tiny ones: verify=False)."""
    arrays = tiny_arrays()
    folder = write_set(tmp_path / "m", MNIST_NAMES, arrays, gz=True)
    ds = load("mnist", folder, verify=False, cache_dir=tmp_path / "cache")
    assert ds.X_train.shape == (40, 6) and ds.X_train.dtype == np.uint8
    assert ds.y_train.shape == (40,) and ds.y_train.dtype == np.int64
    assert ds.classes == tuple("0123456789") and ds.source == folder.absolute()
    assert ds.sha256["train_images"] == hashlib.sha256(idx_bytes(arrays["train_images"])).hexdigest()
    assert_same(ds, arrays)
    assert not ds.X_train.flags.writeable  # shared, read-only data


def test_load_verify_names_file_expected_and_got(tmp_path):
    folder = write_set(tmp_path / "m", MNIST_NAMES, tiny_arrays())
    expected = data.REGISTRY["mnist"].files["train_images"].sha256
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: SHA-256 mismatch for "
                                        rf"mnist/train-images-idx3-ubyte: expected {expected}, "
                                        rf"got [0-9a-f]{{64}}"):
        load("mnist", folder, cache_dir=tmp_path / "cache")


def test_load_count_mismatch_names_both_files(tmp_path):
    arrays = tiny_arrays()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    folder = write_set(tmp_path / "m", MNIST_NAMES, arrays)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds 40 images but "
                                        r".*train-labels-idx1-ubyte holds 39 labels"):
        load("mnist", folder, verify=False, cache_dir=tmp_path / "cache")


def test_load_rejects_labels_out_of_range(tiny, tmp_path):
    arrays, folder = tiny
    arrays = dict(arrays, test_labels=np.full(8, 7, np.uint8))
    write_set(folder, TINY_NAMES, arrays)
    with pytest.raises(DataError, match=r"tiny-test-labels: label 7 out of range for 4 classes"):
        load("tiny", folder, verify=False, cache_dir=tmp_path / "cache")


def test_load_verified_tiny(tiny, tmp_path):
    arrays, folder = tiny
    assert_same(load("tiny", folder, cache_dir=tmp_path / "cache"), arrays)


def test_unknown_dataset_suggests():
    with pytest.raises(DataError, match=r"unknown data set 'fashion_mnist'.*Did you mean 'fashion-mnist'"):
        load("fashion_mnist")


# --------------------------------------------------------------------------- finding data


def test_find_data_dir_lists_every_place(nowhere, monkeypatch):
    env = nowhere / "env"
    env.mkdir()
    monkeypatch.setenv("DLHW_DATA", str(env))
    with pytest.raises(DataError) as exc:
        find_data_dir("fashion-mnist")
    msg = exc.value.message
    for place in (f"$DLHW_DATA={env}", str(env / "fashion-mnist"),
                  str(nowhere / "data" / "fashion-mnist"), str(nowhere / "system" / "fashion-mnist"),
                  "dlhw data fetch fashion-mnist", "apt-get install dataset-fashion-mnist"):
        assert place in msg
    assert "\n" not in msg


def test_find_data_dir_order(nowhere, monkeypatch, tiny):
    arrays, _ = tiny
    system = write_set(nowhere / "system" / "tiny", TINY_NAMES, arrays, gz=True)
    assert find_data_dir("tiny") == system
    local = write_set(nowhere / "data" / "tiny", TINY_NAMES, arrays)
    assert find_data_dir("tiny") == local
    env = write_set(nowhere / "env" / "tiny", TINY_NAMES, arrays)  # $DLHW_DATA/<name>
    monkeypatch.setenv("DLHW_DATA", str(nowhere / "env"))
    assert find_data_dir("tiny") == env
    explicit = write_set(nowhere / "explicit", TINY_NAMES, arrays)
    assert find_data_dir("tiny", explicit) == explicit


def test_find_data_dir_explicit_errors(tiny, tmp_path):
    with pytest.raises(DataError, match=r"data dir .*nope: no such folder"):
        find_data_dir("tiny", tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "tiny-train-images.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"data dir .*half: missing tiny files tiny-train-labels, "
                                        r"tiny-test-images, tiny-test-labels"):
        find_data_dir("tiny", tmp_path / "half")


# --------------------------------------------------------------------------- cache


def test_cache_second_load_uses_cache(tiny, tmp_path, monkeypatch):
    arrays, folder = tiny
    cache = tmp_path / "cache"
    first = load("tiny", folder, cache_dir=cache)
    assert len(list((cache / "idx").glob("*.npy"))) == 4

    def no_decoding(*a, **k):
        raise AssertionError("decoded the IDX file again instead of using the cache")
    monkeypatch.setattr(dlhw.data.cache, "parse_idx", no_decoding)
    second = load("tiny", folder, cache_dir=cache)
    assert_same(second, arrays)
    assert second.sha256 == first.sha256


def test_cache_env_var(tiny, tmp_path, monkeypatch):
    arrays, folder = tiny
    monkeypatch.setenv("DLHW_CACHE", str(tmp_path / "envcache"))
    load("tiny", folder)
    assert len(list((tmp_path / "envcache" / "idx").glob("*.npy"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_sidecar"])
def test_cache_corruption_is_rebuilt(tiny, tmp_path, damage):
    arrays, folder = tiny
    cache = tmp_path / "cache"
    ds = load("tiny", folder, cache_dir=cache)
    npy = cache / "idx" / f"{ds.sha256['train_images']}.npy"
    good = npy.read_bytes()
    if damage == "truncate":
        npy.write_bytes(good[:-5])
    elif damage == "flip":
        npy.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    else:
        npy.with_suffix(".json").unlink()
    assert_same(load("tiny", folder, cache_dir=cache), arrays)
    assert npy.read_bytes() == good  # rebuilt in place
    assert not [p for p in (cache / "idx").iterdir() if p.name.startswith(".")]  # no temp files


def test_cache_notices_changed_source(tiny, tmp_path):
    arrays, folder = tiny
    cache = tmp_path / "cache"
    load("tiny", folder, verify=False, cache_dir=cache)
    new = tiny_arrays(seed=1)
    write_set(folder, TINY_NAMES, new)
    st = (folder / "tiny-train-images").stat()
    os.utime(folder / "tiny-train-images", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert_same(load("tiny", folder, verify=False, cache_dir=cache), new)


def test_cache_unwritable_is_skipped(tiny, tmp_path):
    arrays, folder = tiny
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_same(load("tiny", folder, cache_dir=blocker / "cache"), arrays)


# --------------------------------------------------------------------------- fetch


def serving(files: dict[str, bytes], down: tuple[str, ...] = ()):
    """A fake urlopen: serves `files` by URL basename; URLs starting with `down` fail."""
    calls: list[str] = []

    def opener(url, timeout):
        calls.append(url)
        if url.startswith(down):
            raise urllib.error.URLError(OSError("Network is unreachable"))
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(files[name])

    opener.calls = calls
    return opener


def gz_files(arrays) -> dict[str, bytes]:
    return {f"{TINY_NAMES[k]}.gz": gzip.compress(idx_bytes(a)) for k, a in arrays.items()}


def test_fetch_failure_leaves_nothing_and_names_mirrors(tiny, tmp_path):
    dest = tmp_path / "fresh" / "tiny"
    opener = serving({}, down=(MIRRORS[0],))
    with pytest.raises(DataError) as exc:
        fetch("tiny", dest, opener=opener)
    assert exc.value.message == (
        f"could not download tiny/tiny-train-images.gz from any mirror (tried: "
        f"{MIRRORS[0]}tiny-train-images.gz: Network is unreachable; "
        f"{MIRRORS[1]}tiny-train-images.gz: HTTP 404 Not Found). "
        f"On Debian: apt-get install dataset-tiny, or copy the files into {dest.absolute()}")
    assert not (tmp_path / "fresh").exists()  # folders it made are gone too


def test_fetch_bad_payload_leaves_no_partial_file(tiny, tmp_path):
    arrays, _ = tiny
    files = gz_files(arrays)
    files["tiny-train-labels.gz"] = gzip.compress(idx_bytes(np.zeros(40, np.uint8)))
    files["tiny-test-images.gz"] = files["tiny-test-images.gz"][:-9]  # cut-off download
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match=r"tiny-train-labels.gz: SHA-256 mismatch"):
        fetch("tiny", dest, opener=serving(files))
    assert sorted(p.name for p in dest.iterdir()) == ["tiny-train-images.gz"]  # complete + valid


def test_fetch_success_with_fallback_then_skips(tiny, tmp_path):
    arrays, _ = tiny
    dest = tmp_path / "dest"
    opener = serving(gz_files(arrays), down=(MIRRORS[0],))
    assert fetch("tiny", dest, progress=False, opener=opener) == dest.absolute()
    assert len(opener.calls) == 8  # each file: mirror A fails, mirror B serves
    assert sorted(p.name for p in dest.iterdir()) == sorted(gz_files(arrays))
    assert_same(load("tiny", dest, cache_dir=tmp_path / "cache"), arrays)
    again = serving({})
    fetch("tiny", dest, opener=again)
    assert again.calls == []  # present and valid: skipped


def test_fetch_replaces_invalid_file(tiny, tmp_path):
    arrays, _ = tiny
    dest = write_set(tmp_path / "dest", TINY_NAMES, tiny_arrays(seed=5))  # wrong content
    fetch("tiny", dest, opener=serving(gz_files(arrays)))
    assert sorted(p.name for p in dest.iterdir()) == sorted(gz_files(arrays))
    assert_same(load("tiny", dest, cache_dir=tmp_path / "cache"), arrays)


def test_fetch_default_opener_file_urls(tiny, tmp_path, monkeypatch):
    """The real urllib opener against a file:// mirror; default dest is ./data/<name>."""
    arrays, _ = tiny
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, blob in gz_files(arrays).items():
        (mirror / name).write_bytes(blob)
    spec = data.REGISTRY["tiny"]
    monkeypatch.setitem(data.REGISTRY, "tiny", DatasetSpec(
        spec.name, spec.files, spec.classes, (mirror.as_uri() + "/",), None, True))
    monkeypatch.chdir(tmp_path)
    assert fetch("tiny") == (tmp_path / "data" / "tiny").absolute()
    assert_same(load("tiny", "data/tiny", cache_dir=tmp_path / "cache"), arrays)


# --------------------------------------------------------------------------- info


def test_info_reports_status_and_is_json(tiny, tmp_path, monkeypatch):
    arrays, folder = tiny
    monkeypatch.setenv("DLHW_CACHE", str(tmp_path / "cache"))
    d = info("tiny", folder)
    json.dumps(d)
    assert d["source"] == str(folder.absolute())
    assert d["files"]["train_images"]["shape"] == [40, 3, 2]
    assert {f["checksum"] for f in d["files"].values()} == {"ok"}
    assert d["class_counts"] == {"train": {c: 10 for c in "abcd"}, "test": {c: 2 for c in "abcd"}}
    text = format_info(d)
    assert "40x3x2" in text and "sha256 ok" in text and "warning" not in text


def test_info_mismatch_and_unknown_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("DLHW_CACHE", str(tmp_path / "cache"))
    arrays = tiny_arrays()
    folder = write_set(tmp_path / "m", MNIST_NAMES, arrays)
    d = info("mnist", folder)  # tiny files cannot match the real MNIST sums
    assert {f["checksum"] for f in d["files"].values()} == {"MISMATCH"}
    assert any("not checked against real files" in w for w in d["warnings"])
    monkeypatch.setitem(data.REGISTRY, "tiny", tiny_spec(arrays, known=False))
    d = info("tiny", write_set(tmp_path / "t", TINY_NAMES, arrays, gz=True))
    assert {f["checksum"] for f in d["files"].values()} == {"unknown"}
    assert "warning: no SHA-256 on record" in format_info(d)


# --------------------------------------------------------------------------- split


def test_split_stratified_rounding_and_disjoint():
    y = np.repeat(np.arange(4), [10, 5, 3, 1])
    tr, va = split(y, 0.1, seed=0)
    # round half up per class: 10*0.1=1, 5*0.1=0.5 -> 1, 3*0.1=0.3 -> 0, 1 -> 0 (keeps 1 to train)
    assert np.bincount(y[va], minlength=4).tolist() == [1, 1, 0, 0]
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert tr.dtype == va.dtype == np.int64
    _, va = split(y, 0.5, seed=0)
    assert np.bincount(y[va], minlength=4).tolist() == [5, 3, 2, 0]  # 2.5 -> 3, 1.5 -> 2


def test_split_deterministic_by_seed():
    y = np.random.default_rng(1).integers(0, 10, 1000)
    a, b, c = split(y, 0.2, 7), split(y, 0.2, 7), split(y, 0.2, 8)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    counts = np.bincount(y, minlength=10)
    assert np.array_equal(np.bincount(y[a[1]], minlength=10), np.floor(0.2 * counts + 0.5))


def test_split_zero_fraction_and_bad_fraction():
    y = np.arange(20) % 3
    tr, va = split(y, 0.0, seed=0)
    assert va.size == 0 and va.dtype == np.int64 and np.array_equal(tr, np.arange(20))
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match=r"'val_fraction' parameter must be a float in \[0, 1\)"):
            split(y, bad, seed=0)


# --------------------------------------------------------------------------- preprocess


def test_standardize_constant_pixels_and_train_only_stats():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (50, 6), dtype=np.uint8)
    X[:, 2] = 7  # a constant pixel
    pre = Preprocessor.fit("standardize", X)
    np.testing.assert_allclose(pre.mean, X.mean(axis=0))
    np.testing.assert_allclose(pre.std[[0, 1, 3, 4, 5]], X.std(axis=0)[[0, 1, 3, 4, 5]])
    assert pre.std[2] == 1.0
    Z = pre.transform(X, dtype=np.float64)
    assert np.all(np.isfinite(Z)) and np.all(Z[:, 2] == 0)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0)[[0, 1, 3, 4, 5]], 1)
    Z_new = pre.transform(np.full((2, 6), 9, np.uint8))
    assert Z_new.dtype == np.float32 and np.all(Z_new[:, 2] == 2)  # 9 - 7, std 1


@pytest.mark.parametrize("kind", ["scale", "standardize", "none"])
def test_preprocess_never_mutates_and_roundtrips(kind, tmp_path):
    X = np.random.default_rng(2).integers(0, 256, (20, 4), dtype=np.uint8)
    X_before = X.copy()
    pre = Preprocessor.fit(kind, X)
    for dtype in (np.float32, np.float64):
        Z = pre.transform(X, dtype=dtype)
        assert Z.dtype == dtype and Z.shape == X.shape and not np.shares_memory(Z, X)
    Xf = X.astype(np.float32)
    Zf = pre.transform(Xf)
    assert not np.shares_memory(Zf, Xf) and np.array_equal(Xf, X)
    assert np.array_equal(X, X_before)
    expected = {"scale": X / 255, "none": X.astype(np.float64),
                "standardize": (X - X.mean(0)) / X.std(0)}[kind]
    np.testing.assert_allclose(pre.transform(X, np.float64), expected)
    np.savez(tmp_path / "m.npz", **pre.to_arrays())
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        back = Preprocessor.from_arrays(f)
    assert back.kind == kind
    np.testing.assert_array_equal(back.transform(X), pre.transform(X))


def test_preprocess_bad_kind():
    with pytest.raises(ValueError, match=r"'kind' parameter must be one of"):
        Preprocessor.fit("minmax", np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_fashion_mnist(fashion_dir, tmp_path):
    ds = load("fashion-mnist", fashion_dir, cache_dir=tmp_path)
    again = load("fashion-mnist", fashion_dir, cache_dir=tmp_path)  # from the cache (tested on tiny files above)
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.classes == data.CLASSES_FASHION
    assert np.array_equal(again.X_train, ds.X_train) and np.array_equal(again.y_test, ds.y_test)
