"""The ``authentic`` mode of the proxy benchmark: compound distortions at continuous severities.

The grid presets (``tiny``, ``small``, ``default``) are KADID-like: every reference × every
distortion type × 5 levels, so the proxy MOS histogram is flat-ish and regular. Authentic-
distortion datasets (KonIQ-10k, SPAQ, FLIVE) look different: one image can be blurred, noisy
*and* compressed, strengths vary continuously, and most images are good, with a long tail of
near-pristine ones and fewer bad ones. This mode imitates that, on the same bundled photos and
with the same full-reference proxy MOS, so that conclusions need not rest on one regular grid.

For every reference crop it makes ``images_per_reference`` images (the first one the pristine
reference itself when ``include_pristine``); each other image gets

1. a number of distortion types k ∈ {1, 2, 3}, drawn with probabilities ``n_types_probs``;
2. k distinct types drawn one after the other, uniformly among those that change the image
   (chroma-only types are never drawn for greyscale references) and, with
   ``distinct_categories``, from k different categories (no blur + blur, no brighten +
   darken); the draw order is the order they are applied in;
3. for each type an independent severity ``max_severity × Beta(a, b)`` (``severity_beta``),
   rounded to 3 decimals and at least 0.001; with a < b most severities are mild. A severity s
   ≥ 1 interpolates the type's 5 level parameters (integer parameters rounded); s < 1 blends
   the image with its level-1 distortion (:meth:`~qd_lib.data.synthetic.distortions.
   DistortionType.apply_severity`), which is where near-pristine images come from.

The plan (types, order, severities) is drawn in the parent process from a per-reference seed
stream, and each component's random distortion from its own stream, so the result depends on
the seed only, never on ``n_jobs``. Manifest columns as in grid mode, with ``distortion`` the
types joined by ``+`` in the order applied (``none`` for the pristine image), ``level`` the
largest component severity (a float; 0 for the pristine image), and two extra columns,
``n_distortions`` and ``severities`` (the component severities joined by ``+``, same order).
"""
from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from qd_lib.data.synthetic.distortions import DISTORTIONS
from qd_lib.data.synthetic.proxy_mos import METRICS, full_reference_scores
from qd_lib.data.synthetic.references import PHOTOS, ReferenceCrop, crop_image
from qd_lib.utils.validation import check_scalar

# Seed-stream tags, so the plan and the per-component randomness never share a stream.
_PLAN_TAG = 0xA17E
_RENDER_TAG = 0xA17F
NO_DISTORTION = "none"
MIN_SEVERITY = 0.001


@dataclass(frozen=True)
class AuthenticConfig:
    """What an ``authentic``-mode proxy benchmark is made of (see the module docstring).

    Attributes
    ----------
    photos : tuple of str
        Names from :data:`~qd_lib.data.synthetic.references.PHOTOS` (default: all of them).
    crops_per_photo : int
        Reference crops taken from each photo (at most; small photos give fewer).
    crop_size : int
        Side of the square crops, in pixels (at least 161 for MS-SSIM's five scales).
    distortions : tuple of str
        The distortion types drawn from (default: all 25).
    images_per_reference : int
        Images made from each reference crop.
    n_types_probs : tuple of 3 float
        Probabilities of 1, 2 and 3 composed distortion types (summing to 1).
    severity_beta : tuple of 2 float
        Shape parameters (a, b) of the Beta distribution of severity / ``max_severity``.
    max_severity : float
        Largest severity (in (0, 5]; 5 is the grid's strongest level).
    include_pristine : bool
        Whether the first image of each reference is the reference itself (0 distortions).
    distinct_categories : bool
        Whether the types composed in one image come from different categories.
    split_fractions : tuple of float
        Train/val/test fractions of both split schemes.
    """

    photos: tuple[str, ...] = tuple(p.name for p in PHOTOS)
    crops_per_photo: int = 4
    crop_size: int = 192
    distortions: tuple[str, ...] = tuple(DISTORTIONS)
    images_per_reference: int = 60
    n_types_probs: tuple[float, float, float] = (0.35, 0.4, 0.25)
    severity_beta: tuple[float, float] = (0.9, 2.6)
    max_severity: float = 5.0
    include_pristine: bool = True
    distinct_categories: bool = True
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)

    mode = "authentic"  # not a field: a class constant

    def config_hash(self, seed: int) -> str:
        text = json.dumps({**asdict(self), "seed": seed, "mode": self.mode, "version": 1},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_authentic_config(config: AuthenticConfig) -> AuthenticConfig:
    """Validate the numeric fields of ``config`` (names are checked by the builder)."""
    check_scalar(config.images_per_reference, "images_per_reference", numbers.Integral,
                 min_val=2 if config.include_pristine else 1)
    check_scalar(config.max_severity, "max_severity", numbers.Real, min_val=0.0, max_val=5.0,
                 closed="right")
    for flag in ("include_pristine", "distinct_categories"):
        value = getattr(config, flag)
        if not isinstance(value, bool):
            raise TypeError(f"The {flag!r} parameter must be an instance of bool. Got "
                            f"{value!r} of type {type(value).__name__} instead.")
    probs = config.n_types_probs
    ok = (isinstance(probs, (tuple, list)) and len(probs) == 3
          and all(isinstance(p, numbers.Real) and not isinstance(p, bool) for p in probs))
    if not ok or not all(np.isfinite(p) and p >= 0 for p in probs) \
            or abs(sum(probs) - 1.0) > 1e-9:
        raise ValueError(f"The 'n_types_probs' parameter must be 3 non-negative floats (the "
                         f"probabilities of 1, 2 and 3 distortion types) summing to 1. Got "
                         f"{probs!r} instead.")
    beta = config.severity_beta
    ok = (isinstance(beta, (tuple, list)) and len(beta) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                  and np.isfinite(v) and v > 0 for v in beta))
    if not ok:
        raise ValueError(f"The 'severity_beta' parameter must be 2 positive floats (the Beta "
                         f"distribution's a and b). Got {beta!r} instead.")
    return config


def _eligible(config: AuthenticConfig, greyscale: bool) -> list[str]:
    return [d for d in config.distortions if not (greyscale and DISTORTIONS[d].color_only)]


def plan_reference(config: AuthenticConfig, crop: ReferenceCrop, ref_index: int,
                   seed: int) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
    """The (types in order applied, severities) of every image of one reference.

    Parameters
    ----------
    config : AuthenticConfig
    crop : ReferenceCrop
        The reference (its greyscale flag rules out chroma-only types).
    ref_index : int
        Its position in the reference list (selects the seed stream).
    seed : int
        The benchmark's seed.

    Returns
    -------
    list of (tuple of str, tuple of float)
        ``images_per_reference`` entries; the pristine image is ``((), ())``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PLAN_TAG, ref_index]))
    pool = _eligible(config, crop.greyscale)
    if not pool:
        raise ValueError(f"No distortion type of {list(config.distortions)} changes the "
                         f"greyscale reference {crop.name!r}; add a type that is not "
                         "chroma-only.")
    a, b = (float(v) for v in config.severity_beta)
    plans = []
    for j in range(config.images_per_reference):
        if config.include_pristine and j == 0:
            plans.append(((), ()))
            continue
        k = int(rng.choice(3, p=np.asarray(config.n_types_probs, dtype=float))) + 1
        types: list[str] = []
        used: set[str] = set()
        for _ in range(k):
            options = [d for d in pool if d not in types
                       and not (config.distinct_categories and DISTORTIONS[d].category in used)]
            if not options:
                break  # fewer types (or categories) than asked for: compose what there is
            name = options[int(rng.integers(len(options)))]
            types.append(name)
            used.add(DISTORTIONS[name].category)
        raw = config.max_severity * rng.beta(a, b, size=len(types))
        severities = tuple(float(np.clip(np.round(s, 3), MIN_SEVERITY, config.max_severity))
                           for s in raw)
        plans.append((tuple(types), severities))
    return plans


def render_authentic_reference(task: dict) -> list[dict]:
    """Make, write and score the images of one reference (runs in a worker process)."""
    import torch

    torch.set_num_threads(task["threads"])
    out_dir = Path(task["out_dir"])
    crop: ReferenceCrop = task["crop"]
    ref_id, ref_index, seed = task["ref_id"], task["ref_index"], task["seed"]
    ref = crop_image(crop)
    ref_rel = f"refs/{ref_id}.png"
    Image.fromarray(ref).save(out_dir / ref_rel)
    ref_f = ref.astype(np.float32) / 255.0
    rows, images = [], []
    for j, (types, severities) in enumerate(task["plan"]):
        image = ref_f
        for c, (name, severity) in enumerate(zip(types, severities)):
            seq = np.random.SeedSequence([seed, _RENDER_TAG, ref_index, j, c])
            image = DISTORTIONS[name].apply_severity(image, severity,
                                                     np.random.default_rng(seq))
        image8 = np.round(image * 255).astype(np.uint8)
        image_id = f"{ref_id}_{j + 1:03d}"
        rel = f"images/{image_id}.png"
        Image.fromarray(image8).save(out_dir / rel)
        images.append(image8.astype(np.float32) / 255.0)  # score what is on disk
        rows.append({"image_id": image_id, "relpath": rel, "group": ref_id,
                     "ref_relpath": ref_rel,
                     "distortion": "+".join(types) if types else NO_DISTORTION,
                     "level": max(severities) if severities else 0.0,
                     "n_distortions": len(types),
                     "severities": "+".join(f"{s:.3f}" for s in severities),
                     "photo": crop.photo, "source_package": crop.package})
    scores = full_reference_scores(np.stack(images), ref_f)
    for i, row in enumerate(rows):
        row.update({f"fr_{m}": round(float(scores[m][i]), 6) for m in METRICS})
    return rows


def describe(config: AuthenticConfig, n_references: int) -> str:
    """One line for the manifest's description."""
    a, b = config.severity_beta
    p1, p2, p3 = config.n_types_probs
    pristine = "the pristine reference plus " if config.include_pristine else ""
    n_distorted = config.images_per_reference - int(config.include_pristine)
    return (f"{n_references} reference crops × {config.images_per_reference} images each: "
            f"{pristine}{n_distorted} with 1/2/3 of {len(config.distortions)} KADID-style "
            f"distortion types (probabilities {p1:g}/{p2:g}/{p3:g}"
            + (", distinct categories" if config.distinct_categories else "")
            + f") composed in random order, each at a continuous severity "
              f"{config.max_severity:g}×Beta({a:g}, {b:g}) (authentic-distortion style)")
