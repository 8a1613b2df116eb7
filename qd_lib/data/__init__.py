"""Dataset manifests, splits, coreset budgets and image loading.

``Manifest``/``DatasetInfo``
    One label-table schema for every IQA dataset, validated, hashed, saved atomically.
``IQADataset``/``check_images``
    Reading the images a manifest names (PIL), with missing or corrupt files reported by name.
``coreset_size``/``resolve_budget``
    ``floor(fraction × n_train)`` in exact arithmetic.
``qd_lib.data.synthetic``
    The offline proxy benchmark.
"""
from qd_lib.data.budget import coreset_size, resolve_budget
from qd_lib.data.manifest import (
    SPLIT_PARTS,
    DatasetInfo,
    Manifest,
    denormalize_mos,
    normalize_mos,
    split_by_groups,
    split_by_rows,
)

__all__ = [
    "SPLIT_PARTS",
    "DatasetInfo",
    "IQADataset",
    "ImageCheckReport",
    "Manifest",
    "check_images",
    "coreset_size",
    "denormalize_mos",
    "normalize_mos",
    "resolve_budget",
    "split_by_groups",
    "split_by_rows",
]


_TORCH_BACKED = {"IQADataset", "ImageCheckReport", "check_images"}


def __getattr__(name):
    # The image-reading half imports torch; load it on first use so that selection workers
    # and label-only code start fast.
    if name in _TORCH_BACKED:
        from qd_lib.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'qd_lib.data' has no attribute {name!r}")
