"""Logging setup for notebooks and command-line entry points.

Library modules only call ``logging.getLogger(__name__)``; they never configure handlers.
"""
from __future__ import annotations

import logging

from tqdm.auto import tqdm


class _TqdmHandler(logging.StreamHandler):
    """Writes records through ``tqdm.write`` so they do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup(level: int | str = "INFO") -> logging.Logger:
    """Send ``qd_lib`` log records to stderr at ``level`` and return the package logger."""
    logger = logging.getLogger("qd_lib")
    for handler in list(logger.handlers):
        if isinstance(handler, _TqdmHandler):
            logger.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
