"""One signature and one registry for every coreset selector.

Each method is a function registered with :func:`register`. It receives validated inputs
(``features`` as a dict of 2-D arrays with the keys the method declares, ``budget`` as an int,
``mos`` as a 1-D float array or ``None``, ``random_state`` as a :class:`numpy.random.Generator`)
plus its own keyword options, and returns a :class:`MethodOutput`. The facade
:func:`qd_lib.selection.select` does the validation and wraps the output in a :class:`Selection`.
"""
from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qd_lib.data.budget import resolve_budget
from qd_lib.selection._kernels import THREADS, one_thread
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.io import to_jsonable
from qd_lib.utils.validation import check_array_2d, check_random_state


@dataclass
class MethodOutput:
    """What a selector implementation returns.

    Attributes
    ----------
    indices : ndarray of int
        Row indices in pick order.
    params : dict
        The resolved options (defaults filled in), JSON-serialisable.
    info : dict
        Method-specific diagnostics (per-batch budgets, retained dimensions, bins, …).
    gains : ndarray, optional
        The selection criterion's value at each pick, in pick order, where it has one.
    """

    indices: np.ndarray
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    gains: np.ndarray | None = None


@dataclass(frozen=True)
class Selection:
    """A coreset: row indices in pick order, with everything needed to reproduce it.

    Attributes
    ----------
    indices : ndarray of int64, shape (budget,)
        Unique row indices into the training split, in the order they were picked.
    method : str
        Registry name of the selector.
    budget : int
        Number of rows selected.
    n_samples : int
        Number of candidate rows.
    seed : int or None
        The seed the selection was run with.
    params : dict
        Resolved method options.
    info : dict
        Method diagnostics.
    gains : ndarray or None
        Criterion value at each pick, where the method has one.
    """

    indices: np.ndarray
    method: str
    budget: int
    n_samples: int
    seed: int | None
    params: dict
    info: dict
    gains: np.ndarray | None = None

    @property
    def sorted_indices(self) -> np.ndarray:
        """The selected indices in ascending order."""
        return np.sort(self.indices)

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask of length ``n_samples``, true for selected rows."""
        out = np.zeros(self.n_samples, dtype=bool)
        out[self.indices] = True
        return out

    def image_ids(self, ids) -> list[str]:
        """Map the picks (in pick order) to image ids; ``ids`` is row-aligned with the features."""
        ids = np.asarray(ids)
        if len(ids) != self.n_samples:
            raise ValueError(
                f"The 'ids' parameter must have one entry per candidate row ({self.n_samples}). "
                f"Got {len(ids)} instead."
            )
        return [str(i) for i in ids[self.indices]]

    def to_record(self) -> dict:
        """A JSON-serialisable record of this selection."""
        return {
            "method": self.method,
            "budget": self.budget,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "params": to_jsonable(self.params),
            "info": to_jsonable(self.info),
            "indices": self.indices.tolist(),
            "gains": None if self.gains is None else [float(g) for g in self.gains],
        }


@dataclass(frozen=True)
class MethodSpec:
    """Registry entry of a selector."""

    name: str
    func: Callable[..., MethodOutput]
    inputs: tuple[str, ...]
    needs_mos: bool
    stochastic: bool
    summary: str
    title: str = ""

    @property
    def label(self) -> str:
        """Display name for tables and figures (``kcenter`` → ``k-Center Greedy``)."""
        return self.title or self.name

    @property
    def options(self) -> dict[str, Any]:
        """The method's keyword options and their defaults."""
        sig = inspect.signature(self.func)
        return {
            name: p.default for name, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _RESERVED
        }


_RESERVED = {"mos", "random_state"}
_REGISTRY: dict[str, MethodSpec] = {}


def register(name: str, *, inputs: tuple[str, ...] = ("embedding",), needs_mos: bool = False,
             stochastic: bool = True, title: str = ""):
    """Decorator that adds a selector to the registry.

    The decorated function must have the signature
    ``func(features: dict[str, ndarray], budget: int, *, mos, random_state, **options)``
    and return a :class:`MethodOutput`.

    Parameters
    ----------
    name : str
        Registry name, used by :func:`qd_lib.selection.select`.
    inputs : tuple of str
        Feature keys the method reads. A method reading only ``"embedding"`` also accepts a
        bare 2-D array.
    needs_mos : bool
        Whether the method needs MOS labels (e.g. to bin them into classes).
    stochastic : bool
        Whether the result depends on the seed.
    title : str
        Display name in tables and figures (default: ``name``).
    """

    def decorator(func):
        if name in _REGISTRY:
            raise ValueError(f"A selection method named {name!r} is already registered.")
        doc = inspect.getdoc(func) or ""
        _REGISTRY[name] = MethodSpec(name, func, tuple(inputs), needs_mos, stochastic,
                                     doc.splitlines()[0] if doc else "", title)
        return func

    return decorator


def get_method(name: str) -> MethodSpec:
    """Return the registry entry for ``name``."""
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("selection method", name, _REGISTRY) from None


def available_methods() -> list[str]:
    """Names of all registered selection methods, sorted."""
    _load_builtin_methods()
    return sorted(_REGISTRY)


def _load_builtin_methods() -> None:
    # Importing the package registers the built-in methods (kept lazy to avoid import cycles).
    import qd_lib.selection.methods  # noqa: F401


def _coerce_features(spec: MethodSpec, features) -> dict[str, np.ndarray]:
    if isinstance(features, Mapping):
        missing = [k for k in spec.inputs if k not in features]
        if missing:
            raise ValueError(
                f"The 'features' parameter for method {spec.name!r} must be a mapping with keys "
                f"{list(spec.inputs)}. Missing {missing}; got keys {sorted(features)}."
            )
        arrays = {k: check_array_2d(features[k], f"features[{k!r}]") for k in spec.inputs}
    elif spec.inputs == ("embedding",):
        arrays = {"embedding": check_array_2d(features, "features")}
    else:
        raise TypeError(
            f"The 'features' parameter for method {spec.name!r} must be a mapping with keys "
            f"{list(spec.inputs)}. Got {type(features).__name__} instead."
        )
    n_rows = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(n_rows.values())) > 1:
        raise ValueError(
            f"The 'features' arrays must have the same number of rows. Got {n_rows} instead."
        )
    return arrays


def _coerce_mos(mos, n: int) -> np.ndarray | None:
    if mos is None:
        return None
    arr = np.asarray(mos, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"The 'mos' parameter must be a 1-D array with one score per row ({n}). "
            f"Got shape {arr.shape} instead."
        )
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"The 'mos' parameter must be finite; row {bad} holds {arr[bad]!r}.")
    return arr


INITIAL_OPTION = "initial"
"""The option naming rows that count as already selected (see :func:`select`)."""


def conditioning_methods() -> list[str]:
    """Methods that take the ``initial`` option: they can continue from rows already selected
    (rated), picking the next ones given them."""
    _load_builtin_methods()
    return sorted(name for name, spec in _REGISTRY.items() if INITIAL_OPTION in spec.options)


def _coerce_initial(initial, n: int) -> np.ndarray:
    arr = np.asarray(initial)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"The 'initial' parameter must be a 1-D sequence of row indices. Got "
                        f"{initial!r:.80} instead.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = int(arr[(arr < 0) | (arr >= n)][0])
        raise ValueError(f"The 'initial' parameter must hold row indices in [0, {n}). Got "
                         f"{bad} in it.")
    if len(np.unique(arr)) != len(arr):
        values, counts = np.unique(arr, return_counts=True)
        raise ValueError(f"The 'initial' parameter must not repeat a row. Got row "
                         f"{int(values[counts > 1][0])} more than once.")
    return arr


def select(method: str, features, budget, *, mos=None, seed: int | None = 0,
           **options) -> Selection:
    """Select a coreset with any registered method.

    Parameters
    ----------
    method : str
        Registry name; see :func:`available_methods`.
    features : ndarray of shape (n_samples, n_features) or mapping of str to such arrays
        Row-aligned embeddings of the candidate images. Single-embedding methods take a bare
        array or the key ``"embedding"``; Q-Diverse reads ``"content"`` and ``"quality"``.
        Memory-mapped arrays are used in place, without a copy.
    budget : int or float
        Number of rows to select (0 gives an empty selection), or a fraction in (0, 1] turned into
        ``floor(fraction × n_samples)`` exactly (:func:`qd_lib.data.coreset_size`).
    mos : array-like of shape (n_samples,), optional
        Mean opinion scores; required by methods that bin them into classes, ignored by the
        label-free ones.
    seed : int or None, default=0
        Seed of the method's own random generator; global random state is never touched.
    **options
        Method-specific options; see ``get_method(method).options``. The methods listed by
        :func:`conditioning_methods` (``qdiverse`` and its extensions, ``kcenter``,
        ``herding``, ``random``) share the option ``initial``: row indices that count as
        already selected (images rated before), in the order they were selected. The
        selection then continues from them: ``budget`` *new* rows, never one of ``initial``
        (``budget ≤ n_samples − len(initial)``; a fraction is of ``n_samples``). For the
        greedy methods, conditioning on the first picks of a run and asking for ``k`` more
        gives that run's next ``k`` picks (Q-Diverse: within a batch, and batch by batch for
        its picks at a smaller budget; see its docstring). An empty ``initial`` is the same as
        none.

    Returns
    -------
    Selection
        ``budget`` unique indices in pick order, the resolved options and diagnostics.
        The method runs with BLAS and OpenMP limited to one thread, so the result does not
        depend on the machine's thread count; ``info["threads"]`` records the setting.

    Raises
    ------
    UnknownNameError
        If ``method`` is not registered.
    ValueError, TypeError
        On malformed features, budget, mos or options.
    """
    spec = get_method(method)
    arrays = _coerce_features(spec, features)
    n = next(iter(arrays.values())).shape[0]
    size = resolve_budget(n, budget)
    mos_arr = _coerce_mos(mos, n)
    if spec.needs_mos and mos_arr is None:
        raise ValueError(f"Method {method!r} needs MOS labels: pass mos=<array of length {n}>.")
    if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        raise TypeError(f"The 'seed' parameter must be None or an int. Got {seed!r} instead.")
    known = spec.options
    unknown = sorted(set(options) - set(known))
    if INITIAL_OPTION in unknown:
        raise TypeError(
            f"Method {method!r} cannot continue from rows already selected (the 'initial' "
            f"option). Methods that can: {conditioning_methods()}.")
    if unknown:
        raise TypeError(
            f"Unknown option(s) {unknown} for method {method!r}. Valid options: {sorted(known)}."
        )
    initial = None
    if options.get(INITIAL_OPTION) is not None:
        initial = _coerce_initial(options[INITIAL_OPTION], n)
        if len(initial) == 0:
            initial = None
            del options[INITIAL_OPTION]
        else:
            options[INITIAL_OPTION] = initial
            if size > n - len(initial):
                raise ValueError(
                    f"The 'budget' parameter must be at most {n - len(initial)} (the "
                    f"{n} rows less the {len(initial)} in 'initial', which are never picked "
                    f"again). Got {size} instead.")
    if size == 0:  # an empty coreset needs no method run
        return Selection(indices=np.empty(0, dtype=np.int64), method=method, budget=0,
                         n_samples=n, seed=None if seed is None else int(seed),
                         params=dict(options), info={"empty": True})
    rng = check_random_state(seed)
    with one_thread():  # float results of threaded BLAS can change with the thread count
        out = spec.func(arrays, size, mos=mos_arr, random_state=rng, **options)
    indices = np.asarray(out.indices, dtype=np.int64)
    if indices.shape != (size,) or len(np.unique(indices)) != size or (
            size and (indices.min() < 0 or indices.max() >= n)):
        raise RuntimeError(  # a bug in the method, never a user error
            f"Method {method!r} returned an invalid selection: expected {size} unique indices "
            f"in [0, {n}), got shape {indices.shape}."
        )
    if initial is not None and np.isin(indices, initial).any():
        raise RuntimeError(  # a bug in the method, never a user error
            f"Method {method!r} picked a row of 'initial' again "
            f"({int(indices[np.isin(indices, initial)][0])}).")
    gains = None if out.gains is None else np.asarray(out.gains, dtype=np.float64)
    return Selection(indices=indices, method=method, budget=size, n_samples=n,
                     seed=None if seed is None else int(seed), params=dict(out.params),
                     info={**out.info, "threads": dict(THREADS)}, gains=gains)
