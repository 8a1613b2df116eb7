"""Atomic writes and content hashes.

Results are written to a temporary file in the target folder and moved into place with
:func:`os.replace`, so a killed run never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj):
    """numpy scalars and arrays become JSON numbers and lists; paths and the rest strings."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as sorted, indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=_json_default)
    return atomic_write_text(path, text + "\n")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def to_jsonable(obj, *, nan_to_none: bool = False):
    """``obj`` with numpy scalars and arrays turned into Python values, mappings into dicts with
    string keys and tuples into lists; ``nan_to_none`` stores NaN as ``null`` (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, nan_to_none=nan_to_none) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, nan_to_none=nan_to_none) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), nan_to_none=nan_to_none)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if nan_to_none and isinstance(obj, float) and obj != obj:
        return None
    return obj


DIGEST_KEY = "sha256"


def record_digest(record: Mapping) -> str:
    """sha256 of a JSON record's canonical text (sorted keys, compact), without its own
    ``sha256`` entry: what :func:`write_verified_json` stores and :func:`read_verified_json`
    checks."""
    body = {k: v for k, v in record.items() if k != DIGEST_KEY}
    text = json.dumps(to_jsonable(body), sort_keys=True, separators=(",", ":"),
                      default=_json_default)
    return sha256_bytes(text.encode("utf-8"))


def write_verified_json(path: str | os.PathLike, record: Mapping) -> Path:
    """Write ``record`` atomically with its :func:`record_digest` under ``"sha256"``."""
    body = to_jsonable({k: v for k, v in record.items() if k != DIGEST_KEY})
    return atomic_write_json(path, {**body, DIGEST_KEY: record_digest(body)})


def read_verified_json(path: str | os.PathLike, what: str = "record") -> dict:
    """Read a JSON record written by :func:`write_verified_json` and check its digest.

    A record without a digest (written by an earlier version) is returned as it is.

    Raises
    ------
    CacheMismatchError
        If the stored digest does not match the content (the file was edited or damaged);
        the message names the file.
    """
    from qd_lib.utils.errors import CacheMismatchError

    record = json.loads(Path(path).read_text(encoding="utf-8"))
    stored = record.get(DIGEST_KEY) if isinstance(record, dict) else None
    if stored is not None and stored != record_digest(record):
        raise CacheMismatchError(
            f"The {what} {path} does not match its sha256 (stored {stored[:12]}…, content "
            f"{record_digest(record)[:12]}…): it was edited or damaged after it was written. "
            "Delete it to have it recomputed.")
    return record
