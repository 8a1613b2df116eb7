"""An interactive coreset explorer for notebooks (ipywidgets).

Pick a dataset, a feature set ("encoder": ``offline`` or ``paper``), a selection method and a
fraction; the explorer shows, for that coreset of the training split:

* the t-SNE map of the training split (the cached layout notebook 05 uses, under
  ``runs_dir()/"tsne"``) with the coreset overlaid;
* the MOS coverage plot, full training split vs coreset;
* the coverage numbers of :mod:`qd_lib.analysis` (MOS bins hit, range ratio, Wasserstein-1,
  Kolmogorov–Smirnov, covering radius) as a table;
* the first picks, in pick order, with small thumbnails.

Every change updates the same widget objects in place. Figures are rendered to PNG bytes and
shown in ``ipywidgets.Image`` widgets, so the explorer works in JupyterLab, under papermill and
in a headless browser without the ipympl backend.

Coresets come from the selection machinery of :mod:`qd_lib.selection.records`: a matching
selection record under ``runs_dir()/"selections"`` is reused
(:func:`~qd_lib.selection.records.find_selection`), otherwise the coreset is selected with
:func:`~qd_lib.selection.records.run_selections`, which saves its record. Features come from
:mod:`qd_lib.features`, MOS in the selection API's convention
(:func:`~qd_lib.features.selection_mos`, normalised); the figures show the native MOS scale.
Embeddings and layouts are computed on first use per (dataset, feature set); everything is also
kept in memory, so flipping back to a setting seen before is instant.

Label-free datasets (a folder of images not rated yet, e.g. ``explore("data/sample-photos/")``;
see :mod:`qd_lib.data.folder`) are shown with the MOS panels hidden: the map of every readable
image is grey with the picks in red, the coverage table keeps the size and the covering radius,
the thumbnails have no MOS column. ``rated=`` names images already rated (ids or paths, as for
``python -m qd_lib select``): they are marked on the map and the picks are conditioned on them
(:mod:`qd_lib.selection.images`); the fraction is of the readable images and counts new picks.
Such coresets are selected on the spot, not saved as records.

>>> from qd_lib.viz import explore
>>> ex = explore("proxy-tiny", method="kcenter", fraction=0.1)   # doctest: +SKIP
>>> ex                        # the last expression of a cell displays it # doctest: +SKIP
>>> ex.set(method="random", fraction=0.3)["n_selected"]          # doctest: +SKIP
33
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
import numpy as np

from qd_lib.analysis import covering_radius, mos_coverage, tsne_layout
from qd_lib.data import coreset_size, fraction_label, open_dataset
from qd_lib.features import FEATURE_SETS, NORMALIZED_MOS_RANGE, feature_inputs, selection_mos
from qd_lib.paths import data_root, display_path, runs_dir
from qd_lib.selection import available_methods, get_method
from qd_lib.selection.records import find_selection, run_selections, selection_path
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

PAPER_FRACTIONS = (0.01, 0.05, 0.1, 0.3, 0.5)
"""The coreset fractions of the paper (1, 5, 10, 30 and 50 %)."""

COVERAGE_KEYS = ("bins_hit", "range_ratio", "wasserstein", "ks", "covering_radius")
"""The coverage numbers the explorer reports (see :mod:`qd_lib.analysis.coverage`)."""

_COVERAGE_ROWS = (  # key, label, which direction is better
    ("bins_hit", "MOS bins hit (share)", "higher"),
    ("range_ratio", "MOS range ratio", "higher"),
    ("wasserstein", "Wasserstein-1 / MOS range", "lower"),
    ("ks", "Kolmogorov–Smirnov statistic", "lower"),
    ("covering_radius", "covering radius (normalised)", "lower"),
)

_FIGURE_DPI = 100
_STATUS_COLOURS = {"busy": "#E69F00", "ok": "#009E73", "error": "#D55E00"}


@dataclass
class _Coreset:
    """A coreset of one training split: picks (rows of the split) in pick order."""

    indices: np.ndarray
    source: str  # "record" (read from runs/selections) or "selected" (run and saved now)
    record: Path | None
    seconds: float | None


@dataclass
class _View:
    """Everything shown for one (dataset, feature set, method, fraction)."""

    dataset: str
    feature_set: str
    method: str
    fraction: float
    n_train: int
    proxy: bool
    picks: np.ndarray
    image_ids: list[str]
    coverage: dict[str, float]
    tsne_png: bytes
    mos_png: bytes
    coverage_html: str
    thumbnails_html: str
    coreset_source: str
    record: Path | None
    labelled: bool = True
    n_rated: int = 0


class CoresetExplorer:
    """Interactive view of one coreset: t-SNE map, MOS coverage, coverage numbers, first picks.

    Parameters
    ----------
    dataset : str, default="proxy-tiny"
        Dataset shown first: a name :func:`qd_lib.data.open_dataset` accepts (a ``proxy-*``
        preset is built on first use).
    feature_set : {"offline", "paper"}, default="offline"
        Embeddings the selectors and the t-SNE map read (see
        :data:`qd_lib.features.FEATURE_SETS`); ``paper`` needs the ARNIQA and LIQE
        checkpoints in ``QD_WEIGHTS_DIR``.
    method : str, default="qdiverse"
        Selection method shown first; one of ``methods``.
    fraction : float, default=0.1
        Coreset fraction shown first, in (0, 1]; added to ``fractions`` if it is not there.
    seed : int, default=0
        Seed of the selections, of the offline probability stand-in and of the t-SNE layout.
    scheme : str, default="paper"
        Split scheme whose training split is explored.
    datasets : sequence of str, optional
        Names offered in the dataset menu. Default: ``dataset`` and every proxy benchmark
        already built under ``QD_DATA_ROOT``.
    methods : sequence of str, optional
        Methods offered. Default: :func:`qd_lib.selection.available_methods`.
    fractions : sequence of float, default=(0.01, 0.05, 0.1, 0.3, 0.5)
        Fractions offered, each in (0, 1].
    n_thumbnails : int, default=24
        How many picks the thumbnail table lists (0: none).
    thumbnail_size : int, default=64
        Longest side of a thumbnail in pixels, in [8, 512].
    bins : int, default=10
        MOS bins of the coverage numbers (as in notebook 06).
    perplexity : float, default=30.0
        t-SNE perplexity (as in notebook 05, so the cached layouts are shared).
    selections_dir : str or Path, optional
        Root of the selection records (default ``runs_dir()/"selections"``).
    tsne_dir : str or Path, optional
        Folder of the cached t-SNE layouts (default ``runs_dir()/"tsne"``).
    use_records : bool, default=True
        Reuse matching selection records found under ``selections_dir`` instead of selecting
        again.
    extract_options : dict, optional
        Passed to :func:`qd_lib.encoders.extract` when embeddings must be computed
        (``batch_size``, ``device``, ...).
    rated : sequence of str, optional
        Label-free datasets only: images already rated (image ids, paths or list files, as
        :func:`qd_lib.selection.images.resolve_rated` reads them); the coresets are the next
        picks given them.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole app; an explorer that ends a notebook cell displays it.
    dataset_menu, feature_set_menu, method_menu, fraction_menu : ipywidgets.Dropdown
        The controls.
    status : ipywidgets.HTML
        One line: what is being done, what was shown, or the error (as text).
    tsne_image, mos_image : ipywidgets.Image
        PNG renderings of the t-SNE map and the MOS coverage plot.
    coverage_html, thumbnails_html : ipywidgets.HTML
        The coverage numbers and the first picks as HTML tables.

    Raises
    ------
    TypeError, ValueError
        On a bad argument; the message names the argument and the value received.
    UnknownNameError, FileNotFoundError
        If ``dataset`` cannot be opened.

    Notes
    -----
    A change made in the UI never raises: errors (missing weights, a budget of zero, ...)
    appear in the status line and in :meth:`state` under ``"error"``, and the figures show a
    placeholder.
    """

    def __init__(self, dataset: str = "proxy-tiny", feature_set: str = "offline",
                 method: str = "qdiverse", fraction: float = 0.1, *, seed: int = 0,
                 scheme: str = "paper", datasets: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None,
                 fractions: Sequence[float] = PAPER_FRACTIONS, n_thumbnails: int = 24,
                 thumbnail_size: int = 64, bins: int = 10, perplexity: float = 30.0,
                 selections_dir=None, tsne_dir=None, use_records: bool = True,
                 extract_options: dict | None = None, rated: Sequence[str] | None = None):
        check_scalar(dataset, "dataset", str)
        check_scalar(scheme, "scheme", str)
        check_scalar(seed, "seed", numbers.Integral, min_val=0)
        check_scalar(n_thumbnails, "n_thumbnails", numbers.Integral, min_val=0)
        check_scalar(thumbnail_size, "thumbnail_size", numbers.Integral, min_val=8, max_val=512)
        check_scalar(bins, "bins", numbers.Integral, min_val=1)
        check_scalar(perplexity, "perplexity", numbers.Real, min_val=0, closed="neither")
        if not isinstance(use_records, bool):
            raise TypeError(f"The 'use_records' parameter must be a bool. Got {use_records!r} "
                            "instead.")
        check_option(feature_set, "feature_set", list(FEATURE_SETS))
        registered = available_methods()
        methods = registered if methods is None else _check_names(methods, "methods",
                                                                  registered)
        check_option(method, "method", methods)
        fractions = _check_fractions(fractions)
        check_scalar(fraction, "fraction", numbers.Real, min_val=0, max_val=1, closed="right")
        fraction = float(fraction)
        if not any(math.isclose(fraction, f) for f in fractions):
            logger.info("fraction %g added to the fractions offered", fraction)
            fractions = tuple(sorted((*fractions, fraction)))
        fraction = next(f for f in fractions if math.isclose(fraction, f))
        if datasets is None:
            datasets = [dataset] + [n for n in _built_proxies() if n != dataset]
        else:
            datasets = list(_check_names(datasets, "datasets"))
            if dataset not in datasets:
                datasets.insert(0, dataset)
        if extract_options is not None and not isinstance(extract_options, dict):
            raise TypeError(f"The 'extract_options' parameter must be a dict or None. "
                            f"Got {extract_options!r} of type "
                            f"{type(extract_options).__name__} instead.")

        self.seed = int(seed)
        self.scheme = scheme
        self.n_thumbnails = int(n_thumbnails)
        self.thumbnail_size = int(thumbnail_size)
        self.bins = int(bins)
        self.perplexity = float(perplexity)
        self.use_records = use_records
        self.extract_options = dict(extract_options or {})
        self.selections_dir = (Path(selections_dir) if selections_dir is not None
                               else runs_dir() / "selections")
        self.tsne_dir = Path(tsne_dir) if tsne_dir is not None else runs_dir() / "tsne"

        self._datasets: dict[str, object] = {}
        self._inputs: dict[tuple, dict[str, np.ndarray]] = {}
        self._layouts: dict[tuple, np.ndarray] = {}
        self._coresets: dict[tuple, _Coreset] = {}
        self._views: dict[tuple, _View] = {}
        self._thumbs: dict[tuple, str | None] = {}
        self._placeholder: bytes | None = None
        self._view: _View | None = None
        self._error: str | None = None
        self._from_cache = False
        self._seconds = 0.0
        self._suspended = False

        if rated is not None and (isinstance(rated, str) or not isinstance(rated, Sequence)):
            raise TypeError(f"The 'rated' parameter must be a sequence of image ids or paths. "
                            f"Got {rated!r} instead.")
        self.rated = tuple(rated or ())
        self._candidates: dict[tuple, object] = {}

        opened = self._open(dataset)  # a bad dataset name fails here, not in the UI
        if self.rated and opened.labelled:
            raise ValueError(f"The 'rated' parameter applies to label-free datasets (a folder of "
                             f"images); {dataset!r} has MOS.")

        wide = {"description_width": "initial"}
        self.dataset_menu = W.Dropdown(options=list(datasets), value=dataset,
                                       description="dataset", style=wide)
        self.feature_set_menu = W.Dropdown(
            options=[(name, name) for name in FEATURE_SETS], value=feature_set,
            description="encoder", style=wide,
            tooltip="; ".join(f"{n}: {fs.description}" for n, fs in FEATURE_SETS.items()))
        self.method_menu = W.Dropdown(options=list(methods), value=method, description="method",
                                      style=wide)
        self.fraction_menu = W.Dropdown(options=[(fraction_label(f), f) for f in fractions],
                                        value=fraction, description="fraction", style=wide)
        self.status = W.HTML(layout=W.Layout(min_height="1.6em"))
        self.tsne_image = W.Image(format="png", layout=W.Layout(width="460px"))
        self.mos_image = W.Image(format="png", layout=W.Layout(width="460px"))
        self.coverage_html = W.HTML()
        self.thumbnails_html = W.HTML()
        self.title = W.HTML()
        for widget, name in ((self.dataset_menu, "qd-dataset"),
                             (self.feature_set_menu, "qd-feature-set"),
                             (self.method_menu, "qd-method"), (self.fraction_menu, "qd-fraction"),
                             (self.status, "qd-status"), (self.tsne_image, "qd-tsne"),
                             (self.mos_image, "qd-mos"), (self.coverage_html, "qd-coverage"),
                             (self.thumbnails_html, "qd-thumbnails")):
            widget.add_class(name)
        controls = W.HBox([self.dataset_menu, self.feature_set_menu, self.method_menu,
                           self.fraction_menu], layout=W.Layout(flex_flow="row wrap"))
        figures = W.HBox([self.tsne_image, self.mos_image], layout=W.Layout(flex_flow="row wrap"))
        self.widget = W.VBox([self.title, controls, self.status, figures, self.coverage_html,
                              self.thumbnails_html])
        self.widget.add_class("qd-explorer")
        for menu in self.menus:
            menu.observe(self._on_change, names="value")
        self.update()

    # ----------------------------------------------------------------------------- public API
    @property
    def menus(self) -> tuple[W.Dropdown, ...]:
        """The four controls: dataset, feature set, method, fraction."""
        return (self.dataset_menu, self.feature_set_menu, self.method_menu, self.fraction_menu)

    def set(self, *, dataset: str | None = None, feature_set: str | None = None,
            method: str | None = None, fraction: float | None = None) -> dict:
        """Change several controls at once (one update) and return the new :meth:`state`.

        Parameters
        ----------
        dataset, feature_set, method : str, optional
            Must be one of the options of the corresponding menu.
        fraction : float, optional
            Must be one of the fractions offered.

        Raises
        ------
        ValueError
            If a value is not among the menu's options (the message names the argument).
        """
        changes = {}
        for name, value, menu in (("dataset", dataset, self.dataset_menu),
                                  ("feature_set", feature_set, self.feature_set_menu),
                                  ("method", method, self.method_menu)):
            if value is not None:
                changes[menu] = check_option(value, name, [v for _, v in _options(menu)])
        if fraction is not None:
            offered = [v for _, v in _options(self.fraction_menu)]
            check_scalar(fraction, "fraction", numbers.Real)
            match = [f for f in offered if math.isclose(float(fraction), f)]
            if not match:
                raise ValueError(f"The 'fraction' parameter must be one of {offered}. "
                                 f"Got {fraction!r} instead.")
            changes[self.fraction_menu] = match[0]
        self._suspended = True
        try:
            for menu, value in changes.items():
                menu.value = value
        finally:
            self._suspended = False
        return self.update()

    def update(self) -> dict:
        """Recompute (or fetch from memory) the view of the current settings and show it.

        Never raises for a failure of the computation: the error is shown in the status line
        and returned in the state.

        Returns
        -------
        dict
            :meth:`state` after the update.
        """
        key = self._key()
        label = self._describe(key)
        started = time.perf_counter()
        view = self._views.get(key)
        self._from_cache = view is not None
        try:
            if view is None:
                self._set_status("busy", f"selecting… {label}")
                view = self._compute(key, label)
                self._views[key] = view
        except Exception as exc:  # shown in the UI as one line of text, never as a traceback
            logger.debug("explorer: %s failed", label, exc_info=True)
            self._seconds = time.perf_counter() - started
            self._show_error(label, exc)
            return self.state()
        self._seconds = time.perf_counter() - started
        self._show(view)
        return self.state()

    def state(self) -> dict:
        """The current settings and what is shown for them.

        Returns
        -------
        dict
            ``dataset``, ``feature_set``, ``method``, ``fraction``, ``seed``, ``scheme``,
            ``n_train``, ``n_selected``, ``proxy``, ``coverage`` (the :data:`COVERAGE_KEYS`
            numbers; only ``covering_radius`` for a label-free dataset), ``coreset_source``
            (``"record"``: read from a selection record, ``"selected"``: selected and saved now,
            ``"label-free"``: selected now, not saved), ``record`` (its path, relative to the
            repository where possible), ``labelled`` (False: no MOS, MOS panels hidden),
            ``n_rated`` (images already rated, label-free only), ``from_cache`` (served from
            memory), ``seconds`` (of the last update) and ``error`` (``None``, or the message
            shown in the status line). After an error the numbers are ``None`` and
            ``coverage`` is empty. For a label-free dataset ``n_train`` is the number of
            readable images.
        """
        view = None if self._error else self._view
        return {
            "dataset": self.dataset_menu.value,
            "feature_set": self.feature_set_menu.value,
            "method": self.method_menu.value,
            "fraction": self.fraction_menu.value,
            "seed": self.seed,
            "scheme": self.scheme,
            "n_train": view.n_train if view else None,
            "n_selected": len(view.picks) if view else None,
            "proxy": view.proxy if view else None,
            "coverage": dict(view.coverage) if view else {},
            "coreset_source": view.coreset_source if view else None,
            "record": display_path(view.record) if view and view.record else None,
            "labelled": view.labelled if view else None,
            "n_rated": view.n_rated if view else None,
            "from_cache": self._from_cache if view else False,
            "seconds": round(self._seconds, 3),
            "error": self._error,
        }

    def selected_image_ids(self) -> list[str]:
        """Image ids of the coreset shown, in pick order (empty after an error)."""
        return [] if self._error or self._view is None else list(self._view.image_ids)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------------------ internals
    def _key(self) -> tuple:
        return (self.dataset_menu.value, self.feature_set_menu.value, self.method_menu.value,
                float(self.fraction_menu.value))

    @staticmethod
    def _describe(key: tuple) -> str:
        name, fs, method, fraction = key
        return f"{name} · {fs} · {method} · {fraction_label(fraction)}"

    def _on_change(self, change) -> None:
        if not self._suspended:
            self.update()

    def _set_status(self, kind: str, text: str) -> None:
        colour = _STATUS_COLOURS[kind]
        self.status.value = (f'<span class="qd-status-line" data-state="{kind}" '
                             f'style="color:{colour}">{html.escape(text)}</span>')

    def _show(self, view: _View) -> None:
        self._view, self._error = view, None
        proxy = " — PROXY MOS (full-reference metrics, not human ratings)" if view.proxy else ""
        if view.labelled:
            self.title.value = (f"<b>Coreset explorer</b>: {html.escape(view.dataset)}, "
                                f"training split '{html.escape(self.scheme)}' ({view.n_train} "
                                f"images){html.escape(proxy)}")
        else:
            rated = f", {view.n_rated} already rated" if view.n_rated else ""
            self.title.value = (f"<b>Coreset explorer</b>: {html.escape(view.dataset)} "
                                f"({view.n_train} readable images{rated}) — label-free: no "
                                "MOS, MOS panels hidden")
        self.mos_image.layout.display = None if view.labelled else "none"
        self.tsne_image.value = view.tsne_png
        self.mos_image.value = view.mos_png
        self.coverage_html.value = view.coverage_html
        self.thumbnails_html.value = view.thumbnails_html
        if view.coreset_source == "label-free":
            where = "selected now, given the rated images" if view.n_rated else "selected now"
        else:
            where = {"record": f"read from {display_path(view.record)}",
                     "selected": f"selected, record saved to {display_path(view.record)}"
                     }.get(view.coreset_source, view.coreset_source)
        cached = "from memory" if self._from_cache else f"{self._seconds:.2f} s"
        images = "training images" if view.labelled else "images"
        self._set_status("ok", f"{self._describe(self._key())}: {len(view.picks)} of "
                               f"{view.n_train} {images} ({where}; {cached})")

    def _show_error(self, label: str, exc: Exception) -> None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self._error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        self._view = None
        placeholder = self._placeholder_png()
        self.tsne_image.value = placeholder
        self.mos_image.value = placeholder
        self.coverage_html.value = ""
        self.thumbnails_html.value = ""
        self._set_status("error", f"{label}: {self._error}")

    def _open(self, name: str):
        if name not in self._datasets:
            self._datasets[name] = open_dataset(name, scheme=self.scheme)
        return self._datasets[name]

    def _features(self, ds, fs: str, keys) -> dict[str, np.ndarray]:
        cache = self._inputs.setdefault((ds.name, fs), {})
        missing = [k for k in keys if k not in cache]
        if missing:
            cache.update(feature_inputs(missing, ds, ds.indices("train"), feature_set=fs,
                                        seed=self.seed, **self.extract_options))
        return {k: cache[k] for k in keys}

    def _layout(self, ds, fs: str, embedding: np.ndarray) -> np.ndarray:
        key = (ds.name, fs)
        if key not in self._layouts:
            # Same name, perplexity and seed as notebook 05, so the two share cached layouts.
            self._layouts[key] = tsne_layout(embedding, perplexity=self.perplexity,
                                             seed=self.seed, cache_dir=self.tsne_dir,
                                             name=f"{ds.name}_{fs}")
        return self._layouts[key]

    def _coreset(self, ds, fs: str, method: str, fraction: float, label: str) -> _Coreset:
        key = (ds.name, fs, method, fraction)
        if key in self._coresets:
            return self._coresets[key]
        rows = ds.indices("train")
        budget = ds.budget(fraction)
        if budget == 0:
            raise ValueError(f"{fraction_label(fraction)} of {len(rows)} training images is an "
                             "empty coreset (floor of the budget is 0); pick a larger fraction.")
        found = find_selection(ds, method, fraction, feature_set=fs, seed=self.seed,
                               out_dir=self.selections_dir) if self.use_records else None
        if found is not None:
            path, record = found
            coreset = _Coreset(np.asarray(record["indices"], dtype=np.int64), "record", path,
                               record.get("seconds"))
        else:
            self._set_status("busy", f"selecting… {label} (embeddings)")
            features = self._features(ds, fs, get_method(method).inputs)
            self._set_status("busy", f"selecting… {label} ({budget} of {len(rows)} images)")
            summary, selections = run_selections(ds, method, [fraction], feature_set=fs,
                                                 seed=self.seed, out_dir=self.selections_dir,
                                                 features=features)
            sel = selections[fraction]
            path = selection_path(ds.name, fs, method, fraction, sel.seed or 0, sel.params,
                                  self.selections_dir)
            coreset = _Coreset(np.asarray(sel.indices, dtype=np.int64), "selected", path,
                               float(summary["seconds"].iloc[0]))
        self._coresets[key] = coreset
        return coreset

    def _label_free_candidates(self, ds, fs: str):
        key = (ds.name, fs)
        if key not in self._candidates:
            from qd_lib.selection.images import load_candidates

            self._candidates[key] = load_candidates(
                ds, feature_set=fs, seed=self.seed, rated=list(self.rated) or None,
                extract_options=self.extract_options)
        return self._candidates[key]

    def _compute_label_free(self, ds, key: tuple, label: str) -> _View:
        """The view of a label-free dataset: map, covering radius, thumbnails; no MOS."""
        name, fs, method, fraction = key
        self._set_status("busy", f"selecting… {label} (embeddings)")
        found = self._label_free_candidates(ds, fs)
        n = found.n_candidates
        budget = coreset_size(n, fraction)
        if key not in self._coresets:
            self._set_status("busy", f"selecting… {label} ({budget} of {n} images)")
            started = time.perf_counter()
            sel = found.select(method, budget, seed=self.seed)
            self._coresets[key] = _Coreset(sel.indices, "label-free", None,
                                           time.perf_counter() - started)
        picks = self._coresets[key].indices
        embedding = found.features["embedding"]
        self._set_status("busy", f"selecting… {label} (t-SNE layout)")
        layout = self._layout(ds, fs, embedding)
        covered = np.union1d(found.rated, picks)
        coverage = {"covering_radius": float(covering_radius(embedding, covered))}
        after = f" after {len(found.rated)} rated" if len(found.rated) else ""
        title = f"{ds.name} · {method} {fraction_label(fraction)} ({len(picks)}/{n}){after}"
        tsne_png = _render_tsne(layout, None, picks, title=f"{title}\nt-SNE of the {fs} "
                                f"embedding (no MOS)", proxy=False, rated=found.rated)
        return _View(
            dataset=ds.name, feature_set=fs, method=method, fraction=fraction, n_train=n,
            proxy=False, picks=picks, image_ids=found.image_ids(picks), coverage=coverage,
            tsne_png=tsne_png, mos_png=b"",
            coverage_html=_label_free_table_html(coverage["covering_radius"],
                                                 n_selected=len(picks), n=n,
                                                 n_rated=len(found.rated), feature_set=fs),
            thumbnails_html=self._thumbnails_html(ds, found.rows, picks, proxy=False),
            coreset_source="label-free", record=None, labelled=False,
            n_rated=len(found.rated))

    def _compute(self, key: tuple, label: str) -> _View:
        name, fs, method, fraction = key
        ds = self._open(name)
        if not ds.labelled:
            return self._compute_label_free(ds, key, label)
        rows = ds.indices("train")
        table = ds.manifest.table
        mos = table["mos"].to_numpy(dtype=np.float64)[rows]
        info = ds.manifest.info
        coreset = self._coreset(ds, fs, method, fraction, label)
        picks = coreset.indices
        self._set_status("busy", f"selecting… {label} (embedding, t-SNE layout)")
        embedding = self._features(ds, fs, ["embedding"])["embedding"]
        layout = self._layout(ds, fs, embedding)
        self._set_status("busy", f"selecting… {label} (coverage, figures)")
        # coverage numbers in the selection API's MOS convention (scale-free: the same values as
        # notebook 06 and the study's diagnostics); the figures keep the native scale
        norm = selection_mos(ds, rows)
        coverage = mos_coverage(norm, norm[picks], mos_range=NORMALIZED_MOS_RANGE,
                                bins=self.bins)
        coverage = {k: float(coverage[k]) for k in COVERAGE_KEYS[:-1]}
        coverage["covering_radius"] = float(covering_radius(embedding, picks))
        proxy = bool(info.proxy)
        ids = table["image_id"].to_numpy()[rows]
        title = f"{ds.name} · {method} {fraction_label(fraction)} ({len(picks)}/{len(rows)})"
        tag = " · PROXY MOS" if proxy else ""
        tsne_png = _render_tsne(layout, mos, picks, title=f"{title}\nt-SNE of the {fs} "
                                f"embedding{tag}", proxy=proxy)
        mos_png = _render_mos(mos, mos[picks], mos_range=info.mos_range, label=method,
                              title=f"{title}\nMOS coverage{tag}", proxy=proxy)
        return _View(
            dataset=ds.name, feature_set=fs, method=method, fraction=fraction,
            n_train=len(rows), proxy=proxy, picks=picks, image_ids=[str(i) for i in ids[picks]],
            coverage=coverage, tsne_png=tsne_png, mos_png=mos_png,
            coverage_html=_coverage_table_html(coverage, n_selected=len(picks),
                                               n_train=len(rows), bins=self.bins, proxy=proxy,
                                               feature_set=fs),
            thumbnails_html=self._thumbnails_html(ds, rows, picks, proxy=proxy),
            coreset_source=coreset.source, record=coreset.record)

    def _thumbnail(self, ds, row: int) -> str | None:
        key = (ds.name, int(row), self.thumbnail_size)
        if key not in self._thumbs:
            from PIL import Image

            path = Path(ds.root) / str(ds.manifest.table["relpath"].iloc[row])
            try:
                with Image.open(path) as img:
                    img = img.convert("RGB")
                    img.thumbnail((self.thumbnail_size, self.thumbnail_size))
                    buf = io.BytesIO()
                    img.save(buf, format="PNG")
                self._thumbs[key] = base64.b64encode(buf.getvalue()).decode("ascii")
            except OSError as exc:
                logger.debug("thumbnail of %s: %s", display_path(path), exc)
                self._thumbs[key] = None
        return self._thumbs[key]

    def _thumbnails_html(self, ds, rows: np.ndarray, picks: np.ndarray, *, proxy: bool) -> str:
        if self.n_thumbnails == 0:
            return ""
        table = ds.manifest.table
        extra = [c for c in ("distortion", "level") if c in table.columns
                 and table[c].notna().any()]
        mos_head = ["proxy MOS" if proxy else "MOS"] if ds.labelled else []
        head = ["pick", "image", "image_id", *mos_head, *extra]
        shown = picks[:self.n_thumbnails]
        cell = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"'
        lines = [f'<div style="font-size:12px"><b>First {len(shown)} of {len(picks)} picks, in '
                 f'pick order</b>',
                 '<table class="qd-picks" style="border-collapse:collapse">',
                 "<thead><tr>" + "".join(f"<th {cell}>{html.escape(h)}</th>" for h in head)
                 + "</tr></thead><tbody>"]
        for rank, pick in enumerate(shown, start=1):
            row = int(rows[pick])
            record = table.iloc[row]
            thumb = self._thumbnail(ds, row)
            image = (f'<img src="data:image/png;base64,{thumb}" '
                     f'alt="{html.escape(str(record["image_id"]))}">' if thumb else "missing")
            values = [str(rank), image, html.escape(str(record["image_id"]))]
            if ds.labelled:
                values.append(f"{float(record['mos']):.3f}")
            for column in extra:
                value = record[column]
                if column == "level" and isinstance(value, numbers.Real) and not (
                        isinstance(value, float) and math.isnan(value)):
                    value = int(value)
                values.append(html.escape("" if _missing(value) else str(value)))
            lines.append(f'<tr class="qd-pick" data-rank="{rank}">'
                         + "".join(f"<td {cell}>{v}</td>" for v in values) + "</tr>")
        lines.append("</tbody></table></div>")
        return "\n".join(lines)

    def _placeholder_png(self) -> bytes:
        if self._placeholder is None:
            fig = _figure((4.6, 1.2))
            ax = fig.add_subplot()
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no coreset to show: see the status line", ha="center",
                    va="center", color="0.4")
            self._placeholder = _png(fig)
        return self._placeholder


def explore(dataset: str = "proxy-tiny", feature_set: str = "offline", method: str = "qdiverse",
            fraction: float = 0.1, **options) -> CoresetExplorer:
    """Build a :class:`CoresetExplorer` (the last expression of a notebook cell displays it).

    Parameters
    ----------
    dataset, feature_set, method, fraction
        The settings shown first (see :class:`CoresetExplorer`).
    **options
        Other keyword arguments of :class:`CoresetExplorer` (``seed``, ``fractions``, ...).

    Returns
    -------
    CoresetExplorer
    """
    return CoresetExplorer(dataset, feature_set, method, fraction, **options)


# ---------------------------------------------------------------------------------- helpers
def _options(menu: W.Dropdown) -> list[tuple[str, object]]:
    return [o if isinstance(o, tuple) else (str(o), o) for o in menu.options]


def _missing(value) -> bool:
    try:
        return value is None or bool(np.isnan(value))
    except (TypeError, ValueError):
        return False


def _check_names(values, name: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"The {name!r} parameter must be a non-empty sequence of str. "
                        f"Got {values!r} instead.")
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"The {name!r} parameter must hold only str. Got {value!r} of "
                            f"type {type(value).__name__} in it.")
        if allowed is not None:
            check_option(value, name, allowed)
    return tuple(dict.fromkeys(values))


def _check_fractions(fractions) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) \
            or not fractions:
        raise TypeError(f"The 'fractions' parameter must be a non-empty sequence of floats in "
                        f"(0, 1]. Got {fractions!r} instead.")
    for f in fractions:
        check_scalar(f, "fractions", numbers.Real, min_val=0, max_val=1, closed="right")
    return tuple(sorted({float(f) for f in fractions}))


def _built_proxies() -> list[str]:
    root = data_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.glob("proxy-*") if (p / "manifest.csv").is_file())


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_FIGURE_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_FIGURE_DPI)
    return buf.getvalue()


def _render_tsne(layout, mos, picks, *, title: str, proxy: bool, rated=None) -> bytes:
    import matplotlib

    from qd_lib.viz.figures import STYLE
    from qd_lib.viz.tsne import plot_coreset_map

    with matplotlib.rc_context({**STYLE, "savefig.bbox": "tight"}):
        fig = _figure((4.6, 4.0))
        ax = fig.add_subplot()
        mappable = plot_coreset_map(layout, mos, picks, ax=ax, title=title, point_size=10,
                                    rated=rated, legend=mos is None)
        if mos is None:  # label-free: nothing to colour by
            return _png(fig)
        bar = fig.colorbar(mappable, ax=ax, shrink=0.8, pad=0.02)
        bar.set_label("proxy MOS" if proxy else "MOS")
        bar.solids.set(alpha=1)
        return _png(fig)


def _render_mos(mos_full, mos_subset, *, mos_range, label: str, title: str, proxy: bool) -> bytes:
    import matplotlib

    from qd_lib.viz.coverage import plot_mos_coverage
    from qd_lib.viz.figures import STYLE

    with matplotlib.rc_context({**STYLE, "savefig.bbox": "tight"}):
        fig = _figure((4.6, 4.0))
        ax = fig.add_subplot()
        plot_mos_coverage(mos_full, mos_subset, mos_range=mos_range, ax=ax, label=label,
                          title=title, proxy=proxy)
        return _png(fig)


def _label_free_table_html(radius: float, *, n_selected: int, n: int, n_rated: int,
                           feature_set: str) -> str:
    cell = 'style="padding:2px 10px;border-bottom:1px solid #ddd;text-align:left"'
    rows = [("n_selected", "new picks", f"{n_selected} of {n}", ""),
            ("n_rated", "already rated", str(n_rated), ""),
            ("covering_radius", f"covering radius of rated + picks (normalised), "
                                f"{feature_set} embedding", f"{radius:.3f}", "lower")]
    body = "".join(f'<tr data-key="{html.escape(k)}">' + "".join(
        f"<td {cell}>{html.escape(v)}</td>" for v in (label, value, better)) + "</tr>"
        for k, label, value, better in rows)
    return ('<div style="font-size:12px"><b>Coverage of the images (no MOS: label-free)</b>'
            '<table class="qd-coverage-table" style="border-collapse:collapse">'
            f"<thead><tr><th {cell}>measure</th><th {cell}>value</th>"
            f"<th {cell}>better</th></tr></thead><tbody>{body}</tbody></table></div>")


def _coverage_table_html(coverage: dict, *, n_selected: int, n_train: int, bins: int,
                         proxy: bool, feature_set: str) -> str:
    cell = 'style="padding:2px 10px;border-bottom:1px solid #ddd;text-align:left"'
    mos = "proxy MOS" if proxy else "MOS"
    rows = [("coreset size", f"{n_selected} of {n_train}", "")]
    for key, label, better in _COVERAGE_ROWS:
        label = label.replace("MOS", mos)
        if key == "bins_hit":
            label += f", {bins} bins"
        if key == "covering_radius":
            label += f", {feature_set} embedding"
        rows.append((label, f"{coverage[key]:.3f}", better))
    body = "".join(f'<tr data-key="{html.escape(k)}">' + "".join(
        f"<td {cell}>{html.escape(v)}</td>" for v in (label, value, better)) + "</tr>"
        for k, (label, value, better) in zip(("n_selected", *COVERAGE_KEYS), rows))
    return ('<div style="font-size:12px"><b>Coverage of the training split</b>'
            '<table class="qd-coverage-table" style="border-collapse:collapse">'
            f"<thead><tr><th {cell}>measure</th><th {cell}>value</th>"
            f"<th {cell}>better</th></tr></thead><tbody>{body}</tbody></table></div>")
