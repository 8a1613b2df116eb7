"""Dataset manifests: one label-table schema for every IQA dataset.

A manifest is a CSV table with one row per image and a YAML sidecar with the dataset's metadata.

Columns
-------
``image_id`` (str, required, unique)
    Stable identifier, e.g. ``I01_01_01.png`` for KADID-10K.
``relpath`` (str, required)
    Image path relative to the dataset root, POSIX separators, never leaving the root.
``mos`` (float, required; absent or empty in a label-free manifest)
    Mean opinion score on the dataset's native scale (see ``DatasetInfo.mos_range``).
``mos_std`` (float, optional; absent or empty in a label-free manifest)
    Standard deviation of the ratings, where published.
``group`` (str, optional)
    Content group: the reference image for synthetic datasets, the prompt for AGIQA-3K.
``ref_relpath`` (str, optional)
    Path of the pristine reference image, for full-reference use.
``distortion``, ``level`` (str, number, optional)
    Distortion type and level, where known (an integer level on grid datasets, a continuous
    severity on the authentic proxy preset).
``split_<scheme>`` (str, one per split scheme)
    ``train``, ``val`` or ``test``.

Any other column is kept as it is (e.g. ``generator`` for AGIQA-3K).

Kinds
-----
``DatasetInfo.kind`` says which of two kinds of manifest a table is:

``"labelled"`` (the default: every IQA benchmark)
    ``image_id``, ``relpath`` and ``mos`` are required; ``DatasetInfo.mos_range`` is required
    and every MOS must be finite and inside it.
``"label_free"`` (images not rated yet, e.g. a folder to choose images from: see
:mod:`qd_lib.data.folder`)
    Only ``image_id`` and ``relpath`` are required. ``mos`` and ``mos_std`` are optional and,
    where present, must be empty in every row (a table with scores is a labelled one), and
    they are dropped; ``mos_range`` must be ``None``. Split columns are optional (a label-free
    dataset has no test split: every image is a candidate); where present they are checked as
    above. The other rules (unique ids, paths inside the root, numeric ``level``) are the same.
    :meth:`Manifest.normalized_mos` raises :class:`~qd_lib.utils.errors.ManifestError`, so
    nothing can use scores that do not exist.

The sidecar (``<name>.yaml``) holds a :class:`DatasetInfo` plus ``manifest_hash``, the sha256 of
the canonical CSV text. Loading recomputes it and refuses a table that was edited by hand
without updating the hash.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from qd_lib.paths import display_path
from qd_lib.utils.errors import ManifestError
from qd_lib.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image_id", "relpath", "mos")
LABEL_FREE_REQUIRED_COLUMNS = ("image_id", "relpath")
LABEL_COLUMNS = ("mos", "mos_std")
KINDS = ("labelled", "label_free")
OPTIONAL_COLUMNS = ("mos_std", "group", "ref_relpath", "distortion", "level")
STRING_COLUMNS = ("image_id", "relpath", "group", "ref_relpath", "distortion")
NUMERIC_COLUMNS = ("mos", "mos_std", "level")
SPLIT_PREFIX = "split_"
SPLIT_PARTS = ("train", "val", "test")
SCHEMA_VERSION = 1
_FLOAT_FORMAT = "%.10g"


@dataclass
class DatasetInfo:
    """Metadata of a dataset, stored in the manifest's YAML sidecar.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"kadid10k"``.
    mos_range : tuple of float or None
        The native scale's (low, high) ends. MOS normalisation uses this fixed range, never
        one computed from a split or a coreset. Required for a labelled manifest, ``None``
        for a label-free one.
    higher_is_better : bool
        ``False`` for DMOS-style scales.
    source : str
        Where the labels come from (URL or package).
    licence : str
        Licence note for the labels and images.
    proxy : bool
        True for the offline proxy benchmark, whose MOS come from full-reference metrics and
        not from human ratings.
    description : str
        One paragraph for people.
    split_notes : dict
        How each split scheme was made (seed, fractions, grouping).
    extra : dict
        Anything else worth recording.
    kind : {"labelled", "label_free"}, default="labelled"
        Whether the images have MOS (see the module docstring, "Kinds"). The sidecar records
        it only for label-free manifests, so labelled sidecars are unchanged.
    """

    name: str
    mos_range: tuple[float, float] | None = None
    higher_is_better: bool = True
    source: str = ""
    licence: str = ""
    proxy: bool = False
    description: str = ""
    split_notes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    kind: str = "labelled"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ManifestError(f"DatasetInfo {self.name!r}: 'kind' must be one of "
                                f"{list(KINDS)}. Got {self.kind!r}.")
        if self.kind == "label_free":
            if self.mos_range is not None:
                raise ManifestError(
                    f"DatasetInfo {self.name!r}: a label-free dataset has no MOS scale, so "
                    f"'mos_range' must be None. Got {self.mos_range!r}; use kind='labelled' "
                    "for a dataset with scores.")
            return
        if self.mos_range is None:
            raise ManifestError(f"DatasetInfo {self.name!r}: a labelled dataset needs "
                                "'mos_range', two finite numbers (low, high) with low < high; "
                                "use kind='label_free' for images without scores.")
        lo, hi = (float(v) for v in self.mos_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ManifestError(
                f"DatasetInfo {self.name!r}: 'mos_range' must be two finite numbers (low, high) "
                f"with low < high. Got {self.mos_range!r}."
            )
        self.mos_range = (lo, hi)


def normalize_mos(mos, mos_range, higher_is_better: bool = True) -> np.ndarray:
    """Map MOS from its native ``mos_range`` to [0, 1], 1 being the best quality.

    Parameters
    ----------
    mos : array-like
        Scores on the native scale.
    mos_range : (float, float)
        The scale's fixed ends (never computed from the data at hand).
    higher_is_better : bool, default=True
        If false (DMOS), the scale is flipped so that 1 is still the best quality.
    """
    lo, hi = (float(v) for v in mos_range)
    if not lo < hi:
        raise ValueError(f"The 'mos_range' parameter must satisfy low < high. Got {mos_range!r}.")
    out = (np.asarray(mos, dtype=np.float64) - lo) / (hi - lo)
    return out if higher_is_better else 1.0 - out


def denormalize_mos(score, mos_range, higher_is_better: bool = True) -> np.ndarray:
    """Inverse of :func:`normalize_mos`."""
    lo, hi = (float(v) for v in mos_range)
    score = np.asarray(score, dtype=np.float64)
    score = score if higher_is_better else 1.0 - score
    return lo + score * (hi - lo)


def _row_label(table: pd.DataFrame, pos: int) -> str:
    ident = table["image_id"].iloc[pos] if "image_id" in table.columns else None
    return f"row {pos}" + (f" (image_id={ident!r})" if ident is not None else "")


def check_relpath(relpath: str, *, what: str = "relpath") -> str:
    """Return ``relpath`` normalised, or raise if it is empty, absolute or leaves the root."""
    if not isinstance(relpath, str) or not relpath.strip():
        raise ManifestError(f"{what} must be a non-empty relative path. Got {relpath!r}.")
    posix = relpath.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ManifestError(f"{what} {relpath!r} is absolute; paths must be relative to the "
                            "dataset root.")
    norm = posixpath.normpath(posix)
    if norm == ".." or norm.startswith("../"):
        raise ManifestError(f"{what} {relpath!r} escapes the dataset root.")
    return norm


class Manifest:
    """A validated label table plus its :class:`DatasetInfo`.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows in the schema described in this module's docstring.
    info : DatasetInfo
        The dataset's metadata.
    source : str, optional
        Where the table was read from (for error messages).

    Raises
    ------
    ManifestError
        On missing columns, non-finite or out-of-range MOS, duplicate ids, paths that escape
        the root, unknown split values or an empty split. The message names the row and value.
    """

    def __init__(self, table: pd.DataFrame, info: DatasetInfo, *, source: str | None = None):
        self.info = info
        self.source = source or info.name
        self.table = self._validate(table.reset_index(drop=True))

    # -- validation ------------------------------------------------------------------------
    def _fail(self, message: str) -> ManifestError:
        return ManifestError(f"Manifest {self.source!r}: {message}")

    def _validate(self, table: pd.DataFrame) -> pd.DataFrame:
        required = REQUIRED_COLUMNS if self.labelled else LABEL_FREE_REQUIRED_COLUMNS
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise self._fail(f"missing required column(s) {missing}; it has columns "
                             f"{list(table.columns)}.")
        if len(table) == 0:
            raise self._fail("the table has no rows.")
        table = table.copy()
        if not self.labelled:  # empty label columns are dropped: one canonical table, one hash
            self._check_no_labels(table)
            table = table.drop(columns=[c for c in LABEL_COLUMNS if c in table.columns])
        for col in STRING_COLUMNS:
            if col in table.columns:
                table[col] = table[col].map(lambda v: None if _is_missing(v) else str(v)).astype(
                    object)
        for col in ("image_id", "relpath"):
            empty = table[col].isna()
            if empty.any():
                raise self._fail(f"{_row_label(table, int(np.flatnonzero(empty)[0]))} has an "
                                 f"empty {col!r}.")
        for col in NUMERIC_COLUMNS:
            if col in table.columns:
                table[col] = self._numeric(table, col,
                                           allow_missing=col != "mos" or not self.labelled)
        if self.labelled:
            lo, hi = self.info.mos_range
            tol = 1e-9 * (hi - lo)
            out = np.flatnonzero((table["mos"] < lo - tol) | (table["mos"] > hi + tol))
            if len(out):
                pos = int(out[0])
                raise self._fail(f"{_row_label(table, pos)}: 'mos' {table['mos'].iloc[pos]!r} "
                                 f"is outside the dataset's range [{lo:g}, {hi:g}].")
        dup = table["image_id"].duplicated(keep=False)
        if dup.any():
            first = table["image_id"][dup].iloc[0]
            rows = np.flatnonzero(table["image_id"] == first).tolist()
            raise self._fail(f"image_id {first!r} is duplicated (rows {rows}).")
        for col in ("relpath", "ref_relpath"):
            if col not in table.columns:
                continue
            values = []
            for pos, value in enumerate(table[col]):
                if value is None and col == "ref_relpath":
                    values.append(None)
                    continue
                try:
                    values.append(check_relpath(value, what=f"'{col}'"))
                except ManifestError as exc:
                    raise self._fail(f"{_row_label(table, pos)}: {exc}") from None
            table[col] = values
        if "level" in table.columns:
            # an integer on the grid datasets (KADID, TID, the grid proxy presets); a continuous
            # severity on the authentic proxy preset
            lv = table["level"]
            bad = np.flatnonzero(lv.notna() & (lv < 0))
            if len(bad):
                raise self._fail(f"{_row_label(table, int(bad[0]))}: 'level' must be a "
                                 f"non-negative number. Got {lv.iloc[int(bad[0])]!r}.")
        for col in self.split_columns_of(table):
            values = table[col].map(lambda v: None if _is_missing(v) else str(v).strip().lower())
            bad = np.flatnonzero(~values.isin(SPLIT_PARTS))
            if len(bad):
                pos = int(bad[0])
                raise self._fail(f"{_row_label(table, pos)}: split column {col!r} must be one of "
                                 f"{list(SPLIT_PARTS)}. Got {table[col].iloc[pos]!r}.")
            table[col] = values.astype(object)
            for part in ("train", "test"):
                if not (values == part).any():
                    raise self._fail(f"split scheme {col[len(SPLIT_PREFIX):]!r} has an empty "
                                     f"{part!r} split.")
        return table[self._column_order(table)]

    def _check_no_labels(self, table: pd.DataFrame) -> None:
        """A label-free table may carry ``mos``/``mos_std`` columns only if they are empty."""
        for col in LABEL_COLUMNS:
            if col not in table.columns:
                continue
            filled = np.flatnonzero(table[col].map(lambda v: not _is_missing(v)).to_numpy(bool))
            if len(filled):
                pos = int(filled[0])
                raise self._fail(
                    f"{_row_label(table, pos)} has {col!r} {table[col].iloc[pos]!r}, but the "
                    "manifest is label-free (DatasetInfo.kind='label_free'), whose "
                    f"{col!r} column must be empty or absent. A table with scores is a "
                    "labelled manifest: give it kind='labelled' and a 'mos_range'.")

    def _numeric(self, table: pd.DataFrame, col: str, *, allow_missing: bool) -> pd.Series:
        raw = table[col]
        values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        not_number = values.isna() & raw.map(lambda v: not _is_missing(v))
        if not_number.any():
            pos = int(np.flatnonzero(not_number)[0])
            raise self._fail(f"{_row_label(table, pos)}: {col!r} must be a number. "
                             f"Got {raw.iloc[pos]!r}.")
        bad = ~np.isfinite(values.to_numpy())
        if allow_missing:
            bad &= ~values.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise self._fail(f"{_row_label(table, pos)}: {col!r} must be a finite number. "
                             f"Got {raw.iloc[pos]!r}.")
        return values

    @staticmethod
    def split_columns_of(table: pd.DataFrame) -> list[str]:
        return sorted(c for c in table.columns if str(c).startswith(SPLIT_PREFIX))

    @staticmethod
    def _column_order(table: pd.DataFrame) -> list[str]:
        known = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in table.columns]
        splits = Manifest.split_columns_of(table)
        rest = sorted(c for c in table.columns if c not in known and c not in splits)
        return known + splits + rest

    # -- accessors -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        kind = "proxy " if self.info.proxy else "" if self.labelled else "label-free "
        return (f"<Manifest {self.info.name!r}: {len(self)} {kind}images, schemes "
                f"{self.split_schemes}, hash {self.content_hash[:8]}>")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def labelled(self) -> bool:
        """False for a label-free manifest (images without MOS; see the module docstring)."""
        return self.info.kind == "labelled"

    @property
    def split_schemes(self) -> list[str]:
        """Names of the split schemes, e.g. ``["content", "paper"]``."""
        return [c[len(SPLIT_PREFIX):] for c in self.split_columns_of(self.table)]

    def _split_column(self, scheme: str) -> str:
        col = SPLIT_PREFIX + scheme
        if col not in self.table.columns:
            raise ValueError(f"The 'scheme' parameter must be one of {self.split_schemes} for "
                             f"manifest {self.name!r}. Got {scheme!r} instead.")
        return col

    def split_indices(self, scheme: str, part: str) -> np.ndarray:
        """Row positions of split ``part`` (``train``/``val``/``test``) under ``scheme``."""
        if part not in SPLIT_PARTS:
            raise ValueError(f"The 'part' parameter must be one of {list(SPLIT_PARTS)}. "
                             f"Got {part!r} instead.")
        return np.flatnonzero(self.table[self._split_column(scheme)].to_numpy() == part)

    def subset(self, scheme: str, part: str) -> pd.DataFrame:
        """Rows of split ``part`` under ``scheme`` (a copy, index reset)."""
        return self.table.iloc[self.split_indices(scheme, part)].reset_index(drop=True)

    def split_counts(self) -> pd.DataFrame:
        """Number of images per split (rows) and scheme (columns)."""
        counts = {s: self.table[SPLIT_PREFIX + s].value_counts() for s in self.split_schemes}
        return pd.DataFrame(counts).reindex(list(SPLIT_PARTS)).fillna(0).astype(int)

    def distortion_counts(self) -> pd.DataFrame:
        """Number of images per distortion type (rows) and level (columns).

        Continuous levels (the authentic proxy preset's severities) are counted in whole-level
        bins rounded up: (0, 1] → 1, (1, 2] → 2, ...; integer levels are unchanged.
        """
        if "distortion" not in self.table.columns or "level" not in self.table.columns:
            raise ValueError(f"Manifest {self.name!r} has no 'distortion'/'level' columns.")
        table = self.table.dropna(subset=["distortion", "level"])
        counts = pd.crosstab(table["distortion"], np.ceil(table["level"]).astype(int))
        order = list(dict.fromkeys(table["distortion"]))  # first-appearance order
        return counts.reindex(order)

    def normalized_mos(self) -> np.ndarray:
        """MOS mapped to [0, 1] with the dataset's fixed native range (1 = best).

        Raises
        ------
        ManifestError
            If the manifest is label-free (it has no MOS).
        """
        if not self.labelled:
            raise ManifestError(
                f"Manifest {self.name!r} is label-free: its images have no MOS, so nothing "
                "that needs scores (MOS bins, MOS-balanced selection, training, coverage of "
                "the MOS range) can use it. Label-free selection methods (qdiverse, kcenter, "
                "herding, random, pgcs) work without them.")
        return normalize_mos(self.table["mos"], self.info.mos_range, self.info.higher_is_better)

    # -- hashing and serialisation ---------------------------------------------------------
    def to_csv_text(self) -> str:
        """The canonical CSV text (fixed column order, float format and line endings)."""
        buf = io.StringIO()
        self.table.to_csv(buf, index=False, float_format=_FLOAT_FORMAT, lineterminator="\n",
                          na_rep="")
        return buf.getvalue()

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical CSV text: identical tables give identical hashes."""
        return hashlib.sha256(self.to_csv_text().encode("utf-8")).hexdigest()

    def split_hash(self, scheme: str, part: str | None = None) -> str:
        """sha256 over the (image_id, split) pairs of ``scheme``, or of one ``part`` of it."""
        col = self._split_column(scheme)
        rows = self.table[["image_id", col]]
        if part is not None:
            rows = rows[rows[col] == part]
        text = "\n".join(f"{i},{s}" for i, s in rows.itertuples(index=False, name=None))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def metadata(self) -> dict[str, Any]:
        """The YAML sidecar's content."""
        meta = asdict(self.info)
        if self.labelled:
            meta["mos_range"] = list(self.info.mos_range)
            del meta["kind"]  # recorded only for label-free manifests: older sidecars unchanged
        meta.update(
            schema_version=SCHEMA_VERSION,
            manifest_hash=self.content_hash,
            n_images=len(self),
            split_counts={s: self.split_counts()[s].to_dict() for s in self.split_schemes},
            split_hashes={s: self.split_hash(s) for s in self.split_schemes},
        )
        return meta

    def save(self, csv_path: str | Path) -> Path:
        """Write ``<name>.csv`` and its ``.yaml`` sidecar atomically; return the CSV path."""
        csv_path = Path(csv_path)
        atomic_write_text(csv_path, self.to_csv_text())
        atomic_write_text(csv_path.with_suffix(".yaml"),
                          yaml.safe_dump(self.metadata(), sort_keys=True, allow_unicode=True))
        logger.info("wrote manifest %s (%d images, hash %s)", display_path(csv_path), len(self),
                    self.content_hash[:8])
        return csv_path

    @classmethod
    def read(cls, csv_path: str | Path, *, verify_hash: bool = True) -> Manifest:
        """Read a manifest CSV and its YAML sidecar.

        Raises
        ------
        FileNotFoundError
            If the CSV or the sidecar is missing.
        ManifestError
            If the table is malformed or, with ``verify_hash``, its content hash differs from
            the sidecar's ``manifest_hash``.
        """
        csv_path = Path(csv_path)
        meta_path = csv_path.with_suffix(".yaml")
        for path in (csv_path, meta_path):
            if not path.is_file():
                raise FileNotFoundError(f"Manifest file not found: {display_path(path)}")
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        fields = set(DatasetInfo.__dataclass_fields__)
        try:
            info = DatasetInfo(**{k: v for k, v in meta.items() if k in fields})
        except TypeError as exc:
            raise ManifestError(f"Manifest sidecar {display_path(meta_path)!r} is malformed: "
                                f"{exc}") from None
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
        manifest = cls(table, info, source=display_path(csv_path))
        expected = meta.get("manifest_hash")
        if verify_hash and expected and manifest.content_hash != expected:
            raise ManifestError(
                f"Manifest {display_path(csv_path)!r} has content hash "
                f"{manifest.content_hash[:12]}…, but its sidecar records {str(expected)[:12]}…. "
                "The table was changed without rebuilding it; rebuild it or re-save it."
            )
        return manifest


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def split_by_rows(n: int, fractions=(0.7, 0.1, 0.2), *, seed: int = 0) -> np.ndarray:
    """Random train/val/test labels for ``n`` rows with exact counts.

    Counts are ``floor(f_train·n)`` and ``floor(f_val·n)``; the test split takes the rest.
    """
    labels = _labels_for_counts(n, fractions)
    return labels[np.random.default_rng(seed).permutation(n)]


def split_by_groups(groups, fractions=(0.7, 0.1, 0.2), *, seed: int = 0) -> np.ndarray:
    """Train/val/test labels that keep every group (reference or prompt) in one split.

    Groups are shuffled with ``seed`` and dealt in the proportions ``fractions``; with three
    or more groups, train and test each get at least one group.
    """
    groups = np.asarray(groups, dtype=object)
    unique = np.array(sorted(set(groups.tolist())), dtype=object)
    if len(unique) < 2:
        raise ValueError(f"A group split needs at least 2 groups. Got {len(unique)}.")
    group_labels = _labels_for_counts(len(unique), fractions, ensure_train_test=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    mapping = dict(zip(unique[order].tolist(), group_labels.tolist()))
    return np.array([mapping[g] for g in groups.tolist()], dtype=object)


def _labels_for_counts(n: int, fractions, *, ensure_train_test: bool = False) -> np.ndarray:
    f_train, f_val, _ = fractions
    n_train = int(math.floor(f_train * n + 1e-9))
    n_val = int(math.floor(f_val * n + 1e-9))
    if ensure_train_test:
        n_train = min(max(n_train, 1), n - 1)
        n_val = min(n_val, n - n_train - 1)
    return np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val),
                    dtype=object)
