"""Choosing images to rate from a folder (``python -m qd_lib select``): first run vs repeat run.

One run of this script, on one machine, at one time, measures three things:

A. **Real photos, end to end** (``--n-images``, default 500 JPEGs of ``--size`` 512x384 cut
   from the photos bundled with scikit-image, scikit-learn and matplotlib, plus one corrupt
   file): the first run, ``python -m qd_lib select FOLDER --fraction 0.1 --out picks.csv`` in a
   child process with an empty runs folder (offline features MobileNet-V2 + NSS, Q-Diverse at
   10 %, contact sheet and t-SNE map), then a repeat run with a new budget (``--fraction 0.05``),
   whose embeddings must all come from the cache (``n_encoded == 0``). The steps come from
   ``picks.json``. This gives the extraction speed (images per second, real encoders).
B. **The same two runs at full size** (``--cache-rows``, default 20,000) on a folder of small
   distinct images whose embedding cache is filled first with stand-in vectors (a fixed random
   projection of a 4x4 thumbnail, written by the real cache code under the real encoders'
   names, weights hashes and options), so that everything but the encoders' forward passes runs
   for real at 20,000: listing, cache checks, feature reads and standardisation, Q-Diverse, the
   t-SNE layout (first run) and its cache hit (repeat run), the contact sheet and the map. The
   repeat run here *is* the 20,000-image repeat run; the first run lacks only the extraction,
   which is A's measured time per image × 20,000 (linear: fixed chunks and batches).
C. **Selection alone at 20,000 rows**, in this process, on seeded clustered float32 features of
   the offline widths (1280 + 81): Q-Diverse at 10 % (2,000 picks), the same continued from
   2,000 rated rows (a second round), and k-Center Greedy at 10 % on the standardised
   concatenation as the baseline.

Baselines measured in the same run, for the ratios: decoding every image of A with PIL (the
floor of any extraction) against A's extraction; the start-up of a child that only imports the
command's modules against the repeat runs; k-Center against Q-Diverse (C).

``--n-images 20000`` measures A at full size as well (hours of extraction on a busy 2-core
machine; about 20-40 minutes on an idle one).

Measured on the 2-core development machine while other jobs kept it busy (load average 5-9),
with the defaults: extraction 4.9 images/s (A: 102 s for 500 photos, 85 % of that first run;
PIL decoding alone is 167 times faster), so a 20,000-image first run is about 70 minutes, 98 %
of it extraction (the 20,000-point t-SNE map adds 76 s); Q-Diverse at 10 % of 20,000 rows 1.9 s
(the next 2,000 given 2,000 rated: 1.9 s; k-Center Greedy: 15 s); the repeat run with a new
budget at 20,000 images 12.9 s wall, 7.4 s of which is the interpreter starting and importing
torch, torchvision and scipy (B: listing 1.0 s, cache checks 0.5 s, features 2.8 s, selection
1.7 s, contact sheet 1.6 s, map 0.4 s).

Usage::

    python benchmarks/select_folder.py                     # A at 500 images, B and C at 20,000
    python benchmarks/select_folder.py --n-images 2000 --cache-rows 5000
"""
from __future__ import annotations

import argparse
import io
import json
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


def _decode_all(paths) -> float:
    from PIL import Image

    start = time.perf_counter()
    for path in paths:
        try:
            with Image.open(path) as img:
                img.convert("RGB")
        except OSError:
            pass
    return time.perf_counter() - start


def _steps(first: dict, repeat: dict, first_wall: float, repeat_wall: float) -> None:
    fs, rs = first["seconds"], repeat["seconds"]
    print("  step (s)          first run   repeat run (new budget, cache hit)")
    for key in ("listing", "extraction", "features", "selection", "contact", "tsne", "map",
                "writing", "total"):
        print(f"    {key:14s} {fs.get(key, 0):10.2f} {rs.get(key, 0):12.2f}")
    print(f"    {'wall (process)':14s} {first_wall:10.2f} {repeat_wall:12.2f}")
    assert repeat["n_encoded"] == 0, "the repeat run encoded images: no cache hit"


# -- A: real photos ----------------------------------------------------------------------------
def part_a(work: Path, n_images: int, size: tuple[int, int], startup: float) -> float:
    from qd_lib.data.folder import list_images, write_sample_folder

    folder, runs = work / "photos", work / "runs-a"
    start = time.perf_counter()
    write_sample_folder(folder, n_images, seed=0, size=size, formats=("jpg",))
    print(f"\nA. {n_images} JPEG photos of {size[0]}x{size[1]} (written in "
          f"{time.perf_counter() - start:.1f} s), end to end")
    decode = _decode_all(list_images(folder).paths)
    first_wall, first = _run_select(folder, work / "a_picks.csv", 0.1, runs)
    repeat_wall, repeat = _run_select(folder, work / "a_next.csv", 0.05, runs)
    _steps(first, repeat, first_wall, repeat_wall)
    n, extraction = first["n_readable"], first["seconds"]["extraction"]
    print(f"  extraction {extraction:.1f} s for {n} images = {n / extraction:.2f} images/s "
          f"(MobileNet-V2 + NSS), {extraction / first_wall:.0%} of the first run's wall time")
    print(f"  baseline: PIL decode of every image {decode:.2f} s; extraction / decode = "
          f"{extraction / decode:.0f}")
    print(f"  repeat run {repeat_wall:.2f} s; baseline start-up (imports only) {startup:.2f} s; "
          f"repeat / start-up = {repeat_wall / startup:.2f}")
    return extraction / n


# -- B: full size, stand-in embeddings ---------------------------------------------------------
class _Thumb:
    """Stand-in preprocessing: a 4x4 RGB thumbnail (picklable, no model)."""

    min_side = 1

    def __call__(self, image):
        import torch

        small = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.uint8).reshape(-1)
        return {"inputs": {"thumb": torch.from_numpy(small.copy())}, "note": None}


def _stand_in(name: str):
    """The real encoder (name, options, weights hashes: the cache key), with its transform and
    forward pass replaced by a fixed random projection of a 4x4 thumbnail."""
    import torch

    from qd_lib.encoders import load_encoder

    encoder = load_encoder(name, device="cpu")
    rng = np.random.default_rng(len(name))
    proj = {k: torch.from_numpy(rng.normal(size=(48, d)).astype(np.float32))
            for k, d in encoder.outputs.items()}
    encoder.transform = lambda: _Thumb()
    encoder._encode = lambda inputs: {k: (inputs["thumb"].float() / 255.0) @ p
                                      for k, p in proj.items()}
    return encoder


def _small_images(folder: Path, n: int) -> None:
    """``n`` distinct 48x48 JPEGs in 40 colour clusters (plain writes: this is a scratch
    folder)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, size=(40, 3))
    for i in range(n):
        sub = folder / f"d{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(colours[i % 40] + rng.normal(0, 30, size=(48, 48, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=85)
        (sub / f"img_{i:05d}.jpg").write_bytes(buf.getvalue())


def part_b(work: Path, rows: int, startup: float, per_image: float) -> tuple[float, float]:
    from qd_lib.data.folder import open_images
    from qd_lib.encoders import extract

    folder, runs = work / "small", work / "runs-b"
    start = time.perf_counter()
    _small_images(folder, rows)
    os.environ["QD_RUNS_DIR"] = str(runs)
    dataset = open_images(folder)
    for name in ("mobilenet_v2", "nss"):
        extract(dataset, _stand_in(name), on_error="skip", num_workers=0, show_progress=False)
    print(f"\nB. {rows} images with stand-in embeddings in the real cache (folder and cache "
          f"made in {time.perf_counter() - start:.1f} s), end to end")
    first_wall, first = _run_select(folder, work / "b_picks.csv", 0.1, runs)
    repeat_wall, repeat = _run_select(folder, work / "b_next.csv", 0.05, runs)
    _steps(first, repeat, first_wall, repeat_wall)
    print(f"  repeat run {repeat_wall:.2f} s; repeat / start-up = {repeat_wall / startup:.2f}")
    return first_wall + per_image * rows, repeat_wall


# -- C: selection alone ------------------------------------------------------------------------
def _clustered(n: int, d: int, rng, centres: int = 50) -> np.ndarray:
    means = rng.normal(size=(centres, d)).astype(np.float32) * 3.0
    labels = rng.integers(centres, size=n)
    return means[labels] + rng.normal(size=(n, d)).astype(np.float32)


def part_c(rows: int) -> float:
    from qd_lib.features import standardize_blocks
    from qd_lib.selection import select

    rng = np.random.default_rng(0)
    content, quality = _clustered(rows, 1280, rng), _clustered(rows, 81, rng)
    budget = rows // 10
    features = {"content": content, "quality": quality}
    start = time.perf_counter()
    first = select("qdiverse", features, budget, seed=0, progress=False)
    qd = time.perf_counter() - start
    start = time.perf_counter()
    nxt = select("qdiverse", features, budget, seed=0, progress=False, initial=first.indices)
    qd_next = time.perf_counter() - start
    assert not set(nxt.indices.tolist()) & set(first.indices.tolist())
    embedding = standardize_blocks([content, quality])
    start = time.perf_counter()
    select("kcenter", embedding, budget, seed=0, progress=False)
    kc = time.perf_counter() - start
    print(f"\nC. selection alone at {rows} rows (clustered 1280 + 81 dims, 10 % = {budget}, "
          "this process):")
    print(f"  qdiverse {qd:.2f} s; the next {budget} given {budget} rated {qd_next:.2f} s; "
          f"baseline kcenter {kc:.2f} s (qdiverse / kcenter = {qd / kc:.2f})")
    return qd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=500,
                        help="real photos for part A (default 500; 20000 for the full run)")
    parser.add_argument("--size", default="512x384", help="photo size for A, WIDTHxHEIGHT")
    parser.add_argument("--cache-rows", type=int, default=TARGET_N,
                        help="images of parts B and C (default 20000)")
    parser.add_argument("--keep", default=None,
                        help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(ROOT))
    import torch

    print(f"{os.cpu_count()} cores, torch {torch.get_num_threads()} threads, load average "
          f"{_load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        startup = _startup(work / "runs-a")
        per_image = part_a(work, args.n_images, size, startup)
        first_est, repeat_b = part_b(work, args.cache_rows, startup, per_image)
        selection = part_c(args.cache_rows)

    rows = args.cache_rows
    how = "measured" if args.n_images >= rows else "extraction estimated from A"
    print(f"\n{rows} images, offline features, Q-Diverse at 10 %:")
    print(f"  first run  ~{first_est / 60:.1f} min ({how}), of which extraction "
          f"{per_image * rows / 60:.1f} min ({per_image * rows / first_est:.0%})")
    print(f"  selection  {selection:.2f} s (target < {TARGET_SELECTION_S:.0f} s: "
          f"{'PASS' if selection < TARGET_SELECTION_S else 'FAIL'})")
    print(f"  repeat run {repeat_b:.2f} s with a new budget, cache hit (target < "
          f"{TARGET_REPEAT_S:.0f} s: {'PASS' if repeat_b < TARGET_REPEAT_S else 'FAIL'}; "
          f"{startup:.2f} s of it is the start-up)")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()
