"""Helpers the benchmark scripts share (imported as ``_shared``: scripts run from this folder)."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np


def proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes (empty where /proc is missing)."""
    fields = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return fields


class RssSampler:
    """Samples RssAnon / RssFile every ``interval`` seconds in a thread and keeps their peaks
    (``anon``, ``file``, in bytes)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.anon = self.file = 0

    def _sample(self):
        status = proc_status()
        self.anon = max(self.anon, status.get("RssAnon", 0))
        self.file = max(self.file, status.get("RssFile", 0))

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def write_photo_dataset(folder: Path, n: int, *, seed: int = 0, random_mos: bool = False,
                        train_share: float | None = None):
    """``n`` 512×384 JPEG crops of the bundled photos under ``folder/images`` and their manifest.

    MOS are 3.0 (throughput only) or uniform on [1, 5] with ``random_mos``; ``train_share`` adds
    a ``paper`` split (the first share of the rows train, the rest test).
    """
    import pandas as pd
    from PIL import Image

    from qd_lib.data import DatasetInfo, Manifest
    from qd_lib.data.synthetic.references import PHOTOS, photo_rgb

    rng = np.random.default_rng(seed)
    photos = [photo_rgb(p) for p in PHOTOS]
    photos = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in photos]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        src = Image.fromarray(photos[i % len(photos)])
        scale = rng.uniform(1.0, 1.6)
        src = src.resize((max(512, int(src.width * scale)), max(384, int(src.height * scale))))
        left = int(rng.integers(0, src.width - 512 + 1))
        top = int(rng.integers(0, src.height - 384 + 1))
        rel = f"images/{i:05d}.jpg"
        src.crop((left, top, left + 512, top + 384)).save(folder / rel, quality=90)
        row = {"image_id": f"{i:05d}", "relpath": rel,
               "mos": float(rng.uniform(1, 5)) if random_mos else 3.0}
        if train_share is not None:
            row["split_paper"] = "train" if i < int(n * train_share) else "test"
        rows.append(row)
    return Manifest(pd.DataFrame(rows), DatasetInfo(name="gpu-bench", mos_range=(1, 5)))
