"""The data sets dlhw knows: their files, SHA-256 of the decompressed IDX payloads, classes, mirrors."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from dlhw.errors import DataError

CLASSES_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


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
