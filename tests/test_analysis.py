import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

from qd_lib.analysis import coverage_table, covering_radius, mos_coverage, tsne_layout  # noqa: E402
from qd_lib.viz import plot_coreset_grid, plot_coverage_panels  # noqa: E402


def test_mos_coverage_numbers():
    full = np.linspace(1, 5, 101)
    narrow = full[40:60]  # 2.6 … 3.36: two of the ten bins
    cov = mos_coverage(full, narrow, mos_range=(1, 5), bins=10)
    assert cov["bins_hit"] == pytest.approx(0.2)
    assert cov["range_ratio"] == pytest.approx(0.19)
    assert cov["ks"] == pytest.approx(stats.ks_2samp(full, narrow).statistic)
    assert cov["wasserstein"] == pytest.approx(stats.wasserstein_distance(full, narrow) / 4)
    same = mos_coverage(full, full, mos_range=(1, 5))
    assert same["bins_hit"] == 1 and same["wasserstein"] == 0 and same["ks"] == 0
    with pytest.raises(ValueError, match="'mos_subset'"):
        mos_coverage(full, [], mos_range=(1, 5))


def test_covering_radius_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    sel = rng.choice(300, 12, replace=False)
    brute = cdist(X, X[sel]).min(1).max()
    assert covering_radius(X, sel, normalize=False, chunk_size=17) == pytest.approx(brute)
    assert covering_radius(X, np.arange(300)) == pytest.approx(0, abs=1e-6)
    assert 0 < covering_radius(X, sel) < 1.0
    with pytest.raises(ValueError, match="'selected'"):
        covering_radius(X, [300])


def test_coverage_table_rows_per_method_and_fraction():
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 200)
    X = rng.normal(size=(200, 3))
    table = coverage_table(mos, {("random", 0.1): rng.choice(200, 20, replace=False),
                                 ("top", 0.1): np.argsort(mos)[-20:]},
                           mos_range=(1, 5), features=X)
    assert list(table["method"]) == ["random", "top"]
    top = table.set_index("method").loc["top"]
    rand = table.set_index("method").loc["random"]
    assert top["wasserstein"] > rand["wasserstein"] and top["bins_hit"] < rand["bins_hit"]


def test_tsne_layout_is_cached_and_separates_clusters(tmp_path):
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(0, 1, (40, 8)), rng.normal(12, 1, (40, 8))])
    first = tsne_layout(X, perplexity=10, seed=0, cache_dir=tmp_path)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".npy"] and first.shape == (80, 2)
    again = tsne_layout(X, perplexity=10, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    centre_a, centre_b = first[:40].mean(0), first[40:].mean(0)
    spread = max(first[:40].std(0).max(), first[40:].std(0).max())
    assert np.linalg.norm(centre_a - centre_b) > 3 * spread


def test_coreset_figures_draw_every_panel():
    rng = np.random.default_rng(3)
    layout, mos = rng.normal(size=(100, 2)), rng.uniform(1, 5, 100)
    fig = plot_coreset_grid(layout, mos, {"random": {0.1: np.arange(10), 0.3: np.arange(30)},
                                          "kcenter": {0.1: np.arange(50, 60)}})
    axes = fig.axes[:-1]  # the last axes is the colour bar
    drawn = [len(ax.collections) for ax in axes]
    assert drawn == [2, 2, 2, 0]  # background + coreset per panel; the missing one is blank
    plt.close(fig)
    fig = plot_coverage_panels(mos, {"a": mos[:10], "b": mos[10:30]}, mos_range=(1, 5))
    assert len(fig.axes) == 2
    plt.close(fig)


def test_save_table_writes_csv_markdown_booktabs_and_provenance(tmp_path):
    import pandas as pd

    from qd_lib.viz import save_table

    table = pd.DataFrame({"method": ["qdiverse", "random"], "srcc": [0.81234, 0.7]})
    files = save_table(table, "t", folder=tmp_path, provenance={"runs": ["a"]})
    assert files["md"].read_text().splitlines() == [
        "| method | srcc |", "|---|---|", "| qdiverse | 0.8123 |", "| random | 0.7000 |"]
    tex = files["tex"].read_text()
    assert "\\toprule" in tex and "qdiverse & 0.8123" in tex
    assert pd.read_csv(files["csv"])["srcc"].tolist() == [0.81234, 0.7]
    assert '"runs"' in files["json"].read_text()


def test_save_figure_leaves_an_unchanged_figure_untouched(tmp_path):
    from qd_lib.viz.figures import save_figure

    def draw(ys):
        fig, ax = plt.subplots()
        ax.plot(ys)
        return fig

    first = save_figure(draw([1, 2, 3]), "f", folder=tmp_path, provenance={"n": 3})
    stamps = {fmt: p.stat().st_mtime_ns for fmt, p in first.items()}
    created = (tmp_path / "f.json").read_text()
    # the same figure drawn again: byte-identical PNG and PDF (no creation date), nothing written
    for fmt, p in first.items():
        p.touch()
        stamps[fmt] = p.stat().st_mtime_ns
    again = save_figure(draw([1, 2, 3]), "f", folder=tmp_path, provenance={"n": 3})
    assert {fmt: p.stat().st_mtime_ns for fmt, p in again.items()} == stamps
    assert (tmp_path / "f.json").read_text() == created
    # new data rewrites the figure files and the record; new provenance the record
    old_png, old_pdf = first["png"].read_bytes(), first["pdf"].read_bytes()
    save_figure(draw([1, 2, 4]), "f", folder=tmp_path, provenance={"n": 3})
    assert (tmp_path / "f.png").read_bytes() != old_png
    assert (tmp_path / "f.pdf").read_bytes() != old_pdf
    changed = save_figure(draw([1, 2, 4]), "f", folder=tmp_path, provenance={"n": 4})
    assert json.loads(changed["json"].read_text())["provenance"] == {"n": 4}
    plt.close("all")


def test_save_figure_records_no_machine_path_outside_the_repository(tmp_path):
    from qd_lib.viz.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    written = save_figure(fig, "g", folder=tmp_path)
    assert json.loads(written["json"].read_text())["files"] == {"png": "g.png", "pdf": "g.pdf"}
    plt.close(fig)
