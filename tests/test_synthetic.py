import numpy as np
import pytest

from qd_lib.data.synthetic import DISTORTIONS, PHOTOS, PRESETS, ProxyConfig, build_proxy_benchmark
from qd_lib.data.synthetic.builder import _reference_list
from qd_lib.data.synthetic.proxy_mos import full_reference_scores, proxy_mos
from qd_lib.data.synthetic.references import crop_image, plan_crops
from qd_lib.utils.errors import UnknownNameError

MINI = ProxyConfig(photos=("astronaut", "camera"), crops_per_photo=1,
                   distortions=("jpeg", "white_noise", "color_diffusion"))


def _n_images(config):
    return sum(config.n_levels * sum(not (r.greyscale and DISTORTIONS[d].color_only)
                                     for d in config.distortions)
               for r in _reference_list(config))


def test_tiny_benchmark_is_a_labelled_proxy_with_both_schemes(tiny_bench):
    m = tiny_bench.manifest
    assert m.info.proxy and "PROXY" in m.info.description
    assert len(m) == _n_images(PRESETS["tiny"]) == 160 <= 200
    assert m.split_schemes == ["content", "paper"]
    counts = m.split_counts()
    assert counts.loc["train", "paper"] == 112  # floor(0.7 × 160)
    train_refs = set(m.subset("content", "train")["group"])
    test_refs = set(m.subset("content", "test")["group"])
    assert train_refs and test_refs and not train_refs & test_refs
    assert m.table["mos"].between(1, 5).all() and m.table["mos"].std() > 0.4
    assert (tiny_bench.root / m.table["relpath"][0]).is_file()
    assert (tiny_bench.root / m.table["ref_relpath"][0]).is_file()


def test_default_preset_meets_the_benchmark_spec():
    config = PRESETS["default"]
    refs = _reference_list(config)
    assert len(refs) >= 24 and {r.photo for r in refs} == {p.name for p in PHOTOS}
    assert len(config.distortions) >= 20 and config.n_levels == 5
    assert _n_images(config) >= 2400
    assert {p.package for p in PHOTOS} == {"scikit-image", "scikit-learn", "matplotlib"}


def test_proxy_mos_falls_with_level_for_every_distortion_type():
    crops = [plan_crops(p, size=192, crops_per_photo=1)[0] for p in PHOTOS
             if p.name in ("astronaut", "coffee")]
    mos = np.zeros((len(DISTORTIONS), 5))
    for k, crop in enumerate(crops):
        ref = crop_image(crop).astype(np.float32) / 255
        images = [d.apply(ref, level, np.random.default_rng([k, t, level]))
                  for t, d in enumerate(DISTORTIONS.values()) for level in range(1, 6)]
        mos += proxy_mos(full_reference_scores(np.stack(images), ref)).reshape(-1, 5)
    mos /= len(crops)
    for name, row in zip(DISTORTIONS, mos):
        assert np.all(np.diff(row) < 0), f"{name}: proxy MOS by level {np.round(row, 3)}"
    assert mos[:, 0].mean() > 3.8 and mos[:, 4].mean() < 2.8


def test_reference_scores_best_and_chroma_only_types_do_nothing_on_grey():
    crop = plan_crops(next(p for p in PHOTOS if p.name == "camera"), size=192,
                      crops_per_photo=1)[0]
    ref = crop_image(crop).astype(np.float32) / 255
    assert proxy_mos(full_reference_scores(ref[None], ref))[0] == pytest.approx(5.0)
    for d in DISTORTIONS.values():
        change = np.abs(d.apply(ref, 5, np.random.default_rng(0)) - ref).max()
        assert (change < 2 / 255) == d.color_only, d.name


def test_build_is_deterministic_parallel_invariant_and_resumable(tmp_path):
    a = build_proxy_benchmark(MINI, output_dir=tmp_path / "a", n_jobs=1)
    assert len(a.manifest) == _n_images(MINI) == 25
    b = build_proxy_benchmark(MINI, output_dir=tmp_path / "b", n_jobs=2)
    assert b.manifest.content_hash == a.manifest.content_hash
    assert (tmp_path / "a/images/P01_02_05.png").read_bytes() == \
        (tmp_path / "b/images/P01_02_05.png").read_bytes()
    # interrupted build: the manifest and one reference's record are gone
    part1 = tmp_path / "b/parts/P01.json"
    stamp = part1.stat().st_mtime_ns
    for name in ("manifest.csv", "build.json", "parts/P02.json"):
        (tmp_path / "b" / name).unlink()
    resumed = build_proxy_benchmark(MINI, output_dir=tmp_path / "b", n_jobs=1)
    assert resumed.manifest.content_hash == a.manifest.content_hash
    assert part1.stat().st_mtime_ns == stamp  # the finished reference was not redone
    cached = build_proxy_benchmark(MINI, output_dir=tmp_path / "b")
    assert cached.manifest.content_hash == a.manifest.content_hash
    other = build_proxy_benchmark(MINI, output_dir=tmp_path / "c", seed=1, n_jobs=1)
    assert other.manifest.content_hash != a.manifest.content_hash


def test_bad_presets_and_configs():
    with pytest.raises(UnknownNameError, match="Did you mean.*tiny"):
        build_proxy_benchmark("tiyn")
    with pytest.raises(UnknownNameError, match="distortion type"):
        build_proxy_benchmark(ProxyConfig(distortions=("blurr",)))
    with pytest.raises(ValueError, match="'crop_size'"):
        build_proxy_benchmark(ProxyConfig(crop_size=64))
    with pytest.raises(ValueError, match="'level'"):
        DISTORTIONS["jpeg"].apply(np.zeros((8, 8, 3), np.float32), 6, np.random.default_rng())
