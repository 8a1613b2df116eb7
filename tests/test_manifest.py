import numpy as np
import pandas as pd
import pytest

from qd_lib.data import DatasetInfo, Manifest, normalize_mos, split_by_groups, split_by_rows
from qd_lib.data.manifest import denormalize_mos
from qd_lib.utils.errors import ManifestError


def test_roundtrip_preserves_table_and_hash(tmp_path, small_manifest):
    path = small_manifest.save(tmp_path / "toy.csv")
    again = Manifest.read(path)
    pd.testing.assert_frame_equal(again.table, small_manifest.table)
    assert again.content_hash == small_manifest.content_hash
    assert again.split_schemes == ["content", "paper"]
    meta = (tmp_path / "toy.yaml").read_text()
    assert small_manifest.content_hash in meta


def test_hash_is_order_of_columns_independent_but_content_sensitive(small_table, small_info):
    a = Manifest(small_table, small_info)
    b = Manifest(small_table[list(reversed(small_table.columns))], small_info)
    assert a.content_hash == b.content_hash
    changed = small_table.copy()
    changed.loc[2, "mos"] = 3.0001
    assert Manifest(changed, small_info).content_hash != a.content_hash


def test_edited_table_is_refused(tmp_path, small_manifest):
    path = small_manifest.save(tmp_path / "toy.csv")
    text = path.read_text().replace("I03.png,images/I03.png,4.5", "I03.png,images/I03.png,4.4")
    path.write_text(text)
    with pytest.raises(ManifestError, match="content hash"):
        Manifest.read(path)
    assert Manifest.read(path, verify_hash=False).table.loc[3, "mos"] == pytest.approx(4.4)


def test_numeric_looking_ids_stay_strings(tmp_path, small_info):
    table = pd.DataFrame({"image_id": ["001", "002"], "relpath": ["001.jpg", "002.jpg"],
                          "mos": [2.0, 3.0], "group": ["007", "008"],
                          "split_x": ["train", "test"]})
    path = Manifest(table, small_info).save(tmp_path / "ids.csv")
    again = Manifest.read(path)
    assert again.table["image_id"].tolist() == ["001", "002"]
    assert again.table["group"].tolist() == ["007", "008"]


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns=["mos"]), r"missing required column\(s\) \['mos'\]"),
    (lambda t: t.assign(mos=[1.0, np.nan, 3, 4, 5, 2]), r"row 1 \(image_id='I01.png'\).*'mos'"),
    (lambda t: t.assign(mos=[1.0, 2, np.inf, 4, 5, 2]), r"row 2 .*finite.*inf"),
    (lambda t: t.assign(mos=["1", "2", "three", "4", "5", "2"]), r"row 2 .*number.*'three'"),
    (lambda t: t.assign(mos=[1.0, 2, 3, 4, 5.5, 2]), r"row 4 .*5.5.*outside.*\[1, 5\]"),
    (lambda t: t.assign(image_id=["a", "b", "c", "a", "e", "f"]),
     r"'a' is duplicated \(rows \[0, 3\]\)"),
    (lambda t: t.assign(relpath=["x.png", "../y.png", "z", "w", "v", "u"]), r"row 1 .*escapes"),
    (lambda t: t.assign(relpath=["x.png", "/etc/y.png", "z", "w", "v", "u"]), r"row 1 .*absolute"),
    (lambda t: t.assign(split_paper=["train", "train", "dev", "val", "test", "test"]),
     r"row 2 .*'split_paper'.*'dev'"),
    (lambda t: t.assign(split_paper=["train"] * 6), r"'paper' has an empty 'test' split"),
    (lambda t: t.iloc[:0], "no rows"),
])
def test_malformed_tables_name_row_and_value(small_table, small_info, change, message):
    with pytest.raises(ManifestError, match=message):
        Manifest(change(small_table), small_info)


def test_bad_info_and_scheme(small_manifest):
    with pytest.raises(ManifestError, match="mos_range"):
        DatasetInfo(name="x", mos_range=(5, 1))
    with pytest.raises(ValueError, match=r"'scheme'.*\['content', 'paper'\].*'nope'"):
        small_manifest.split_indices("nope", "train")
    with pytest.raises(ValueError, match="'part'"):
        small_manifest.split_indices("paper", "dev")


def test_splits_and_counts(small_manifest):
    assert small_manifest.split_indices("paper", "train").tolist() == [0, 1, 2]
    counts = small_manifest.split_counts()
    assert counts.loc["val", "content"] == 2 and counts.loc["test", "paper"] == 2
    assert small_manifest.split_hash("paper") != small_manifest.split_hash("content")
    assert small_manifest.split_hash("paper", "test") != small_manifest.split_hash("paper")


def test_normalize_mos_uses_fixed_range_and_direction():
    assert normalize_mos([1, 3, 5], (1, 5)).tolist() == [0.0, 0.5, 1.0]
    assert normalize_mos([1, 3, 5], (1, 5), higher_is_better=False).tolist() == [1.0, 0.5, 0.0]
    back = denormalize_mos(normalize_mos([2.2, 4.1], (0, 9), False), (0, 9), False)
    np.testing.assert_allclose(back, [2.2, 4.1])
    with pytest.raises(ValueError, match="mos_range"):
        normalize_mos([1], (3, 3))


def test_manifest_normalized_mos_ignores_split_statistics(small_manifest):
    # a subset with a narrow MOS range is normalised with the dataset's fixed range
    assert small_manifest.normalized_mos()[[1, 2]].tolist() == [0.375, 0.5]


def test_split_by_rows_exact_counts_and_seeded():
    labels = split_by_rows(100, (0.7, 0.1, 0.2), seed=3)
    assert (labels == "train").sum() == 70 and (labels == "val").sum() == 10
    assert (split_by_rows(100, seed=3) == labels).all()
    assert not (split_by_rows(100, seed=4) == labels).all()


def test_split_by_groups_keeps_groups_together():
    groups = np.repeat([f"R{i}" for i in range(10)], 5)
    labels = split_by_groups(groups, seed=0)
    for g in set(groups):
        assert len(set(labels[groups == g])) == 1
    assert {"train", "test"} <= set(labels)
    with pytest.raises(ValueError, match="at least 2 groups"):
        split_by_groups(["a", "a"])
