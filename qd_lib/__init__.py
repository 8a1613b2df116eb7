"""qd-workbench: coreset selection for data-efficient image quality assessment.

The library behind the notebooks in ``notebooks/``. Sub-packages:

``qd_lib.data``
    Dataset manifests (one schema for every IQA dataset), splits, coreset budgets,
    the torch ``Dataset`` and the offline proxy benchmark (``qd_lib.data.synthetic``).
``qd_lib.selection``
    Coreset selectors behind one signature and one registry.
``qd_lib.utils``
    Errors, parameter validation, atomic writes, hashing, progress bars and logging.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
