"""Extraction: cache, sidecar checks, resume after interruption, Dask sharding, bad images."""
import importlib
import json
import logging
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from qd_lib.data import DatasetInfo, Manifest
from qd_lib.data.synthetic.references import PHOTOS, photo_rgb
from qd_lib.encoders import embedding_path, extract, load_embeddings
from qd_lib.encoders.__main__ import main as cli
from qd_lib.encoders.nss import NSSEncoder
from qd_lib.utils.errors import CacheMismatchError, ImageReadError, UnknownNameError
from qd_lib.utils.io import sha256_file
from qd_lib.weights import install_offline_weights

# the package re-exports the function ``extract``, which hides the module of the same name
extract_module = importlib.import_module("qd_lib.encoders.extract")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Interrupted(RuntimeError):
    pass


def _stop_after(monkeypatch, k):
    """Make the extractor raise after ``k`` chunks are on disk; returns the chunk log."""
    written = []

    def hook(chunk):
        written.append(chunk)
        if len(written) == k:
            raise Interrupted(f"stopped after chunk {chunk}")

    monkeypatch.setattr(extract_module, "_chunk_written", hook)
    return written


def test_extract_writes_memmap_and_sidecar_then_reuses_the_cache(tiny_bench, tmp_path,
                                                                 monkeypatch):
    rows = np.arange(5, 29)
    emb = extract(tiny_bench, "nss", rows=rows, cache_dir=tmp_path, batch_size=8,
                  num_workers=0)
    assert not emb.from_cache and emb.array.shape == (24, 81)
    assert isinstance(emb.array, np.memmap) and emb.array.dtype == np.float32
    assert np.isfinite(emb.array).all()
    assert emb.path == embedding_path(tiny_bench.manifest, "nss", rows=rows, cache_dir=tmp_path)
    meta = json.loads(emb.sidecar_path.read_text())
    m = tiny_bench.manifest
    assert meta["manifest_hash"] == m.content_hash and meta["rows"] == rows.tolist()
    assert meta["encoder"] == "nss" and meta["input_policy"] == "whole_image"
    assert meta["weights"] == [] and meta["device"] == "cpu" and meta["amp"] is None
    assert {"torch", "numpy", "python"} <= set(meta["versions"]) and meta["seconds"] > 0
    assert not emb.path.with_name(emb.path.stem + ".parts").exists()

    def no_compute(self, inputs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(NSSEncoder, "_encode", no_compute)
    again = extract(tiny_bench, "nss", rows=rows, cache_dir=tmp_path, batch_size=8)
    assert again.from_cache and np.array_equal(again.array, emb.array)
    assert load_embeddings(emb.path).meta["rows_hash"] == meta["rows_hash"]
    other = embedding_path(tiny_bench.manifest, "nss", rows=rows[:-1], cache_dir=tmp_path)
    assert other != emb.path  # other rows, other file


def test_a_sidecar_that_does_not_match_raises_unless_overwrite(tiny_bench, tmp_path):
    emb = extract(tiny_bench, "nss", rows=range(8), cache_dir=tmp_path, num_workers=0)
    meta = json.loads(emb.sidecar_path.read_text())
    meta["weights_sha256"] = ["0" * 64]  # as if made from another weights file
    emb.sidecar_path.write_text(json.dumps(meta))
    with pytest.raises(CacheMismatchError, match="weights_sha256.*overwrite=True"):
        extract(tiny_bench, "nss", rows=range(8), cache_dir=tmp_path)
    fresh = extract(tiny_bench, "nss", rows=range(8), cache_dir=tmp_path, overwrite=True,
                    num_workers=0)
    assert not fresh.from_cache and fresh.meta["weights_sha256"] == []
    assert np.array_equal(fresh.array, emb.array)


def test_interrupted_extraction_resumes_from_finished_chunks_byte_identical(
        tiny_bench, tmp_path, monkeypatch):
    install_offline_weights()
    rows = np.arange(0, 160, 7)  # 23 images, chunks of 8, 8, 7, batches of 4
    opts = dict(rows=rows, batch_size=4, chunk_size=8, device="cpu")
    ref = extract(tiny_bench, "mobilenet_v2", cache_dir=tmp_path / "a", num_workers=1, **opts)
    written = _stop_after(monkeypatch, 1)
    with pytest.raises(Interrupted):
        extract(tiny_bench, "mobilenet_v2", cache_dir=tmp_path / "b", num_workers=1, **opts)
    parts = sorted(p.name for p in (tmp_path / "b").glob("*.parts/c*.json"))
    assert parts == ["c000000.json"]
    assert not list((tmp_path / "b").glob("*.npy"))  # nothing assembled yet
    written.clear()
    monkeypatch.setattr(extract_module, "_chunk_written", written.append)
    resumed = extract(tiny_bench, "mobilenet_v2", cache_dir=tmp_path / "b", num_workers=0,
                      **opts)
    assert written == [1, 2] and resumed.meta["resumed_chunks"] == 1
    assert resumed.path.read_bytes() == ref.path.read_bytes()
    assert resumed.meta["checksums"] == ref.meta["checksums"]
    load_embeddings(resumed.path)  # verifies


def test_dask_sharded_extraction_equals_the_single_process_run(tiny_bench, tmp_path):
    distributed = pytest.importorskip("distributed")
    rows = np.arange(0, 160, 3)  # 54 images, 7 chunks
    single = extract(tiny_bench, "nss", rows=rows, cache_dir=tmp_path / "single",
                     chunk_size=8, batch_size=4, num_workers=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        sharded = extract(tiny_bench, "nss", rows=rows, cache_dir=tmp_path / "dask",
                          chunk_size=8, batch_size=4, client=client)
    assert sharded.meta["executor"] == "dask" and sharded.meta["n_workers"] == 2
    assert sharded.path.read_bytes() == single.path.read_bytes()


# -- cache integrity ---------------------------------------------------------------------------
def _damage(file):
    """Change three values of a stored array in place; the sidecar is left alone."""
    array = np.load(file, mmap_mode="r+")
    array[0, :3] += 1.0
    array.flush()
    del array


class _NSSWithNorm(NSSEncoder):
    """Two outputs, like LIQE, but weight-free: the NSS features and their norm."""

    def __init__(self):
        super().__init__()
        self.outputs = {"embedding": self.computer.dim, "norm": 1}
        self.key = "nss_norm"

    def _encode(self, inputs):
        x = inputs["features"].float()
        return {"embedding": x, "norm": x.norm(dim=1, keepdim=True)}


def test_a_damaged_cached_array_is_detected_and_recomputed(tiny_bench, tmp_path, caplog):
    opts = dict(rows=range(10), cache_dir=tmp_path, num_workers=0)
    first = extract(tiny_bench, "nss", **opts)
    good = np.array(first.array)
    _damage(first.path)
    with caplog.at_level(logging.WARNING, logger="qd_lib.encoders.extract"):
        again = extract(tiny_bench, "nss", **opts)
    assert not again.from_cache
    assert first.path.name in caplog.text and "sha256" in caplog.text
    np.testing.assert_array_equal(again.array, good)
    # the repaired cache is reused again
    assert extract(tiny_bench, "nss", **opts).from_cache
    # where recomputing is off (or impossible), the damage stops the run, naming the file
    _damage(first.path)
    with pytest.raises(CacheMismatchError, match=rf"{first.path.name}.*sha256"):
        extract(tiny_bench, "nss", on_bad_cache="raise", **opts)
    with pytest.raises(CacheMismatchError, match=first.path.name):
        load_embeddings(first.path)
    # verification can be switched off: the damaged values are then served as they are
    unchecked = extract(tiny_bench, "nss", verify_cache=False, **opts)
    assert unchecked.from_cache and unchecked.array[0, 0] == good[0, 0] + 1
    assert load_embeddings(first.path, verify=False).from_cache
    with pytest.raises(ValueError, match="'on_bad_cache' parameter"):
        extract(tiny_bench, "nss", on_bad_cache="ignore", **opts)


def test_every_output_has_a_checksum_and_a_damaged_second_output_is_caught(tiny_bench,
                                                                            tmp_path, caplog):
    opts = dict(rows=range(8), cache_dir=tmp_path, num_workers=0)
    first = extract(tiny_bench, _NSSWithNorm(), **opts)
    norm_file = first.path.parent / first.meta["outputs"]["norm"]["file"]
    good = np.array(first["norm"])
    _damage(norm_file)
    with caplog.at_level(logging.WARNING, logger="qd_lib.encoders.extract"):
        again = extract(tiny_bench, _NSSWithNorm(), **opts)
    assert not again.from_cache and norm_file.name in caplog.text
    np.testing.assert_array_equal(again["norm"], good)
    sums = json.loads(again.sidecar_path.read_text())["checksums"]
    assert set(sums) == {"embedding", "norm"}
    assert sums["norm"]["sha256"] == sha256_file(norm_file)
    assert sums["embedding"]["bytes"] == again.path.stat().st_size


def test_a_cache_without_checksums_is_recomputed_with_a_message(tiny_bench, tmp_path, caplog):
    opts = dict(rows=range(6), cache_dir=tmp_path, num_workers=0)
    emb = extract(tiny_bench, "nss", **opts)
    meta = json.loads(emb.sidecar_path.read_text())
    meta.pop("checksums", None)  # as written before checksums were recorded
    emb.sidecar_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="qd_lib.encoders.extract"):
        again = extract(tiny_bench, "nss", **opts)
    assert not again.from_cache
    assert "no checksum" in caplog.text and emb.sidecar_path.name in caplog.text
    assert "checksums" in json.loads(emb.sidecar_path.read_text())


def test_a_damaged_chunk_file_is_recomputed_when_resuming(tiny_bench, tmp_path, monkeypatch):
    opts = dict(rows=np.arange(0, 40, 2), batch_size=4, chunk_size=8, num_workers=0)
    ref = extract(tiny_bench, "nss", cache_dir=tmp_path / "a", **opts)
    _stop_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        extract(tiny_bench, "nss", cache_dir=tmp_path / "b", **opts)
    parts = next((tmp_path / "b").glob("*.parts"))
    _damage(parts / "c000000.embedding.npy")
    written = []
    monkeypatch.setattr(extract_module, "_chunk_written", written.append)
    resumed = extract(tiny_bench, "nss", cache_dir=tmp_path / "b", **opts)
    assert written == [0, 2]  # chunk 1 was intact and is kept
    assert resumed.path.read_bytes() == ref.path.read_bytes()


# -- bad input -----------------------------------------------------------------------------------
def _png16_grey(path, values):
    """A 16-bit greyscale PNG written by hand (PIL cannot write 16-bit RGB, and we want the
    file exactly as another tool would write it)."""
    height, width = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def odd_images(tmp_path):
    """One image per awkward case, written by the test, and a manifest naming them."""
    root = tmp_path / "odd"
    root.mkdir()
    rgb = photo_rgb(next(p for p in PHOTOS if p.name == "coffee"))[:96, :128]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    files = {}

    def save(name, image, **kw):
        image.save(root / name, **kw)
        files[name] = name

    save("rgb.png", Image.fromarray(rgb))
    save("grey.png", Image.fromarray(grey))
    _png16_grey(root / "grey16.png", grey.astype(np.uint16) * 257)
    files["grey16.png"] = "grey16.png"
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95)
    save("palette.png", Image.fromarray(rgb).convert("P"))
    save("rgba.png", Image.fromarray(rgb).convert("RGBA"))
    save("small.png", Image.fromarray(rgb[:40, :60]))  # smaller than a 224 crop
    save("tiny.png", Image.fromarray(rgb[:12, :20]))  # too small to measure
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not an image" * 20)
    files["corrupt.png"] = "corrupt.png"
    good = (root / "rgb.png").read_bytes()
    (root / "truncated.png").write_bytes(good[:len(good) // 2])
    files["truncated.png"] = "truncated.png"
    files["missing.png"] = "missing.png"
    names = list(files)
    table = pd.DataFrame({"image_id": [n.split(".")[0] for n in names], "relpath": names,
                          "mos": np.linspace(1, 5, len(names))})
    return Manifest(table, DatasetInfo(name="odd", mos_range=(1, 5))), root


def test_bad_images_are_converted_or_reported_by_name(odd_images, tmp_path):
    manifest, root = odd_images
    emb = extract(manifest, "nss", root=root, cache_dir=tmp_path, chunk_size=4, batch_size=2,
                  num_workers=0, on_error="skip")
    bad = {b["image_id"]: b["reason"] for b in emb.meta["bad_images"]}
    assert set(bad) == {"corrupt", "truncated", "missing", "tiny"}
    assert "Cannot read image 'corrupt'" in bad["corrupt"]
    assert "truncated" in bad["truncated"] and "missing file" in bad["missing"]
    assert "12 px" in bad["tiny"] or "20x12" in bad["tiny"]
    kept = [manifest.table["image_id"][r] for r in emb.rows]
    assert kept == ["rgb", "grey", "grey16", "cmyk", "palette", "rgba", "small"]
    X = np.asarray(emb.array)
    assert np.isfinite(X).all() and X.shape == (7, 81)
    row = {name: i for i, name in enumerate(kept)}
    # a 16-bit greyscale file is rescaled (not clipped) to the same 8-bit image
    np.testing.assert_array_equal(X[row["grey16"]], X[row["grey"]])
    np.testing.assert_array_equal(X[row["rgba"]], X[row["rgb"]])  # alpha dropped
    assert np.abs(X[row["cmyk"]] - X[row["rgb"]]).max() < 1.0  # JPEG of the same pixels


def test_a_run_with_bad_images_keeps_finished_chunks_and_reports_all(odd_images, tmp_path,
                                                                    monkeypatch):
    install_offline_weights()
    manifest, root = odd_images
    opts = dict(root=root, cache_dir=tmp_path, chunk_size=3, batch_size=3, num_workers=0)
    with pytest.raises(ImageReadError) as info:
        extract(manifest, "mobilenet_v2", **opts)
    message = str(info.value)
    assert "4 of 11 images" in message
    for name in ("corrupt", "truncated", "missing", "tiny (image is 20x12 px"):
        assert name in message
    parts = next(tmp_path.glob("*.parts"))
    assert len(list(parts.glob("c*.json"))) == 4  # every chunk finished and on disk
    # fix the four files; only the chunks that held them are computed again
    for name in ("corrupt.png", "truncated.png", "missing.png", "tiny.png"):
        (root / name).write_bytes((root / "rgb.png").read_bytes())
    written = []
    monkeypatch.setattr(extract_module, "_chunk_written", written.append)
    emb = extract(manifest, "mobilenet_v2", **opts)
    assert written == [2, 3] and emb.array.shape == (11, 1280)
    assert emb.meta["conversions"]["count"] == 11  # every image here is under the 224 crop
    assert emb.meta["bad_images"] == []


def test_extract_checks_its_arguments(tiny_bench, tmp_path):
    m = tiny_bench.manifest
    with pytest.raises(ValueError, match="'root' parameter is required"):
        extract(m, "nss", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'rows' parameter"):
        extract(tiny_bench, "nss", rows=[0, 0, 1], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'on_error' parameter"):
        extract(tiny_bench, "nss", on_error="ignore", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'device' parameter"):
        extract(tiny_bench, "nss", device="tpu", cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="nss"):
        extract(tiny_bench, "nsss", cache_dir=tmp_path)


def test_command_line_lists_and_extracts(tmp_path, capsys, tiny_bench, monkeypatch):
    import qd_lib.data
    import qd_lib.encoders

    # the encoders have no dataset loader of their own: the CLI goes through open_dataset
    assert not hasattr(extract_module, "resolve_dataset")
    assert "resolve_dataset" not in qd_lib.encoders.__all__
    opened = []
    real_open = qd_lib.data.open_dataset

    def spy(*args, **kwargs):
        opened.append((args, kwargs))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(qd_lib.data, "open_dataset", spy)
    assert cli(["list"]) == 0
    listed = capsys.readouterr().out
    assert "mobilenet_v2" in listed and "4096" in listed
    assert cli(["extract", "--dataset", "proxy-tiny", "--encoders", "nss", "--cache-dir",
                str(tmp_path), "--log-level", "WARNING"]) == 0
    out = capsys.readouterr().out
    assert "nss: 160 x 81 (computed" in out
    assert [a[0] for a, _ in opened] == ["proxy-tiny"]
    cli(["extract", "--dataset", "proxy-tiny", "--encoders", "nss", "--cache-dir",
         str(tmp_path), "--log-level", "WARNING"])
    assert "(cached)" in capsys.readouterr().out


def test_the_old_dataset_helper_says_what_replaced_it():
    import qd_lib.encoders

    with pytest.raises(AttributeError, match=r"qd_lib.data.open_dataset"):
        qd_lib.encoders.resolve_dataset("proxy-tiny")


def _extract_nss_in_a_daemon(args):
    root, cache = args
    from qd_lib.data import load_manifest
    from qd_lib.encoders import extract

    ds = load_manifest(root)
    return extract(ds, "nss", cache_dir=cache, overwrite=True).array.shape


def test_extraction_inside_a_daemonic_worker_starts_no_loader_processes(tiny_bench, tmp_path):
    """Dask and multiprocessing-pool workers are daemonic: they may not start children, so the
    transform-heavy nss encoder must not ask for loader workers there."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # pool workers are daemonic
        shape = pool.map(_extract_nss_in_a_daemon,
                         [(str(tiny_bench.root / "manifest.csv"), str(tmp_path))])[0]
    assert shape == (160, 81)
