"""Shared helpers: errors, validation, atomic I/O, hashing, progress and logging."""
from qd_lib.utils.errors import (
    CacheMismatchError,
    ImageReadError,
    ManifestError,
    OfflineWeightsError,
    QDError,
    UnknownNameError,
)
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from qd_lib.utils.progress import progress

__all__ = [
    "CacheMismatchError",
    "ImageReadError",
    "ManifestError",
    "OfflineWeightsError",
    "QDError",
    "UnknownNameError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "progress",
    "sha256_file",
]
