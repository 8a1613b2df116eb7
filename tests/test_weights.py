import json
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torchvision
from torch.hub import HASH_REGEX

import qd_lib.weights as weights_module
from qd_lib.data.synthetic.references import PHOTOS, photo_rgb
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.utils.io import sha256_file
from qd_lib.weights import (
    ARNIQA,
    KNOWN_WEIGHTS,
    MOBILENET_V2,
    RESNET18_V1,
    RESNET50_V1,
    RESNET50_V2,
    WeightsFile,
    install_offline_weights,
    locate,
    verify,
)


def test_offline_mobilenet_loads_through_torchvision_weights_api():
    (path,) = install_offline_weights()
    assert path.name == MOBILENET_V2.filename
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2(weights=weights).eval()  # from the hub cache
    cat = photo_rgb(next(p for p in PHOTOS if p.name == "chelsea"))
    x = weights.transforms()(torch.from_numpy(np.ascontiguousarray(cat)).permute(2, 0, 1))
    with torch.inference_mode():
        top = model(x[None]).softmax(1)[0].topk(3).indices.tolist()
    names = [weights.meta["categories"][i] for i in top]
    assert names[0] in {"Egyptian cat", "tabby", "tiger cat"}, names  # real ImageNet weights


def test_missing_or_mismatched_weights_name_the_file_and_hash(tmp_path):
    spec = WeightsFile("ARNIQA.pth", "ab" * 32, "the ARNIQA release page", hub_cache=False)
    with pytest.raises(OfflineWeightsError, match=r"'ARNIQA.pth' not found.*ARNIQA release"):
        verify(tmp_path / "ARNIQA.pth", spec)
    (tmp_path / "ARNIQA.pth").write_bytes(b"not the checkpoint")
    with pytest.raises(OfflineWeightsError, match=r"expected abab.*ARNIQA.pth"):
        verify(tmp_path / "ARNIQA.pth", spec)


def test_torchvision_entries_carry_the_hash_prefix_torchvision_checks():
    """torch.hub's download (check_hash=True in torchvision's builders) compares the file's
    sha256 with the hex digits after the last '-' of the URL's file name; our entries must use
    the same file names and hashes that start with those digits."""
    api = {RESNET50_V1: torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
           RESNET50_V2: torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
           RESNET18_V1: torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
           MOBILENET_V2: torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1}
    for spec, tv_weights in api.items():
        assert Path(urlparse(tv_weights.url).path).name == spec.filename
        prefix = HASH_REGEX.search(spec.filename).group(1)
        assert len(prefix) == 8 and spec.sha256.startswith(prefix), spec.filename
    hub_entries = {w.filename for w in KNOWN_WEIGHTS.values() if w.hub_cache}
    assert hub_entries == {w.filename for w in api}  # every hub-cache file is checked here


def test_an_unpublished_checkpoint_is_recorded_on_first_load_and_a_change_warns(
        tmp_path, monkeypatch):
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(tmp_path))
    assert ARNIQA.sha256 is None  # nothing published for ARNIQA.pth
    path = tmp_path / "ARNIQA.pth"
    torch.save({"w": torch.ones(3)}, path)
    assert locate(ARNIQA) == path
    store = tmp_path / ".qd_sha256.json"
    first = json.loads(store.read_text())["ARNIQA.pth"]
    assert first["sha256"] == sha256_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        locate(ARNIQA)  # the same file: silent
    torch.save({"w": torch.zeros(4)}, path)  # another file under the same name
    with pytest.warns(weights_module.WeightsChangedWarning,
                      match=rf"ARNIQA.pth.*{first['sha256'][:12]}"):
        locate(ARNIQA)
    assert json.loads(store.read_text())["ARNIQA.pth"] == first  # the first record is kept
    # accepting the new file records it; then it loads silently again
    assert weights_module.main(["accept", "ARNIQA.pth"]) == 0
    assert json.loads(store.read_text())["ARNIQA.pth"]["sha256"] == sha256_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        locate(ARNIQA)


def test_files_with_a_published_hash_are_not_recorded(tmp_path):
    spec = WeightsFile("x.pth", None, "a test", hub_cache=False)
    published = WeightsFile("y.pth", "ab" * 32, "a test", hub_cache=False)
    (tmp_path / "x.pth").write_bytes(b"x")
    verify(tmp_path / "x.pth", spec, record=False)  # checked, not recorded
    assert not (tmp_path / ".qd_sha256.json").exists()
    weights_module.record_weights_hash(tmp_path / "x.pth", spec)
    weights_module.record_weights_hash(tmp_path / "x.pth", published)  # published: no record
    assert set(json.loads((tmp_path / ".qd_sha256.json").read_text())) == {"x.pth"}
