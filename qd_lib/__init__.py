"""qd-workbench: coreset selection for data-efficient image quality assessment.

The library behind the notebooks in ``notebooks/``. Sub-packages, in the order a run uses them:

``qd_lib.data``
    Dataset manifests (one schema for every IQA dataset), splits, coreset budgets and the one
    fraction format, the one way to open a dataset (``open_dataset``), the torch ``Dataset``,
    the real datasets' manifest builders (``qd_lib.data.builders``) and the offline proxy
    benchmark (``qd_lib.data.synthetic``).
``qd_lib.encoders``
    Image encoders (ResNet-50, ARNIQA, LIQE, MobileNet-V2, NSS, pixel statistics) and cached,
    checksummed, resumable embedding extraction.
``qd_lib.features``
    Which arrays a selector sees for a dataset: feature sets (encoder per input role), the
    input arrays and the MOS convention of the selection API.
``qd_lib.selection``
    Coreset selectors behind one signature and one registry (``select``), their shared kernels
    and MOS binning, and selecting on a dataset with saved, checksummed records
    (``qd_lib.selection.records``).
``qd_lib.models``
    MANIQA, MUSIQ and BaseCNN with their named configurations and checkpoint loading.
``qd_lib.training``
    Training on a coreset, evaluation on the fixed test split, checkpoint and resume.
``qd_lib.metrics``
    SRCC, PLCC (raw and logistic), KRCC, RMSE.
``qd_lib.runner``
    Experiment records under ``runs/``, resumable sweeps (papermill or in-process, optionally on
    Dask), results tables from run records.
``qd_lib.analysis``
    Training-free coverage numbers and cached t-SNE layouts.
``qd_lib.viz``
    Figure style, plots, the interactive explorer, and the one figure/table writer (PNG, PDF,
    CSV, Markdown, LaTeX with JSON provenance).
``qd_lib.weights``
    Known checkpoints, hash checks, offline weight installation.
``qd_lib.paths`` / ``qd_lib.utils``
    ``QD_DATA_ROOT``/``QD_WEIGHTS_DIR``/``QD_RUNS_DIR``/``QD_FIGURES_DIR``; errors, parameter
    validation, atomic and verified writes, progress bars and logging.

``python -m qd_lib select IMAGES --fraction F --out picks.csv [--rated RATED]`` chooses which
images of a folder to rate, without labels (``qd_lib.selection.images``).
``python -m qd_lib.readme [--check]`` writes the README's generated blocks (every measured
number in it) from the committed result files under ``figures/`` (``qd_lib.readme``).
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
