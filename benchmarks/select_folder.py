"""Choosing images to rate from a folder (``python -m qd_lib select``): first run vs repeat run.

One run of this script, on one machine, at one time:

1. writes ``--n-images`` JPEG photos (crops of the photos bundled with scikit-image,
   scikit-learn and matplotlib, ``--size`` pixels, plus one corrupt file) into a temporary
   folder;
2. **first run**: ``python -m qd_lib select FOLDER --fraction 0.1 --out picks.csv`` in a child
   process with an empty runs folder (offline features: MobileNet-V2 + NSS; Q-Diverse at
   10 %; contact sheet and t-SNE map): wall time, and the steps recorded in ``picks.json``;
3. **repeat run** with a new budget (``--fraction 0.05``): every embedding and the t-SNE layout
   come from the cache (checked: ``n_encoded`` must be 0); wall time and steps;
4. baselines measured in the same run, for the ratios: decoding every image with PIL
   (``Image.open(...).convert("RGB")``, one process: the floor of any extraction) against the
   first run's extraction; the start-up of a child that only imports the command's modules
   against the repeat run;
5. **selection at 20,000 rows**, in this process, on seeded clustered float32 features of the
   offline set's widths (1280 content + 81 quality): Q-Diverse at 10 % (2,000 picks), the
   same continued from 2,000 rated rows (the second round), and k-Center Greedy at 10 % on the
   standardised concatenation as the baseline (ratio Q-Diverse / k-Center);
6. the 20,000-image estimate: extraction per image × 20,000 (it is linear: fixed chunks and
   batches); for the repeat run, the start-up as measured, the selection measured at 20,000
   in step 5, and everything else (listing, cache checks, feature reads, model loading,
   figures) scaled by 20,000 / n, an over-estimate since model loading and the contact sheet
   (the first 100 picks) do not grow. The first run's t-SNE is scaled by n·log n (openTSNE's
   FFT gradients). All marked as estimated.

``--n-images 20000`` measures the full size for real instead of estimating it (about
20-40 minutes of extraction on 2 cores).

Usage::

    python benchmarks/select_folder.py                    # 2,000 images (a few minutes)
    python benchmarks/select_folder.py --n-images 20000   # the full measurement
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TARGET_N = 20_000
TARGET_SELECTION_S = 10.0
TARGET_REPEAT_S = 15.0


def _load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _env(runs: Path) -> dict:
    env = dict(os.environ, QD_RUNS_DIR=str(runs), TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run_select(folder: Path, out: Path, fraction: float, runs: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "qd_lib", "select", str(folder), "--fraction", str(fraction),
           "--out", str(out), "--no-progress", "--log-level", "WARNING"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=_env(runs), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"select failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall, json.loads(out.with_suffix(".json").read_text())


def _startup(runs: Path) -> float:
    """A child that imports what the command imports, and nothing else."""
    code = ("import qd_lib.__main__, qd_lib.selection.images, qd_lib.encoders, "
            "qd_lib.viz, qd_lib.analysis, torch")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=_env(runs), check=True)
    return time.perf_counter() - start


def _decode_all(folder: Path) -> float:
    from PIL import Image

    start = time.perf_counter()
    for path in sorted(folder.rglob("*.jpg")):
        try:
            with Image.open(path) as img:
                img.convert("RGB")
        except OSError:
            pass
    return time.perf_counter() - start


def _clustered(n: int, d: int, rng, centres: int = 50) -> np.ndarray:
    means = rng.normal(size=(centres, d)).astype(np.float32) * 3.0
    labels = rng.integers(centres, size=n)
    return means[labels] + rng.normal(size=(n, d)).astype(np.float32)


def _selection_at(n: int) -> dict:
    from qd_lib.features import standardize_blocks
    from qd_lib.selection import select

    rng = np.random.default_rng(0)
    content, quality = _clustered(n, 1280, rng), _clustered(n, 81, rng)
    budget = n // 10
    out = {}
    start = time.perf_counter()
    first = select("qdiverse", {"content": content, "quality": quality}, budget, seed=0,
                   progress=False)
    out["qdiverse"] = time.perf_counter() - start
    start = time.perf_counter()
    nxt = select("qdiverse", {"content": content, "quality": quality}, budget, seed=0,
                 progress=False, initial=first.indices)
    out["qdiverse_next"] = time.perf_counter() - start
    assert not set(nxt.indices.tolist()) & set(first.indices.tolist())
    embedding = standardize_blocks([content, quality])
    start = time.perf_counter()
    select("kcenter", embedding, budget, seed=0, progress=False)
    out["kcenter"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=2000,
                        help="images in the folder (default 2000; 20000 for the full run)")
    parser.add_argument("--size", default="512x384", help="image size, WIDTHxHEIGHT")
    parser.add_argument("--selection-rows", type=int, default=TARGET_N,
                        help="rows of the in-process selection measurement (default 20000)")
    parser.add_argument("--keep", default=None,
                        help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(ROOT))
    import torch

    from qd_lib.data.folder import write_sample_folder

    print(f"{args.n_images} images of {width}x{height}; {os.cpu_count()} cores, torch "
          f"{torch.get_num_threads()} threads, load average {_load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        folder, runs = work / "photos", work / "runs"
        start = time.perf_counter()
        write_sample_folder(folder, args.n_images, seed=0, size=(width, height))
        print(f"folder written in {time.perf_counter() - start:.1f} s")
        decode = _decode_all(folder)
        startup = _startup(runs)

        first_wall, first = _run_select(folder, work / "picks.csv", 0.1, runs)
        repeat_wall, repeat = _run_select(folder, work / "next.csv", 0.05, runs)
        assert repeat["n_encoded"] == 0, "the repeat run encoded images: no cache hit"
        n = first["n_readable"]
        fs, rs = first["seconds"], repeat["seconds"]

        print("\nstep (s)            first run   repeat run (new budget, cache hit)")
        for key in ("listing", "extraction", "features", "selection", "writing", "total"):
            print(f"  {key:16s} {fs.get(key, 0):10.2f} {rs.get(key, 0):12.2f}")
        print(f"  {'wall (process)':16s} {first_wall:10.2f} {repeat_wall:12.2f}")
        per_image = fs["extraction"] / n
        print(f"\nfirst run: {n} readable images, {first['budget']} picks; extraction "
              f"{fs['extraction']:.1f} s = {n / fs['extraction']:.1f} images/s, "
              f"{fs['extraction'] / first_wall:.0%} of the wall time")
        print(f"  baseline: PIL decode of every image {decode:.1f} s "
              f"({n / decode:.0f} images/s); extraction / decode = "
              f"{fs['extraction'] / decode:.1f}")
        print(f"repeat run: {repeat_wall:.2f} s wall, {repeat['n_encoded']} images encoded")
        print(f"  baseline: start-up (imports only) {startup:.2f} s; repeat / start-up = "
              f"{repeat_wall / startup:.1f}")

        rows = args.selection_rows
        print(f"\nselection at {rows} rows (synthetic 1280 + 81 dims, 10 %, this process):")
        sel = _selection_at(rows)
        print(f"  qdiverse {sel['qdiverse']:.2f} s; next {rows // 10} given {rows // 10} rated "
              f"{sel['qdiverse_next']:.2f} s; baseline kcenter {sel['kcenter']:.2f} s "
              f"(qdiverse / kcenter = {sel['qdiverse'] / sel['kcenter']:.1f})")

        scale = TARGET_N / n
        measured = "measured" if n >= TARGET_N else "estimated"
        sel_20k = sel["qdiverse"] if rows == TARGET_N else rs["selection"] * scale
        # everything but the start-up and the selection scaled linearly: an over-estimate,
        # since model loading and the contact sheet (first 100 picks) do not grow with n
        repeat_linear = max(repeat_wall - startup - rs["selection"], 0.0)
        repeat_est = startup + repeat_linear * scale + sel_20k
        tsne_first = max(fs["writing"] - rs["writing"], 0.0)
        tsne_est = tsne_first * scale * math.log(TARGET_N) / math.log(n)
        extraction_est = per_image * TARGET_N
        first_est = extraction_est + tsne_est + repeat_est
        if n >= TARGET_N:
            first_est, repeat_est = first_wall, repeat_wall
            extraction_est = fs["extraction"]
        print(f"\n{TARGET_N} images, offline features, Q-Diverse at 10 % ({measured}):")
        print(f"  first run  ~{first_est / 60:.1f} min, of which extraction "
              f"~{extraction_est / 60:.1f} min ({extraction_est / first_est:.0%}) and the "
              f"first t-SNE map ~{tsne_est:.0f} s")
        print(f"  selection  {sel_20k:.1f} s (target < {TARGET_SELECTION_S:.0f} s: "
              f"{'PASS' if sel_20k < TARGET_SELECTION_S else 'FAIL'})")
        print(f"  repeat run ~{repeat_est:.1f} s with a new budget (target < "
              f"{TARGET_REPEAT_S:.0f} s: {'PASS' if repeat_est < TARGET_REPEAT_S else 'FAIL'})")
        print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()
