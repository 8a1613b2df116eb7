"""``mobilenet_v2_stats``: dimension, determinism, the real offline weights (against torchvision's
own model), whole-image policy, cached extraction, and that it tracks the proxy MOS."""
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from scipy.stats import spearmanr

from qd_lib.data.synthetic.references import PHOTOS, photo_rgb
from qd_lib.encoders import (
    ImageTooSmallError,
    available_encoders,
    describe_encoders,
    extract,
    load_encoder,
)
from qd_lib.encoders.mobilenet_v2_stats import TAPS, feature_names
from qd_lib.features import resolve_feature_set
from qd_lib.weights import install_offline_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder():
    install_offline_weights()
    return load_encoder("mobilenet_v2_stats")


def _photo(name="chelsea", size=None):
    img = Image.fromarray(photo_rgb(next(p for p in PHOTOS if p.name == name)))
    return img if size is None else img.resize(size, Image.Resampling.BILINEAR)


def _encode(enc, images):
    items = [enc.transform()(img)["inputs"]["image"] for img in images]
    same = len({tuple(x.shape) for x in items}) == 1
    with torch.inference_mode():
        return enc.encode({"image": torch.stack(items) if same else items})["embedding"]


def test_registered_with_its_dimension_and_in_the_offline_deep_feature_set(encoder):
    assert "mobilenet_v2_stats" in available_encoders()
    assert "976-d" in describe_encoders()["mobilenet_v2_stats"]
    assert encoder.outputs == {"embedding": 976} == {"embedding": len(feature_names())}
    assert [b for b, _, _ in TAPS] == [1, 3, 6, 13, 17]
    assert encoder.key == "mobilenet_v2_stats" and encoder.input_policy == "whole_image"
    assert "native resolution" in encoder.preprocessing
    assert encoder.describe()["options"]["max_side"] == 1024
    fs = resolve_feature_set("offline-deep")
    assert (fs.content, fs.quality, fs.baseline, fs.probs) == (
        "mobilenet_v2", "mobilenet_v2_stats", ("mobilenet_v2", "mobilenet_v2_stats"), None)
    assert "extension of the offline set" in fs.description
    assert load_encoder("mobilenet_v2_stats", max_side=None).key == "mobilenet_v2_stats_mNone"
    with pytest.raises(ValueError, match="'max_side'"):
        load_encoder("mobilenet_v2_stats", max_side=16)


def test_uses_the_real_weights_and_equals_torchvision_feature_statistics(encoder):
    (record,) = encoder.weights_records
    assert record.verified and record.sha256.startswith("b0353104")
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    ref_model = torchvision.models.mobilenet_v2(weights=weights).eval()  # from the hub cache
    img = _photo("chelsea")
    x = torchvision.transforms.functional.to_tensor(img)  # whole image, no resize
    x = torchvision.transforms.functional.normalize(x, weights.transforms().mean,
                                                    weights.transforms().std)[None]
    expected, h = [], x
    with torch.inference_mode():
        for index, block in enumerate(ref_model.features):
            h = block(h)
            if index in {b for b, _, _ in TAPS}:
                expected += [h.mean(dim=(2, 3)), h.std(dim=(2, 3), correction=0)]
        ours = _encode(encoder, [img])
    torch.testing.assert_close(ours, torch.cat(expected, dim=1), rtol=1e-4, atol=1e-4)


def test_deterministic_whole_image_and_mixed_sizes(encoder):
    images = [_photo("chelsea", (192, 192)), _photo("coffee", (240, 160)),
              _photo("rocket", (192, 192))]
    inputs = encoder.transform()(images[1])
    assert tuple(inputs["inputs"]["image"].shape) == (3, 160, 240) and inputs["note"] is None
    first = _encode(encoder, images)
    again = _encode(encoder, images)
    assert torch.equal(first, again) and torch.isfinite(first).all()
    singles = torch.cat([_encode(encoder, [img]) for img in images])
    torch.testing.assert_close(first, singles, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first[0], first[2])
    big = encoder.transform()(_photo("chelsea", (1500, 1000)))
    assert tuple(big["inputs"]["image"].shape) == (3, 683, 1024)
    assert big["note"] == "downscaled from 1500x1000"
    with pytest.raises(ImageTooSmallError, match="20x16 px"):
        encoder.transform()(_photo("coffee", (20, 16)))


def test_it_tracks_the_proxy_mos_on_unseen_references(encoder, tiny_bench, tmp_path):
    """A ridge probe on the statistics of two of proxy-tiny's four references predicts the proxy
    MOS of the other two (Spearman well above 0, and far above a probe fitted to shuffled
    MOS); extraction goes through the cached extractor unchanged."""
    emb = extract(tiny_bench, encoder, cache_dir=tmp_path, device="cpu", num_workers=0)
    assert emb.array.shape == (160, 976) and emb.meta["encoder"] == "mobilenet_v2_stats"
    assert extract(tiny_bench, encoder, cache_dir=tmp_path, device="cpu").array.shape == \
        (160, 976)  # cached
    X = np.asarray(emb.array, dtype=np.float64)
    table = tiny_bench.manifest.table
    mos, group = table["mos"].to_numpy(), table["group"].to_numpy()
    refs = sorted(set(group))
    train, test = np.isin(group, refs[::2]), ~np.isin(group, refs[::2])

    def probe(target):
        mu, sd = X[train].mean(0), X[train].std(0) + 1e-8
        A, B = (X[train] - mu) / sd, (X[test] - mu) / sd
        w = np.linalg.solve(A.T @ A + 10.0 * np.eye(A.shape[1]), A.T @ (target - target.mean()))
        return spearmanr(B @ w, mos[test])[0]

    rho = probe(mos[train])
    shuffled = probe(np.random.default_rng(0).permutation(mos[train]))
    assert rho > 0.6 and rho - shuffled > 0.4, (rho, shuffled)


def test_quality_probe_fits_on_one_part_and_scores_another(tiny_bench, tmp_path):
    from qd_lib.study.probes import quality_probe, ridge_probe

    table = quality_probe(tiny_bench, ["pixels"], cache_dir=tmp_path, device="cpu",
                          num_workers=0)
    (row,) = table.to_dict(orient="records")
    assert (row["encoder"], row["dim"], row["n_train"], row["scheme"]) == ("pixels", 192, 112,
                                                                         "paper")
    assert row["n_test"] == tiny_bench.manifest.split_counts().loc["val", "paper"]
    assert -1 <= row["srcc"] <= 1 and row["alpha"] > 0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]) + 0.1 * rng.normal(size=200)
    assert ridge_probe(X[:150], y[:150], X[150:], y[150:])["srcc"] > 0.95
    with pytest.raises(ValueError, match="'train'"):
        quality_probe(tiny_bench, ["pixels"], train="training")
    with pytest.raises(ValueError, match="'X_train' and 'X_test'"):
        ridge_probe(X[:150], y[:150], X[150:, :3], y[150:])
