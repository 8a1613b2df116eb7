import numpy as np
import pytest
import torch
from PIL import Image

from qd_lib.data import IQADataset, check_images
from qd_lib.utils.errors import ImageReadError


@pytest.fixture
def image_root(tmp_path, small_manifest):
    for k, rel in enumerate(small_manifest.table["relpath"]):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 10, 3), 40 * k, np.uint8)).save(path)
    return tmp_path


def test_items_decode_with_pil_and_carry_normalized_mos(image_root, small_manifest):
    ds = IQADataset(small_manifest, image_root, scheme="paper", part="train")
    assert len(ds) == 3
    item = ds[2]
    assert item["image"].shape == (3, 8, 10) and item["image"].dtype == torch.float32
    assert item["image"].max() == pytest.approx(80 / 255)
    assert item["mos"] == pytest.approx(0.5) and item["image_id"] == "I02.png"
    raw = IQADataset(small_manifest, image_root, rows=[4], target="raw")
    assert raw[0]["mos"] == pytest.approx(5.0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 8, 10)


def test_missing_and_corrupt_files_are_reported_by_name(image_root, small_manifest):
    (image_root / "images/I01.png").unlink()
    (image_root / "images/I03.png").write_bytes(b"not a png")
    report = check_images(small_manifest, image_root)
    assert report.missing == ["I01.png"]
    assert [i for i, _ in report.corrupt] == ["I03.png"]
    assert "2 of 6 images bad" in report.summary() and "I01.png" in report.summary()

    with pytest.raises(ImageReadError, match="I01.png"):
        IQADataset(small_manifest, image_root)
    ds = IQADataset(small_manifest, image_root, on_error="skip")
    assert len(ds) == 4 and not ds.report.ok
    assert "I01.png" not in {ds[i]["image_id"] for i in range(len(ds))}
    lazy = IQADataset(small_manifest, image_root, rows=[3])  # exists, but cannot be decoded
    with pytest.raises(ImageReadError, match="I03.png"):
        lazy[0]


def test_bad_arguments(image_root, small_manifest):
    with pytest.raises(ValueError, match="'on_error'"):
        IQADataset(small_manifest, image_root, on_error="ignore")
    with pytest.raises(ValueError, match="'rows'"):
        IQADataset(small_manifest, image_root, rows=[99])
    with pytest.raises(ValueError, match="both 'scheme' and 'part'"):
        IQADataset(small_manifest, image_root, scheme="paper")
