"""The interactive coreset explorer (qd_lib.viz.explorer), without a browser, on proxy-tiny."""
import html
import re
import subprocess
import sys

import numpy as np
import pytest

from qd_lib.data import coreset_size, open_dataset
from qd_lib.selection.records import load_selection
from qd_lib.utils.errors import UnknownNameError
from qd_lib.viz import explore
from qd_lib.viz.explorer import COVERAGE_KEYS, PAPER_FRACTIONS, CoresetExplorer

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tsne_dir(tmp_path_factory):
    """One t-SNE cache for the module: the layout is computed once, then reused."""
    return tmp_path_factory.mktemp("tsne")


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    """Selection records shared by the module's explorers (kept out of runs/)."""
    return tmp_path_factory.mktemp("selections")


@pytest.fixture
def make(tiny_bench, tsne_dir, records_dir):
    def build(**kwargs):
        kwargs.setdefault("selections_dir", records_dir)
        kwargs.setdefault("tsne_dir", tsne_dir)
        return explore("proxy-tiny", **kwargs)

    return build


def _pick_rows(thumbnails_html: str) -> list[tuple[int, str, float]]:
    """(rank, image_id, MOS) of each row of the thumbnail table, in table order."""
    rows = re.findall(r'<tr class="qd-pick" data-rank="(\d+)">(.*?)</tr>', thumbnails_html,
                      re.S)
    out = []
    for rank, body in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)
        assert cells[0] == rank and cells[1].startswith('<img src="data:image/png;base64,')
        out.append((int(rank), html.unescape(cells[2]), float(cells[3])))
    return out


def test_builds_selects_saves_a_record_and_reuses_it(make, tmp_path):
    ex = make(method="kcenter", fraction=0.1, selections_dir=tmp_path)
    state = ex.state()
    n_train = open_dataset("proxy-tiny").n_train
    assert state["error"] is None, state["error"]
    assert (state["dataset"], state["feature_set"], state["method"], state["fraction"]) == (
        "proxy-tiny", "offline", "kcenter", 0.1)
    assert state["n_train"] == n_train and state["n_selected"] == coreset_size(n_train, 0.1)
    assert state["proxy"] is True and state["coreset_source"] == "selected"
    assert tuple(state["coverage"]) == COVERAGE_KEYS
    for key in ("bins_hit", "range_ratio", "wasserstein", "ks"):
        assert 0 <= state["coverage"][key] <= 1
    assert state["coverage"]["covering_radius"] > 0
    assert bytes(ex.tsne_image.value).startswith(PNG) and bytes(ex.mos_image.value).startswith(PNG)
    assert 'data-state="ok"' in ex.status.value and "PROXY MOS" in ex.title.value
    assert [v for _, v in ex.fraction_menu.options] == list(PAPER_FRACTIONS)

    records = list(tmp_path.rglob("*.json"))
    assert len(records) == 1 and records[0].parent.name == "kcenter"
    assert load_selection(records[0])["image_ids"] == ex.selected_image_ids()

    again = make(method="kcenter", fraction=0.1, selections_dir=tmp_path)
    assert again.state()["coreset_source"] == "record"
    assert again.selected_image_ids() == ex.selected_image_ids()
    assert again.state()["coverage"] == state["coverage"]
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_changing_method_and_fraction_updates_the_same_widgets(make):
    ex = make(method="qdiverse", fraction=0.1)
    widgets = (ex.widget, ex.tsne_image, ex.mos_image, ex.coverage_html, ex.thumbnails_html,
               ex.status) + tuple(ex.widget.children)
    start = ex.state()
    tsne, mos, cov = ex.tsne_image.value, ex.mos_image.value, ex.coverage_html.value

    ex.method_menu.value = "kcenter"  # as the dropdown would: the observer updates the view
    by_method = ex.state()
    assert by_method["method"] == "kcenter" and by_method["error"] is None
    assert by_method["n_selected"] == start["n_selected"]
    assert ex.tsne_image.value != tsne and ex.mos_image.value != mos
    assert by_method["coverage"] != start["coverage"] and ex.coverage_html.value != cov

    tsne_k = ex.tsne_image.value
    ex.fraction_menu.value = 0.3
    by_fraction = ex.state()
    assert by_fraction["fraction"] == 0.3
    assert by_fraction["n_selected"] == coreset_size(start["n_train"], 0.3)
    assert ex.tsne_image.value != tsne_k
    assert f"{by_fraction['n_selected']} of {start['n_train']}" in ex.status.value

    back = ex.set(method="qdiverse", fraction=0.1)
    assert back["from_cache"] and "from memory" in ex.status.value
    assert back["coverage"] == start["coverage"]
    assert (ex.tsne_image.value, ex.mos_image.value) == (tsne, mos)
    assert (ex.widget, ex.tsne_image, ex.mos_image, ex.coverage_html, ex.thumbnails_html,
            ex.status) + tuple(ex.widget.children) == widgets


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"method": "qdivers"}, ValueError, "method"),
    ({"feature_set": "ofline"}, ValueError, "feature_set"),
    ({"fraction": 0.0}, ValueError, "fraction"),
    ({"fraction": 1.5}, ValueError, "fraction"),
    ({"fraction": "10%"}, TypeError, "fraction"),
    ({"fractions": []}, TypeError, "fractions"),
    ({"fractions": [0.1, 2.0]}, ValueError, "fractions"),
    ({"methods": ["random", "bogus"]}, ValueError, "methods"),
    ({"methods": ["random"], "method": "qdiverse"}, ValueError, "method"),
    ({"datasets": "proxy-tiny"}, TypeError, "datasets"),
    ({"seed": -1}, ValueError, "seed"),
    ({"n_thumbnails": -1}, ValueError, "n_thumbnails"),
    ({"thumbnail_size": 4}, ValueError, "thumbnail_size"),
    ({"bins": 0}, ValueError, "bins"),
    ({"perplexity": 0.0}, ValueError, "perplexity"),
    ({"use_records": "yes"}, TypeError, "use_records"),
    ({"extract_options": ["cpu"]}, TypeError, "extract_options"),
])
def test_bad_arguments_raise_errors_naming_them(tiny_bench, kwargs, error, name):
    with pytest.raises(error, match=f"'{name}'"):
        CoresetExplorer("proxy-tiny", **kwargs)


def test_bad_dataset_names_and_bad_set_values_raise(make):
    with pytest.raises(TypeError, match="'dataset'"):
        CoresetExplorer(3)
    with pytest.raises(UnknownNameError, match="proxy-nope"):
        CoresetExplorer("proxy-nope")
    ex = make(method="random", fraction=0.1)
    with pytest.raises(ValueError, match="'method'"):
        ex.set(method="bogus")
    with pytest.raises(ValueError, match="'fraction'"):
        ex.set(fraction=0.2)
    with pytest.raises(ValueError, match="'dataset'"):
        ex.set(dataset="tid2013")
    assert ex.state()["method"] == "random" and ex.state()["fraction"] == 0.1


def test_a_fraction_not_offered_is_added(make):
    ex = make(method="random", fraction=0.2)
    assert [v for _, v in ex.fraction_menu.options] == sorted([*PAPER_FRACTIONS, 0.2])
    assert ex.state()["n_selected"] == coreset_size(ex.state()["n_train"], 0.2)


def test_thumbnail_table_lists_the_first_picks_in_pick_order(make):
    ds = open_dataset("proxy-tiny")
    mos_by_id = dict(zip(ds.manifest.table["image_id"], ds.manifest.table["mos"]))
    ex = make(method="herding", fraction=0.3, n_thumbnails=5, thumbnail_size=32)
    picks = ex.selected_image_ids()
    assert len(picks) == coreset_size(ds.n_train, 0.3) > 5
    rows = _pick_rows(ex.thumbnails_html.value)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert [r[1] for r in rows] == picks[:5]
    assert [r[2] for r in rows] == pytest.approx([mos_by_id[i] for i in picks[:5]], abs=1e-3)
    assert "<th" in ex.thumbnails_html.value and ">distortion<" in ex.thumbnails_html.value
    assert ">proxy MOS<" in ex.thumbnails_html.value

    everything = make(method="herding", fraction=0.3, n_thumbnails=500)
    assert [r[1] for r in _pick_rows(everything.thumbnails_html.value)] == picks
    assert make(method="herding", fraction=0.3, n_thumbnails=0).thumbnails_html.value == ""


def test_errors_during_an_update_are_shown_as_text(make, monkeypatch, tmp_path):
    import qd_lib.viz.explorer as explorer_module

    def broken(*args, **kwargs):
        raise RuntimeError("selector exploded\nTraceback (most recent call last): ...")

    monkeypatch.setattr(explorer_module, "run_selections", broken)
    ex = make(method="random", fraction=0.05, selections_dir=tmp_path)
    state = ex.state()
    assert state["error"] == "RuntimeError: selector exploded"
    assert state["n_selected"] is None and state["coverage"] == {}
    assert 'data-state="error"' in ex.status.value and "selector exploded" in ex.status.value
    assert "Traceback" not in ex.status.value
    assert bytes(ex.tsne_image.value).startswith(PNG) and ex.coverage_html.value == ""
    assert ex.thumbnails_html.value == "" and ex.selected_image_ids() == []

    monkeypatch.undo()
    fixed = ex.set(method="kcenter")
    assert fixed["error"] is None and fixed["n_selected"] == coreset_size(fixed["n_train"], 0.05)
    assert 'data-state="ok"' in ex.status.value


def test_records_with_other_options_or_splits_are_not_reused(make, tmp_path):
    first = make(method="kcenter", fraction=0.3, selections_dir=tmp_path)
    (record,) = tmp_path.rglob("*.json")
    text = record.read_text()
    record.write_text(text.replace('"first_index": null', '"first_index": 7'))
    other = make(method="kcenter", fraction=0.3, selections_dir=tmp_path)
    assert other.state()["coreset_source"] == "selected"  # non-default options: selected again
    record.write_text(text.replace('"scheme": "paper"', '"scheme": "content"'))
    again = make(method="kcenter", fraction=0.3, selections_dir=tmp_path)
    assert again.state()["coreset_source"] == "selected"
    assert np.array_equal(again.selected_image_ids(), first.selected_image_ids())


def test_importing_qd_lib_viz_does_not_import_ipywidgets():
    code = ("import sys, qd_lib.viz; assert 'ipywidgets' not in sys.modules; "
            "qd_lib.viz.CoresetExplorer; assert 'ipywidgets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
