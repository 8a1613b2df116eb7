import json

import numpy as np
import pytest

from qd_lib.data import load_manifest
from qd_lib.selection import select
from qd_lib.selection.features import (
    FEATURE_SETS,
    get_feature_set,
    load_selection,
    run_selections,
    save_selection,
    soft_cluster_probabilities,
    standardize_blocks,
)
from qd_lib.utils.errors import UnknownNameError


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


def test_feature_sets_and_unknown_names():
    assert get_feature_set("paper").quality == "arniqa" and FEATURE_SETS["offline"].probs is None
    with pytest.raises(UnknownNameError, match="offline"):
        get_feature_set("ofline")


def test_run_selections_saves_image_ids_in_pick_order(tmp_path, tiny_bench):
    ds = load_manifest(tiny_bench.root / "manifest.csv")
    rows = ds.indices("train")
    X = np.random.default_rng(2).normal(size=(len(rows), 6))
    summary, sels = run_selections(ds, "kcenter", [0.1, 0.3], seed=3, out_dir=tmp_path,
                                   features={"embedding": X})
    assert summary["budget"].tolist() == [11, 33]
    record = load_selection(next(tmp_path.rglob("*f0.10*.json")))
    ids = ds.manifest.table["image_id"].to_numpy()[rows]
    assert record["image_ids"] == [ids[i] for i in sels[0.1].indices]
    assert record["manifest_hash"] == ds.manifest.content_hash and record["proxy"] is True
    assert record["train_split_hash"] == ds.manifest.split_hash("paper", "train")
    again = select("kcenter", X, 11, seed=3)
    assert again.indices.tolist() == record["indices"]


def test_records_from_another_schema_are_refused(tmp_path, tiny_bench):
    ds = load_manifest(tiny_bench.root / "manifest.csv")
    rows = ds.indices("train")
    sel = select("random", np.zeros((len(rows), 2)), 5, seed=0)
    path = save_selection(sel, ds, rows, fraction=0.05, feature_set="offline", out_dir=tmp_path)
    record = json.loads(path.read_text())
    record["schema_version"] = 99
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="schema_version 99"):
        load_selection(path)
