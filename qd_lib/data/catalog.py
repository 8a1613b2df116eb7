"""Loading a dataset's manifest by name, and checking its images without stopping a run.

>>> from qd_lib.data import load_manifest
>>> ds = load_manifest("kadid")                       # doctest: +SKIP
>>> ds.manifest.split_counts()                         # doctest: +SKIP
>>> ds.n_train, ds.root                                # doctest: +SKIP
(7086, PosixPath('.../data/kadid10k'))

Names resolve in this order:

1. a path to a manifest CSV (``*.csv``, with its ``.yaml`` sidecar); its default root is the
   CSV's folder;
2. a proxy benchmark, ``proxy-<preset>`` (``proxy-tiny``, ``proxy-small``, ``proxy-default``,
   ``proxy-authentic``, or any ``proxy-*`` folder built under ``QD_DATA_ROOT``); its root is
   that folder;
3. a registered dataset or alias (``kadid``, ``KADID-10K``, ``tid2013``, ``koniq-10k``, ...):
   the committed ``data_manifests/<name>.csv``; its default root is ``QD_DATA_ROOT/<folder>``
   (see :func:`qd_lib.data.builders.dataset_root`).

A path to a folder that holds no ``manifest.csv`` (``"photos/"``, ``"./photos"``, a
``Path``) is opened as a folder of images: a label-free dataset (no MOS, every image a
candidate) built by :func:`qd_lib.data.folder.open_images`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qd_lib.data.budget import coreset_size
from qd_lib.data.builders import (
    available_datasets,
    committed_path,
    dataset_root,
    get_spec,
    resolve_name,
)
from qd_lib.data.manifest import SPLIT_PARTS, Manifest
from qd_lib.paths import data_root, display_path
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)

PROXY_PREFIX = "proxy-"
PROXY_PRESETS = ("tiny", "small", "default", "authentic")  # = qd_lib.data.synthetic.PRESETS


@dataclass(frozen=True)
class LoadedDataset:
    """A manifest together with the dataset root its paths are relative to.

    Attributes
    ----------
    name : str
        The manifest's dataset name (registry name, ``proxy-<preset>``, or the CSV's).
    manifest : Manifest
        The validated, hash-checked label table.
    root : Path
        Folder that the manifest's ``relpath`` values are relative to.
    scheme : str
        Default split scheme for :meth:`indices`, :meth:`subset` and :attr:`n_train`.
    path : Path
        The manifest CSV that was read (the folder or list file for a label-free dataset of
        images, :func:`qd_lib.data.folder.open_images`).

    Notes
    -----
    A label-free manifest without split columns has no splits: every image is a candidate, so
    its ``train`` part is every row and ``val``/``test`` are empty, whatever the scheme.
    """

    name: str
    manifest: Manifest
    root: Path
    scheme: str
    path: Path

    def indices(self, part: str, scheme: str | None = None) -> np.ndarray:
        """Row positions of ``part`` (``train``/``val``/``test``) under ``scheme``."""
        if not self.manifest.labelled and not self.manifest.split_schemes:
            check_option(part, "part", SPLIT_PARTS)
            return np.arange(len(self.manifest) if part == "train" else 0, dtype=np.int64)
        return self.manifest.split_indices(scheme or self.scheme, part)

    @property
    def labelled(self) -> bool:
        """False for a label-free dataset (no MOS)."""
        return self.manifest.labelled

    def subset(self, part: str, scheme: str | None = None):
        """The rows of ``part`` as a DataFrame."""
        return self.manifest.subset(scheme or self.scheme, part)

    @property
    def n_train(self) -> int:
        """Size of the training split of the default scheme."""
        return len(self.indices("train"))

    def budget(self, fraction) -> int:
        """Coreset size ``floor(fraction × n_train)`` (exact arithmetic)."""
        return coreset_size(self.n_train, fraction)

    def check(self, **kwargs):
        """Shortcut for :func:`check_dataset` on this dataset."""
        return check_dataset(self, **kwargs)


def _proxy_names() -> list[str]:
    names = {PROXY_PREFIX + p for p in PROXY_PRESETS}
    root = data_root()
    if root.is_dir():
        names |= {p.name for p in root.glob(PROXY_PREFIX + "*") if (p / "manifest.csv").is_file()}
    return sorted(names)


def _looks_like_path(name) -> bool:
    if isinstance(name, os.PathLike):
        return True
    return isinstance(name, str) and (name.lower().endswith(".csv") or os.sep in name
                                      or "/" in name)


def _locate(name) -> tuple[Path, Path | None]:
    """(manifest CSV, default root) for ``name``."""
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if path.is_dir():
            path = path / "manifest.csv"
        if not path.is_file():
            raise FileNotFoundError(f"Manifest file not found: {display_path(path)}")
        return path, path.parent
    if not isinstance(name, str):
        raise TypeError(f"The 'name' parameter must be a str or a path. Got {name!r} of type "
                        f"{type(name).__name__} instead.")
    if name.lower().startswith(PROXY_PREFIX):
        folder = data_root() / name.lower()
        path = folder / "manifest.csv"
        if path.is_file():
            return path, folder
        preset = name.lower()[len(PROXY_PREFIX):]
        if preset in PROXY_PRESETS:
            raise FileNotFoundError(
                f"The proxy benchmark {name!r} has not been built under "
                f"{display_path(data_root())}; build it with "
                f"`python -m qd_lib.data.synthetic --preset {preset}` (or "
                f"qd_lib.data.synthetic.build_proxy_benchmark({preset!r})).")
        raise UnknownNameError("dataset", name, available_datasets() + _proxy_names())
    try:
        registry_name = resolve_name(name)
    except UnknownNameError:
        raise UnknownNameError("dataset", name, available_datasets() + _proxy_names()) from None
    path = committed_path(registry_name)
    if not path.is_file():
        spec = get_spec(registry_name)
        raise FileNotFoundError(
            f"No manifest for {spec.title} at {display_path(path)}. Its labels are not "
            "available offline; build it from the official files with `python -m "
            f"qd_lib.data.builders {registry_name} --source official --root DIR` (DIR holding "
            f"{', '.join(spec.official_files)}).")
    return path, None


def _image_folder(name) -> Path | None:
    """``name`` as a folder of images (a folder path without a ``manifest.csv``), else None.
    Only path-like names count (a separator in them, or a ``PathLike``): a bare name is
    looked up in the registry even if a folder of that name exists."""
    if not _looks_like_path(name):
        return None
    path = Path(name).expanduser()
    if path.is_dir() and not (path / "manifest.csv").is_file():
        return path
    return None


def canonical_dataset_name(name) -> str:
    """The one name a dataset goes by in run hashes, run ids, record folders and table columns.

    Aliases and titles resolve to the registry name (``"kadid"``, ``"KADID-10K"`` →
    ``"kadid10k"``), proxy names are lower-cased (``"Proxy-Tiny"`` → ``"proxy-tiny"``); a path to
    a manifest CSV and a name nothing resolves are returned unchanged (loading reports them).
    No file is read.

    >>> canonical_dataset_name("KADID-10K")
    'kadid10k'
    """
    if not isinstance(name, str) or _looks_like_path(name):
        return str(name)
    if name.lower().startswith(PROXY_PREFIX):
        return name.lower()
    try:
        return resolve_name(name)
    except UnknownNameError:
        return name


def load_manifest(name, root: str | Path | None = None, scheme: str = "paper") -> LoadedDataset:
    """Load a dataset's manifest by name, alias, proxy name or CSV path.

    Parameters
    ----------
    name : str or path
        ``"kadid"``, ``"KADID-10K"``, ``"tid2013"``, ``"proxy-tiny"``,
        ``"data_manifests/spaq.csv"``, ... (see the module docstring for the lookup order), or
        a folder of images without a ``manifest.csv`` (a label-free dataset; ``root`` and
        ``scheme`` are then ignored).
    root : str or Path, optional
        Dataset root the image paths are relative to. Default: ``QD_DATA_ROOT/<folder>`` for
        registered datasets, the benchmark folder for proxies, the CSV's folder for paths.
    scheme : str, default="paper"
        Split scheme used by :meth:`LoadedDataset.indices`, ``subset`` and ``n_train``; must
        be one of the manifest's schemes (``paper``, ``content``, ...).

    Returns
    -------
    LoadedDataset

    Raises
    ------
    UnknownNameError
        If ``name`` is neither a path, a proxy benchmark nor a registered dataset; the message
        lists the names and the closest matches.
    FileNotFoundError
        If the manifest is not there (with the command that builds it).
    ManifestError
        If the manifest is malformed or was edited without updating its hash.
    ValueError
        If ``scheme`` is not one of the manifest's split schemes.
    """
    folder = _image_folder(name)
    if folder is not None:
        from qd_lib.data.folder import open_images

        return open_images(folder)
    path, default_root = _locate(name)
    manifest = Manifest.read(path)
    if not manifest.labelled and not manifest.split_schemes:
        pass  # no splits: every row is a candidate (LoadedDataset.indices)
    elif scheme not in manifest.split_schemes:
        raise ValueError(f"The 'scheme' parameter must be one of {manifest.split_schemes} for "
                         f"manifest {manifest.name!r}. Got {scheme!r} instead.")
    if root is not None:
        root = Path(root).expanduser()
    elif default_root is not None:
        root = default_root
    else:
        root = dataset_root(manifest.name)
    logger.info("loaded %s from %s (%d images, hash %s); images under %s", manifest.name,
                display_path(path), len(manifest), manifest.content_hash[:8], display_path(root))
    return LoadedDataset(manifest.name, manifest, root, scheme, path)


def open_dataset(name, root: str | Path | None = None, scheme: str = "paper") -> LoadedDataset:
    """Like :func:`load_manifest`, but a proxy preset (``proxy-tiny`` …) is built if missing."""
    if isinstance(name, str) and name.lower().startswith(PROXY_PREFIX):
        preset = name.lower()[len(PROXY_PREFIX):]
        if preset in PROXY_PRESETS and not (data_root() / name.lower() / "manifest.csv").is_file():
            from qd_lib.data.synthetic import build_proxy_benchmark

            build_proxy_benchmark(preset)
    return load_manifest(name, root=root, scheme=scheme)


def check_dataset(dataset, root: str | Path | None = None, *, scheme: str | None = None,
                  part: str | None = None, decode: bool = False, n_show: int = 5,
                  show_progress: bool | None = None):
    """Report which images of a dataset are missing or unreadable, without raising.

    Parameters
    ----------
    dataset : LoadedDataset, Manifest-name or path
        What :func:`load_manifest` accepts, or a :class:`LoadedDataset`.
    root : str or Path, optional
        Dataset root (default: the loaded dataset's root).
    scheme, part : str, optional
        Only check one split part (e.g. ``scheme="paper", part="train"``); default all rows.
    decode : bool, default=False
        Also decode every image (catches truncated or corrupt files; slow on large sets).
    n_show : int, default=5
        How many names the logged summary shows.

    Returns
    -------
    ImageCheckReport
        ``missing`` and ``corrupt`` list the bad image ids. A summary (count and the first
        ``n_show`` names) is logged as a warning when anything is wrong, at INFO otherwise.
    """
    from qd_lib.data.dataset import check_images  # imports torch: load lazily

    if not isinstance(dataset, LoadedDataset):
        dataset = load_manifest(dataset, root=root)
    root = Path(root).expanduser() if root is not None else dataset.root
    if (scheme is None) != (part is None):
        raise ValueError("Pass both 'scheme' and 'part' (or neither). "
                         f"Got scheme={scheme!r}, part={part!r}.")
    rows = dataset.indices(part, scheme) if part is not None else None
    report = check_images(dataset.manifest, root, rows=rows, decode=decode,
                          show_progress=show_progress)
    where = display_path(root)
    if report.ok:
        logger.info("%s under %s: %s", dataset.name, where, report.summary(n_show))
    else:
        logger.warning("%s under %s: %s", dataset.name, where, report.summary(n_show))
    return report
