"""Reading the images a manifest names: a torch ``Dataset`` and an image check.

Images are decoded with PIL (torchvision's own decoders are not needed). Missing or corrupt files
are reported by name; the caller chooses between failing (``on_error="raise"``) and skipping them
with a report (``on_error="skip"``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qd_lib.data.manifest import Manifest
from qd_lib.paths import display_path
from qd_lib.utils.errors import ImageReadError
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)


@dataclass
class ImageCheckReport:
    """Outcome of :func:`check_images`.

    Attributes
    ----------
    n_checked : int
        Number of images looked at.
    missing : list of str
        Image ids whose file does not exist.
    corrupt : list of (str, str)
        Image ids whose file could not be decoded, with the reason.
    """

    n_checked: int
    missing: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    @property
    def bad_ids(self) -> set[str]:
        return set(self.missing) | {i for i, _ in self.corrupt}

    def summary(self, n_show: int = 5) -> str:
        """One line for people: counts and the first few names."""
        if self.ok:
            return f"all {self.n_checked} images readable"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (first: {', '.join(self.missing[:n_show])})")
        if self.corrupt:
            shown = ", ".join(f"{i} [{r}]" for i, r in self.corrupt[:n_show])
            parts.append(f"{len(self.corrupt)} unreadable (first: {shown})")
        return f"{len(self.bad_ids)} of {self.n_checked} images bad: " + "; ".join(parts)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        if img.mode in _SIXTEEN_BIT_MODES:
            # 16-bit greyscale: PIL's convert("RGB") clips at 255; rescale to 8 bits instead.
            values = np.asarray(img, dtype=np.float64) / 257.0
            img = Image.fromarray(np.rint(values).astype(np.uint8))  # mode "L"
        return img.convert("RGB")


def check_images(manifest: Manifest, root: str | Path, *, rows=None, decode: bool = True,
                 show_progress: bool | None = None) -> ImageCheckReport:
    """Check that the images of ``manifest`` exist under ``root`` and decode.

    Parameters
    ----------
    manifest : Manifest
        The label table.
    root : str or Path
        The dataset root that ``relpath`` is relative to.
    rows : array-like of int, optional
        Row positions to check (default: all).
    decode : bool, default=True
        Fully decode each image (slower, catches truncated files); if false only check
        existence.
    show_progress : bool, optional
        Progress bar switch (``None``: tqdm's default).

    Returns
    -------
    ImageCheckReport
    """
    root = Path(root)
    table = manifest.table if rows is None else manifest.table.iloc[np.asarray(rows)]
    report = ImageCheckReport(n_checked=len(table))
    pairs = zip(table["image_id"], table["relpath"])
    for image_id, relpath in progress(pairs, desc=f"checking {manifest.name}", total=len(table),
                                      enabled=show_progress):
        path = root / relpath
        if not path.is_file():
            report.missing.append(image_id)
        elif decode:
            try:
                with Image.open(path) as img:
                    img.load()
            except Exception as exc:  # PIL raises many types for broken files
                report.corrupt.append((image_id, f"{type(exc).__name__}: {exc}"))
    return report


class IQADataset(torch.utils.data.Dataset):
    """Images and MOS of one split of a manifest, as a torch ``Dataset``.

    Each item is a dict with ``image`` (the transformed image; a float tensor of shape
    (3, H, W) in [0, 1] by default), ``mos`` (float32 target; NaN for a label-free manifest),
    ``index`` (row position in the manifest) and ``image_id``.

    Parameters
    ----------
    manifest : Manifest
        The label table.
    root : str or Path
        Dataset root that ``relpath`` is relative to.
    scheme, part : str, optional
        Split scheme and part (``train``/``val``/``test``); both ``None`` selects every row.
    rows : array-like of int, optional
        Explicit row positions (e.g. a coreset); overrides ``scheme``/``part``.
    transform : callable, optional
        Applied to the RGB PIL image. Default: convert to a float tensor in [0, 1].
    target : {"normalized", "raw"}, default="normalized"
        ``normalized`` maps MOS to [0, 1] with the dataset's fixed native range.
    on_error : {"raise", "skip"}, default="raise"
        ``raise``: missing files raise :class:`ImageReadError` at construction (listing them),
        undecodable ones when read. ``skip``: every image is checked up front and bad ones are
        dropped; the :class:`ImageCheckReport` is kept in ``self.report`` and logged.
    """

    def __init__(self, manifest: Manifest, root: str | Path, *, scheme: str | None = None,
                 part: str | None = None, rows=None, transform=None, target: str = "normalized",
                 on_error: str = "raise"):
        check_option(target, "target", ("normalized", "raw"))
        check_option(on_error, "on_error", ("raise", "skip"))
        if rows is not None:
            positions = np.asarray(rows, dtype=np.int64)
            if positions.ndim != 1 or (len(positions) and (
                    positions.min() < 0 or positions.max() >= len(manifest))):
                raise ValueError(f"The 'rows' parameter must be 1-D positions in [0, "
                                 f"{len(manifest)}). Got {rows!r}.")
        elif scheme is not None or part is not None:
            if scheme is None or part is None:
                raise ValueError("Pass both 'scheme' and 'part' (or neither). "
                                 f"Got scheme={scheme!r}, part={part!r}.")
            positions = manifest.split_indices(scheme, part)
        else:
            positions = np.arange(len(manifest))
        self.manifest = manifest
        self.root = Path(root)
        self.transform = transform
        self.on_error = on_error
        if not manifest.labelled:  # label-free: no scores (items carry NaN)
            scores = np.full(len(manifest), np.nan)
        elif target == "normalized":
            scores = manifest.normalized_mos()
        else:
            scores = manifest.table["mos"].to_numpy(np.float64)
        if on_error == "skip":
            self.report = check_images(manifest, self.root, rows=positions)
            if not self.report.ok:
                logger.warning("%s: skipping %s", manifest.name, self.report.summary())
                bad = self.report.bad_ids
                ids = manifest.table["image_id"].to_numpy()[positions]
                positions = positions[[i not in bad for i in ids]]
        else:
            self.report = check_images(manifest, self.root, rows=positions, decode=False,
                                       show_progress=False)
            if self.report.missing:
                raise ImageReadError(f"{manifest.name} under {display_path(self.root)}: "
                                     f"{self.report.summary()}")
        self.positions = positions
        self._scores = scores.astype(np.float32)
        self._ids = manifest.table["image_id"].to_numpy()
        self._paths = manifest.table["relpath"].to_numpy()

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict:
        pos = int(self.positions[i])
        path = self.root / self._paths[pos]
        try:
            image = _read_rgb(path)
        except Exception as exc:
            raise ImageReadError(f"Cannot read image {self._ids[pos]!r} at "
                                 f"{display_path(path)}: {type(exc).__name__}: {exc}") from exc
        if self.transform is not None:
            image = self.transform(image)
        else:
            array = np.asarray(image, dtype=np.float32) / 255.0
            image = torch.from_numpy(array.transpose(2, 0, 1).copy())
        return {"image": image, "mos": self._scores[pos], "index": pos,
                "image_id": str(self._ids[pos])}
