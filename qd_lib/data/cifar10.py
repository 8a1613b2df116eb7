"""CIFAR-10 from the standard python batches, read offline and checked field by field.

Where: ``QD_DATA_ROOT/cifar10/`` (or a ``root`` given by the caller) holds the seven files of
the "CIFAR-10 python version" archive (``cifar-10-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html), either directly or in the archive's own
``cifar-10-batches-py/`` folder::

    data_batch_1 … data_batch_5    training batches (10,000 images each)
    test_batch                     test batch (10,000 images)
    batches.meta                   class names

Nothing is downloaded: a missing file is a :class:`CIFARFileMissingError` that names it (and
every other missing one) and says where the files go.

Layout of each batch, as the archive's ``readme`` describes it: a pickled dict (written by
Python 2, so it is read with ``encoding="bytes"``) with

``b"data"``
    ``numpy.ndarray`` of ``uint8``, shape ``(N, 3072)``: one row per image, the 1024 red values
    first, then green, then blue, each a 32×32 plane in row-major order (so
    ``data.reshape(N, 3, 32, 32)`` is the image, channels first).
``b"labels"``
    ``N`` ints in ``0 … 9`` (a list).
``b"batch_label"``
    bytes, e.g. ``b"training batch 1 of 5"``.
``b"filenames"``
    ``N`` bytes, the original file names.

``batches.meta`` is a pickled dict with ``b"label_names"`` (10 bytes), ``b"num_cases_per_batch"``
and ``b"num_vis"`` (3072). Every field is checked (presence, type, dtype, shape, range); a
violation is a :class:`CIFARFormatError` naming the file and the field. Pickles are read with
a restricted unpickler that accepts only what the layout needs (numpy arrays and dtypes and the
bytes encoding of Python 2 strings); anything else is refused before it runs.
"""
from __future__ import annotations

import codecs
import hashlib
import importlib
import io
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qd_lib.data.classification import ImageClassificationSet
from qd_lib.paths import data_root, display_path
from qd_lib.utils.errors import QDError

logger = logging.getLogger(__name__)

__all__ = ["CIFAR10_CLASSES", "CIFAR10_DIRNAME", "CIFARBatch", "CIFARFileMissingError",
           "CIFARFormatError", "META_FILE", "TEST_BATCH", "TRAIN_BATCHES", "cifar10_root",
           "load_cifar10", "read_batch", "read_meta"]

CIFAR10_DIRNAME = "cifar10"
ARCHIVE_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
ALL_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
N_PIXELS = 3 * 32 * 32
FULL_SIZES = {"train": 50_000, "test": 10_000}
SOURCE_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CIFARFileMissingError(QDError, FileNotFoundError):
    """A file of the CIFAR-10 python batches is not where it should be."""


class CIFARFormatError(QDError, ValueError):
    """A CIFAR-10 python batch (or its metadata) is not in the standard layout."""


@dataclass(frozen=True)
class CIFARBatch:
    """One python batch, checked.

    Attributes
    ----------
    images : ndarray of uint8, shape (N, 3, 32, 32)
        Channels first (R, G, B planes), rows top to bottom.
    labels : ndarray of int64, shape (N,)
    filenames : tuple of str
    batch_label : str
    path : Path
    sha256 : str
        Of the file's bytes.
    """

    images: np.ndarray
    labels: np.ndarray
    filenames: tuple[str, ...]
    batch_label: str
    path: Path
    sha256: str


# -- reading -----------------------------------------------------------------------------------
def _numpy_core(submodule: str, name: str):
    # numpy 2 moved numpy.core to numpy._core; files pickled under either name are accepted
    try:
        module = importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x
        module = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(module, name)


_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("_codecs", "encode"),
}


class _LayoutUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays/dtypes/scalars and Python-2 byte strings."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of the CIFAR "
                                         "layout")
        if module == "_codecs":
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        return _numpy_core(module.rsplit(".", 1)[1], name)


def _unpickle(path: Path) -> tuple[dict, str]:
    """The dict in ``path`` with its keys as bytes, and the file's sha256."""
    data = path.read_bytes()
    try:
        obj = _LayoutUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # truncated, not a pickle, or a global outside the layout
        raise CIFARFormatError(f"{display_path(path)} is not a CIFAR-10 python batch: it cannot "
                               f"be unpickled ({type(exc).__name__}: {exc}).") from None
    if not isinstance(obj, dict):
        raise CIFARFormatError(f"{display_path(path)} must hold a pickled dict. Got "
                               f"{type(obj).__name__} instead.")
    keys = {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}
    return keys, hashlib.sha256(data).hexdigest()


def _field(record: dict, path: Path, key: bytes):
    if key not in record:
        raise CIFARFormatError(f"{display_path(path)} has no field {key!r} (fields: "
                               f"{sorted(record, key=repr)}).")
    return record[key]


def _text(value, path: Path, key: bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, str):
        return value
    raise CIFARFormatError(f"{display_path(path)}: field {key!r} must be bytes. Got "
                           f"{type(value).__name__} instead.")


def read_batch(path) -> CIFARBatch:
    """Read and check one CIFAR-10 python batch (``data_batch_<i>`` or ``test_batch``).

    Parameters
    ----------
    path : path
        The batch file.

    Returns
    -------
    CIFARBatch

    Raises
    ------
    CIFARFileMissingError
        If the file does not exist.
    CIFARFormatError
        If it is not a pickled dict in the layout of the module docstring; the message names the
        file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise CIFARFileMissingError(f"CIFAR-10 batch file {path.name!r} not found at "
                                    f"{display_path(path)}.")
    record, digest = _unpickle(path)
    data = _field(record, path, b"data")
    if not isinstance(data, np.ndarray):
        raise CIFARFormatError(f"{display_path(path)}: field b'data' must be a numpy array. Got "
                               f"{type(data).__name__} instead.")
    if data.dtype != np.uint8:
        raise CIFARFormatError(f"{display_path(path)}: field b'data' must have dtype uint8. Got "
                               f"{data.dtype} instead.")
    if data.ndim != 2 or data.shape[1] != N_PIXELS or data.shape[0] < 1:
        raise CIFARFormatError(f"{display_path(path)}: field b'data' must have shape (N, "
                               f"{N_PIXELS}) with N >= 1 (3 planes of 32x32). Got {data.shape} "
                               "instead.")
    n = data.shape[0]
    raw_labels = _field(record, path, b"labels")
    if not isinstance(raw_labels, (list, tuple, np.ndarray)):
        raise CIFARFormatError(f"{display_path(path)}: field b'labels' must be a list of ints. "
                               f"Got {type(raw_labels).__name__} instead.")
    try:
        labels = np.asarray(raw_labels)
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
    except Exception:  # ragged or mixed content
        ok = False
    if not ok:
        raise CIFARFormatError(f"{display_path(path)}: field b'labels' must be a flat list of "
                               "ints.")
    if len(labels) != n:
        raise CIFARFormatError(f"{display_path(path)}: field b'labels' must have one entry per "
                               f"row of b'data' ({n}). Got {len(labels)} instead.")
    if labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        raise CIFARFormatError(f"{display_path(path)}: field b'labels' must hold values in "
                               f"0..9. Got values in [{labels.min()}, {labels.max()}].")
    filenames = _field(record, path, b"filenames")
    if not isinstance(filenames, (list, tuple)) or len(filenames) != n:
        got = len(filenames) if isinstance(filenames, (list, tuple)) else \
            type(filenames).__name__
        raise CIFARFormatError(f"{display_path(path)}: field b'filenames' must be a list of {n} "
                               f"names (one per image). Got {got} instead.")
    names = tuple(_text(f, path, b"filenames") for f in filenames)
    batch_label = _text(_field(record, path, b"batch_label"), path, b"batch_label")
    images = np.ascontiguousarray(data.reshape(n, 3, 32, 32))
    return CIFARBatch(images=images, labels=labels.astype(np.int64), filenames=names,
                      batch_label=batch_label, path=path, sha256=digest)


def read_meta(path) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (checked: 10 names; ``num_vis`` 3072 when present).

    Raises
    ------
    CIFARFileMissingError, CIFARFormatError
    """
    path = Path(path)
    if not path.is_file():
        raise CIFARFileMissingError(f"CIFAR-10 metadata file {path.name!r} not found at "
                                    f"{display_path(path)}.")
    record, _ = _unpickle(path)
    names = _field(record, path, b"label_names")
    if not isinstance(names, (list, tuple)) or len(names) != len(CIFAR10_CLASSES):
        got = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise CIFARFormatError(f"{display_path(path)}: field b'label_names' must be a list of "
                               f"{len(CIFAR10_CLASSES)} names. Got {got} instead.")
    if b"num_vis" in record and record[b"num_vis"] != N_PIXELS:
        raise CIFARFormatError(f"{display_path(path)}: field b'num_vis' must be {N_PIXELS}. Got "
                               f"{record[b'num_vis']!r} instead.")
    return tuple(_text(name, path, b"label_names") for name in names)


# -- the dataset -------------------------------------------------------------------------------
def cifar10_root(root=None) -> Path:
    """The folder holding the batches: ``root`` or ``QD_DATA_ROOT/cifar10``, or its
    ``cifar-10-batches-py/`` sub-folder when the files are there (the archive's layout)."""
    base = Path(root).expanduser() if root is not None else data_root() / CIFAR10_DIRNAME
    nested = base / ARCHIVE_DIRNAME
    if not (base / TEST_BATCH).is_file() and (nested / TEST_BATCH).is_file():
        return nested
    return base


def load_cifar10(root=None) -> ImageClassificationSet:
    """CIFAR-10's training (``data_batch_1..5``) and test (``test_batch``) images.

    Parameters
    ----------
    root : path, optional
        Folder with the python batches; default ``QD_DATA_ROOT/cifar10`` (see
        :func:`cifar10_root`).

    Returns
    -------
    ImageClassificationSet
        ``name="cifar10"``; ``source`` lists every file with its sha256 and batch label. Sets
        smaller than the official 50,000/10,000 (test fixtures) load with a warning.

    Raises
    ------
    CIFARFileMissingError
        Names the first missing file and lists all of them, with where they go.
    CIFARFormatError
        Names the file and the field that is not in the CIFAR layout.
    """
    folder = cifar10_root(root)
    missing = [name for name in ALL_FILES if not (folder / name).is_file()]
    if missing:
        raise CIFARFileMissingError(
            f"CIFAR-10 file {missing[0]!r} not found in {display_path(folder)}"
            + (f" (missing: {', '.join(missing)})" if len(missing) > 1 else "")
            + f". Put the python batches ({', '.join(ALL_FILES)}) from cifar-10-python.tar.gz "
            f"({SOURCE_URL}) in QD_DATA_ROOT/{CIFAR10_DIRNAME}/; nothing is downloaded.")
    classes = read_meta(folder / META_FILE)
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test = read_batch(folder / TEST_BATCH)
    files = {b.path.name: {"sha256": b.sha256, "n": len(b.labels), "batch_label": b.batch_label}
             for b in (*train, test)}
    n_train = sum(len(b.labels) for b in train)
    if (n_train, len(test.labels)) != (FULL_SIZES["train"], FULL_SIZES["test"]):
        logger.warning("CIFAR-10 in %s has %d train / %d test images, not the official "
                       "50000 / 10000", display_path(folder), n_train, len(test.labels))
    logger.info("CIFAR-10: %d train, %d test images from %s", n_train, len(test.labels),
                display_path(folder))
    return ImageClassificationSet(
        name="cifar10", train_images=np.concatenate([b.images for b in train]),
        train_labels=np.concatenate([b.labels for b in train]), test_images=test.images,
        test_labels=test.labels, classes=classes, stand_in=False, title="CIFAR-10",
        source={"folder": display_path(folder), "files": files, "url": SOURCE_URL,
                "split": "official: data_batch_1..5 train, test_batch test"})
