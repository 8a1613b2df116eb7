import numpy as np
import pytest
import torch
import torchvision

from qd_lib.data.synthetic.references import PHOTOS, photo_rgb
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.weights import MOBILENET_V2, WeightsFile, install_offline_weights, verify


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
