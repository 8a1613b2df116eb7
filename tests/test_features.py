"""The features room (qd_lib.features) and selecting on a dataset (qd_lib.selection.records)."""
import importlib
import json

import numpy as np
import pytest

from qd_lib.analysis import coverage_table
from qd_lib.data import open_dataset
from qd_lib.features import (
    DEFAULT_FEATURE_SET,
    FEATURE_SETS,
    NORMALIZED_MOS_RANGE,
    check_feature_spec,
    describe_features,
    feature_inputs,
    feature_spec,
    resolve_feature_set,
    selection_mos,
    soft_cluster_probabilities,
    standardize_blocks,
)
from qd_lib.selection import select
from qd_lib.selection.records import (
    find_selection,
    load_selection,
    run_selections,
    save_selection,
    select_on_dataset,
)
from qd_lib.utils.errors import CacheMismatchError, UnknownNameError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_bench):
    return open_dataset("proxy-tiny")


# -- derived inputs -------------------------------------------------------------------------------
def test_blocks_contribute_equally_whatever_their_width_and_scale():
    rng = np.random.default_rng(0)
    wide, narrow = rng.normal(0, 50, (200, 64)), rng.normal(3, 0.01, (200, 4))
    Z = standardize_blocks([wide, narrow])
    assert Z.shape == (200, 68)
    assert (Z[:, :64] ** 2).sum(1).mean() == pytest.approx((Z[:, 64:] ** 2).sum(1).mean(), rel=1e-6)


def test_soft_cluster_probabilities_are_distributions_that_follow_clusters():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(c, 0.1, (30, 3)) for c in range(5)])
    P = soft_cluster_probabilities(X, seed=0)
    assert P.shape == (150, 5) and np.allclose(P.sum(1), 1)
    top = P.argmax(1).reshape(5, 30)
    assert all(len(set(row)) == 1 for row in top) and len({row[0] for row in top}) == 5


# -- one vocabulary -------------------------------------------------------------------------------
def test_feature_sets_and_their_one_default():
    assert DEFAULT_FEATURE_SET == "offline"
    assert set(FEATURE_SETS) >= {"offline", "paper", "pixels"}
    assert resolve_feature_set(None) is FEATURE_SETS["offline"]
    assert resolve_feature_set("paper").quality == "arniqa"
    assert FEATURE_SETS["paper"].probs == "liqe.quality5" and FEATURE_SETS["offline"].probs is None
    with pytest.raises(UnknownNameError, match=r"Did you mean \['offline', 'offline-deep'\]"):
        resolve_feature_set("ofline")


def test_specs_are_canonical_and_old_sweep_vocabulary_still_works():
    assert feature_spec("offline") == feature_spec({"set": "offline"}) == {"set": "offline"}
    # what sweep files said before the merge means the same set
    assert feature_spec({"source": "encoders"}) == {"set": "offline"}
    assert feature_spec({"source": "encoders", "set": "paper"}) == {"set": "paper"}
    assert feature_spec({"source": "pixels"}) == {"set": "pixels"}
    # overrides equal to the set's own roles vanish; real ones stay
    assert feature_spec({"set": "offline", "content": "mobilenet_v2"}) == {"set": "offline"}
    custom = resolve_feature_set({"set": "paper", "quality": "nss",
                                  "baseline": ["resnet50", "nss"], "probs": "soft_clusters"})
    assert (custom.content, custom.quality, custom.baseline, custom.probs) == (
        "resnet50", "nss", ("resnet50", "nss"), None)
    assert custom.name == "paper+custom"
    assert feature_spec(custom) == {"set": "paper", "quality": "nss",
                                    "baseline": ["resnet50", "nss"], "probs": "soft_clusters"}
    with pytest.raises(ValueError, match="no longer used.*features: offline"):
        feature_spec({"source": "pixel"})
    with pytest.raises(ValueError, match="takes no other keys"):
        feature_spec({"source": "pixels", "set": "offline"})
    with pytest.raises(UnknownNameError, match="features key"):
        feature_spec({"set": "offline", "embedding": "nss"})
    for bad, message in (({"probs": "liqe"}, "'encoder.output'"),
                         ({"content": "soft_clusters"}, "must name one encoder"),
                         ({"baseline": []}, "non-empty list")):
        with pytest.raises(ValueError, match=message):
            feature_spec({"set": "offline", **bad})
    with pytest.raises(UnknownNameError, match="encoder 'resnet5'"):
        check_feature_spec({"set": "offline", "content": "resnet5"}, ("content",))
    with pytest.raises(UnknownNameError, match="input role"):
        check_feature_spec("offline", ("texture",))


@pytest.mark.parametrize("module", ["qd_lib.selection.features", "qd_lib.runner.features"])
def test_the_merged_modules_say_where_things_went(module):
    with pytest.raises(ImportError, match="qd_lib.features"):
        importlib.import_module(module)


# -- the arrays -----------------------------------------------------------------------------------
def test_pixel_set_roles_come_from_the_cached_pixels_encoder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path))  # the embedding cache goes there
    rows = tiny.indices("train")
    provenance = {}
    arrays = feature_inputs(("content", "quality", "embedding", "probs"), tiny, rows,
                            feature_set="pixels", seed=3, provenance=provenance)
    assert arrays["content"].shape == (len(rows), 192) and arrays["quality"].shape[1] == 16
    assert arrays["embedding"].shape == (len(rows), 208)
    assert np.allclose(arrays["probs"].sum(axis=1), 1.0) and arrays["probs"].shape[1] == 5
    assert set(provenance) == {"pixels", "pixels.stats"}
    described = describe_features("pixels", ("embedding", "probs"), provenance)
    assert "not a learned encoder" in FEATURE_SETS["pixels"].description
    assert described["roles"] == {"embedding": "pixels+pixels.stats",
                                  "probs": "soft_clusters(pixels.stats)"}
    assert described["spec"] == {"set": "pixels"} and described["label"].startswith("pixels (")
    # one cache file per dataset and encoder, holding every row of the manifest
    caches = list((tmp_path / "embeddings" / tiny.name).glob("pixels__*.npy"))
    assert len([p for p in caches if ".stats." not in p.name]) == 1


def test_selection_mos_is_the_normalised_mos(tiny):
    rows = tiny.indices("train")
    mos = selection_mos(tiny, rows)
    lo, hi = tiny.manifest.info.mos_range
    raw = tiny.manifest.table["mos"].to_numpy()[rows]
    assert np.allclose(mos, (raw - lo) / (hi - lo)) and mos.min() >= 0 and mos.max() <= 1
    assert NORMALIZED_MOS_RANGE == (0.0, 1.0)


# -- one path from a dataset to a coreset ---------------------------------------------------------
def test_runner_and_notebook_paths_give_the_same_coreset_and_coverage(tiny, tmp_path,
                                                                      monkeypatch):
    """Moderate bins MOS: both paths must hand it the same MOS (and the same features)."""
    from qd_lib.runner import RunSpec, select_coreset

    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path))
    spec = RunSpec(dataset="proxy-tiny", method="moderate", fraction=0.2, seed=1,
                   features="pixels")
    from_runner = select_coreset(spec, tiny)
    summary, sels = run_selections(tiny, "moderate", [0.2], feature_set="pixels", seed=1,
                                   out_dir=tmp_path / "selections")
    rows = tiny.indices("train")
    ids = tiny.manifest.table["image_id"].to_numpy()[rows]
    assert from_runner["image_ids"] == sels[0.2].image_ids(ids)
    assert from_runner["features"]["spec"] == {"set": "pixels"}
    # the coverage numbers of both coresets, in the selection convention, are identical
    position = {image_id: i for i, image_id in enumerate(ids)}
    runner_indices = np.array([position[i] for i in from_runner["image_ids"]])
    mos = selection_mos(tiny, rows)
    table = coverage_table(mos, {("runner", 0.2): runner_indices,
                                 ("notebook", 0.2): sels[0.2].indices},
                           mos_range=NORMALIZED_MOS_RANGE)
    numbers = table.drop(columns=["method"]).to_numpy(dtype=float)
    assert np.array_equal(numbers[0], numbers[1])


def test_run_selections_saves_image_ids_in_pick_order(tiny, tmp_path):
    rows = tiny.indices("train")
    X = np.random.default_rng(2).normal(size=(len(rows), 6))
    summary, sels = run_selections(tiny, "kcenter", [0.1, 0.3], seed=3, out_dir=tmp_path,
                                   features={"embedding": X})
    assert summary["budget"].tolist() == [11, 33]
    record = load_selection(next(tmp_path.rglob("*f0.10*.json")))
    ids = tiny.manifest.table["image_id"].to_numpy()[rows]
    assert record["image_ids"] == [ids[i] for i in sels[0.1].indices]
    assert record["manifest_hash"] == tiny.manifest.content_hash and record["proxy"] is True
    assert record["train_split_hash"] == tiny.manifest.split_hash("paper", "train")
    assert record["feature_set"] == {"set": "offline"}
    again = select("kcenter", X, 11, seed=3)
    assert again.indices.tolist() == record["indices"]


def test_selection_records_are_checksummed_and_found_again(tiny, tmp_path):
    rows = tiny.indices("train")
    X = np.random.default_rng(4).normal(size=(len(rows), 3))
    result = select_on_dataset(tiny, "kcenter", 0.05, seed=0, features={"embedding": X})
    path = save_selection(result, tiny, out_dir=tmp_path)
    found_path, record = find_selection(tiny, "kcenter", 0.05, out_dir=tmp_path)
    assert found_path == path and record["indices"] == result.selection.indices.tolist()
    assert find_selection(tiny, "kcenter", 0.05, seed=1, out_dir=tmp_path) is None
    assert find_selection(tiny, "kcenter", 0.05, feature_set="pixels", out_dir=tmp_path) is None
    # an edited coreset is caught when read, and never reused
    edited = json.loads(path.read_text())
    edited["image_ids"][0], edited["image_ids"][1] = edited["image_ids"][1], edited["image_ids"][0]
    path.write_text(json.dumps(edited))
    with pytest.raises(CacheMismatchError, match=str(path.name)):
        load_selection(path)
    assert find_selection(tiny, "kcenter", 0.05, out_dir=tmp_path) is None
    edited["schema_version"] = 99
    edited.pop("sha256")
    path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="schema_version 99"):
        load_selection(path)
