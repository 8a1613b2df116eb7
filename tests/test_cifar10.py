"""The CIFAR-10 experiment (supplement §F.3, Table 4): loader, network, pipeline, table.

The loader is tested on batches this file writes itself in the exact layout of the CIFAR-10
python archive (pickled dicts with bytes keys, as Python 2 wrote them), never on a download.
"""
import json
import pickle
import re

import numpy as np
import pytest
import torch

from qd_lib.classification import (
    QUOTED_LABEL,
    SUPPLEMENT_TABLE4,
    TableMixError,
    TrainRecipe,
    grid_table,
    load_grid,
    run_grid,
    save_table4,
    table4,
    train_classifier,
)
from qd_lib.classification import training as training_module
from qd_lib.classification.experiment import ClassificationRunError, check_class_bins
from qd_lib.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFARFileMissingError,
    CIFARFormatError,
    load_cifar10,
    read_batch,
)
from qd_lib.data.classification import open_classification_set
from qd_lib.models.resnet_cifar import resnet18_cifar
from qd_lib.paths import repo_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
           "test_batch")


def _batch_dict(images, labels, label=b"training batch 1 of 5"):
    n = len(labels)
    return {b"batch_label": label, b"labels": [int(v) for v in labels],
            b"data": images.reshape(n, 3 * 32 * 32),
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)]}


def _write(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_fake_cifar(root, *, n_per_batch=12, n_test=20, seed=0, protocol=2):
    """Six batches and batches.meta in the CIFAR-10 python layout; returns the arrays."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    parts = {}
    for i, name in enumerate(BATCHES):
        n = n_test if name == "test_batch" else n_per_batch
        labels = np.arange(n) % 10  # every class in every batch
        rng.shuffle(labels)
        # images whose mean colour depends on the class, so a network can learn something
        base = rng.integers(0, 60, size=(n, 3, 32, 32))
        base[np.arange(n), labels % 3] += 25 * (labels[:, None, None] + 1)
        images = np.clip(base, 0, 255).astype(np.uint8)
        _write(root / name, _batch_dict(images, labels, f"batch {i}".encode()), protocol)
        parts[name] = (images, labels)
    _write(root / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                                   b"num_cases_per_batch": n_per_batch, b"num_vis": 3072},
           protocol)
    return parts


# -- loader -----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_loader_reads_the_exact_layout(tmp_path, protocol):
    parts = write_fake_cifar(tmp_path / "cifar10", protocol=protocol)
    data = load_cifar10(tmp_path / "cifar10")
    train_images = np.concatenate([parts[n][0] for n in BATCHES[:5]])
    assert data.name == "cifar10" and not data.stand_in
    assert data.train_images.shape == (60, 3, 32, 32) and data.train_images.dtype == np.uint8
    np.testing.assert_array_equal(data.train_images, train_images)
    np.testing.assert_array_equal(data.train_labels, np.concatenate(
        [parts[n][1] for n in BATCHES[:5]]))
    np.testing.assert_array_equal(data.test_images, parts["test_batch"][0])
    assert data.classes == CIFAR10_CLASSES
    assert set(data.source["files"]) == set(BATCHES)


def test_rows_are_rgb_planes_in_row_major_order(tmp_path):
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 5 * 32 + 7] = 200            # red plane, row 5, column 7
    row[0, 1024 + 31] = 100             # green plane, row 0, column 31
    row[0, 2048 + 31 * 32] = 50         # blue plane, row 31, column 0
    _write(tmp_path / "data_batch_1", {b"data": row, b"labels": [3], b"batch_label": b"x",
                                       b"filenames": [b"a.png"]})
    batch = read_batch(tmp_path / "data_batch_1")
    assert batch.images.shape == (1, 3, 32, 32)
    assert batch.images[0, 0, 5, 7] == 200 and batch.images[0, 1, 0, 31] == 100
    assert batch.images[0, 2, 31, 0] == 50 and batch.images.sum() == 350
    assert batch.labels.tolist() == [3] and batch.filenames == ("a.png",)


def test_archive_subfolder_is_found(tmp_path):
    write_fake_cifar(tmp_path / "cifar10" / "cifar-10-batches-py")
    assert load_cifar10(tmp_path / "cifar10").n_train == 60


def test_default_root_is_qd_data_root(tmp_path, monkeypatch):
    write_fake_cifar(tmp_path / "cifar10")
    monkeypatch.setenv("QD_DATA_ROOT", str(tmp_path))
    assert open_classification_set("cifar10").n_test == 20


def test_missing_file_error_names_the_file(tmp_path):
    write_fake_cifar(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "data_batch_3").unlink()
    with pytest.raises(CIFARFileMissingError, match=r"'data_batch_3' not found") as info:
        load_cifar10(tmp_path / "cifar10")
    assert "nothing is downloaded" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "cifar10" / "batches.meta").unlink()
    with pytest.raises(CIFARFileMissingError, match=r"missing: data_batch_3, batches\.meta"):
        load_cifar10(tmp_path / "cifar10")


def _good(n=4):
    return _batch_dict(np.zeros((n, 3, 32, 32), np.uint8), np.arange(n) % 10)


@pytest.mark.parametrize("mutate, pattern", [
    (lambda d: d.update({b"data": d[b"data"].astype(np.int32)}), r"b'data' must have dtype uint8"),
    (lambda d: d.update({b"data": d[b"data"][:, :3000]}), r"b'data' must have shape \(N, 3072\)"),
    (lambda d: d.update({b"labels": [1, 2]}), r"b'labels' must have one entry per row"),
    (lambda d: d.update({b"labels": [0, 1, 2, 10]}), r"b'labels' must hold values in 0\.\.9"),
    (lambda d: d.pop(b"labels"), r"has no field b'labels'"),
    (lambda d: d.update({b"filenames": [b"a"]}), r"b'filenames' must be a list of 4 names"),
    (lambda d: d.update({b"batch_label": 7}), r"b'batch_label' must be bytes"),
])
def test_malformed_batch_names_file_and_field(tmp_path, mutate, pattern):
    record = _good()
    mutate(record)
    _write(tmp_path / "data_batch_2", record)
    with pytest.raises(CIFARFormatError, match=pattern) as info:
        read_batch(tmp_path / "data_batch_2")
    assert "data_batch_2" in str(info.value)


def test_truncated_or_foreign_files_are_refused(tmp_path):
    good = pickle.dumps(_good(), protocol=2)
    (tmp_path / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(CIFARFormatError, match=r"test_batch is not a CIFAR-10 python batch"):
        read_batch(tmp_path / "test_batch")
    _write(tmp_path / "test_batch", [1, 2, 3])
    with pytest.raises(CIFARFormatError, match=r"must hold a pickled dict"):
        read_batch(tmp_path / "test_batch")


class _Trap:
    """Unpickling this would create a file; the restricted unpickler must refuse first."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_restricted_unpickler_runs_nothing_outside_the_layout(tmp_path):
    target = tmp_path / "created_by_unpickling"
    record = _good()
    record[b"batch_label"] = _Trap(target)
    _write(tmp_path / "data_batch_1", record)
    with pytest.raises(CIFARFormatError, match=r"open is not part of the CIFAR layout"):
        read_batch(tmp_path / "data_batch_1")
    assert not target.exists()


def test_meta_must_list_ten_classes(tmp_path):
    write_fake_cifar(tmp_path)
    _write(tmp_path / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(CIFARFormatError, match=r"batches\.meta: field b'label_names' must be a "
                                               r"list of 10 names"):
        load_cifar10(tmp_path)


def test_digits_stand_in_is_labelled():
    data = open_classification_set("digits")
    assert data.stand_in and "NOT CIFAR-10" in data.title
    assert (data.n_train, data.n_test, data.n_classes) == (1437, 360, 10)
    assert data.train_images.shape[1:] == (3, 32, 32) and data.train_images.dtype == np.uint8
    # grey digits: R = G = B; background dark, strokes bright
    assert (data.train_images[:, 0] == data.train_images[:, 2]).all()
    assert data.train_images.max() == 255 and data.train_images.min() == 0
    assert data.class_counts().min() >= 139


# -- the network --------------------------------------------------------------------------------
def test_resnet18_cifar_stem_and_shapes():
    net = resnet18_cifar(10)
    stem = net.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.padding == (1, 1)
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))
                   for m in net.modules())
    sizes = {}
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        getattr(net, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:])))
    net.eval()
    with torch.no_grad():
        logits = net(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert sizes == {"stem": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16),
                     "layer3": (256, 8, 8), "layer4": (512, 4, 4)}
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert sum(p.numel() for p in net.parameters()) == 11_173_962  # ResNet-18, CIFAR stem


def test_resnet18_width_option_and_validation():
    net = resnet18_cifar(100, width=8)
    assert net.fc.in_features == 64 and net.fc.out_features == 100
    with pytest.raises(ValueError, match=r"'num_classes' parameter must be an int in the range "
                                         r"\[2, inf\)"):
        resnet18_cifar(1)


# -- training -----------------------------------------------------------------------------------
def _tiny_set(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 40, size=(n, 3, 32, 32))
    images[np.arange(n), labels % 3] += 50 * (labels[:, None, None] + 1)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def test_training_resumes_exactly_after_an_interruption(tmp_path, monkeypatch):
    images, labels = _tiny_set()
    recipe = TrainRecipe(epochs=3, batch_size=8, lr=0.05, width=4)
    kwargs = dict(n_classes=4, recipe=recipe, seed=3, device="cpu")
    straight = train_classifier(images, labels, images, labels, **kwargs)

    ckpt = tmp_path / "checkpoint.pt"
    original = training_module._save_checkpoint
    saved = []

    def save_then_stop(path, state):
        original(path, state)
        saved.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt("simulated kill after epoch 2")

    monkeypatch.setattr(training_module, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(images, labels, images, labels, checkpoint=ckpt, fingerprint="run",
                         **kwargs)
    monkeypatch.setattr(training_module, "_save_checkpoint", original)
    resumed = train_classifier(images, labels, images, labels, checkpoint=ckpt,
                               fingerprint="run", **kwargs)
    assert saved == [1, 2] and resumed["resumed_from_epoch"] == 2
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    np.testing.assert_array_equal(resumed["predictions"], straight["predictions"])
    other = train_classifier(images, labels, images, labels, checkpoint=ckpt,
                             fingerprint="another run", **kwargs)
    assert other["resumed_from_epoch"] == 0  # a checkpoint of another run is ignored


def test_recipe_validation():
    with pytest.raises(ValueError, match=r"'augment' parameter must be one of"):
        TrainRecipe(augment="mixup")
    with pytest.raises(TypeError, match=r"Unknown recipe field\(s\) \['epoch'\]"):
        TrainRecipe.from_mapping({"epoch": 3})


def test_class_labels_map_to_bins_exactly():
    labels = np.arange(30) % 10
    check_class_bins(labels, 10)
    with pytest.raises(ClassificationRunError, match=r"a class\s+is missing"):
        check_class_bins(labels[labels != 4], 10)


# -- end to end ---------------------------------------------------------------------------------
def test_tiny_grid_end_to_end(tmp_path, monkeypatch):
    write_fake_cifar(tmp_path / "data" / "cifar10", n_per_batch=20, n_test=20)
    monkeypatch.setenv("QD_DATA_ROOT", str(tmp_path / "data"))
    grid = load_grid({"name": "tiny", "dataset": "cifar10", "input_size": 32,
                      "methods": ["random", "moderate", "qdiverse"], "fractions": [0.3],
                      "seeds": [0, 1], "recipe": {"epochs": 1, "batch_size": 8, "width": 4}})
    runs = tmp_path / "runs"
    report = run_grid(grid, runs_root=runs, device="cpu", torch_threads=1)
    assert report.counts == {"ran": 6, "skipped": 0, "failed": 0}, report.failed()
    record = report.records[2]  # moderate, seed 0
    assert record["method"] == "moderate" and record["status"] == "ok"
    assert record["n_coreset"] == 30 and 0.0 <= record["accuracy"] <= 1.0
    folder = runs / "cifar10" / record["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "params.json",
                                                        "selection.json"]
    selection = json.loads((folder / "selection.json").read_text())
    assert selection["labels_used"] and selection["params"]["n_bins"] == 10
    assert len(set(selection["indices"])) == 30
    qd = json.loads((runs / "cifar10" / report.records[4]["run_id"] / "selection.json")
                    .read_text())
    assert (qd["params"]["gamma"], qd["params"]["n_landmarks"], qd["params"]["batch_size"]) == \
        (0.7, 500, 1500) and not qd["labels_used"]
    again = run_grid(grid, runs_root=runs, device="cpu", torch_threads=1)
    assert again.counts == {"ran": 0, "skipped": 6, "failed": 0}

    table = grid_table(grid, runs_root=runs)
    files = save_table4(table, grid.name, folder=tmp_path / "figures")
    assert {p.name for p in files.values()} == {
        "tiny_table4.csv", "tiny_table4.md", "tiny_table4.tex", "tiny_table4_long.csv",
        "tiny_table4.json"}
    assert table.cells["Source"].tolist() == [
        "run here: CIFAR-10", f"{QUOTED_LABEL} (CIFAR-10)"]
    provenance = json.loads(files["json"].read_text())
    assert provenance["n_runs"] == 6 and len(provenance["run_ids"]) == 6
    assert provenance["stand_in"] is False and provenance["seeds"] == [0, 1]


# -- the table ----------------------------------------------------------------------------------
def _record(method, fraction, seed, accuracy, **extra):
    return {"status": "ok", "method": method, "fraction": fraction, "seed": seed,
            "accuracy": accuracy, "run_id": f"digits__{method}__{fraction}__s{seed}",
            "dataset": "digits", "dataset_title": "digits stand-in (NOT CIFAR-10)",
            "stand_in": True, "train_hash": "t", "test_hash": "h",
            "recipe": TrainRecipe(epochs=2, width=8).to_dict(),
            "spec": {"features": {"input_size": 224}}, "settings_hash": f"{method}{fraction}",
            "git_commit": "abc", **extra}


def test_table4_layout_and_quoted_rows():
    records = [_record(m, f, s, acc + 0.01 * s) for f in (0.1, 0.3)
               for m, acc in (("random", 0.80), ("qdiverse", 0.85)) for s in (0, 1, 2)]
    table = table4(records)
    cells = table.cells.set_index(["Dataset fraction", "Source"])
    run_row = cells.loc[("10%", "run here: digits stand-in (NOT CIFAR-10)")]
    assert run_row["Q-Diverse"] == "**86.00 ± 1.00**" and run_row["Random"] == "81.00 ± 1.00"
    assert run_row["ZCore"] == "–" and run_row["Herding"] == "–"
    quoted = cells.loc[("10%", f"{QUOTED_LABEL} (CIFAR-10)")]
    assert quoted["Herding"] == "63.5 ± 3.4*" and quoted["ZCore"] == "84.18 ± 0.21#"
    assert quoted["Moderate"] == "83.61 ± 0.09#" and quoted["Q-Diverse"] == "84.93 ± 0.23"
    assert quoted["Random"] == "–" and quoted["PGCS"] == "–"
    quoted30 = cells.loc[("30%", f"{QUOTED_LABEL} (CIFAR-10)")]
    assert quoted30["K-center"] == "90.9 ± 0.4*" and quoted30["CD"] == "90.8 ± 0.5*"
    assert list(table.cells.columns) == ["Dataset fraction", "Source", "Random", "Herding",
                                         "K-center", "CD", "Moderate", "PGCS", "ZCore",
                                         "Q-Diverse"]
    md = table.to_markdown()
    assert "NOT CIFAR-10" in md and "not comparable with the quoted rows" in md
    assert "* DeepCore, # ZCore" in md
    assert r"\textbf{86.00 $\pm$ 1.00}" in table.to_latex()
    long = table.long.set_index(["source", "fraction", "method"])
    assert long.loc[("run", 0.1, "qdiverse"), "n_seeds"] == 3
    assert long.loc[("quoted", 0.3, "zcore"), "mean"] == SUPPLEMENT_TABLE4[0.3]["zcore"][0]


def test_table4_refuses_to_mix_recipes_or_test_splits():
    records = [_record("random", 0.1, 0, 0.8), _record("random", 0.1, 1, 0.8)]
    records[1]["recipe"] = TrainRecipe(epochs=5, width=8).to_dict()
    with pytest.raises(TableMixError, match=r"differ in 'recipe'"):
        table4(records)
    records = [_record("random", 0.1, 0, 0.8), _record("random", 0.1, 1, 0.8, test_hash="x")]
    with pytest.raises(TableMixError, match=r"differ in 'test_hash'"):
        table4(records)


# -- what is committed --------------------------------------------------------------------------
def _notebook_parameters():
    nb = json.loads((repo_root() / "notebooks" / "11_cifar10.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    values: dict = {}
    exec("".join(cell["source"]), {}, values)
    return values


def test_notebook_defaults_are_the_committed_digits_grid():
    params = _notebook_parameters()
    grid = load_grid("notebooks/sweeps/cifar10/digits.yaml")
    assert params["DATASET"] == grid.dataset == "digits"
    assert tuple(params["METHODS"]) == grid.methods
    assert tuple(params["FRACTIONS"]) == grid.fractions
    assert tuple(params["SEEDS"]) == grid.seeds
    recipe = grid.recipe
    assert (params["EPOCHS"], params["BATCH_SIZE"], params["LR"], params["WIDTH"],
            params["AUGMENT"], params["INPUT_SIZE"]) == (
        recipe.epochs, recipe.batch_size, recipe.lr, recipe.width, recipe.augment,
        grid.input_size)


def test_committed_digits_table_is_labelled_a_stand_in():
    folder = repo_root() / "figures" / "cifar10"
    md = (folder / "digits_table4.md").read_text()
    meta = json.loads((folder / "digits_table4.json").read_text())
    assert meta["stand_in"] is True and meta["dataset"] == "digits"
    assert "NOT CIFAR-10" in md and QUOTED_LABEL in md
    assert meta["n_runs"] == len(meta["run_ids"]) == 42
    assert all(re.match(r"digits__\w+__f0\.[13]0__s[012]__[0-9a-f]{6}$", r)
               for r in meta["run_ids"])
