"""Where things live: the repository, datasets, weights, runs and figures.

Every location can be overridden by an environment variable, so the same notebooks run on a
laptop, a GPU server and CI:

``QD_DATA_ROOT``
    Folder holding the datasets (one sub-folder each) and the generated proxy benchmarks.
    Default: ``<repo>/data``.
``QD_WEIGHTS_DIR``
    Folder holding checkpoints that cannot come through torchvision's hub cache (ARNIQA, LIQE,
    MANIQA, MUSIQ). Default: ``<repo>/weights``.
``QD_RUNS_DIR``
    Experiment records, embeddings, selections and executed notebooks. Default: ``<repo>/runs``.
``QD_FIGURES_DIR``
    Figures and tables. Default: ``<repo>/figures``.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository checkout that holds this package."""
    return Path(__file__).resolve().parent.parent


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else default


def data_root() -> Path:
    """Dataset root (``QD_DATA_ROOT``)."""
    return _from_env("QD_DATA_ROOT", repo_root() / "data")


def weights_dir() -> Path:
    """Weights folder (``QD_WEIGHTS_DIR``)."""
    return _from_env("QD_WEIGHTS_DIR", repo_root() / "weights")


def runs_dir() -> Path:
    """Runs folder (``QD_RUNS_DIR``)."""
    return _from_env("QD_RUNS_DIR", repo_root() / "runs")


def figures_dir() -> Path:
    """Figures folder (``QD_FIGURES_DIR``)."""
    return _from_env("QD_FIGURES_DIR", repo_root() / "figures")


def manifests_dir() -> Path:
    """The committed label tables (``<repo>/data_manifests``)."""
    return repo_root() / "data_manifests"


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when it lies inside it (for logs and records)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(repo_root()))
    except ValueError:
        return str(path)
