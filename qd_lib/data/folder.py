"""Label-free datasets: a folder of images, or a list of image paths, as a manifest.

:func:`open_images` turns a folder (searched recursively for JPEG, PNG, BMP, TIFF and WebP
files; hidden files and folders are skipped) or a list of paths (a CSV or text file, or a
Python sequence) into a :class:`~qd_lib.data.LoadedDataset` whose manifest is of the
label-free kind (see :mod:`qd_lib.data.manifest`, "Kinds"): no MOS, no splits, every image a
candidate. Nothing is written: the manifest is rebuilt from the file listing on each call,
which takes well under a second for tens of thousands of files.

Names and caching
    The manifest's name is ``<folder or list name>-<hash8>``, ``hash8`` the sha256 of the
    sorted resolved image paths, so the same folder always gets the same name and its
    embeddings the same cache folder (``runs_dir()/embeddings/<name>/``). The content hash
    that keys the cached embeddings covers each image's path and size in bytes, so a second
    call on an unchanged folder reuses every embedding, and an image replaced by a file of
    another size is encoded again. (Adding or removing images makes a new manifest, which is
    encoded in full: the cache is per manifest.)
Columns
    ``image_id`` and ``relpath`` (both the path relative to the root, POSIX separators) and
    ``bytes`` (file size; empty for a listed file that does not exist).
Root
    The folder itself, or for a list the deepest folder holding every listed path.

Unreadable images (listed but missing, corrupt, truncated, too small for an encoder) stay in
the manifest; extraction with ``on_error="skip"`` reports them by name and leaves them out
(see :func:`qd_lib.selection.images.select_images`).

:func:`write_sample_folder` writes a small folder of crops of the photos bundled with
scikit-image, scikit-learn and matplotlib (plus one corrupt file), for the tests, notebook 13
and trying the ``select`` command::

    python -m qd_lib.data.folder data/sample-photos --n 30
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.catalog import LoadedDataset
from qd_lib.data.manifest import DatasetInfo, Manifest
from qd_lib.paths import display_path
from qd_lib.utils.io import atomic_write_bytes
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File name endings (any case) that a folder search takes as images."""

LIST_COLUMN = "path"
"""The column a CSV list of images is read from (else its first column)."""

SAMPLE_FORMATS = ("jpg", "png", "jpg", "png", "webp", "jpg", "png", "bmp", "tif")


@dataclass(frozen=True)
class ImageList:
    """The images of a folder or list, before they become a manifest.

    Attributes
    ----------
    root : Path
        Resolved folder every image lies under.
    relpaths : list of str
        Image paths relative to ``root`` (POSIX separators), sorted, unique.
    source : Path or None
        The folder or list file the images came from (``None`` for a Python sequence).
    label : str
        Readable part of the dataset name (the folder's or list file's name).
    """

    root: Path
    relpaths: list[str]
    source: Path | None
    label: str

    @property
    def paths(self) -> list[Path]:
        """Absolute paths, in the order of :attr:`relpaths`."""
        return [self.root / r for r in self.relpaths]

    @property
    def path_hash(self) -> str:
        """sha256 of the resolved paths, one per line (what the dataset name is derived from)."""
        text = "\n".join(str(p) for p in self.paths)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_image_name(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")
    return slug[:40] or "images"


def _scan_folder(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames
                     if not f.startswith(".") and is_image_name(f))
    return found


def read_path_list(path: str | os.PathLike) -> list[str]:
    """The entries of a list of images, as written (not resolved).

    A ``.csv`` file is read from its ``path`` column when its header has one (so a
    ``picks.csv`` written by ``python -m qd_lib select`` is a valid list), else from its first
    column (a first row whose first cell is not an image name is taken as a header). Any other
    file holds one entry per line; blank lines and lines starting with ``#`` are skipped.

    Raises
    ------
    FileNotFoundError
        If the list does not exist.
    ValueError
        If it holds no entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image list not found: {display_path(path)}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
        column = 0
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            if LIST_COLUMN in header:
                column, rows = header.index(LIST_COLUMN), rows[1:]
            elif not is_image_name(rows[0][0].strip()):
                rows = rows[1:]
        entries = [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    else:
        entries = [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"The image list {display_path(path)} holds no entries.")
    return entries


def list_images(source) -> ImageList:
    """The images of a folder (recursive), of a list file, or of a sequence of paths.

    Parameters
    ----------
    source : str, path or sequence of str/path
        A folder; a ``.csv`` or text file listing image paths (relative entries are relative to
        the list's folder; see :func:`read_path_list`); or a sequence of paths (relative ones
        relative to the working directory). Listed paths are taken whatever their extension
        and whether or not they exist (missing ones are reported when the images are read).

    Returns
    -------
    ImageList

    Raises
    ------
    FileNotFoundError
        If a folder or list file does not exist.
    ValueError
        If no image is found (the message lists the extensions looked for).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            folder = path.resolve()
            files = _scan_folder(folder)
            if not files:
                raise ValueError(f"No images found in the folder {display_path(folder)} "
                                 f"(searched recursively for {', '.join(IMAGE_EXTENSIONS)}).")
            return _from_paths(files, source=folder, label=folder.name, root=folder)
        if not path.exists():
            raise FileNotFoundError(f"No such folder or image list: {display_path(path)}")
        base = path.resolve().parent
        entries = read_path_list(path)
        files = [Path(e).expanduser() for e in entries]
        files = [f if f.is_absolute() else base / f for f in files]
        return _from_paths(files, source=path.resolve(), label=path.stem)
    if isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError("The 'source' parameter must not be an empty list of images.")
        files = []
        for entry in source:
            if not isinstance(entry, (str, os.PathLike)):
                raise TypeError(f"The 'source' parameter must hold paths. Got {entry!r} of type "
                                f"{type(entry).__name__} in it.")
            files.append(Path(entry).expanduser())
        return _from_paths(files, source=None, label="images")
    raise TypeError(f"The 'source' parameter must be a folder, an image list file or a "
                    f"sequence of paths. Got {source!r} of type {type(source).__name__} "
                    "instead.")


def _from_paths(files: list[Path], *, source: Path | None, label: str,
                root: Path | None = None) -> ImageList:
    resolved = [Path(os.path.abspath(f)) for f in files]
    if root is None:  # a list: follow links, so one file has one path
        resolved = [f.resolve() if f.exists() else f for f in resolved]
    unique = sorted(dict.fromkeys(resolved))
    if len(unique) < len(resolved):
        logger.info("%d duplicate image path(s) listed once", len(resolved) - len(unique))
    resolved = unique
    if root is None:
        root = Path(os.path.commonpath([str(f.parent) for f in resolved]))
    relpaths = [f.relative_to(root).as_posix() for f in resolved]
    return ImageList(root, relpaths, source, label)


def images_manifest(images: ImageList, *, name: str | None = None) -> Manifest:
    """The label-free :class:`~qd_lib.data.Manifest` of an :class:`ImageList`.

    Parameters
    ----------
    images : ImageList
    name : str, optional
        Dataset name; default ``<slug of images.label>-<first 8 hex of images.path_hash>``.
    """
    sizes = []
    for path in images.paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(None)
    table = pd.DataFrame({"image_id": images.relpaths, "relpath": images.relpaths,
                          "bytes": pd.array(sizes, dtype="Int64")})
    name = name or f"{_slug(images.label)}-{images.path_hash[:8]}"
    where = display_path(images.source) if images.source is not None else "a list of paths"
    info = DatasetInfo(name=name, kind="label_free", source=where,
                       description=f"Label-free images from {where} ({len(table)} files), "
                                   f"under {display_path(images.root)}.",
                       extra={"root": display_path(images.root),
                              "path_hash": images.path_hash})
    return Manifest(table, info, source=where)


def open_images(source, *, name: str | None = None) -> LoadedDataset:
    """A label-free dataset from a folder, an image list file or a sequence of paths.

    Parameters
    ----------
    source : str, path or sequence
        What :func:`list_images` accepts.
    name : str, optional
        Dataset name (default: derived from the folder and its path list, see the module
        docstring).

    Returns
    -------
    LoadedDataset
        ``root`` is the folder the images lie under; ``path`` the folder or list file.
        Every row is a candidate (``indices("train")`` is every row).

    Examples
    --------
    >>> from qd_lib.data.folder import open_images
    >>> ds = open_images("data/sample-photos")                      # doctest: +SKIP
    >>> ds.manifest.labelled, ds.n_train                             # doctest: +SKIP
    (False, 31)
    """
    images = list_images(source)
    manifest = images_manifest(images, name=name)
    logger.info("%s: %d images under %s (label-free)", manifest.name, len(manifest),
                display_path(images.root))
    return LoadedDataset(manifest.name, manifest, images.root, "paper",
                         images.source if images.source is not None else images.root)


# -- a sample folder ---------------------------------------------------------------------------
def write_sample_folder(folder, n: int = 30, *, seed: int = 0, corrupt: bool = True,
                        size: tuple[int, int] = (128, 96),
                        formats: Sequence[str] = SAMPLE_FORMATS) -> list[Path]:
    """Write ``n`` small images cut from the bundled photos into ``folder``, plus one corrupt file.

    Crops of random position and scale of the photos of
    :data:`qd_lib.data.synthetic.references.PHOTOS`, resized to ``size``, saved in two
    sub-folders (``a/``, ``b/``) in turn as JPEG, PNG, WebP, BMP and TIFF; ``broken.jpg`` holds
    bytes that are not an image, and ``notes.txt`` is not an image name (a folder search skips
    it). Deterministic for a seed. Files that exist already are left as they are, so calling
    it again changes nothing.

    Parameters
    ----------
    folder : str or Path
    n : int, default=30
        Number of images, at least 1.
    seed : int, default=0
    corrupt : bool, default=True
        Also write ``broken.jpg``.
    size : (int, int), default=(128, 96)
        Width and height of each image.
    formats : sequence of str, default=SAMPLE_FORMATS
        File formats used in turn (``jpg``, ``png``, ``webp``, ``bmp``, ``tif``).

    Returns
    -------
    list of Path
        The image files (the corrupt one last, when written).
    """
    from PIL import Image

    from qd_lib.data.synthetic.references import PHOTOS, photo_rgb

    check_scalar(n, "n", int, min_val=1)
    check_scalar(seed, "seed", int, min_val=0)
    for fmt in formats:
        check_option(fmt, "formats", ("jpg", "png", "webp", "bmp", "tif"))
    width, height = (int(v) for v in size)
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    photos = [p for p in PHOTOS if p.name not in ("hubble_deep_field", "moon")][:12]
    cache: dict[str, np.ndarray] = {}
    written = []
    for i in range(n):
        photo = photos[i % len(photos)]
        fmt = formats[i % len(formats)]
        scale = float(rng.uniform(0.25, 0.9))
        u, v = float(rng.uniform()), float(rng.uniform())
        path = folder / ("a" if i % 2 == 0 else "b") / f"{photo.name}_{i:03d}.{fmt}"
        written.append(path)
        if path.is_file():
            continue
        if photo.name not in cache:
            cache[photo.name] = photo_rgb(photo)
        pixels = cache[photo.name]
        h, w = pixels.shape[:2]
        ch = max(8, int(min(h, w * height / width) * scale))
        cw = max(8, int(ch * width / height))
        top, left = int(u * (h - ch)), int(v * (w - cw))
        image = Image.fromarray(pixels[top:top + ch, left:left + cw]).resize(
            (width, height), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, format={"jpg": "JPEG", "tif": "TIFF"}.get(fmt, fmt.upper()),
                   **({"quality": 90} if fmt == "jpg" else {}))
        atomic_write_bytes(path, buf.getvalue())
    if corrupt:
        broken = folder / "broken.jpg"
        if not broken.is_file():
            atomic_write_bytes(broken, b"this is not a JPEG file\n" * 4)
        written.append(broken)
    notes = folder / "notes.txt"
    if not notes.is_file():
        atomic_write_bytes(notes, b"Sample images for qd-workbench (crops of bundled photos).\n")
    logger.info("sample folder %s: %d images%s", display_path(folder), n,
                " and broken.jpg" if corrupt else "")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qd_lib.data.folder",
        description="Write a small sample folder of images (crops of the photos bundled with "
                    "scikit-image, scikit-learn and matplotlib, plus one corrupt file).")
    parser.add_argument("folder", help="where to write the images (created if missing)")
    parser.add_argument("--n", type=int, default=30, help="number of images (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-corrupt", action="store_true",
                        help="do not write the corrupt file broken.jpg")
    args = parser.parse_args(argv)
    try:
        files = write_sample_folder(args.folder, args.n, seed=args.seed,
                                    corrupt=not args.no_corrupt)
    except (TypeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(files)} files in {display_path(args.folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
