"""Dataset manifests, splits, coreset budgets and image loading.

``Manifest``/``DatasetInfo``
    One label-table schema for every IQA dataset, validated, hashed, saved atomically.
``IQADataset``/``check_images``
    Reading the images a manifest names (PIL), with missing or corrupt files reported by name.
``coreset_size``/``resolve_budget``
    ``floor(fraction × n_train)`` in exact arithmetic.
``open_dataset``/``load_manifest``/``check_dataset``/``dataset_root``
    The one way to open a dataset: its manifest by name or alias (``"kadid"``, ``"proxy-tiny"``,
    a CSV path) with the root its images live under (``open_dataset`` also builds a missing proxy
    preset); ``canonical_dataset_name`` (the name in run ids and tables); a
    missing/unreadable-image report that never aborts a run.
``qd_lib.data.builders``
    The real benchmarks' manifest builders (official label files or iqadataset's lists) and
    their registry (``available_datasets``).
``qd_lib.data.synthetic``
    The offline proxy benchmark.
"""
from qd_lib.data.budget import coreset_size, format_fraction, fraction_label, resolve_budget
from qd_lib.data.builders import available_datasets, dataset_root
from qd_lib.data.catalog import (
    LoadedDataset,
    canonical_dataset_name,
    check_dataset,
    load_manifest,
    open_dataset,
)
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
    "LoadedDataset",
    "Manifest",
    "available_datasets",
    "canonical_dataset_name",
    "check_dataset",
    "check_images",
    "coreset_size",
    "dataset_root",
    "denormalize_mos",
    "format_fraction",
    "fraction_label",
    "load_manifest",
    "open_dataset",
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
