"""Data: the registry, IDX files -> checksummed arrays, found on disk and cached, split and preprocessed.

Raw files are never modified. One module a job:
  registry    the data sets dlhw knows (files, payload SHA-256, classes, mirrors)
  idx         the IDX format: gunzip, decode, verify a payload
  locate      where a data set's files are found (--data-dir, $DLHW_DATA, ./data/NAME, Debian's folder)
  cache       decoded arrays cached as .npy, keyed by payload SHA-256
  load        find + verify + decode -> `Dataset`; `info` for `dlhw data info`
  fetch       download from the official mirrors
  preprocess  the stratified validation split and the `Preprocessor` (scale, standardize)
  prepare     a config -> the arrays a run trains and evaluates on

    ds = load("fashion-mnist")                    # X_train (60000, 784) uint8, y_train (60000,) int64
"""
from dlhw.data.idx import check_payload, idx_payload, parse_idx, read_idx
from dlhw.data.load import Dataset, format_info, info, load
from dlhw.data.locate import find_data_dir, locate_file
from dlhw.data.registry import CLASSES_FASHION, FILE_KEYS, REGISTRY, DatasetSpec, FileSpec, dataset_spec

__all__ = ["CLASSES_FASHION", "FILE_KEYS", "REGISTRY", "Dataset", "DatasetSpec", "FileSpec", "check_payload",
           "dataset_spec", "find_data_dir", "format_info", "idx_payload", "info", "load", "locate_file",
           "parse_idx", "read_idx"]
