"""Selecting on a dataset, and selection records.

:func:`select_on_dataset` is the one path from a dataset to a coreset of its training split:
the method's input roles from a feature set (:func:`qd_lib.features.feature_inputs`), the MOS in
the selection API's convention (:func:`qd_lib.features.selection_mos`), the exact budget, and
:func:`qd_lib.selection.select`. Notebooks 03, 05 and 06 (:func:`run_selections`,
:func:`select_grid`), the runner and the explorer all call it, so one setting gives one coreset
whichever way it is asked for.

A selection record is the coreset as image ids in pick order with its provenance, saved
atomically as ``runs_dir()/selections/<dataset>/<method>/<run_id>.json`` with a sha256 of its
content, checked whenever it is read (:func:`load_selection`); :func:`find_selection` looks up
a record of the method's default options for a given training split.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib import __version__
from qd_lib.data.budget import format_fraction, resolve_budget
from qd_lib.features import (
    DEFAULT_FEATURE_SET,
    describe_features,
    feature_inputs,
    feature_spec,
    resolve_feature_set,
    selection_mos,
)
from qd_lib.paths import display_path, runs_dir
from qd_lib.selection.base import Selection, get_method, select
from qd_lib.utils.errors import CacheMismatchError
from qd_lib.utils.io import read_verified_json, write_verified_json

logger = logging.getLogger(__name__)

RECORD_SCHEMA_VERSION = 2  # 2: sha256 of the content, canonical feature spec


@dataclass(frozen=True)
class DatasetSelection:
    """A coreset of a dataset's training split and what it was selected from.

    Attributes
    ----------
    selection : Selection
        Indices into ``rows`` in pick order, options, diagnostics.
    rows : ndarray of int
        The training split's manifest rows, in the order the selector saw them.
    image_ids : list of str
        The picks as image ids, in pick order.
    fraction : float or None
        The fraction asked for (``None`` when a count was given).
    features : dict
        :func:`qd_lib.features.describe_features` of the inputs.
    budget_rule : str
        How the budget was computed, for records.
    seconds : float
        Wall time of the selection itself (features excluded).
    """

    selection: Selection
    rows: np.ndarray
    image_ids: list
    fraction: float | None
    features: dict
    budget_rule: str
    seconds: float


def selection_inputs(method: str, dataset, rows, *, feature_set=DEFAULT_FEATURE_SET,
                     seed: int = 0, provenance: dict | None = None, **extract_options):
    """``(features, mos)`` for ``method`` on ``rows``: the arrays of its input roles and the
    normalised MOS (:func:`qd_lib.features.selection_mos`)."""
    spec = get_method(method)
    features = feature_inputs(spec.inputs, dataset, rows, feature_set=feature_set, seed=seed,
                              provenance=provenance, **extract_options)
    return features, selection_mos(dataset, rows)


def select_on_dataset(dataset, method: str, budget, *, feature_set=DEFAULT_FEATURE_SET,
                      seed: int = 0, options: dict | None = None, scheme: str | None = None,
                      features: dict | None = None, **extract_options) -> DatasetSelection:
    """Select ``method``'s coreset of a dataset's training split.

    Parameters
    ----------
    dataset : LoadedDataset
        From :func:`qd_lib.data.open_dataset`.
    method : str
        A registered selection method.
    budget : float or int
        A fraction in (0, 1] (``floor(fraction × n_train)``, exact) or a count.
    feature_set : str, mapping or FeatureSet, default="offline"
        See :mod:`qd_lib.features.sets`.
    seed : int, default=0
        Seed of the method (and of the label-free probability stand-in).
    options : dict, optional
        Method options.
    scheme : str, optional
        Split scheme (default: the dataset's).
    features : dict, optional
        Precomputed input arrays for the training rows (skips extraction; must come from the
        same feature set).
    **extract_options
        Passed to :func:`qd_lib.encoders.extract`.
    """
    rows = dataset.indices("train", scheme)
    provenance: dict = {}
    roles = get_method(method).inputs
    if features is None:
        features, mos = selection_inputs(method, dataset, rows, feature_set=feature_set,
                                         seed=seed, provenance=provenance, **extract_options)
    else:
        features, mos = {k: features[k] for k in roles}, selection_mos(dataset, rows)
    size = resolve_budget(len(rows), budget)
    started = time.perf_counter()
    sel = select(method, features, size, mos=mos, seed=seed, **(options or {}))
    seconds = time.perf_counter() - started
    ids = dataset.manifest.table["image_id"].to_numpy()[rows]
    is_count = isinstance(budget, (int, np.integer)) and not isinstance(budget, bool)
    fraction = None if is_count else float(budget)
    rule = (f"a count of {size}" if is_count else
            f"floor({format_fraction(budget)} x {len(rows)}) = {size}")
    return DatasetSelection(sel, rows, sel.image_ids(ids), fraction,
                            describe_features(feature_set, roles, provenance), rule, seconds)


def _params_hash(params: dict) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _feature_set_tag(feature_set) -> str:
    """``offline``; ``offline+custom-<hash6>`` for a set with overridden roles."""
    spec = feature_spec(feature_set)
    if len(spec) == 1:
        return spec["set"]
    return f"{spec['set']}+custom-{_params_hash(spec)}"


def selection_run_id(dataset: str, feature_set, method: str, fraction, seed: int,
                     params: dict) -> str:
    """``<dataset>__<feature set>__<method>__f0.10__s0__<options hash>`` (the fraction in the
    one format of :func:`qd_lib.data.format_fraction`)."""
    return (f"{dataset}__{_feature_set_tag(feature_set)}__{method}__f{format_fraction(fraction)}"
            f"__s{seed}__{_params_hash(params)}")


def selection_path(dataset: str, feature_set, method: str, fraction, seed: int, params: dict,
                   out_dir=None) -> Path:
    """Where :func:`save_selection` writes the record of these settings."""
    folder = Path(out_dir) if out_dir is not None else runs_dir() / "selections"
    run_id = selection_run_id(dataset, feature_set, method, fraction, seed, params)
    return folder / dataset / method / f"{run_id}.json"


def save_selection(result: DatasetSelection, dataset, *, feature_set=DEFAULT_FEATURE_SET,
                   out_dir=None) -> Path:
    """Write a dataset selection as image ids (pick order) with its provenance and a sha256 of
    the record, atomically; return the path (see :func:`selection_path`)."""
    sel = result.selection
    if result.fraction is None:
        raise ValueError("Only a selection made from a fraction is saved as a record (its name "
                         "holds the fraction); got a count.")
    manifest = dataset.manifest
    path = selection_path(dataset.name, feature_set, sel.method, result.fraction, sel.seed or 0,
                          sel.params, out_dir)
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "run_id": path.stem,
        "dataset": dataset.name,
        "proxy": bool(manifest.info.proxy),
        "manifest_hash": manifest.content_hash,
        "scheme": dataset.scheme,
        "train_split_hash": manifest.split_hash(dataset.scheme, "train"),
        "feature_set": feature_spec(feature_set),
        "features": result.features,
        "fraction": result.fraction,
        "budget_rule": result.budget_rule,
        "image_ids": result.image_ids,
        "seconds": round(result.seconds, 3),
        "qd_lib": __version__,
        **sel.to_record(),
    }
    write_verified_json(path, record)
    logger.info("saved %s (%d images)", display_path(path), sel.budget)
    return path


def load_selection(path) -> dict:
    """Read a selection record written by :func:`save_selection`, checking its sha256.

    Raises
    ------
    CacheMismatchError
        If the record was edited or damaged after it was written (the message names it).
    ValueError
        If it comes from an incompatible schema version.
    """
    record = read_verified_json(path, "selection record")
    if record.get("schema_version") != RECORD_SCHEMA_VERSION:
        raise ValueError(f"Selection record {display_path(path)} has schema_version "
                         f"{record.get('schema_version')!r}; this version reads "
                         f"{RECORD_SCHEMA_VERSION}. Select again (the old record is ignored).")
    return record


def find_selection(dataset, method: str, fraction, *, feature_set=DEFAULT_FEATURE_SET,
                   seed: int = 0, out_dir=None) -> tuple[Path, dict] | None:
    """A saved record of ``method`` with its default options for exactly this training split,
    feature set, fraction and seed: ``(path, record)``, or ``None``.

    A record that fails its checksum is skipped with a warning naming it.
    """
    options = get_method(method).options
    path = selection_path(dataset.name, feature_set, method, fraction, seed, options, out_dir)
    candidates = sorted(path.parent.glob(f"{path.stem.rsplit('__', 1)[0]}__*.json"),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    rows = dataset.indices("train")
    ids = [str(i) for i in dataset.manifest.table["image_id"].to_numpy()[rows]]
    for candidate in candidates:
        try:
            record = load_selection(candidate)
        except CacheMismatchError as exc:
            logger.warning("ignoring %s", exc)
            continue
        except (OSError, ValueError) as exc:
            logger.debug("ignoring selection record %s: %s", display_path(candidate), exc)
            continue
        indices = np.asarray(record.get("indices", []), dtype=np.int64)
        params = record.get("params") or {}
        if (record.get("manifest_hash") != dataset.manifest.content_hash
                or record.get("train_split_hash") != dataset.manifest.split_hash(
                    dataset.scheme, "train")
                or record.get("feature_set") != feature_spec(feature_set)
                or record.get("seed") != seed or record.get("n_samples") != len(rows)
                or any(params.get(k, v) != v for k, v in options.items())
                or len(indices) and (indices.min() < 0 or indices.max() >= len(rows))
                or record.get("image_ids") != [ids[i] for i in indices]):
            continue
        logger.info("reusing selection record %s", display_path(candidate))
        return candidate, record
    return None


def run_selections(dataset, method: str, fractions, *, feature_set=DEFAULT_FEATURE_SET,
                   seed: int = 0, options: dict | None = None, out_dir=None,
                   features: dict | None = None, **extract_options):
    """Select ``method``'s coresets of the training split at each fraction and save them.

    Parameters
    ----------
    dataset : LoadedDataset
    method : str
    fractions : sequence of float
        Each in (0, 1]; budgets are ``floor(fraction × n_train)`` exactly.
    feature_set : str, mapping or FeatureSet, default="offline"
    seed : int, default=0
    options : dict, optional
        Method options (e.g. ``{"gamma": 0.7}``).
    out_dir : path, optional
        Root of the selection records (default ``runs_dir()/selections``).
    features : dict, optional
        Precomputed inputs (skips extraction).

    Returns
    -------
    summary : pandas.DataFrame
        One row per fraction: budget, seconds, record path.
    selections : dict of float to Selection
    """
    rows = dataset.indices("train")
    if features is None:
        features, _ = selection_inputs(method, dataset, rows, feature_set=feature_set,
                                       seed=seed, **extract_options)
    selections, summary = {}, []
    for fraction in fractions:
        result = select_on_dataset(dataset, method, fraction, feature_set=feature_set,
                                   seed=seed, options=options, features=features)
        path = save_selection(result, dataset, feature_set=feature_set, out_dir=out_dir)
        selections[fraction] = result.selection
        summary.append({"fraction": fraction, "budget": result.selection.budget,
                        "n_train": len(rows), "seconds": round(result.seconds, 3),
                        "record": display_path(path)})
    return pd.DataFrame(summary), selections


def select_grid(dataset, methods, fractions, *, feature_set=DEFAULT_FEATURE_SET, seed: int = 0,
                options: dict | None = None, out_dir=None, **extract_options):
    """Coresets of the training split for every method × fraction (records saved).

    Features are extracted once per input role and shared by all methods.

    Parameters
    ----------
    dataset : LoadedDataset
    methods : sequence of str
    fractions : sequence of float
    feature_set : str, mapping or FeatureSet, default="offline"
    seed : int, default=0
    options : dict, optional
        ``{method: {option: value}}``.

    Returns
    -------
    summary : pandas.DataFrame
        One row per method × fraction.
    selections : dict
        ``{method: {fraction: Selection}}``.
    """
    rows = dataset.indices("train")
    resolve_feature_set(feature_set)  # a bad spec fails before any extraction
    cache: dict[str, np.ndarray] = {}
    summaries, grid = [], {}
    for method in methods:
        roles = get_method(method).inputs
        needed = [k for k in roles if k not in cache]
        cache.update(feature_inputs(needed, dataset, rows, feature_set=feature_set, seed=seed,
                                    **extract_options))
        summary, grid[method] = run_selections(
            dataset, method, fractions, feature_set=feature_set, seed=seed,
            options=(options or {}).get(method), out_dir=out_dir,
            features={k: cache[k] for k in roles})
        summaries.append(summary.assign(method=method))
    return pd.concat(summaries, ignore_index=True), grid


__all__ = ["DatasetSelection", "RECORD_SCHEMA_VERSION", "find_selection", "load_selection",
           "run_selections", "save_selection", "select_grid", "select_on_dataset",
           "selection_inputs", "selection_path", "selection_run_id"]
