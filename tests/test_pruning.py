"""Rate-distortion pruning: masks, FLOPs, distortion curves, allocation, the experiment, Table 3."""
import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from qd_lib.pruning import (
    DistortionCurves,
    PruningSpec,
    allocate_sparsity,
    apply_masks,
    distortion_curves,
    layer_macs,
    load_pruned_state_dict,
    magnitude_mask,
    magnitude_masks,
    make_permanent,
    mask_sparsity,
    measure_flops,
    model_stages,
    prunable_layers,
    remaining_flops_fraction,
    target_count,
    uniform_allocation,
)
from qd_lib.utils.errors import UnknownNameError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _positive_net(seed: int = 0) -> nn.Sequential:
    """Non-negative weights and inputs: pruning more weights can only lower every activation,
    so each layer's output distortion rises with its sparsity (a monotone toy)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(0.05, 1.0)
    return net.eval()


def _conv_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1)).eval()


# -- masks ----------------------------------------------------------------------------------------
def test_magnitude_mask_prunes_the_smallest_weights_with_deterministic_ties():
    w = torch.tensor([[0.5, -0.1, 0.3], [0.1, -0.9, 0.0]])
    mask = magnitude_mask(w, 3)
    assert mask.tolist() == [[1, 0, 1], [0, 1, 0]]  # 0.0, then the tied 0.1s by position
    assert magnitude_mask(w, 0).sum() == 6 and magnitude_mask(w, 6).sum() == 0
    with pytest.raises(ValueError, match="'n_prune'.*7"):
        magnitude_mask(w, 7)


def test_masks_are_applied_and_persist_through_state_dict():
    net = _conv_net()
    x = torch.randn(4, 3, 12, 12)
    counts = {"0": 100, "2": 30, "4": 10, "8": 1}
    apply_masks(net, magnitude_masks(net, counts))
    report = mask_sparsity(net)
    assert {k: v["pruned"] for k, v in report["layers"].items()} == counts
    for name, module in prunable_layers(net).items():
        assert int((module.weight == 0).sum()) >= counts[name]
    state = net.state_dict()
    assert {"0.weight_orig", "0.weight_mask", "8.weight_mask"} <= set(state)
    fresh = _conv_net(seed=1)  # other weights: everything must come from the state dict
    load_pruned_state_dict(fresh, state)
    assert torch.equal(fresh(x), net(x))
    assert mask_sparsity(fresh)["pruned"] == sum(counts.values())
    # a training step cannot revive a pruned weight: the mask is re-applied on every forward
    opt = torch.optim.SGD(fresh.parameters(), lr=0.5)
    fresh.train()
    fresh(x).pow(2).mean().backward()
    opt.step()
    fresh(x)  # the forward pre-hook recomputes weight = weight_orig * weight_mask
    assert torch.all(fresh[0].weight[fresh[0].weight_mask == 0] == 0)
    make_permanent(fresh)
    assert "0.weight_mask" not in fresh.state_dict()
    assert int((fresh[0].weight == 0).sum()) >= counts["0"]


def test_mask_errors_name_the_layer():
    net = _conv_net()
    with pytest.raises(UnknownNameError):
        magnitude_masks(net, {"9": 1})
    with pytest.raises(ValueError, match="layer '0'"):
        apply_masks(net, {"0": torch.ones(3)})


# -- FLOPs ----------------------------------------------------------------------------------------
def test_dense_macs_follow_the_layer_formula():
    net = _conv_net()
    macs = layer_macs(net, torch.randn(2, 3, 12, 12))
    assert macs == {"0": 8 * 3 * 9 * 12 * 12, "2": 8 * 1 * 9 * 6 * 6, "4": 4 * 8 * 6 * 6,
                    "8": 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_measured_flops_of_a_pruned_model_match_the_formula(seed):
    net = _conv_net(seed)
    x = torch.randn(1, 3, 12, 12)
    macs = layer_macs(net, x)
    rng = np.random.default_rng(seed)
    layers = prunable_layers(net)
    counts = {name: int(rng.integers(0, m.weight.numel())) for name, m in layers.items()}
    apply_masks(net, magnitude_masks(net, counts))
    kept = {name: 1 - counts[name] / m.weight_orig.numel() for name, m in layers.items()}
    formula = remaining_flops_fraction(macs, kept)
    measured = measure_flops(net, x)
    assert sum(measured.values()) / sum(macs.values()) == pytest.approx(formula, abs=1e-12)
    assert formula < 1.0


def test_basecnn_small_flops_and_stages():
    from qd_lib.models import build_model

    model = build_model("basecnn", "small", pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        staged = x
        for stage in model_stages(model):
            staged = stage(staged)
        assert torch.allclose(staged, model(x), atol=1e-6)
    layers = prunable_layers(model)
    assert len(layers) == 31 and list(layers)[-1] == "fc"
    assert set(model.state_dict()) == set(build_model("basecnn", "small",
                                                      pretrained=False).state_dict())
    allocation = uniform_allocation(list(layers), [m.weight.numel() for m in layers.values()],
                                    0.2)
    macs = layer_macs(model, x)
    apply_masks(model, magnitude_masks(model, allocation.counts_by_layer()))
    measured = sum(measure_flops(model, x).values()) / sum(macs.values())
    assert measured == pytest.approx(remaining_flops_fraction(macs, allocation.kept_by_layer()),
                                     abs=1e-12)


def test_remaining_flops_validates():
    with pytest.raises(ValueError, match="kept fraction of layer 'a'"):
        remaining_flops_fraction({"a": 10}, {"a": 1.5})
    with pytest.raises(ValueError, match="without FLOPs"):
        remaining_flops_fraction({"a": 10}, {"b": 0.5})


# -- distortion curves ----------------------------------------------------------------------------
LEVELS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def test_distortion_curves_are_monotone_on_a_toy_network_and_equal_brute_force():
    net = _positive_net()
    x = torch.rand(24, 3, 8, 8)
    curves = distortion_curves(net, x, LEVELS, batch_size=7)
    assert curves.measured.all()
    assert np.all(np.diff(curves.distortion, axis=1) >= 0)  # monotone in the level
    assert np.all(curves.distortion > 0)
    with torch.no_grad():
        reference = net(x)
        for i, name in enumerate(curves.layers):
            for j, level in enumerate(curves.levels):
                pruned = copy.deepcopy(net)
                n = prunable_layers(pruned)[name].weight.numel()
                apply_masks(pruned, magnitude_masks(pruned, {name: int(round(level * n))}))
                expected = float(((pruned(x) - reference) ** 2).mean())
                assert curves.distortion[i, j] == pytest.approx(expected, rel=1e-5)
    # the model is left untouched
    assert mask_sparsity(net)["pruned"] == 0 and all(
        float(p.detach().min()) >= 0.05 for p in net.parameters())


def test_early_stop_keeps_the_allocation():
    net = _positive_net(seed=3)
    x = torch.rand(16, 3, 8, 8)
    full = distortion_curves(net, x, LEVELS)
    early = distortion_curves(net, x, LEVELS, target=0.3)
    t = list(LEVELS).index(0.3)
    assert early.measured[:, : t + 1].all()
    for i, j in zip(*np.nonzero(~early.measured)):  # skipped only after a point above the bound
        assert j > t and (early.distortion[i, j - 1] > early.bound or not early.measured[i, j - 1])
    assert early.bound == pytest.approx(full.distortion[:, t].sum())
    np.testing.assert_allclose(early.distortion[early.measured], full.distortion[early.measured])
    assert np.array_equal(allocate_sparsity(early, 0.3).counts,
                          allocate_sparsity(full, 0.3).counts)


def test_distortion_curves_validate():
    net = _positive_net()
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match="'levels'"):
        distortion_curves(net, x, (0.5, 0.2))
    with pytest.raises(ValueError, match="'target'.*must be one of the levels"):
        distortion_curves(net, x, LEVELS, target=0.25)
    apply_masks(net, magnitude_masks(net, {"0": 3}))
    with pytest.raises(ValueError, match="already pruned"):
        distortion_curves(net, x, LEVELS)


# -- allocation -----------------------------------------------------------------------------------
def _curves(n_weights, levels, seed) -> DistortionCurves:
    rng = np.random.default_rng(seed)
    dist = np.cumsum(rng.gamma(1.0, 1.0, size=(len(n_weights), len(levels))), axis=1)
    dist *= rng.uniform(0.1, 10, size=(len(n_weights), 1))
    return DistortionCurves(layers=[f"l{i}" for i in range(len(n_weights))],
                            n_weights=np.asarray(n_weights), levels=np.asarray(levels),
                            distortion=dist, measured=np.ones_like(dist, dtype=bool))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.05, 0.2, 0.37, 0.8])
def test_allocation_meets_the_sparsity_target_exactly(seed, target):
    rng = np.random.default_rng(seed)
    n_weights = rng.integers(5, 5000, size=int(rng.integers(2, 12)))
    curves = _curves(n_weights, LEVELS + (1.0,), seed)
    alloc = allocate_sparsity(curves, target)
    assert int(alloc.counts.sum()) == target_count(n_weights, target) == alloc.target_count
    assert np.all(alloc.counts >= 0) and np.all(alloc.counts <= n_weights)
    assert sum(alloc.counts_by_layer().values()) == alloc.target_count


def test_allocation_is_optimal_on_the_grid():
    n_weights = [40, 100, 60]
    levels = (0.2, 0.4, 0.6, 0.8)
    for seed in range(5):
        curves = _curves(n_weights, levels, seed)
        alloc = allocate_sparsity(curves, 0.4, resolution=1000)  # units of one weight
        counts = curves.counts()
        best = np.inf
        for combo in itertools.product(range(len(levels) + 1), repeat=3):
            k = [0 if j == 0 else counts[i, j - 1] for i, j in enumerate(combo)]
            d = [0 if j == 0 else curves.distortion[i, j - 1] for i, j in enumerate(combo)]
            if sum(k) >= alloc.target_count:
                best = min(best, sum(d))
        # giving the surplus back only lowers the (interpolated) distortion
        assert alloc.predicted_distortion <= best + 1e-12


def test_allocation_prefers_the_cheap_layer_and_reports_unreachable_targets():
    curves = DistortionCurves(["cheap", "dear"], np.array([100, 100]), np.array([0.5, 1.0]),
                              np.array([[0.1, 0.2], [5.0, 10.0]]), np.ones((2, 2), bool))
    alloc = allocate_sparsity(curves, 0.5)
    assert alloc.counts.tolist() == [100, 0]
    curves.distortion[:, 1] = np.inf
    with pytest.raises(ValueError, match="cannot be reached"):
        allocate_sparsity(curves, 0.9)


def test_uniform_allocation_is_exact():
    alloc = uniform_allocation(["a", "b", "c"], [7, 13, 101], 0.3)
    assert int(alloc.counts.sum()) == round(0.3 * 121)
    assert np.all(np.abs(alloc.sparsity - 0.3) < 0.1)


# -- the experiment -------------------------------------------------------------------------------
def test_pruning_spec_validates():
    with pytest.raises(ValueError, match="'levels'.*target 0.25"):
        PruningSpec("proxy-tiny", "random", target=0.25)
    with pytest.raises(UnknownNameError):
        PruningSpec("proxy-tiny", "randon")
    spec = PruningSpec("proxy-tiny", "random")
    assert spec.fraction == 0.10 and PruningSpec("kadid10k", "random").fraction == 0.05
    assert spec.run_id.startswith("proxy-tiny__basecnn-small__random__f0.10__sp0.20__s0__")


@pytest.fixture(scope="module")
def tiny_pruning(tmp_path_factory):
    """Two pruning runs (random, uniform) of a 1-epoch BaseCNN on proxy-tiny, the random
    calibration set selected from seeded stand-in features and saved first."""
    from qd_lib.data import open_dataset
    from qd_lib.pruning import experiment
    from qd_lib.selection.records import save_selection, select_on_dataset

    torch.set_num_threads(1)
    dataset = open_dataset("proxy-tiny")
    sel_dir = tmp_path_factory.mktemp("selections")
    runs_root = tmp_path_factory.mktemp("runs")
    n_train = len(dataset.indices("train"))
    features = {"embedding": np.random.default_rng(0).normal(size=(n_train, 8))}
    chosen = select_on_dataset(dataset, "random", 0.10, seed=0, features=features)
    save_selection(chosen, dataset, out_dir=sel_dir)
    options = dict(train_overrides={"epochs": 1, "max_steps_per_epoch": 2},
                   levels=(0.1, 0.2, 0.5, 0.9), batch_size=8)
    seen = {}
    from qd_lib.selection import records

    real_find = records.find_selection

    def find(*args, **kwargs):
        return real_find(*args, **{**kwargs, "out_dir": sel_dir})

    real_curves = experiment.distortion_curves

    def spy(model, inputs, *args, **kwargs):
        seen["inputs"] = inputs.clone()
        return real_curves(model, inputs, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(records, "find_selection", find)
    mp.setattr(experiment, "distortion_curves", spy)
    try:
        specs = [PruningSpec("proxy-tiny", m, seed=0, **options) for m in ("random", "uniform")]
        specs.append(PruningSpec("proxy-tiny", "random", seed=0, finetune_epochs=1, **options))
        report = experiment.run_pruning_grid(specs, runs_root=runs_root, device="cpu",
                                             keep_going=False)
        again = experiment.run_pruning(specs[0], runs_root=runs_root, device="cpu")
    finally:
        mp.undo()
    return {"dataset": dataset, "chosen": chosen, "report": report, "again": again,
            "seen": seen, "runs_root": runs_root, "specs": specs}


def test_the_chosen_calibration_rows_are_the_ones_used(tiny_pruning):
    from qd_lib.pruning.experiment import _pipeline, eval_views, train_base

    dataset, chosen = tiny_pruning["dataset"], tiny_pruning["chosen"]
    record = tiny_pruning["report"]["records"][0]
    assert record["status"] == "ok" and record["calibration"]["reused"] is True
    assert record["calibration"]["image_ids"] == list(chosen.image_ids)
    model, _ = train_base(tiny_pruning["specs"][0], dataset, runs_root=tiny_pruning["runs_root"])
    rows = chosen.rows[chosen.selection.indices]
    expected = eval_views(dataset, rows, _pipeline(model))
    used = tiny_pruning["seen"]["inputs"]
    assert torch.equal(used, expected.reshape(-1, *expected.shape[2:]))


def test_pruning_records_are_complete_and_resumable(tiny_pruning):
    random_run, uniform_run, finetuned = tiny_pruning["report"]["records"]
    assert tiny_pruning["report"]["counts"] == {"ok": 3, "skipped": 0, "failed": 0}
    # fine-tuning on the calibration set keeps the masks: the same weights stay pruned
    assert finetuned["finetune"]["epochs"] == 1 and random_run["finetune"] is None
    assert finetuned["pruned_weights"] == random_run["pruned_weights"]
    assert finetuned["allocation"] == random_run["allocation"]
    assert finetuned["run_id"] != random_run["run_id"]
    assert tiny_pruning["again"]["skipped"] is True
    for run in (random_run, uniform_run):
        assert run["pruned_weights"] == target_count([run["prunable_weights"]], 0.2)
        assert run["flops_measured"] == pytest.approx(run["flops"], abs=1e-12)
        assert run["base_id"] == random_run["base_id"] and run["proxy"] is True
        assert -1 <= run["srcc"] <= 1
    assert uniform_run["flops"] == pytest.approx(0.8, abs=1e-3)
    assert uniform_run["curves"] is None and random_run["curves"]["n_calibration"] == 11
    assert random_run["dense_metrics"]["srcc"] == pytest.approx(
        random_run["base_metrics"]["srcc"], abs=1e-6)


def test_table3_from_records(tiny_pruning, tmp_path):
    from qd_lib.pruning import load_records, save_table3, table3

    records = load_records(tiny_pruning["runs_root"])
    with pytest.raises(ValueError, match="'finetune_epochs'"):
        table3(records)  # fine-tuned and plain runs never share a table
    records = [r for r in records if not r["spec"]["finetune_epochs"]]
    table = table3(records)
    md = table.to_markdown()
    assert "PROXY" in md and "Random" in md and "Uniform (no calibration)" in md
    assert "Unpruned" in md and r"\toprule" in table.to_latex()
    assert table.provenance["n_runs"] == 2 and table.provenance["seeds"] == [0]
    files = save_table3(table, "t3", folder=tmp_path, records=records)
    assert {p.name for p in files.values()} == {"t3.csv", "t3.md", "t3.tex", "t3_runs.csv",
                                                "t3.json", "t3_records"}
    again = table3(load_records(folder=tmp_path / "t3_records"))  # a fresh clone's rebuild
    assert again.to_markdown() == md and again.provenance == table.provenance
    mixed = copy.deepcopy(records)
    mixed[0]["target"] = 0.3
    with pytest.raises(ValueError, match="'target'"):
        table3(mixed)
    with pytest.raises(ValueError, match="No finished pruning runs"):
        table3(records, datasets=["kadid10k"])


def test_basecnn_mobilenet_trunk_options():
    from qd_lib.models.basecnn import BaseCNN

    model = BaseCNN(backbone="mobilenet_v2", depth=4)
    assert model.fc.in_features == 24 and len(model.basemodel) == 4
    model.freeze("finetune")
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"0", "1"}
    with pytest.raises(ValueError, match="'depth'.*mobilenet_v2"):
        BaseCNN(depth=3)
    with pytest.raises(ValueError, match="'depth'"):
        BaseCNN(backbone="mobilenet_v2", depth=20)
    with pytest.raises(ValueError, match="'backbone'"):
        BaseCNN(backbone="vgg16")
