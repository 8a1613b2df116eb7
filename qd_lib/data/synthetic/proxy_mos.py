"""Proxy MOS from a fixed ensemble of full-reference metrics (piq).

No human ratings can be had offline, so the proxy benchmark scores each distorted image against
its pristine reference with seven full-reference metrics (PSNR, SSIM, MS-SSIM, VIF-p, GMSD,
HaarPSI, MDSI), maps each to a quality in [0, 1] with a
fixed transform (set once, never fitted to the data at hand), averages them and maps the result to
1–5, higher is better. These are *proxy* scores: they rank distortions plausibly, but they are not
human judgements.
"""
from __future__ import annotations

import numpy as np
import torch

# FSIM was left out: it costs more than the other seven together on the CPU.
# name -> (piq function name, keyword arguments, (worst, best) raw values mapped to 0 and 1)
METRICS: dict[str, tuple[str, dict, tuple[float, float]]] = {
    "psnr": ("psnr", {"data_range": 1.0}, (15.0, 45.0)),
    "ssim": ("ssim", {"data_range": 1.0}, (0.2, 1.0)),
    "ms_ssim": ("multi_scale_ssim", {"data_range": 1.0}, (0.5, 1.0)),
    "vif_p": ("vif_p", {"data_range": 1.0}, (0.0, 1.0)),
    "gmsd": ("gmsd", {"data_range": 1.0}, (0.3, 0.0)),
    "haarpsi": ("haarpsi", {"data_range": 1.0}, (0.2, 1.0)),
    "mdsi": ("mdsi", {"data_range": 1.0}, (0.5, 0.0)),
}
MOS_RANGE = (1.0, 5.0)


def _import_piq():
    import piq  # imported lazily: it pulls in torchvision

    return piq


@torch.inference_mode()
def full_reference_scores(distorted: np.ndarray, reference: np.ndarray,
                          batch_size: int = 64) -> dict[str, np.ndarray]:
    """Raw metric values of each distorted image against its reference.

    Parameters
    ----------
    distorted : ndarray of shape (n, H, W, 3), float in [0, 1]
    reference : ndarray of shape (H, W, 3) or (n, H, W, 3), float in [0, 1]

    Returns
    -------
    dict of str to ndarray of shape (n,)
    """
    piq = _import_piq()
    dist = torch.from_numpy(np.ascontiguousarray(distorted, dtype=np.float32)).permute(0, 3, 1, 2)
    ref = np.asarray(reference, dtype=np.float32)
    ref = torch.from_numpy(np.ascontiguousarray(ref)).permute(*(
        (2, 0, 1) if ref.ndim == 3 else (0, 3, 1, 2)))
    out: dict[str, list] = {name: [] for name in METRICS}
    for start in range(0, len(dist), batch_size):
        x = dist[start:start + batch_size]
        y = ref.expand_as(x) if ref.ndim == 3 else ref[start:start + batch_size]
        for name, (fn, kwargs, _) in METRICS.items():
            value = getattr(piq, fn)(x, y, reduction="none", **kwargs)
            out[name].append(value.double().reshape(-1).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def proxy_quality(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Average of the fixed per-metric maps to [0, 1] (1 = indistinguishable from reference)."""
    parts = []
    for name, (_, _, (worst, best)) in METRICS.items():
        raw = np.asarray(scores[name], dtype=np.float64)
        parts.append(np.clip((raw - worst) / (best - worst), 0.0, 1.0))
    return np.mean(parts, axis=0)


def proxy_mos(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Proxy MOS on 1–5 (higher is better), rounded to 4 decimals for stable hashes."""
    lo, hi = MOS_RANGE
    return np.round(lo + (hi - lo) * proxy_quality(scores), 4)
