"""Command line of the workbench: ``python -m qd_lib <command>``.

``select``
    Choose which images of a folder (or list) to rate, without labels
    (:func:`qd_lib.selection.images.select_images`)::

        python -m qd_lib select photos/ --fraction 0.1 --out picks.csv
        python -m qd_lib select photos/ --budget 200 --out round2.csv --rated picks.csv

Bad input (a missing folder, a method that needs MOS, an unknown rated image, ...) is reported
as one line on stderr with exit status 2. Other commands live in their packages
(``python -m qd_lib.runner``, ``qd_lib.encoders``, ``qd_lib.data.synthetic``, ...).
"""
from __future__ import annotations

import argparse
import sys

import yaml


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib",
                                     description="qd-workbench command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    sel = sub.add_parser(
        "select", help="choose images to rate from a folder (no labels needed)",
        description="Choose which images of a folder (or list) to rate first, without labels. "
                    "Writes OUT (rank,path[,gain],image_id in pick order), OUT's .json record, "
                    "a contact sheet of the picks and the t-SNE map of all candidates beside "
                    "it. Embeddings are cached under the runs folder: a second run on the same "
                    "folder encodes nothing.")
    sel.add_argument("images", metavar="IMAGES",
                     help="a folder (searched recursively for JPEG, PNG, BMP, TIFF, WebP) or a "
                          "CSV/text file listing image paths")
    size = sel.add_mutually_exclusive_group(required=True)
    size.add_argument("--fraction", type=float, help="pick floor(F x n) new images")
    size.add_argument("--budget", type=_positive_int, help="pick K new images")
    sel.add_argument("--out", required=True, help="CSV file of the picks, e.g. picks.csv")
    sel.add_argument("--method", default="qdiverse",
                     help="a label-free selection method (default qdiverse; also kcenter, "
                          "herding, random, pgcs)")
    sel.add_argument("--feature-set", default="offline",
                     help="embeddings the method reads (default offline: MobileNet-V2 + NSS)")
    sel.add_argument("--seed", type=int, default=0)
    sel.add_argument("--rated", action="append", metavar="RATED",
                     help="images already rated: a list file (CSV with a 'path' column, such as "
                          "an earlier picks.csv, or one path or id per line), or one image path "
                          "or id; repeatable. The new picks are conditioned on them and never "
                          "repeat one")
    sel.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                     help="an option of the method (YAML value), e.g. --option batch_size=2000")
    sel.add_argument("--no-figures", action="store_true",
                     help="skip the contact sheet and the t-SNE map")
    sel.add_argument("--sheet-size", type=_positive_int, default=100,
                     help="picks shown on the contact sheet (the first ones; default 100)")
    sel.add_argument("--batch-size", type=_positive_int, default=32,
                     help="images per forward pass when encoding")
    sel.add_argument("--device", default="auto", help="encoder device: auto, cpu, cuda")
    sel.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    sel.add_argument("--log-level", default="INFO")
    return parser


def _select(args) -> int:
    from qd_lib.paths import display_path
    from qd_lib.selection.images import select_images

    result = select_images(
        args.images, budget=args.budget, fraction=args.fraction, method=args.method,
        feature_set=args.feature_set, seed=args.seed, rated=args.rated, out=args.out,
        figures=not args.no_figures, options=dict(args.option),
        contact_sheet_size=args.sheet_size, show_progress=False if args.no_progress else None,
        extract_options={"batch_size": args.batch_size, "device": args.device})
    rated = f", {len(result.rated)} rated before" if len(result.rated) else ""
    bad = f", {len(result.unreadable)} unreadable left out" if result.unreadable else ""
    cache = "all embeddings cached" if result.n_encoded == 0 else \
        f"{result.n_encoded} image encodings computed"
    print(f"{result.selection.method}: {result.selection.budget} picks of "
          f"{result.n_candidates} images{rated}{bad} ({cache}; selection "
          f"{result.seconds['selection']:.2f} s, total {result.seconds['total']:.1f} s)")
    for kind, path in result.files.items():
        print(f"  {kind:8s} {display_path(path)}")
    return 0


def main(argv=None) -> int:
    """Run a command; returns the exit status (2 for bad input)."""
    args = _parser().parse_args(argv)
    from qd_lib.utils.errors import QDError
    from qd_lib.utils.logging import setup

    setup(args.log_level)
    try:
        return _select(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError, QDError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
