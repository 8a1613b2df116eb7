"""Progress bars (``tqdm.auto``: a widget in Jupyter, text in a terminal)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str | None = None,
             total: int | None = None, enabled: bool | None = None, **kwargs) -> tqdm:
    """Wrap ``iterable`` in a progress bar.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; ``None`` gives a manual bar (call ``update``).
    desc : str, optional
        Label shown before the bar.
    total : int, optional
        Number of steps when ``len(iterable)`` is unknown.
    enabled : bool, optional
        ``False`` hides the bar, ``True`` forces it. ``None`` (default) leaves the choice to
        tqdm, which honours the ``TQDM_DISABLE`` environment variable.
    """
    if enabled is None and os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        enabled = False  # tqdm.notebook ignores the variable, so honour it here
    if enabled is not None:
        kwargs["disable"] = not enabled
    return tqdm(iterable, desc=desc, total=total, **kwargs)
