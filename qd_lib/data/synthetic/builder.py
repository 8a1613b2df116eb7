"""Build the offline proxy IQA benchmark (KADID-style, proxy MOS).

For every reference crop and every distortion type × level, the builder writes the distorted
image as PNG, scores it against its reference with the full-reference ensemble of
:mod:`qd_lib.data.synthetic.proxy_mos`, and finally writes a manifest in the schema every real
dataset uses, with two split schemes:

``paper``
    Random 70/10/20 over images (like the paper's splits, which are not by reference).
``content``
    70/10/20 over reference images, so no content is shared between train and test.

Two modes share this builder. A :class:`ProxyConfig` (the ``tiny``, ``small`` and ``default``
presets) makes the KADID-like grid described above; an
:class:`~qd_lib.data.synthetic.authentic.AuthenticConfig` (the ``authentic`` preset) makes
compound distortions at continuous severities with an uneven, KonIQ/SPAQ-like MOS histogram
(see :mod:`qd_lib.data.synthetic.authentic`).

Work is split by reference over worker processes; each finished reference is recorded under
``parts/``, so an interrupted build resumes where it stopped. The result depends only on the
configuration and the seed (identical manifest hash on rebuild, whatever ``n_jobs``).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from qd_lib.data.manifest import DatasetInfo, Manifest, split_by_groups, split_by_rows
from qd_lib.data.synthetic import authentic
from qd_lib.data.synthetic.authentic import AuthenticConfig
from qd_lib.data.synthetic.distortions import DISTORTIONS
from qd_lib.data.synthetic.proxy_mos import METRICS, MOS_RANGE, full_reference_scores, proxy_mos
from qd_lib.data.synthetic.references import PHOTOS, ReferenceCrop, crop_image, plan_crops
from qd_lib.paths import data_root, display_path
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.io import atomic_write_json, atomic_write_text
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

PROXY_LABEL = "PROXY benchmark: MOS from full-reference metrics, not human ratings"


@dataclass(frozen=True)
class ProxyConfig:
    """What a proxy benchmark is made of.

    Attributes
    ----------
    photos : tuple of str
        Names from :data:`~qd_lib.data.synthetic.references.PHOTOS` (default: all of them).
    crops_per_photo : int
        Reference crops taken from each photo.
    crop_size : int
        Side of the square crops, in pixels (at least 161 for MS-SSIM's five scales).
    distortions : tuple of str
        Names from :data:`~qd_lib.data.synthetic.distortions.DISTORTIONS` (default: all 25).
    n_levels : int
        Levels per distortion type (1–5).
    split_fractions : tuple of float
        Train/val/test fractions of both split schemes.
    """

    photos: tuple[str, ...] = tuple(p.name for p in PHOTOS)
    crops_per_photo: int = 2
    crop_size: int = 192
    distortions: tuple[str, ...] = tuple(DISTORTIONS)
    n_levels: int = 5
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)

    def config_hash(self, seed: int) -> str:
        text = json.dumps({**asdict(self), "seed": seed, "version": 1}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


PRESETS: dict[str, ProxyConfig | AuthenticConfig] = {
    # 4 references × 8 types × 5 levels = 160 images: unit tests and CI.
    "tiny": ProxyConfig(
        photos=("astronaut", "coffee", "china", "camera"), crops_per_photo=1,
        distortions=("gaussian_blur", "motion_blur", "color_quantization", "jpeg2000", "jpeg",
                     "white_noise", "darken", "pixelate")),
    # 12 references, all 25 types: quick experiments (1,440 images).
    "small": ProxyConfig(photos=tuple(p.name for p in PHOTOS[:8]) + ("camera", "coins",
                                                                     "grass", "brick"),
                         crops_per_photo=1),
    # Every bundled photo, up to 2 non-overlapping crops each (33 references), all 25 types
    # (3,945 images; chroma-only types are skipped on the 7 greyscale photos' crops).
    "default": ProxyConfig(),
    # Authentic-distortion style (KonIQ/SPAQ-like): up to 4 crops per photo (58 references),
    # 60 images each (the reference itself, then 1-3 composed types at continuous, mostly mild
    # severities): 3,480 images with many good ones and a long near-pristine tail.
    "authentic": AuthenticConfig(),
}


@dataclass
class ProxyBenchmark:
    """A built proxy benchmark: its manifest and the folder its paths are relative to."""

    manifest: Manifest
    root: Path
    config: ProxyConfig | AuthenticConfig
    seed: int
    build_seconds: float | None = None
    metrics: pd.DataFrame = field(default=None, repr=False)


def default_output_dir(preset: str, seed: int = 0) -> Path:
    """``$QD_DATA_ROOT/proxy-<preset>[-seed<k>]``."""
    return data_root() / (f"proxy-{preset}" + (f"-seed{seed}" if seed else ""))


def resolve_config(preset: str | ProxyConfig | AuthenticConfig
                   ) -> tuple[str, ProxyConfig | AuthenticConfig]:
    """Name and configuration of ``preset`` (a preset name, a :class:`ProxyConfig` or an
    :class:`~qd_lib.data.synthetic.authentic.AuthenticConfig`)."""
    if isinstance(preset, (ProxyConfig, AuthenticConfig)):
        config, name = preset, "custom"
    elif preset in PRESETS:
        config, name = PRESETS[preset], preset
    else:
        raise UnknownNameError("proxy benchmark preset", preset, PRESETS)
    unknown = [p for p in config.photos if p not in {ph.name for ph in PHOTOS}]
    if unknown:
        raise UnknownNameError("photo", unknown[0], [p.name for p in PHOTOS])
    unknown = [d for d in config.distortions if d not in DISTORTIONS]
    if unknown:
        raise UnknownNameError("distortion type", unknown[0], DISTORTIONS)
    check_scalar(config.crops_per_photo, "crops_per_photo", int, min_val=1)
    check_scalar(config.crop_size, "crop_size", int, min_val=161)
    if isinstance(config, AuthenticConfig):
        authentic.check_authentic_config(config)
    else:
        check_scalar(config.n_levels, "n_levels", int, min_val=1, max_val=5)
    return name, config


def _reference_list(config: ProxyConfig | AuthenticConfig) -> list[ReferenceCrop]:
    by_name = {p.name: p for p in PHOTOS}
    return [crop for name in config.photos
            for crop in plan_crops(by_name[name], size=config.crop_size,
                                   crops_per_photo=config.crops_per_photo)]


def _render_reference(task: dict) -> list[dict]:
    """Distort one reference, write its images and score them (runs in a worker process)."""
    import torch

    torch.set_num_threads(task["threads"])
    out_dir = Path(task["out_dir"])
    crop: ReferenceCrop = task["crop"]
    ref_id = task["ref_id"]
    ref = crop_image(crop)
    ref_rel = f"refs/{ref_id}.png"
    Image.fromarray(ref).save(out_dir / ref_rel)
    ref_f = ref.astype(np.float32) / 255.0
    rows, images = [], []
    for type_index, name in task["types"]:
        dist = DISTORTIONS[name]
        if crop.greyscale and dist.color_only:
            continue  # chroma-only distortions leave a greyscale image unchanged
        for level in range(1, task["n_levels"] + 1):
            seq = np.random.SeedSequence([task["seed"], task["ref_index"], type_index, level])
            image = dist.apply(ref_f, level, np.random.default_rng(seq))
            image8 = np.round(image * 255).astype(np.uint8)
            image_id = f"{ref_id}_{type_index:02d}_{level:02d}"
            rel = f"images/{image_id}.png"
            Image.fromarray(image8).save(out_dir / rel)
            images.append(image8.astype(np.float32) / 255.0)  # score what is on disk
            rows.append({"image_id": image_id, "relpath": rel, "group": ref_id,
                         "ref_relpath": ref_rel, "distortion": name, "level": level,
                         "photo": crop.photo, "source_package": crop.package})
    scores = full_reference_scores(np.stack(images), ref_f)
    for i, row in enumerate(rows):
        row.update({f"fr_{m}": round(float(scores[m][i]), 6) for m in METRICS})
    return rows


def build_proxy_benchmark(preset: str | ProxyConfig | AuthenticConfig = "tiny", *,
                          output_dir=None, seed: int = 0, n_jobs: int | None = None,
                          overwrite: bool = False, show_progress: bool | None = None
                          ) -> ProxyBenchmark:
    """Build (or load, if already built) an offline proxy IQA benchmark.

    Parameters
    ----------
    preset : {"tiny", "small", "default", "authentic"}, ProxyConfig or AuthenticConfig, \
default="tiny"
        ``tiny``: 160 images (tests, CI); ``small``: 1,440; ``default``: 3,945 from every bundled
        photo (33 reference crops), all 25 distortion types and 5 levels; ``authentic``: 3,480
        images with compound distortions at continuous severities (58 reference crops;
        :mod:`qd_lib.data.synthetic.authentic`).
    output_dir : str or Path, optional
        Where to write it; default :func:`default_output_dir`.
    seed : int, default=0
        Seed of the random distortions and of both splits.
    n_jobs : int, optional
        Worker processes (default: the number of cores, at most the number of references);
        ``1`` runs in this process. The result does not depend on it.
    overwrite : bool, default=False
        Rebuild even if a finished benchmark with the same configuration exists.
    show_progress : bool, optional
        Progress bar switch (``None``: tqdm's default, which honours ``TQDM_DISABLE``).

    Returns
    -------
    ProxyBenchmark
    """
    name, config = resolve_config(preset)
    check_scalar(seed, "seed", int, min_val=0)
    out_dir = Path(output_dir) if output_dir is not None else default_output_dir(name, seed)
    chash = config.config_hash(seed)
    manifest_path = out_dir / "manifest.csv"
    stamp_path = out_dir / "build.json"
    if not overwrite and manifest_path.is_file() and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("config_hash") == chash:
            logger.info("proxy benchmark %r already built at %s; reusing it", name,
                        display_path(out_dir))
            return load_proxy_benchmark(out_dir)
    started = time.perf_counter()
    for sub in ("images", "refs", "parts"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    crops = _reference_list(config)
    is_authentic = isinstance(config, AuthenticConfig)
    render = authentic.render_authentic_reference if is_authentic else _render_reference
    types = [(i + 1, d) for i, d in enumerate(config.distortions)]
    tasks, done_rows = [], {}
    for k, crop in enumerate(crops):
        ref_id = f"P{k + 1:02d}"
        part = out_dir / "parts" / f"{ref_id}.json"
        if part.is_file() and not overwrite:
            record = json.loads(part.read_text())
            if record.get("config_hash") == chash:
                done_rows[k] = record["rows"]
                continue
        if is_authentic:
            tasks.append({"crop": crop, "ref_id": ref_id, "ref_index": k,
                          "plan": authentic.plan_reference(config, crop, k, seed), "seed": seed,
                          "out_dir": str(out_dir), "threads": 1})
            continue
        tasks.append({"crop": crop, "ref_id": ref_id, "ref_index": k, "types": types,
                      "n_levels": config.n_levels, "seed": seed, "out_dir": str(out_dir),
                      "threads": 1})
    if done_rows:
        logger.info("resuming: %d of %d references already done", len(done_rows), len(crops))
    n_jobs = min(n_jobs or os.cpu_count() or 1, max(1, len(tasks)))
    bar = progress(total=len(crops), initial=len(done_rows), desc=f"proxy benchmark {name}",
                   enabled=show_progress)

    def finish(task, rows):
        atomic_write_json(out_dir / "parts" / f"{task['ref_id']}.json",
                          {"config_hash": chash, "rows": rows})
        done_rows[task["ref_index"]] = rows
        bar.update(1)

    if n_jobs == 1:
        for task in tasks:
            finish(task, render({**task, "threads": max(1, os.cpu_count() or 1)}))
    else:
        ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe
        with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            futures = {pool.submit(render, task): task for task in tasks}
            for future in cf.as_completed(futures):
                finish(futures[future], future.result())
    bar.close()
    rows = [row for k in sorted(done_rows) for row in done_rows[k]]
    table = pd.DataFrame(rows)
    scores = {m: table[f"fr_{m}"].to_numpy() for m in METRICS}
    table.insert(2, "mos", proxy_mos(scores))
    table["split_paper"] = split_by_rows(len(table), config.split_fractions, seed=seed)
    table["split_content"] = split_by_groups(table["group"], config.split_fractions, seed=seed)
    metric_cols = [c for c in table.columns if c.startswith("fr_")]
    if is_authentic:
        description = f"{PROXY_LABEL}. {authentic.describe(config, len(crops))}."
        mode = {"mode": AuthenticConfig.mode}
    else:
        description = (f"{PROXY_LABEL}. {len(crops)} reference crops × {len(types)} KADID-style "
                       f"distortion types × {config.n_levels} levels.")
        mode = {}  # grid mode: the sidecar stays exactly as it always was
    info = DatasetInfo(
        name=f"proxy-{name}",
        mos_range=MOS_RANGE,
        higher_is_better=True,
        source="qd_lib.data.synthetic (photos bundled with scikit-image, scikit-learn and "
               "matplotlib)",
        licence="Photos: the bundling packages' licences (BSD-3 / PSF-compatible / public "
                "domain); labels generated here.",
        proxy=True,
        description=description,
        split_notes={
            "paper": f"random over images, fractions {list(config.split_fractions)}, seed {seed}",
            "content": f"by reference image, fractions {list(config.split_fractions)}, "
                       f"seed {seed}",
        },
        extra={"preset": name, **mode, "config": asdict(config), "seed": seed,
               "config_hash": chash,
               "proxy_mos": {m: {"piq": fn, "worst": lo, "best": hi}
                             for m, (fn, _, (lo, hi)) in METRICS.items()}},
    )
    manifest = Manifest(table.drop(columns=metric_cols), info,
                        source=display_path(manifest_path))
    metrics = table[["image_id"] + metric_cols]
    atomic_write_text(out_dir / "proxy_metrics.csv", metrics.to_csv(index=False))
    manifest.save(manifest_path)
    seconds = time.perf_counter() - started
    atomic_write_json(stamp_path, {"config_hash": chash, "preset": name, "seed": seed,
                                   "n_images": len(manifest), "n_jobs": n_jobs,
                                   "build_seconds": round(seconds, 2),
                                   "manifest_hash": manifest.content_hash})
    logger.info("built proxy benchmark %r: %d images in %.1f s at %s", name, len(manifest),
                seconds, display_path(out_dir))
    return ProxyBenchmark(manifest, out_dir, config, seed, seconds, metrics)


def load_proxy_benchmark(root) -> ProxyBenchmark:
    """Load a proxy benchmark built earlier at ``root`` (verifying the manifest hash)."""
    root = Path(root)
    stamp_path = root / "build.json"
    if not stamp_path.is_file():
        raise FileNotFoundError(f"No finished proxy benchmark at {display_path(root)} (missing "
                                "build.json); build it with build_proxy_benchmark().")
    stamp = json.loads(stamp_path.read_text())
    manifest = Manifest.read(root / "manifest.csv")
    extra = manifest.info.extra
    config_class = AuthenticConfig if extra.get("mode") == AuthenticConfig.mode else ProxyConfig
    config = config_class(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in extra["config"].items()})
    metrics = pd.read_csv(root / "proxy_metrics.csv", dtype={"image_id": str})
    return ProxyBenchmark(manifest, root, config, int(extra["seed"]),
                          stamp.get("build_seconds"), metrics)

