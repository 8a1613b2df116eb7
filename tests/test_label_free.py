"""Label-free data and the 'select images to rate' job (python -m qd_lib select).

The folder fixture writes 24 small JPEG/PNG/WebP/BMP/TIFF crops of the photos bundled with
scikit-image, scikit-learn and matplotlib, plus one corrupt file, and extracts their offline
embeddings once into a temporary runs folder (QD_RUNS_DIR).
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from qd_lib.data import DatasetInfo, Manifest, open_dataset
from qd_lib.data.folder import list_images, open_images, write_sample_folder
from qd_lib.features import selection_mos
from qd_lib.selection.images import check_label_free_method, resolve_rated, select_images
from qd_lib.utils.errors import ManifestError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_IMAGES = 24


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A runs folder for the module (embeddings, t-SNE layouts stay out of runs/)."""
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QD_RUNS_DIR", str(runs))
        yield runs


@pytest.fixture(scope="module")
def folder(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_sample_folder(root, N_IMAGES, seed=1)
    (root / ".hidden").mkdir()  # hidden folders are not searched
    shutil.copy(next(root.rglob("*.jpg")), root / ".hidden" / "x.jpg")
    return root


@pytest.fixture(scope="module")
def first(folder, tmp_path_factory):
    """The first run: Q-Diverse, 6 picks, with figures."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return select_images(folder, budget=6, out=tmp_path_factory.mktemp("out") / "picks.csv")
    finally:
        torch.set_num_threads(previous)


# -- the data layer ------------------------------------------------------------------------------
def test_a_label_free_manifest_has_no_mos_and_is_checked_as_carefully():
    info = DatasetInfo(name="lf", kind="label_free")
    table = pd.DataFrame({"image_id": ["a.jpg", "b.jpg"], "relpath": ["a.jpg", "x/b.jpg"]})
    manifest = Manifest(table, info)
    assert not manifest.labelled and manifest.split_schemes == []
    assert "label-free" in repr(manifest)
    with pytest.raises(ManifestError, match="label-free: its images have no MOS"):
        manifest.normalized_mos()
    # empty label columns are dropped: the same table, the same hash
    same = Manifest(table.assign(mos=[None, ""], mos_std=np.nan), info)
    assert same.content_hash == manifest.content_hash and "mos" not in same.table
    with pytest.raises(ManifestError, match=r"row 1 \(image_id='b.jpg'\) has 'mos' '3.5'.*"
                                            r"label-free.*kind='labelled'"):
        Manifest(table.assign(mos=["", "3.5"]), info)
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['relpath'\]"):
        Manifest(table.drop(columns=["relpath"]), info)
    with pytest.raises(ManifestError, match="'a.jpg' is duplicated"):
        Manifest(table.assign(image_id=["a.jpg", "a.jpg"]), info)
    with pytest.raises(ManifestError, match="escapes"):
        Manifest(table.assign(relpath=["a.jpg", "../b.jpg"]), info)
    with pytest.raises(ManifestError, match="'mos_range' must be None"):
        DatasetInfo(name="lf", kind="label_free", mos_range=(1, 5))
    with pytest.raises(ManifestError, match="labelled dataset needs 'mos_range'"):
        DatasetInfo(name="rated")
    with pytest.raises(ManifestError, match="'kind' must be one of"):
        DatasetInfo(name="x", mos_range=(1, 5), kind="unlabelled")


def test_label_free_sidecar_round_trip_and_labelled_sidecars_unchanged(tmp_path,
                                                                       small_manifest):
    table = pd.DataFrame({"image_id": ["a.jpg"], "relpath": ["a.jpg"]})
    path = Manifest(table, DatasetInfo(name="lf", kind="label_free")).save(tmp_path / "lf.csv")
    meta = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert meta["kind"] == "label_free" and meta["mos_range"] is None
    again = open_dataset(path)
    assert not again.labelled and again.indices("train").tolist() == [0]
    assert again.indices("test").tolist() == []
    small_manifest.save(tmp_path / "toy.csv")
    assert "kind" not in yaml.safe_load((tmp_path / "toy.yaml").read_text())


def test_a_folder_opens_as_a_label_free_dataset(folder):
    ds = open_dataset(folder)  # a folder without manifest.csv
    assert not ds.labelled and ds.root == folder.resolve()
    ids = ds.manifest.table["image_id"].tolist()
    assert len(ids) == N_IMAGES + 1 and "broken.jpg" in ids  # corrupt files are kept, for now
    assert not any(i.startswith(".hidden") or i.endswith(".txt") for i in ids)
    assert {i.rsplit(".", 1)[1] for i in ids} == {"jpg", "png", "webp", "bmp", "tif"}
    assert ds.n_train == N_IMAGES + 1 and ds.budget(0.5) == (N_IMAGES + 1) // 2
    assert open_images(str(folder) + "/").name == ds.name  # one name per folder
    assert ds.name == f"{folder.name.lower()}-{list_images(folder).path_hash[:8]}"
    with pytest.raises(ManifestError, match="label-free"):
        selection_mos(ds, ds.indices("train"))


def test_lists_of_paths_and_their_names(folder, tmp_path):
    import os

    paths = sorted(folder.rglob("*.png"))
    listing = tmp_path / "some.txt"  # relative entries are relative to the list's folder
    listing.write_text("# PNGs\n" + "\n".join(os.path.relpath(p, tmp_path) for p in paths)
                       + "\n\n")
    images = list_images(listing)
    assert images.root == folder.resolve() and images.paths == [p.resolve() for p in paths]
    assert images.label == "some" and len(images.path_hash) == 64
    csv = tmp_path / "some.csv"  # a CSV with a 'path' column (an earlier picks.csv)
    pd.DataFrame({"rank": range(len(paths)), "path": [str(p) for p in paths]}).to_csv(csv)
    assert list_images(csv).relpaths == images.relpaths
    bare = tmp_path / "bare.csv"  # no header: the first cell is an image path
    bare.write_text("\n".join(f"{p},x" for p in paths[:2]))
    assert list_images(bare).paths == [p.resolve() for p in paths[:2]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images found in the folder"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No such folder or image list"):
        list_images(tmp_path / "nowhere")


# -- refusing what needs MOS ---------------------------------------------------------------------
def test_methods_that_need_mos_are_refused_with_a_reason_and_a_way_out():
    with pytest.raises(ValueError, match=r"'moderate' needs MOS labels \(.*MOS bin.*\).*"
                                         r"not rated yet.*label-free method.*qdiverse"):
        check_label_free_method("moderate")
    with pytest.raises(ValueError, match=r"'contextual_diversity' needs MOS"):
        check_label_free_method("contextual_diversity")
    with pytest.raises(ValueError, match=r"'balance' option of 'kcenter' balances the picks "
                                         r"over MOS bins.*without it"):
        check_label_free_method("kcenter", {"balance": True})
    with pytest.raises(ValueError, match=r"'pgcs' cannot continue from rated images.*kcenter"):
        check_label_free_method("pgcs", rated=True)
    assert check_label_free_method("pgcs").name == "pgcs"


# -- the job ---------------------------------------------------------------------------------------
def test_the_first_run_writes_picks_sheet_map_and_record(first):
    out = first.files["picks"]
    picks = pd.read_csv(out)
    assert list(picks.columns) == ["rank", "path", "gain", "image_id"]
    assert picks["rank"].tolist() == list(range(1, 7)) and picks["path"].is_unique
    assert (np.diff(picks["gain"]) <= 1e-9).all()  # greedy log-det gains never increase
    assert "broken.jpg" not in picks["image_id"].tolist()
    assert first.unreadable and first.unreadable[0][0] == "broken.jpg"
    assert "UnidentifiedImageError" in first.unreadable[0][1]
    assert first.n_candidates == N_IMAGES and first.n_encoded > 0
    for kind in ("contact", "map"):
        assert first.files[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert first.files[kind].parent == out.parent
    record = json.loads(first.files["record"].read_text())
    assert record["unreadable"][0]["path"] == "broken.jpg"
    assert record["method"] == "qdiverse" and record["n_readable"] == N_IMAGES
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_a_second_run_encodes_nothing_and_smaller_budgets_are_prefixes(first, folder):
    again = select_images(folder, budget=3, figures=False)
    assert again.n_encoded == 0 and set(again.extraction.values()) == {"cached"}
    assert again.dataset.name == first.dataset.name
    # one batch: the greedy picks are nested, so 3 picks are the first 3 of 6
    assert again.picks["path"].tolist() == first.picks["path"].tolist()[:3]
    assert again.unreadable == first.unreadable  # still reported, from the cache's record


def test_rated_images_inside_the_folder_continue_the_run(first, folder, tmp_path):
    # the first 3 picks, given as an earlier picks.csv, then 3 more: the run's picks 4-6
    done = tmp_path / "round1.csv"
    first.picks.head(3).to_csv(done, index=False)
    nxt = select_images(folder, budget=3, rated=done, figures=False)
    assert nxt.n_encoded == 0 and len(nxt.rated) == 3
    assert nxt.picks["path"].tolist() == first.picks["path"].tolist()[3:]
    # ids work as well as paths, and k-Center continues from the rated centres
    ids = first.picks["image_id"].tolist()[:2]
    kc = select_images(folder, budget=4, rated=ids, method="kcenter", figures=False)
    assert not set(kc.picks["image_id"]) & set(ids)


def test_rated_images_from_elsewhere_are_encoded_and_steer_the_picks(first, folder, tmp_path):
    # an exact copy (in another folder) of the first pick counts as rated: the original, in
    # the folder, then adds nothing new and is not among the next picks
    elsewhere = tmp_path / "rated_before"
    elsewhere.mkdir()
    original = first.picks["path"].iloc[0]
    copy = elsewhere / ("copy_" + original.rsplit("/", 1)[1])
    shutil.copy(original, copy)
    out = tmp_path / "next.csv"
    nxt = select_images(folder, budget=5, rated=[str(copy)], out=out)
    assert len(nxt.extra_rows) == 1 and len(nxt.rated) == 1
    assert any(v == "computed" for k, v in nxt.extraction.items() if k.endswith(
        nxt.extra.name))
    assert original not in nxt.picks["path"].tolist()
    assert nxt.picks["path"].iloc[0] != original and len(nxt.picks) == 5
    assert json.loads((tmp_path / "next.json").read_text())["rated"] == [str(copy.resolve())]
    assert nxt.files["map"].is_file()


def test_bad_requests_fail_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="neither an image of .* nor an existing file: "
                                         "'no/such.jpg'"):
        select_images(folder, budget=2, rated=["no/such.jpg"], figures=False)
    with pytest.raises(ValueError, match="exactly one of 'budget'"):
        select_images(folder, figures=False)
    with pytest.raises(ValueError, match=r"budget 30 is more than the 24 readable images"):
        select_images(folder, budget=30, figures=False)
    with pytest.raises(ValueError, match="'moderate' needs MOS"):
        select_images(folder, budget=2, method="moderate")
    with pytest.raises(FileNotFoundError):
        select_images(tmp_path / "missing", budget=2)


# -- the command -----------------------------------------------------------------------------------
def test_the_command_writes_the_picks_and_reports_bad_input_in_one_line(first, folder, tmp_path,
                                                                        capsys):
    from qd_lib.__main__ import main

    out = tmp_path / "cli" / "picks.csv"
    code = main(["select", str(folder), "--fraction", "0.25", "--out", str(out),
                 "--method", "herding", "--rated", str(first.files["picks"]),
                 "--no-figures", "--log-level", "WARNING"])
    assert code == 0
    picks = pd.read_csv(out)
    assert len(picks) == N_IMAGES // 4  # floor(0.25 x 24 readable images)
    assert not set(picks["path"]) & set(first.picks["path"])
    printed = capsys.readouterr().out
    assert "herding: 6 picks of 24 images, 6 rated before, 1 unreadable left out" in printed
    assert "all embeddings cached" in printed
    for argv, message in [
        (["select", str(folder), "--budget", "2", "--out", str(out), "--method", "moderate"],
         "error: Method 'moderate' needs MOS labels"),
        (["select", str(tmp_path / "nope"), "--budget", "2", "--out", str(out)],
         "error: No such folder or image list"),
        (["select", str(folder), "--budget", "2", "--out", str(out), "--rated", "x.jpg"],
         "error: 1 rated image(s) are neither"),
        (["select", str(folder), "--budget", "2", "--out", str(out), "--option",
          "balance=true", "--method", "kcenter"], "error: The 'balance' option"),
    ]:
        assert main(argv + ["--log-level", "ERROR"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message) and "\n" not in err


def test_the_explorer_hides_the_mos_panels_and_conditions_on_rated_images(first, folder,
                                                                         tmp_path,
                                                                         small_manifest):
    from qd_lib.viz import explore

    rated = first.picks["image_id"].tolist()[:2]
    ex = explore(str(folder), method="qdiverse", fraction=0.25, rated=rated,
                 tsne_dir=tmp_path)
    state = ex.state()
    assert state["error"] is None, state["error"]
    assert (state["labelled"], state["n_rated"], state["n_train"]) == (False, 2, N_IMAGES)
    assert state["n_selected"] == N_IMAGES // 4 and list(state["coverage"]) == [
        "covering_radius"]
    assert ex.mos_image.layout.display == "none" and ex.tsne_image.value[:4] == b"\x89PNG"
    assert "MOS" not in ex.thumbnails_html.value.split("<tbody>")[0]
    # the next picks given the first two are the first run's picks 3, 4, ... (one batch)
    assert ex.selected_image_ids()[:4] == first.picks["image_id"].tolist()[2:6]
    refused = ex.set(method="moderate")["error"]
    assert refused.startswith("ValueError: Method 'moderate' needs MOS labels")
    labelled = small_manifest.save(tmp_path / "toy.csv")
    with pytest.raises(ValueError, match="'rated' parameter applies to label-free"):
        explore(str(labelled), rated=["I00.png"], tsne_dir=tmp_path)


def test_resolve_rated_reads_paths_ids_and_lists(folder, tmp_path):
    ds = open_images(folder)
    ids = ds.manifest.table["image_id"].tolist()
    listing = tmp_path / "done.txt"
    listing.write_text(f"{folder / ids[2]}\n{ids[0]}\n")
    rows, outside = resolve_rated([str(listing), ids[0], str(folder / ids[5])], ds)
    assert rows == [2, 0, 5] and outside == []
