"""How well does a quality embedding predict the MOS? A training-free linear probe.

Q-Diverse is only as good as its quality embedding. :func:`quality_probe` fits a ridge
regression from an embedding to the MOS on one split part (the ``paper`` split's ``train`` by
default) and scores it on another (``val``): Spearman and Pearson correlation between the
predictions and the MOS. Features are z-scored with the training part's statistics; the ridge
penalty is chosen on the training part alone (efficient leave-one-out, scikit-learn's
``RidgeCV``) from a fixed grid. Embeddings come from the cached extractor
(:func:`qd_lib.encoders.extract`), so a probe costs nothing once a study has extracted them.

Command line::

    python -m qd_lib.study.probes --dataset proxy-default --encoders nss mobilenet_v2_stats
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)

ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


def ridge_probe(X_train, y_train, X_test, y_test, *, alphas: Sequence[float] = ALPHAS
                ) -> dict[str, float]:
    """Fit a ridge probe on (``X_train``, ``y_train``) and score it on the test part.

    Returns
    -------
    dict
        ``srcc`` and ``plcc`` on the test part, the chosen ``alpha``, and ``train_srcc``.
    """
    from sklearn.linear_model import RidgeCV

    X_train = np.asarray(X_train, dtype=np.float64)
    X_test = np.asarray(X_test, dtype=np.float64)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"The 'X_train' and 'X_test' parameters must be 2-D with the same number "
                         f"of columns. Got shapes {X_train.shape} and {X_test.shape} instead.")
    mu, sd = X_train.mean(0), X_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    model = RidgeCV(alphas=list(alphas)).fit((X_train - mu) / sd, y_train)
    pred = model.predict((X_test - mu) / sd)
    fit = model.predict((X_train - mu) / sd)
    return {"srcc": float(stats.spearmanr(pred, y_test)[0]),
            "plcc": float(stats.pearsonr(pred, y_test)[0]),
            "alpha": float(model.alpha_),
            "train_srcc": float(stats.spearmanr(fit, y_train)[0])}


def quality_probe(dataset, encoders: Sequence[str] = ("nss", "mobilenet_v2_stats"), *,
                  scheme: str = "paper", train: str = "train", test: str = "val",
                  **extract_options) -> pd.DataFrame:
    """Ridge-probe each encoder's embedding for the MOS: fit on ``train``, score on ``test``.

    Parameters
    ----------
    dataset : str or LoadedDataset
        A dataset name for :func:`qd_lib.data.open_dataset` (``"proxy-default"``) or an opened
        dataset.
    encoders : sequence of str, default=("nss", "mobilenet_v2_stats")
        Registered encoder names (their main embedding is probed).
    scheme : str, default="paper"
        Split scheme.
    train, test : {"train", "val", "test"}, default="train", "val"
        The parts fitted on and scored on.
    **extract_options
        Passed to :func:`qd_lib.encoders.extract` (``device``, ``cache_dir``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per encoder: ``dataset``, ``scheme``, ``train``, ``test``, ``encoder``, ``dim``,
        ``n_train``, ``n_test``, ``srcc``, ``plcc``, ``alpha``, ``train_srcc``.
    """
    from qd_lib.data import SPLIT_PARTS, open_dataset
    from qd_lib.encoders import extract

    check_option(train, "train", SPLIT_PARTS)
    check_option(test, "test", SPLIT_PARTS)
    if isinstance(encoders, str) or not encoders:
        raise ValueError(f"The 'encoders' parameter must be a non-empty sequence of encoder "
                         f"names. Got {encoders!r} instead.")
    ds = open_dataset(dataset) if isinstance(dataset, str) else dataset
    manifest = ds.manifest
    rows_train = manifest.split_indices(scheme, train)
    rows_test = manifest.split_indices(scheme, test)
    mos = manifest.table["mos"].to_numpy(np.float64)
    out = []
    for name in encoders:
        emb = extract(ds, name, **extract_options)  # all rows: shares the study's cache
        X = np.asarray(emb.array, dtype=np.float64)[np.argsort(emb.rows)]
        result = ridge_probe(X[rows_train], mos[rows_train], X[rows_test], mos[rows_test])
        out.append({"dataset": manifest.name, "scheme": scheme, "train": train, "test": test,
                    "encoder": name, "dim": X.shape[1], "n_train": len(rows_train),
                    "n_test": len(rows_test), **result})
        logger.info("%s on %s (%s %s → %s): SRCC %.4f", name, manifest.name, scheme, train, test,
                    result["srcc"])
    return pd.DataFrame(out)


def main(argv=None) -> None:
    from qd_lib.utils.logging import setup

    parser = argparse.ArgumentParser(description="Ridge-probe quality embeddings for the MOS.")
    parser.add_argument("--dataset", default="proxy-default")
    parser.add_argument("--encoders", nargs="+", default=["nss", "mobilenet_v2_stats"])
    parser.add_argument("--scheme", default="paper")
    parser.add_argument("--train", default="train")
    parser.add_argument("--test", default="val")
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    setup("INFO")
    table = quality_probe(args.dataset, args.encoders, scheme=args.scheme, train=args.train,
                          test=args.test, device="cpu")
    if args.csv:
        from qd_lib.utils.io import atomic_write_text

        atomic_write_text(args.csv, table.to_csv(index=False, float_format="%.4f"))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
