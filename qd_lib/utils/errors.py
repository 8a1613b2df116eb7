"""Exception hierarchy of the workbench.

Every error the library raises on purpose derives from :class:`QDError`, so a sweep can tell
"this run's input is bad" from a bug. Plain parameter mistakes raise ``ValueError`` or
``TypeError`` in scikit-learn's wording (see :mod:`qd_lib.utils.validation`).
"""
from __future__ import annotations

import difflib


class QDError(Exception):
    """Base class of the workbench's own errors."""


class ManifestError(QDError, ValueError):
    """A dataset manifest (label table or its metadata) is malformed."""


class ImageReadError(QDError, OSError):
    """An image named by a manifest is missing or cannot be decoded."""


class CacheMismatchError(QDError):
    """A cached artefact does not match the inputs it is asked to serve."""


class OfflineWeightsError(QDError, FileNotFoundError):
    """A weights file is missing or does not match its published hash."""


class UnknownNameError(QDError, KeyError):
    """A name was looked up in a registry that does not hold it.

    The message lists the registered names and the closest matches.
    """

    def __init__(self, kind: str, name: object, available):
        available = sorted(available)
        close = difflib.get_close_matches(str(name), available, n=3)
        hint = f" Did you mean {close}?" if close else ""
        self.message = f"Unknown {kind} {name!r}. Available: {available}.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message
