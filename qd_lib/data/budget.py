"""Coreset budgets and fractions: ``floor(fraction × n_train)`` in exact arithmetic, and the one
way a fraction is written in ids, file names and labels.

Floating-point floors go wrong on values such as ``0.7 * 20880 = 14615.999…``; here the fraction
is read as the decimal the user typed (``Fraction(str(0.7)) == 7/10``), so all 56 coreset sizes of
the supplement's Table 1 come out exactly.

:func:`format_fraction` (``0.1`` → ``"0.10"``, ``0.005`` → ``"0.005"``) is what run ids, selection
record names and cache keys use, so that 0.5 %, 1 % and 1.5 % never collide;
:func:`fraction_label` (``0.005`` → ``"0.5%"``) is what tables and figure titles show.
"""
from __future__ import annotations

import math
import numbers
from decimal import Decimal
from fractions import Fraction

from qd_lib.utils.validation import check_scalar


def _as_fraction(fraction, name: str) -> Fraction:
    if isinstance(fraction, (bool,)) or not isinstance(fraction, (numbers.Real, Decimal, str)):
        raise TypeError(
            f"The {name!r} parameter must be a real number in the range (0, 1]. "
            f"Got {fraction!r} of type {type(fraction).__name__} instead."
        )
    if isinstance(fraction, float) and not math.isfinite(fraction):
        raise ValueError(f"The {name!r} parameter must be in the range (0, 1]. Got {fraction!r}.")
    try:
        # str() gives the shortest decimal that round-trips, i.e. what the user typed.
        exact = Fraction(fraction) if isinstance(fraction, (Fraction, numbers.Integral)) else \
            Fraction(str(fraction))
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"The {name!r} parameter must be a number in the range (0, 1]. Got {fraction!r}."
        ) from None
    if not 0 < exact <= 1:
        raise ValueError(
            f"The {name!r} parameter must be in the range (0, 1]. Got {fraction!r} instead."
        )
    return exact


def coreset_size(n_train: int, fraction) -> int:
    """Number of images in a coreset: ``floor(fraction × n_train)``, computed exactly.

    Parameters
    ----------
    n_train : int
        Size of the training split (at least 1).
    fraction : float, Fraction, Decimal or str
        Share of the training split to keep, in (0, 1]. Floats are read as the decimal they
        print as, so ``0.29`` means exactly 29/100.

    Returns
    -------
    int
        The coreset size, between 1 and ``n_train``.

    Raises
    ------
    ValueError
        If ``fraction`` is outside (0, 1] or the floor gives an empty coreset.

    Examples
    --------
    >>> coreset_size(20880, 0.7)
    14616
    >>> coreset_size(7086, 0.01)
    70
    """
    check_scalar(n_train, "n_train", numbers.Integral, min_val=1)
    size = math.floor(_as_fraction(fraction, "fraction") * int(n_train))
    if size < 1:
        raise ValueError(
            f"The 'fraction' parameter {fraction!r} gives an empty coreset for "
            f"n_train={n_train} (floor({fraction} × {n_train}) = 0)."
        )
    return size


def resolve_budget(n_train: int, budget) -> int:
    """Turn a budget given as a count (int) or a fraction (float in (0, 1]) into a count.

    A count of 0 is allowed and means an empty coreset; a fraction must give at least one row.

    Raises
    ------
    ValueError
        If a count is negative or above ``n_train``, or a fraction is outside (0, 1].
    """
    check_scalar(n_train, "n_train", numbers.Integral, min_val=1)
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool):
        if not 0 <= budget <= n_train:
            raise ValueError(
                f"The 'budget' parameter must be an int in the range [0, {n_train}] "
                f"(n_train={n_train}) or a fraction in (0, 1]. Got {budget!r} instead."
            )
        return int(budget)
    return coreset_size(n_train, budget)


def format_fraction(fraction) -> str:
    """A fraction as it appears in run ids and file names: two decimals, more when needed.

    ``0.1`` → ``"0.10"``, ``1`` → ``"1.00"``, ``0.015`` → ``"0.015"``, ``0.005`` → ``"0.005"``:
    distinct fractions always give distinct strings (the shortest round-tripping decimal is
    used whenever two decimals would lose digits).

    Raises
    ------
    TypeError, ValueError
        If ``fraction`` is not a number in (0, 1].
    """
    exact = _as_fraction(fraction, "fraction")
    two = f"{float(exact):.2f}"
    if Fraction(two) == exact:
        return two
    return repr(float(exact)) if Fraction(repr(float(exact))) == exact else str(Decimal(
        exact.numerator) / Decimal(exact.denominator))


def fraction_label(fraction) -> str:
    """A fraction as a percentage for tables and figure titles: ``0.1`` → ``"10%"``,
    ``0.005`` → ``"0.5%"``, ``0.015`` → ``"1.5%"``."""
    exact = _as_fraction(fraction, "fraction") * 100
    text = f"{float(exact):.6g}"
    return f"{text}%"
