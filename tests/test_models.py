"""IQA models: registry, official key layouts (strict loads), architecture properties."""
import re

import numpy as np
import pytest
import torch

from qd_lib.models import (
    available_configs,
    available_models,
    build_model,
    count_parameters,
    get_config,
    load_official_checkpoint,
)
from qd_lib.models.maniqa import MANIQA, TABlock
from qd_lib.models.musiq import collate_patches, hse_index, multiscale_patches
from qd_lib.training.pipelines import ImagePipeline, crop_positions
from qd_lib.utils.errors import OfflineWeightsError, UnknownNameError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the official layouts, written from the official code's module structure ----------------------
def official_maniqa_layout(vit_depth=12, dim=768, grid=28, d1=768, window=4, heads=4, mlp=768):
    """Key → shape of IIGROUP/MANIQA's MANIQA(embed_dim=768, ...) state dict (timm ViT-B/8)."""
    n = grid * grid
    keys = {"vit.cls_token": (1, 1, dim), "vit.pos_embed": (1, n + 1, dim),
            "vit.patch_embed.proj.weight": (dim, 3, 8, 8), "vit.patch_embed.proj.bias": (dim,),
            "vit.norm.weight": (dim,), "vit.norm.bias": (dim,),
            "vit.head.weight": (1000, dim), "vit.head.bias": (1000,)}
    for b in range(vit_depth):
        p = f"vit.blocks.{b}."
        keys.update({p + "norm1.weight": (dim,), p + "norm1.bias": (dim,),
                     p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
                     p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                     p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
                     p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,),
                     p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)})
    for stage, width, conv_in in ((1, d1, 4 * dim), (2, d1 // 2, d1)):
        for t in range(2):
            for proj in ("c_q", "c_k", "c_v"):
                keys[f"tablock{stage}.{t}.{proj}.weight"] = (n, n)
                keys[f"tablock{stage}.{t}.{proj}.bias"] = (n,)
        keys[f"conv{stage}.weight"] = (width, conv_in, 1, 1)
        keys[f"conv{stage}.bias"] = (width,)
        s = f"swintransformer{stage}."
        keys[s + "downsample.weight"] = (width, width, 3, 3)
        keys[s + "downsample.bias"] = (width,)
        for layer in range(2):
            lp = f"{s}layers.{layer}."
            keys[lp + "conv.weight"] = (width, width, 3, 3)
            keys[lp + "conv.bias"] = (width,)
            for blk in range(2):
                bp = f"{lp}blocks.{blk}."
                keys.update({
                    bp + "norm1.weight": (width,), bp + "norm1.bias": (width,),
                    bp + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
                    bp + "attn.relative_position_index": (window ** 2, window ** 2),
                    bp + "attn.qkv.weight": (3 * width, width), bp + "attn.qkv.bias": (3 * width,),
                    bp + "attn.proj.weight": (width, width), bp + "attn.proj.bias": (width,),
                    bp + "norm2.weight": (width,), bp + "norm2.bias": (width,),
                    bp + "mlp.fc1.weight": (mlp, width), bp + "mlp.fc1.bias": (mlp,),
                    bp + "mlp.fc2.weight": (width, mlp), bp + "mlp.fc2.bias": (width,)})
                if blk == 1:  # shifted block: the attention mask is a persistent buffer
                    keys[bp + "attn_mask"] = ((grid // window) ** 2, window ** 2, window ** 2)
    d2 = d1 // 2
    for head in ("fc_score", "fc_weight"):
        keys.update({f"{head}.0.weight": (d2, d2), f"{head}.0.bias": (d2,),
                     f"{head}.3.weight": (1, d2), f"{head}.3.bias": (1,)})
    return keys


def official_musiq_layout(layers=14, dim=384, mlp=1152, grid=10, scales=3, classes=1):
    """Key → shape of Google's MUSIQ as converted by pyiqa (musiq_*_ckpt-*.pth)."""
    keys = {"conv_root.weight": (64, 3, 7, 7), "gn_root.weight": (64,), "gn_root.bias": (64,),
            "embedding.weight": (dim, 256 * 8 * 8), "embedding.bias": (dim,)}
    for conv, shape in (("conv1", (64, 64, 1, 1)), ("conv2", (64, 64, 3, 3)),
                        ("conv3", (256, 64, 1, 1)), ("conv_proj", (256, 64, 1, 1))):
        keys[f"block1.{conv}.weight"] = shape
    for gn, width in (("gn1", 64), ("gn2", 64), ("gn3", 256), ("gn_proj", 256)):
        keys[f"block1.{gn}.weight"] = (width,)
        keys[f"block1.{gn}.bias"] = (width,)
    t = "transformer_encoder."
    keys.update({t + "posembed_input.position_emb": (1, grid * grid, dim),
                 t + "scaleembed_input.scale_emb": (scales, dim), t + "cls": (1, 1, dim),
                 t + "encoder_norm.weight": (dim,), t + "encoder_norm.bias": (dim,)})
    for i in range(layers):
        p = f"{t}transformer.encoderblock_{i}."
        for norm in ("norm1", "norm2"):
            keys[p + norm + ".weight"] = (dim,)
            keys[p + norm + ".bias"] = (dim,)
        for proj in ("query", "key", "value", "out"):
            keys[f"{p}attention.{proj}.weight"] = (dim, dim)
            keys[f"{p}attention.{proj}.bias"] = (dim,)
        keys.update({p + "mlp.fc1.weight": (mlp, dim), p + "mlp.fc1.bias": (mlp,),
                     p + "mlp.fc2.weight": (dim, mlp), p + "mlp.fc2.bias": (dim,)})
    keys["head.weight"] = (classes, dim)
    keys["head.bias"] = (classes,)
    return keys


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _random_state(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.02 for k, shape in layout.items()}


@pytest.fixture(scope="module")
def maniqa_paper():
    return build_model("maniqa", "paper", pretrained=False)


# -- registry --------------------------------------------------------------------------------------
def test_registry_lists_models_and_configs():
    assert available_models() == ["basecnn", "maniqa", "musiq"]
    assert {"paper", "tiny", "small"} <= set(available_configs("maniqa"))
    assert {"paper", "tiny", "small", "official"} <= set(available_configs("musiq"))
    assert {"paper", "tiny"} <= set(available_configs("basecnn"))


@pytest.mark.parametrize("call, suggestion", [
    (lambda: build_model("maniq", "tiny"), "maniqa"),
    (lambda: get_config("musiq", "tinny"), "tiny"),
    (lambda: available_configs("basecn"), "basecnn"),
    (lambda: get_config("maniqa", "tiny", epoch=3), "epochs"),
])
def test_unknown_names_raise_with_a_suggestion(call, suggestion):
    with pytest.raises(UnknownNameError, match=rf"Did you mean \[.*'{suggestion}'"):
        call()


def test_paper_recipes_match_the_supplement():
    maniqa = get_config("maniqa", "paper")
    r = maniqa.recipe
    assert (r.optimizer, r.lr, r.weight_decay, r.batch_size, r.epochs, r.scheduler, r.loss) == (
        "adam", 1e-5, 1e-5, 8, 25, "cosine", "mse")
    assert (maniqa.inputs.resize, maniqa.inputs.flip_p) == (224, 0.7)
    assert maniqa.arch["scale"] == 0.8 and tuple(maniqa.arch["tap_blocks"]) == (6, 7, 8, 9)
    assert maniqa.pretrained == "vit:augreg_in21k_ft_in1k"
    # the official quirks are named options, off by default, on in the 'official' config
    assert (r.label_norm, r.scheduler_step, r.epoch_rule, r.eval_drop_last) == (
        "fixed_range", "epoch", "final", False)
    quirks = get_config("maniqa", "official").recipe
    assert (quirks.label_norm, quirks.scheduler_step, quirks.t_max, quirks.epoch_rule,
            quirks.eval_drop_last) == ("split_minmax", "iter", 50, "best_on_test", True)
    musiq = get_config("musiq", "paper")
    m = musiq.recipe
    assert (m.optimizer, m.batch_size, m.scheduler, m.scheduler_step, m.t_max) == (
        "sgd", 2, "cosine", "iter", 30000)
    assert musiq.arch["hidden_size"] == 384 and musiq.arch["num_heads"] == 6
    assert musiq.arch["mlp_dim"] == 1152 and musiq.arch["ln_eps"] == 1e-12
    assert musiq.arch["spatial_pos_grid_size"] == 10 and musiq.arch["dropout_rate"] == 0.1
    koniq, _ = m.for_dataset("KonIQ-10k")
    agiqa, applied = m.for_dataset("agiqa3k")
    assert (koniq.lr, koniq.epochs) == (1e-4, 30) and (agiqa.lr, agiqa.epochs) == (1e-5, 10)
    proxy, applied = m.for_dataset("proxy-tiny")
    assert (proxy.lr, proxy.epochs) == (1e-4, 30) and "assumption" in applied["note"]


def test_overrides_reach_recipe_inputs_and_arch():
    cfg = get_config("maniqa", "tiny", epochs=5, eval_crops="center", **{"arch.scale": 0.13})
    assert cfg.recipe.epochs == 5 and cfg.inputs.eval_crops == "center"
    assert cfg.arch["scale"] == 0.13
    assert get_config("maniqa", "tiny").recipe.epochs == 2  # the registry is not mutated
    assert get_config("maniqa", "tiny", lr="1e-4").recipe.lr == 1e-4  # YAML 1.1 gives a str
    with pytest.raises(ValueError, match="'lr' parameter must be a number"):
        get_config("maniqa", "tiny", lr="fast")
    with pytest.raises(ValueError, match="best_on_test"):
        get_config("maniqa", "tiny", epoch_rule="best_on_test", eval_every=0)


# -- MANIQA ----------------------------------------------------------------------------------------
def test_maniqa_paper_has_the_official_key_layout_and_size(maniqa_paper):
    assert _shapes(maniqa_paper) == official_maniqa_layout()
    assert 134e6 < count_parameters(maniqa_paper) < 137e6  # "about 135 M"


def test_an_official_maniqa_checkpoint_loads_strictly(maniqa_paper, tmp_path):
    layout = official_maniqa_layout()
    state = _random_state(layout)
    for key in [k for k in state if k.endswith("relative_position_index")]:
        state[key] = maniqa_paper.state_dict()[key].clone()
    for key in [k for k in state if k.endswith("attn_mask")]:
        state[key] = maniqa_paper.state_dict()[key].clone()
    path = tmp_path / "ckpt_koniq10k.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # DataParallel prefix
    load_official_checkpoint(maniqa_paper, path)
    loaded = maniqa_paper.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in layout)
    broken = dict(state)
    broken.pop("fc_score.3.bias")
    with pytest.raises(RuntimeError, match="fc_score.3.bias"):
        load_official_checkpoint(maniqa_paper, {"params": broken})


def test_maniqa_tiny_keys_follow_the_same_naming():
    def pattern(key):
        return re.sub(r"\.\d+\.", ".#.", key)

    tiny = build_model("maniqa", "tiny")
    full = official_maniqa_layout()
    assert {pattern(k) for k in _shapes(tiny)} == {pattern(k) for k in full}


def test_maniqa_head_is_a_patch_weighted_mean():
    torch.manual_seed(0)
    model = build_model("maniqa", "tiny").eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        s, w = model.patch_outputs(x)
    assert out.shape == (3,)
    assert (s >= 0).all() and (w > 0).all() and (w < 1).all()
    assert torch.allclose(out, (s * w).sum(1) / w.sum(1), atol=1e-6)
    assert (out >= s.min(1).values - 1e-6).all() and (out <= s.max(1).values + 1e-6).all()


def test_maniqa_checkpoint_round_trip_gives_equal_outputs(tmp_path):
    torch.manual_seed(1)
    a = build_model("maniqa", "tiny").eval()
    torch.manual_seed(2)
    b = build_model("maniqa", "tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        torch.save({"params": a.state_dict()}, tmp_path / "a.pth")  # pyiqa's wrapping
        load_official_checkpoint(b, tmp_path / "a.pth")
        assert torch.equal(a(x), b(x))
    torch.save(a, tmp_path / "whole.pt")  # a pickled module, as early official releases
    with pytest.raises(TypeError, match="not a plain state dict"):
        load_official_checkpoint(b, tmp_path / "whole.pt")
    with pytest.raises(OfflineWeightsError, match="not found"):
        load_official_checkpoint(b, tmp_path / "missing.pt")


def test_tab_keeps_the_official_transpose_then_reshape():
    torch.manual_seed(0)
    tab = TABlock(6, drop=0.0).eval()
    x = torch.randn(2, 4, 6)
    q, k, v = tab.c_q(x), tab.c_k(x), tab.c_v(x)
    attn = torch.softmax(q @ k.transpose(-2, -1) * 6 ** -0.5, dim=-1)
    expected = (attn @ v).transpose(1, 2).reshape(2, 4, 6) + x
    assert torch.allclose(tab(x), expected)
    assert not torch.allclose(tab(x), attn @ v + x)  # not the clean inverse


def test_maniqa_crop_average_equals_mean_of_crop_scores():
    torch.manual_seed(0)
    model = build_model("maniqa", "tiny").eval()
    pipeline = ImagePipeline(model.config.inputs)  # resize 72, crop 64, five_point
    images = torch.randint(0, 256, (2, 3, 72, 72), dtype=torch.uint8)
    batch = torch.stack([pipeline.eval_view(img) for img in images])
    assert batch.shape == (2, 5, 3, 64, 64)
    with torch.no_grad():
        averaged = pipeline.predict(model, batch)
        per_crop = torch.stack([model(batch[:, i]) for i in range(5)], dim=1)
    assert torch.allclose(averaged, per_crop.mean(dim=1), atol=1e-6)
    assert crop_positions(72, 72, (64, 64), "five_point") == [
        (0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    assert crop_positions(64, 64, (64, 64), "five_point") == [(0, 0)]  # duplicates count once
    assert len(crop_positions(100, 100, (64, 64), "grid:9")) == 9


@pytest.mark.parametrize("kwargs, message", [
    (dict(window_size=3), "must divide the token grid"),
    (dict(tap_blocks=(0, 7)), r"must lie in \[0, 4\)"),
    (dict(num_heads=(3, 3)), "divisible by every entry"),
    (dict(backbone="resnet"), "'backbone' parameter"),
])
def test_maniqa_constructor_checks(kwargs, message):
    base = dict(get_config("maniqa", "tiny").arch)
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MANIQA(**base)


def test_small_configs_use_the_offline_mobilenet_weights():
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    reference = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).features
    maniqa = build_model("maniqa", "small").eval()
    assert torch.equal(maniqa.backbone.features[3].conv[0][0].weight,
                       reference[3].conv[0][0].weight)
    assert maniqa.grid == 14 and maniqa.weights_loaded == ["mobilenet_weights:IMAGENET1K_V1"]
    with torch.no_grad():
        assert maniqa(torch.zeros(1, 3, 224, 224)).shape == (1,)
    musiq = build_model("musiq", "small").eval()
    assert torch.equal(musiq.patch_encoder.features[1].conv[0][0].weight,
                       reference[1].conv[0][0].weight)
    random_init = build_model("musiq", "small", pretrained=False)
    assert not torch.equal(random_init.patch_encoder.features[1].conv[0][0].weight,
                           reference[1].conv[0][0].weight)


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(OfflineWeightsError, match="musiq_imagenet_pretrain-51d9b0a5.pth"):
        build_model("musiq", "paper")
    from qd_lib.models.backbones import vit_weights_file

    with pytest.raises(OfflineWeightsError, match="augreg_in21k_ft_in1k.*pretrained=False"):
        vit_weights_file()


# -- MUSIQ -----------------------------------------------------------------------------------------
def test_hash_spatial_index_follows_floor_rule():
    assert hse_index(3, 5, 10).tolist() == [r * 10 + c for r in (0, 3, 6) for c in (0, 2, 4, 6, 8)]
    big = hse_index(20, 30, 10).reshape(20, 30)
    assert big[7, 29] == (7 * 10 // 20) * 10 + 29 * 10 // 30
    assert hse_index(10, 10, 10).tolist() == list(range(100))


def test_multiscale_patches_layout():
    image = torch.rand(3, 48, 36) * 2 - 1
    seq = multiscale_patches(image, patch_size=8, longer_side_lengths=(32, 16),
                             max_seq_len_from_original_res=-1, hse_grid_size=4)
    # scale 0: 16 → 16×12: 2×2 of 4; scale 1: 32 → 32×24: 4×3 = 12 padded to 16;
    # native 48×36: 6×5 (SAME padding) = 30
    assert seq.shape == (4 + 16 + 30, 3 * 64 + 3)
    scale, mask = seq[:, -2], seq[:, -1]
    assert mask.tolist() == [1] * 4 + [1] * 12 + [0] * 4 + [1] * 30
    assert scale[mask > 0].tolist() == [0] * 4 + [1] * 12 + [2] * 30
    assert not seq[16:20].any()  # padding rows are all zero (masked)
    native = seq[20:, :-3].reshape(30, 3, 8, 8)
    # channel-major pixels, row-major patches; SAME padding puts 2 of the 4 pad columns left
    assert torch.equal(native[0][:, :, 2:], image[:, :8, :6]) and not native[0][:, :, :2].any()
    assert torch.equal(native[1], image[:, :8, 6:14])
    assert torch.equal(seq[20:, -3].long(), torch.as_tensor(hse_index(6, 5, 4)))


def test_musiq_ignores_padding_and_mixes_aspect_ratios():
    torch.manual_seed(0)
    model = build_model("musiq", "tiny").eval()
    opts = dict(patch_size=8, longer_side_lengths=(16, 32), hse_grid_size=4)
    a = multiscale_patches(torch.rand(3, 48, 36) * 2 - 1, **opts)
    b = multiscale_patches(torch.rand(3, 30, 48) * 2 - 1, **opts)
    with torch.no_grad():
        alone = torch.cat([model(a[None]), model(b[None])])
        padded = model(torch.cat([a, torch.zeros(9, a.shape[1])])[None])
        batch = model(collate_patches([a, b]))
    assert a.shape[0] != b.shape[0]
    assert torch.allclose(padded, alone[:1], atol=1e-6)
    assert torch.allclose(batch, alone, atol=1e-6)
    assert batch.shape == (2,)


def test_musiq_official_layout_and_checkpoints_load_strictly():
    model = build_model("musiq", "official", pretrained=False)
    layout = official_musiq_layout()
    assert _shapes(model) == layout
    assert 26.5e6 < count_parameters(model) < 27.5e6  # "about 27 M"
    koniq = _random_state(layout, seed=1)
    load_official_checkpoint(model, {"params": koniq})
    assert torch.equal(model.state_dict()["transformer_encoder.cls"],
                       koniq["transformer_encoder.cls"])
    # ImageNet pre-training: a 1000-class head, kept out with skip_head
    imagenet = _random_state(official_musiq_layout(classes=1000), seed=2)
    head_before = model.head.weight.clone()
    load_official_checkpoint(model, imagenet, skip_head=True)
    assert torch.equal(model.head.weight, head_before)
    assert torch.equal(model.embedding.weight, imagenet["embedding.weight"])
    # AVA: Linear + Softmax stored as head.0.*; the score is the expected class 1..10
    ava_model = build_model("musiq", "official", pretrained=False, **{"arch.num_classes": 10})
    ava = _random_state(official_musiq_layout(classes=10), seed=3)
    ava["head.0.weight"], ava["head.0.bias"] = ava.pop("head.weight"), ava.pop("head.bias")
    load_official_checkpoint(ava_model, ava)
    assert torch.equal(ava_model.head.weight, ava["head.0.weight"])


def _musiq_imagenet_release(model, seed=5):
    """A state dict in the layout of pyiqa's ``musiq_imagenet_pretrain-51d9b0a5.pth``.

    pyiqa's ``scripts/convert_musiq_to_pth.py`` (IQA-PyTorch @01ae427) saves, bare (no
    ``params`` key, no ``module.`` prefix), the state dict of a 1-output ``MUSIQ`` (so an
    untrained ``head.*`` of shape (1, D)) plus Google's ImageNet classifier as
    ``imagenet_head.*`` (1000 classes).
    """
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    dim = model.head.in_features
    state["imagenet_head.weight"] = torch.randn(1000, dim, generator=g)
    state["imagenet_head.bias"] = torch.randn(1000, generator=g)
    return state


@pytest.mark.parametrize("wrap", [
    lambda s: s,  # the released file
    lambda s: {"params": s},  # pyiqa's training checkpoints
    lambda s: {"params_ema": s},  # pyiqa/BasicSR EMA checkpoints
    lambda s: {"params": {f"module.{k}": v for k, v in s.items()}},  # DataParallel
], ids=["bare", "params", "params_ema", "module"])
def test_skip_head_drops_every_musiq_classifier_head(tmp_path, wrap):
    torch.manual_seed(0)
    model = build_model("musiq", "tiny")
    own_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    release = _musiq_imagenet_release(model)
    torch.save(wrap(release), tmp_path / "musiq_imagenet_pretrain.pth")
    load_official_checkpoint(model, tmp_path / "musiq_imagenet_pretrain.pth", skip_head=True)
    loaded = model.state_dict()
    # the model keeps its own head: neither the file's head.* nor its imagenet_head.* is used
    assert all(torch.equal(loaded[k], own_head[k]) for k in own_head)
    assert "imagenet_head.weight" not in loaded
    trunk = [k for k in loaded if not k.startswith("head.")]
    assert trunk and all(torch.equal(loaded[k], release[k]) for k in trunk)
    with pytest.raises(RuntimeError, match="imagenet_head"):  # without skip_head: strict
        load_official_checkpoint(model, tmp_path / "musiq_imagenet_pretrain.pth")


def test_musiq_paper_starts_from_the_released_imagenet_checkpoint(tmp_path, monkeypatch):
    release = _musiq_imagenet_release(build_model("musiq", "official", pretrained=False))
    torch.save(release, tmp_path / "musiq_imagenet_pretrain-51d9b0a5.pth")
    monkeypatch.setenv("QD_WEIGHTS_DIR", str(tmp_path))
    torch.manual_seed(3)
    model = build_model("musiq", "paper")
    torch.manual_seed(3)
    fresh = build_model("musiq", "paper", pretrained=False)
    assert torch.equal(model.head.weight, fresh.head.weight)  # its own initialisation
    assert torch.equal(model.embedding.weight, release["embedding.weight"])
    assert any("musiq_imagenet_pretrain-51d9b0a5.pth" in w for w in model.weights_loaded)
    (tmp_path / "musiq_imagenet_pretrain-51d9b0a5.pth").unlink()  # 109 MB


def test_skip_head_keeps_maniqa_heads():
    torch.manual_seed(1)
    source = build_model("maniqa", "tiny").state_dict()  # layout of ckpt_koniq10k.pt (bare)
    torch.manual_seed(2)
    model = build_model("maniqa", "tiny")
    heads = ("fc_score.", "fc_weight.", "vit.head.")
    own = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(heads)}
    assert {k.split(".")[0] for k in own} == {"fc_score", "fc_weight", "vit"}
    load_official_checkpoint(model, source, skip_head=True)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], own[k]) for k in own)
    assert torch.equal(loaded["conv1.weight"], source["conv1.weight"])
    load_official_checkpoint(model, source)  # without skip_head everything is loaded
    assert torch.equal(model.state_dict()["fc_score.3.weight"], source["fc_score.3.weight"])
    # both pyiqa wrappers present: 'params' wins, as in pyiqa's loader
    ema = {k: v + 1 for k, v in source.items()}
    load_official_checkpoint(model, {"params_ema": ema, "params": source})
    assert torch.equal(model.state_dict()["conv1.weight"], source["conv1.weight"])
    with pytest.raises(ValueError, match="'skip_head' parameter.*Linear"):
        load_official_checkpoint(torch.nn.Linear(2, 1), torch.nn.Linear(2, 1).state_dict(),
                                 skip_head=True)


# -- BaseCNN ---------------------------------------------------------------------------------------
def test_basecnn_layout_output_and_freezing():
    model = build_model("basecnn", "tiny")
    keys = set(model.state_dict())
    assert {"fc.weight", "fc.bias", "basemodel.conv1.weight", "basemodel.layer4.1.bn2.weight",
            "basemodel.fc.weight"} <= keys
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 56, 56)).shape == (2,)
    model.freeze("finetune")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("basemodel.conv1", "basemodel.bn1", "basemodel.layer1"))
                          for n in frozen)
    model.freeze("head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    assert np.isclose(count_parameters(model) / 1e6, 11.69, atol=0.01)


def test_an_explicit_override_wins_over_per_dataset_recipe_values():
    from qd_lib.models import get_config

    cfg = get_config("musiq", "paper")
    assert cfg.recipe.per_dataset, "the paper recipe has per-dataset values"
    dataset, values = next((k, v) for k, v in cfg.recipe.per_dataset.items()
                           if "epochs" in v and k != "*")
    assert cfg.recipe.for_dataset(dataset)[0].epochs == values["epochs"]
    overridden = get_config("musiq", "paper", epochs=1)
    assert overridden.recipe.for_dataset(dataset)[0].epochs == 1
    if "lr" in values:  # the fields not overridden keep their per-dataset values
        assert overridden.recipe.for_dataset(dataset)[0].lr == values["lr"]
