"""Parameter validation in scikit-learn's wording.

Every public function checks its arguments at the boundary and raises ``ValueError`` or
``TypeError`` with a message that names the parameter, what is allowed and the value received,
for example ``The 'energy' parameter must be a float in the range (0.0, 1.0]. Got 1.5 instead.``
"""
from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

import numpy as np


def _range_text(min_val, max_val, closed: str) -> str:
    left = "[" if closed in ("both", "left") and min_val is not None else "("
    right = "]" if closed in ("both", "right") and max_val is not None else ")"
    lo = "-inf" if min_val is None else repr(min_val)
    hi = "inf" if max_val is None else repr(max_val)
    return f"{left}{lo}, {hi}{right}"


def check_scalar(value: Any, name: str, target_type, *, min_val=None, max_val=None,
                 closed: str = "both"):
    """Check that ``value`` is a scalar of ``target_type`` within bounds and return it.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        The parameter's name, used in the error message.
    target_type : type or tuple of types
        Accepted types, e.g. ``numbers.Integral`` or ``numbers.Real``. Booleans are rejected
        for numeric types.
    min_val, max_val : number, optional
        Bounds; ``None`` means unbounded.
    closed : {"both", "left", "right", "neither"}
        Which bounds are included.

    Raises
    ------
    TypeError
        If ``value`` has the wrong type.
    ValueError
        If ``value`` is outside the bounds or not finite.
    """
    types = target_type if isinstance(target_type, tuple) else (target_type,)
    type_names = " or ".join(getattr(t, "__name__", str(t)) for t in types)
    numeric = any(issubclass(t, numbers.Number) for t in types if isinstance(t, type))
    if (numeric and isinstance(value, (bool, np.bool_))) or not isinstance(value, types):
        raise TypeError(
            f"The {name!r} parameter must be an instance of {type_names}. "
            f"Got {value!r} of type {type(value).__name__} instead."
        )
    if numeric and isinstance(value, numbers.Real) and not np.isfinite(value):
        raise ValueError(f"The {name!r} parameter must be finite. Got {value!r} instead.")
    too_low = min_val is not None and (
        value < min_val if closed in ("both", "left") else value <= min_val)
    too_high = max_val is not None and (
        value > max_val if closed in ("both", "right") else value >= max_val)
    if too_low or too_high:
        kind = "an int" if types == (numbers.Integral,) else "a float" if types == (
            numbers.Real,) else f"a {type_names}"
        raise ValueError(
            f"The {name!r} parameter must be {kind} in the range "
            f"{_range_text(min_val, max_val, closed)}. Got {value!r} instead."
        )
    return value


def check_option(value: Any, name: str, options: Collection) -> Any:
    """Check that ``value`` is one of ``options`` and return it."""
    if value not in options:
        listed = sorted(options, key=str) if not isinstance(options, (list, tuple)) else options
        raise ValueError(
            f"The {name!r} parameter must be one of {list(listed)}. Got {value!r} instead."
        )
    return value


def check_random_state(seed: Any, name: str = "seed") -> np.random.Generator:
    """Turn ``seed`` into a fresh :class:`numpy.random.Generator`.

    ``None`` gives an unseeded generator, an int or a ``SeedSequence`` a seeded one, and a
    ``Generator`` is returned as it is. Global random state is never touched.
    """
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        if seed < 0:
            raise ValueError(f"The {name!r} parameter must be a non-negative int. Got {seed!r}.")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"The {name!r} parameter must be None, a non-negative int, a numpy SeedSequence or "
        f"Generator. Got {seed!r} of type {type(seed).__name__} instead."
    )


def check_array_2d(X: Any, name: str = "X", *, dtype=np.float64, allow_memmap: bool = True,
                   min_rows: int = 1) -> np.ndarray:
    """Return ``X`` as a finite 2-D float array.

    A ``numpy.memmap`` (or any float16/32/64 ndarray) is returned without a copy when
    ``allow_memmap`` is true, so out-of-core callers keep streaming from disk (and must cast
    row blocks themselves); finiteness is then checked in row chunks.
    """
    if allow_memmap and isinstance(X, np.ndarray) and X.dtype in (np.float16, np.float32,
                                                                  np.float64):
        arr = X
    else:
        try:
            arr = np.asarray(X, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"The {name!r} parameter must be a 2-D numeric array. {exc}") from None
    if arr.ndim != 2:
        raise ValueError(
            f"The {name!r} parameter must be a 2-D array of shape (n_samples, n_features). "
            f"Got an array of shape {arr.shape} instead."
        )
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(
            f"The {name!r} parameter must have at least {min_rows} row(s) and 1 column. "
            f"Got shape {arr.shape} instead."
        )
    step = max(1, (1 << 24) // max(1, arr.shape[1]))
    for start in range(0, arr.shape[0], step):
        block = arr[start:start + step]
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise ValueError(
                f"The {name!r} parameter must contain only finite values; "
                f"row {bad} holds NaN or inf."
            )
    return arr
