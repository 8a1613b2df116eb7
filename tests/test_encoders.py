"""Encoders: registry, real and self-saved weights, exact preprocessing, NSS properties."""
import gzip
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from scipy.stats import spearmanr

from qd_lib.data.synthetic.references import PHOTOS, photo_rgb
from qd_lib.encoders import ImageTooSmallError, available_encoders, load_encoder
from qd_lib.encoders.arniqa import five_crop_boxes
from qd_lib.encoders.clip import CLIP, CLIPConfig, CLIPTokenizer, clip_state_dict_keys
from qd_lib.encoders.liqe import DISTORTIONS, QUALITIES, SCENES, joint_prompts, patch_indices
from qd_lib.encoders.nss import aggd_fit, feature_names, ggd_fit
from qd_lib.utils.errors import OfflineWeightsError, UnknownNameError
from qd_lib.weights import install_offline_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(name="chelsea", size=None):
    img = Image.fromarray(photo_rgb(next(p for p in PHOTOS if p.name == name)))
    return img if size is None else img.resize(size, Image.Resampling.BILINEAR)


def _batch(encoder, images):
    items = [encoder.transform()(img)["inputs"] for img in images]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    """An empty QD_WEIGHTS_DIR, runs and torch hub folder for this test."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path / "runs"))
    return wdir


@pytest.fixture(scope="module")
def random_resnet50_state():
    torch.manual_seed(0)
    return torchvision.models.resnet50().state_dict()


# -- registry ----------------------------------------------------------------------------------
def test_registry_lists_the_encoders_and_suggests_names():
    assert available_encoders() == ["arniqa", "liqe", "mobilenet_v2", "mobilenet_v2_stats", "nss",
                                    "pixels", "resnet50"]
    with pytest.raises(UnknownNameError,
                       match=r"Did you mean \['mobilenet_v2', 'mobilenet_v2_stats'\]"):
        load_encoder("mobilenet")
    with pytest.raises(ValueError, match="'input_policy'"):
        load_encoder("arniqa", input_policy="ten_crop")


# -- torchvision encoders ------------------------------------------------------------------------
def test_mobilenet_v2_uses_the_real_imagenet_weights_and_torchvision_preprocessing():
    install_offline_weights()
    enc = load_encoder("mobilenet_v2")
    assert enc.outputs == {"embedding": 1280} and enc.key == "mobilenet_v2"
    (record,) = enc.weights_records
    assert record.verified and record.sha256.startswith("b0353104")
    img = _photo("chelsea")
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    ref_model = torchvision.models.mobilenet_v2(weights=weights).eval()
    x = weights.transforms()(img)[None]  # torchvision's own preprocessing of the PIL image
    with torch.inference_mode():
        ours = enc.encode(_batch(enc, [img]))["embedding"]
        ref = torch.nn.functional.adaptive_avg_pool2d(ref_model.features(x), 1).flatten(1)
        top = ref_model.classifier(ours).argmax(1).item()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert weights.meta["categories"][top] in {"Egyptian cat", "tabby", "tiger cat"}


def test_resnet50_missing_or_mismatched_weights_name_file_hash_and_source(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(OfflineWeightsError,
                       match=r"'resnet50-0676ba61.pth' not found.*0676ba61.*download.pytorch"):
        load_encoder("resnet50")
    with pytest.raises(OfflineWeightsError, match=r"'resnet50-11ad3fa6.pth' not found"):
        load_encoder("resnet50", weights="V2")
    bad = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    bad.parent.mkdir(parents=True)
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(OfflineWeightsError, match=r"expected 0676ba61 \(published prefix\)"):
        load_encoder("resnet50")


def test_resnet50_checkpoint_matches_torchvision_features(tmp_path, random_resnet50_state):
    path = tmp_path / "resnet50_random.pth"
    torch.save(random_resnet50_state, path)
    enc = load_encoder("resnet50", checkpoint=path)
    assert enc.outputs == {"embedding": 2048} and enc.key.startswith("resnet50_ckpt-")
    assert not enc.weights_records[0].verified
    model = torchvision.models.resnet50()
    model.load_state_dict(random_resnet50_state)
    model.fc = torch.nn.Identity()
    img = _photo("coffee", (300, 200))
    x = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()(img)[None]
    with torch.inference_mode():
        torch.testing.assert_close(enc.encode(_batch(enc, [img]))["embedding"],
                                   model.eval()(x), rtol=1e-4, atol=1e-4)
    v2 = load_encoder("resnet50", weights="IMAGENET1K_V2", checkpoint=path)
    assert v2.transform().resize_size == 232 and v2.key.startswith("resnet50_v2_ckpt-")


# -- ARNIQA ------------------------------------------------------------------------------------
def _save_arniqa(folder, state, drop=None):
    ckpt = {f"model.{k}": v for k, v in _trunk_state(state).items()}
    head = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                               torch.nn.Linear(2048, 128))
    ckpt.update({f"projector.{k}": v for k, v in head.state_dict().items()})
    if drop:
        ckpt.pop(drop)
    torch.save(ckpt, folder / "ARNIQA.pth")


def _trunk_state(resnet_state):
    """torchvision ResNet keys → Sequential(*children[:-1]) keys (conv1→0, bn1→1, layerN→N+3)."""
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6",
             "layer4": "7"}
    out = {}
    for k, v in resnet_state.items():
        head, rest = k.split(".", 1)
        if head in names:
            out[f"{names[head]}.{rest}"] = v
    return out


_TRUNKS = {}


def _trunk(resnet_state):
    if id(resnet_state) not in _TRUNKS:
        model = torchvision.models.resnet50()
        model.load_state_dict(resnet_state)
        _TRUNKS[id(resnet_state)] = torch.nn.Sequential(*list(model.children())[:-1]).eval()
    return _TRUNKS[id(resnet_state)]


def _imagenet(img):
    x = torchvision.transforms.functional.to_tensor(img)
    return torchvision.transforms.functional.normalize(x, (0.485, 0.456, 0.406),
                                                       (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def arniqa_dir(tmp_path_factory, random_resnet50_state):
    folder = tmp_path_factory.mktemp("arniqa")
    _save_arniqa(folder, random_resnet50_state)
    return folder


def test_arniqa_loads_the_official_key_layout_and_embeds_full_and_half_scale(
        arniqa_dir, monkeypatch, random_resnet50_state):
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(arniqa_dir))
    enc = load_encoder("arniqa")
    assert enc.outputs == {"embedding": 4096} and enc.input_policy == "whole_image"
    assert enc.weights_records[0].filename == "ARNIQA.pth"
    img = _photo("astronaut", (97, 80))  # odd width: half scale is 48x40
    with torch.inference_mode():
        emb = enc.encode(_batch(enc, [img]))["embedding"][0]
        trunk = _trunk(random_resnet50_state)
        half = img.resize((48, 40), Image.Resampling.BICUBIC)
        ref = torch.cat([torch.nn.functional.normalize(trunk(_imagenet(i)[None]).flatten(1))[0]
                         for i in (img, half)])
    torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-5)
    assert emb[:2048].norm().item() == pytest.approx(1.0, abs=1e-5)
    assert emb[2048:].norm().item() == pytest.approx(1.0, abs=1e-5)
    # a batch of images of different sizes is encoded in same-size groups, in order
    other = _photo("coffee", (64, 72))
    items = [enc.transform()(i)["inputs"] for i in (img, other, img)]
    with torch.inference_mode():
        mixed = enc.encode({k: [it[k] for it in items] for k in items[0]})["embedding"]
        alone = enc.encode(_batch(enc, [other]))["embedding"][0]
    torch.testing.assert_close(mixed[0], emb)
    torch.testing.assert_close(mixed[2], emb)
    torch.testing.assert_close(mixed[1], alone)


def test_arniqa_five_crop_averages_centre_and_corner_crops(arniqa_dir, monkeypatch,
                                                           random_resnet50_state):
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(arniqa_dir))
    default = load_encoder("arniqa", input_policy="five_crop")
    assert default.key == "arniqa_five_crop"
    assert five_crop_boxes(500, 300, 224) == [(38, 138), (0, 0), (76, 0), (0, 276), (76, 276)]
    out = default.transform()(_photo("coffee", (300, 260)))  # half 150x130: zero-padded crops
    assert out["inputs"]["full"].shape == (5, 3, 224, 224) and "zero-padded" in out["note"]
    centre_half = out["inputs"]["half"][0]
    assert centre_half[:, :47].sum() == 0 and centre_half[:, 47:177, 37:187].float().mean() > 0
    # the forward pass, on 64-px crops to keep the test fast
    enc = load_encoder("arniqa", input_policy="five_crop", crop_size=64)
    img = _photo("coffee", (150, 100))
    out = enc.transform()(img)
    with torch.inference_mode():
        emb = enc.encode(_batch(enc, [img]))["embedding"][0]
        trunk = _trunk(random_resnet50_state)
        views = []
        for scale in (out["inputs"]["full"], out["inputs"]["half"]):
            x = (scale.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / \
                torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
            views.append(torch.nn.functional.normalize(trunk(x).flatten(1)))
        ref = torch.cat(views, dim=1).mean(0)
    torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-5)
    corners = img.crop((150 - 64, 100 - 64, 150, 100))  # bottom-right crop of the full scale
    assert torch.equal(out["inputs"]["full"][4],
                       torchvision.transforms.functional.pil_to_tensor(corners))


def test_arniqa_never_silently_initialises_randomly(weights_env, random_resnet50_state):
    with pytest.raises(OfflineWeightsError, match=r"'ARNIQA.pth' not found.*miccunifi/ARNIQA"):
        load_encoder("arniqa")
    _save_arniqa(weights_env, random_resnet50_state, drop="model.7.2.bn3.running_var")
    with pytest.raises(OfflineWeightsError, match=r"1 missing key.*7.2.bn3.running_var"):
        load_encoder("arniqa")
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights_env / "ARNIQA.pth")
    with pytest.raises(OfflineWeightsError, match="no 'model.'-prefixed keys"):
        load_encoder("arniqa")
    # files that failed to load were not recorded; the first one that loads is
    store = weights_env / ".qd_sha256.json"
    assert not store.exists()
    _save_arniqa(weights_env, random_resnet50_state)
    enc = load_encoder("arniqa")
    recorded = json.loads(store.read_text())["ARNIQA.pth"]
    assert recorded["sha256"] == enc.weights_records[0].sha256


# -- CLIP and LIQE -------------------------------------------------------------------------------
def test_clip_module_reproduces_openai_vit_b_32_key_layout():
    keys = clip_state_dict_keys(CLIPConfig())
    assert len(keys) == 302
    assert sum(int(np.prod(s)) for s in keys.values()) == 151_277_313  # CLIP ViT-B/32
    assert keys["visual.conv1.weight"] == (768, 3, 32, 32)
    assert keys["visual.positional_embedding"] == (50, 768)
    assert keys["visual.proj"] == (768, 512)
    assert keys["visual.transformer.resblocks.11.attn.in_proj_weight"] == (2304, 768)
    assert keys["visual.transformer.resblocks.0.mlp.c_fc.weight"] == (3072, 768)
    assert keys["token_embedding.weight"] == (49408, 512)
    assert keys["transformer.resblocks.11.attn.out_proj.weight"] == (512, 512)
    assert keys["text_projection"] == (512, 512) and keys["logit_scale"] == ()
    assert "visual.conv1.bias" not in keys


_MERGES = ["p h", "o t", "ph ot", "phot o</w>", "o f</w>"]


def _write_vocab(path, merges=_MERGES):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(["#version: 0.2"] + merges) + "\n")
    return path


def test_clip_tokenizer_applies_bpe_merges_by_rank(tmp_path):
    tok = CLIPTokenizer(_write_vocab(tmp_path / "vocab.txt.gz"))
    # base bytes in CLIP's order ('a' is 64, with </w> 256 + 64), merges from 512, then
    # <|startoftext|> and <|endoftext|>
    assert tok.vocab_size == 519 and (tok.sot, tok.eot) == (517, 518)
    assert tok.encode("A  Photo of a cat") == [320, 515, 516, 320, 66, 64, 339]
    ids = tok(["a photo"], context_length=6)
    assert ids.tolist() == [[517, 320, 515, 518, 0, 0]]
    with pytest.raises(ValueError, match="tokens"):
        tok(["a photo of a cat"], context_length=4)


def test_clip_tokenizer_matches_openai_ids_for_a_liqe_prompt():
    from qd_lib.paths import weights_dir

    vocab = weights_dir() / "bpe_simple_vocab_16e6.txt.gz"
    if not vocab.is_file():
        pytest.skip("OpenAI's CLIP vocabulary is not in QD_WEIGHTS_DIR")
    ids = CLIPTokenizer(vocab)([joint_prompts()[0]])[0]
    # reference ids from OpenAI's tokenizer (as shipped in open_clip)
    assert ids[:22].tolist() == [49406, 320, 1125, 539, 320, 4668, 593, 73, 11207, 273, 271,
                                 271, 271, 25638, 30249, 267, 1448, 533, 539, 2103, 3027, 49407]


TINY_CLIP = CLIPConfig(embed_dim=32, image_resolution=224, vision_layers=1, vision_width=64,
                       vision_patch_size=32, context_length=77, vocab_size=600,
                       transformer_width=64, transformer_layers=1)


@pytest.fixture(scope="module")
def tiny_clip_state():
    torch.manual_seed(1)
    model = CLIP(TINY_CLIP)
    state = {k: torch.randn_like(v) * 0.05 for k, v in model.state_dict().items()}
    state["logit_scale"] = torch.tensor(4.6052)
    return state


def test_liqe_loads_a_pyiqa_layout_checkpoint_and_returns_probabilities(
        weights_env, tiny_clip_state):
    torch.save({"params": {f"clip_model.{k}": v for k, v in tiny_clip_state.items()}},
               weights_env / "liqe_mix.pt")
    vocab = _write_vocab(weights_env / "vocab.txt.gz")
    enc = load_encoder("liqe", vocab=vocab)
    assert enc.outputs == {"embedding": 32, "quality5": 5, "joint495": 495}
    assert [w.role for w in enc.weights_records] == ["checkpoint", "vocab"]
    assert len(joint_prompts()) == 495 == len(QUALITIES) * len(SCENES) * len(DISTORTIONS)
    images = [_photo("chelsea", (300, 260)), _photo("rocket", (260, 300))]
    with torch.inference_mode():
        out = enc.encode(_batch(enc, images))
        # reference: the same CLIP, text features from its text tower and our tokenizer
        model = CLIP(TINY_CLIP)
        model.load_state_dict(tiny_clip_state)
        text = torch.nn.functional.normalize(
            model.encode_text(CLIPTokenizer(vocab)(joint_prompts())), dim=-1)
        patches = enc.transform()(images[0])["inputs"]["patches"]
        x = (patches.float() / 255 - torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(
            3, 1, 1)) / torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
        feats = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        joint = (100.0 * feats @ text.t()).mean(0).softmax(-1)
    torch.testing.assert_close(out["embedding"][0], feats.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["joint495"][0], joint, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(out["quality5"], out["joint495"].view(2, 5, 9, 11).sum((2, 3)))
    assert torch.allclose(out["quality5"].sum(1), torch.ones(2), atol=1e-5)
    # precomputed class embeddings give the same outputs without a tokenizer
    given = load_encoder("liqe", text_features=text)
    assert given.weights_records[-1].role == "text_features"
    with torch.inference_mode():
        again = given.encode(_batch(given, images))
    torch.testing.assert_close(again["joint495"], out["joint495"], rtol=1e-4, atol=1e-6)


def test_liqe_fills_missing_clip_keys_from_vit_b_32_or_names_it(weights_env, tiny_clip_state):
    with pytest.raises(OfflineWeightsError, match=r"'liqe_mix.pt' not found.*zwx8981"):
        load_encoder("liqe")
    vision_only = {k: v for k, v in tiny_clip_state.items() if k.startswith("visual.")}
    torch.save(vision_only, weights_env / "liqe_mix.pt")  # official layout, text tower absent
    text = torch.nn.functional.normalize(torch.randn(495, 32), dim=-1)
    with pytest.raises(OfflineWeightsError, match=r"'ViT-B-32.pt' not found.*40d365715913"):
        load_encoder("liqe", text_features=text)
    torch.save(tiny_clip_state, weights_env / "clip_base.pt")
    enc = load_encoder("liqe", text_features=text, clip_checkpoint=weights_env / "clip_base.pt")
    assert [w.role for w in enc.weights_records] == ["checkpoint", "clip_checkpoint",
                                                      "text_features"]
    with pytest.raises(ValueError, match=r"'text_features' parameter must have shape \(495, 32\)"):
        load_encoder("liqe", text_features=text[:5],
                     clip_checkpoint=weights_env / "clip_base.pt")


def test_liqe_patch_sampling_has_no_batch_size_one_bug():
    from qd_lib.encoders.liqe import LIQEPreprocess

    pre = LIQEPreprocess()
    img = _photo("coffee", (480, 352))  # 9 x 5 = 45 patches at stride 32 -> every 3rd
    assert patch_indices(45, 15) == list(range(0, 45, 3))
    assert patch_indices(4, 15) == [0, 1, 2, 3]
    out = pre(img)
    patches = out["inputs"]["patches"]
    assert patches.shape == (15, 3, 224, 224) and out["note"] is None
    full = torchvision.transforms.functional.pil_to_tensor(img)
    for j, i in enumerate(patch_indices(45, 15)):
        row, col = divmod(i, 9)
        assert torch.equal(patches[j], full[:, 32 * row:32 * row + 224, 32 * col:32 * col + 224])
    assert len({p.sum().item() for p in patches}) == 15  # all different
    small = pre(_photo("coffee", (150, 120)))
    # 150x120 -> 280x224: two patches
    assert small["inputs"]["patches"].shape == (2, 3, 224, 224) and "upsampled" in small["note"]
    big = pre(_photo("coffee", (1000, 800)))  # AdaptiveResize(768): 960 x 768
    assert big["inputs"]["patches"].shape == (15, 3, 224, 224)


# -- NSS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.6, 1.0, 2.0, 3.0])
def test_ggd_and_aggd_fits_recover_known_parameters(alpha):
    rng = np.random.default_rng(0)
    n = 200_000
    mag = rng.gamma(1 / alpha, 1.0, n) ** (1 / alpha)
    x = mag * rng.choice([-1.0, 1.0], n)
    a, var = ggd_fit(torch.tensor(x, dtype=torch.float32)[None])
    assert a.item() == pytest.approx(alpha, rel=0.03)
    assert var.item() == pytest.approx(np.mean(x ** 2), rel=1e-4)
    left, right = 1.0, 2.0  # AGGD: P(x < 0) = left / (left + right)
    neg = rng.random(n) < left / (left + right)
    y = np.where(neg, -left * mag, right * mag)
    a, eta, var_l, var_r = aggd_fit(torch.tensor(y, dtype=torch.float32)[None])
    assert a.item() == pytest.approx(alpha, rel=0.03)
    assert eta.item() == pytest.approx(y.mean(), rel=0.02)
    assert var_r.item() / var_l.item() == pytest.approx(4.0, rel=0.03)


def test_nss_is_weight_free_per_image_and_refuses_tiny_images():
    enc = load_encoder("nss")
    assert enc.outputs == {"embedding": 81} and len(feature_names()) == 81
    assert enc.weights_records == [] and not enc.supports_amp and enc.cpu_heavy_transform
    images = [_photo("chelsea", (120, 96)), _photo("rocket", (120, 96)),
              _photo("coffee", (64, 80))]
    threads = torch.get_num_threads()
    per_image = torch.stack([enc.transform()(img)["inputs"]["features"] for img in images])
    assert torch.get_num_threads() == threads  # single_thread() restores the setting
    batch = enc.features(torch.stack([torchvision.transforms.functional.pil_to_tensor(img)
                                      for img in images[:2]]))
    torch.testing.assert_close(batch, per_image[:2], rtol=1e-4, atol=1e-5)
    assert torch.isfinite(per_image).all() and not torch.equal(per_image[0], per_image[1])
    with pytest.raises(ImageTooSmallError, match="20x16 px"):
        enc.transform()(_photo("coffee", (20, 16)))


def test_nss_separates_distortion_levels_on_the_proxy_benchmark(tiny_bench):
    enc = load_encoder("nss")
    table = tiny_bench.manifest.table
    with torch.inference_mode():
        X = torch.cat([enc.encode(_batch(enc, [Image.open(tiny_bench.root / r).convert("RGB")
                                               for r in table["relpath"][i:i + 40]]))[
            "embedding"] for i in range(0, len(table), 40)]).double().numpy()
    mos, group = table["mos"].to_numpy(), table["group"].to_numpy()
    # 1. ridge regression, leave one reference out: SRCC on each held-out reference
    srcc = []
    for ref in np.unique(group):
        train, test = group != ref, group == ref
        mu, sd = X[train].mean(0), X[train].std(0) + 1e-8
        A, B = (X[train] - mu) / sd, (X[test] - mu) / sd
        w = np.linalg.solve(A.T @ A + 100.0 * np.eye(A.shape[1]),
                            A.T @ (mos[train] - mos[train].mean()))
        srcc.append(spearmanr(B @ w, mos[test])[0])
    assert np.mean(srcc) > 0.7 and min(srcc) > 0.55, srcc
    # 2. the distance from level 1 grows with the level, for every reference and distortion
    Z = (X - X.mean(0)) / (X.std(0) + 1e-8)
    rho = []
    for _, sub in table.groupby(["group", "distortion"]):
        sub = sub.sort_values("level")
        idx = sub.index.to_numpy()
        rho.append(spearmanr(sub["level"], np.linalg.norm(Z[idx] - Z[idx[0]], axis=1))[0])
    assert np.mean(rho) > 0.9 and min(rho) > 0.5, rho
