"""Publication tables in the supplement's Table 2 layout (qd_lib.runner.tables)."""
import json
import re
import shutil
import subprocess
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from qd_lib.runner import (
    RunRecordError,
    collect_runs,
    paper_table,
    paper_tables,
    run_sweep,
    save_paper_table,
    summarise,
    sweep_runs,
)
from qd_lib.runner.__main__ import main as cli_main
from qd_lib.runner.tables import MISSING, latex_escape, order_methods


def _rec(dataset, method, fraction, seed, srcc, plcc=None, *, model="maniqa", config="tiny",
         split=None, **extra):
    """One row as collect_runs returns it."""
    plcc = srcc + 0.01 if plcc is None else plcc
    fraction = 1.0 if method == "full" else fraction
    return {"run_id": f"{dataset}__{model}-{config}__{method}__f{fraction}__s{seed}",
            "sweep": "t", "dataset": dataset, "scheme": "paper", "model": model,
            "config": config, "method": method, "fraction": fraction,
            "seed": seed, "status": "ok", "srcc": srcc, "plcc": plcc, "plcc_logistic": plcc,
            "krcc": srcc / 2, "rmse": 1 - srcc, "n_test": 10,
            "test_split_hash": split or f"{dataset}-hash-0123456789",
            "inference_policy": json.dumps({"test_crops": "five_point"}),
            "epoch_rule": "final", "label_norm": "fixed_range", "plcc_variant": "raw",
            "proxy": False, "features": "pixels", "git_commit": "abc123", "git_dirty": False,
            "versions": json.dumps({"torch": "2.x"}), **extra}


def _runs(rows):
    return pd.DataFrame(rows)


def _text_of(table, fraction, method, dataset, metric, latex=False):
    return table._text(table._cell(fraction, method, dataset, metric), latex=latex)


# -- numbers ------------------------------------------------------------------------------------
def test_mean_and_std_over_seeds_match_numpy():
    srcc = {"random": [0.51, 0.55, 0.62], "qdiverse": [0.70, 0.74, 0.71]}
    plcc = {"random": [0.40, 0.45, 0.41], "qdiverse": [0.66, 0.61, 0.69]}
    runs = _runs([_rec("kadid10k", m, 0.1, s, srcc[m][s], plcc[m][s])
                  for m in srcc for s in range(3)])
    table = paper_table(runs)
    for m in srcc:
        for metric, values in (("srcc", srcc[m]), ("plcc", plcc[m])):
            cell = table._cell(0.1, m, "kadid10k", metric)
            assert cell["mean"] == pytest.approx(np.mean(values))
            assert cell["std"] == pytest.approx(np.std(values, ddof=1))
            assert cell["n_seeds"] == 3
    mean, std = np.mean(srcc["qdiverse"]), np.std(srcc["qdiverse"], ddof=1)
    assert _text_of(table, 0.1, "qdiverse", "kadid10k", "srcc") == f"**{mean:.4f}** ± {std:.4f}"
    assert f"{np.mean(srcc['random']):.4f} ± {np.std(srcc['random'], ddof=1):.4f}" in \
        table.to_markdown()
    assert _text_of(table, 0.1, "qdiverse", "kadid10k", "srcc", latex=True) == (
        rf"\textbf{{{mean:.4f}}}{{\scriptsize\,$\pm$\,{std:.4f}}}")
    assert "over 3 seeds" in table.caption()
    one = paper_table(runs[runs["seed"] == 0])  # one seed: no std shown
    assert _text_of(one, 0.1, "random", "kadid10k", "srcc") == "0.5100"
    assert "±" not in one.to_markdown().split("\n\n", 1)[1]
    assert paper_table(runs, decimals=2).to_markdown().count("0.56 ± 0.06") == 1


def test_bold_marks_exactly_the_best_per_fraction_dataset_and_metric_with_ties():
    runs = _runs([
        _rec("kadid10k", "random", 0.1, 0, 0.81231, 0.50),
        _rec("kadid10k", "kcenter", 0.1, 0, 0.81234, 0.70),   # ties random at 4 decimals
        _rec("kadid10k", "qdiverse", 0.1, 0, 0.70000, 0.60),
        _rec("kadid10k", "random", 0.3, 0, 0.90, 0.90),
        _rec("kadid10k", "qdiverse", 0.3, 0, 0.95, 0.80),
        _rec("kadid10k", "random", 0.5, 0, 0.99, 0.99),        # alone in its block: no bold
        _rec("kadid10k", "full", 1.0, 0, 0.999, 0.999),        # reference row: never bold
    ])
    table = paper_table(runs, metrics=("srcc", "plcc", "rmse"))
    best = table.cells[table.cells["best"]]
    assert sorted(map(tuple, best[["fraction", "method", "metric"]].to_numpy().tolist())) == [
        (0.1, "kcenter", "plcc"), (0.1, "kcenter", "rmse"), (0.1, "kcenter", "srcc"),
        (0.1, "random", "rmse"), (0.1, "random", "srcc"),      # RMSE: lower is better, tied
        (0.3, "qdiverse", "rmse"), (0.3, "qdiverse", "srcc"), (0.3, "random", "plcc")]
    md = table.to_markdown()
    assert md.count("**") // 2 == len(best) + 1  # + the bold title
    assert "| 10% | Random | **0.8123** | 0.5000 | **0.1877** |" in md
    assert "|  | k-Center Greedy | **0.8123** | **0.7000** | **0.1877** |" in md
    assert "| 50% | Random | 0.9900 | 0.9900 | 0.0100 |" in md
    assert "| Full |  | 0.9990 | 0.9990 | 0.0010 |" in md
    assert table.to_latex().count(r"\textbf{") == len(best) + table.caption(
        latex=True).count(r"\textbf{")


def test_missing_cells_show_a_dash():
    runs = _runs([_rec("kadid10k", "random", 0.1, 0, 0.5),
                  _rec("kadid10k", "qdiverse", 0.1, 0, 0.6),
                  _rec("tid2013", "qdiverse", 0.1, 0, 0.4),
                  _rec("tid2013", "random", 0.1, 0, float("nan"), float("nan"))])
    table = paper_table(runs, fractions=[0.1, 0.3])
    assert table.fractions == [0.1, 0.3]
    md = table.to_markdown()
    assert f"| 10% | Random | 0.5000 | 0.5100 | {MISSING} | {MISSING} |" in md
    assert f"| 30% | Random | {MISSING} | {MISSING} | {MISSING} | {MISSING} |" in md
    assert f"{MISSING}: no finished run" in table.caption()
    tex = table.to_latex()
    assert r"30\% & Random & -- & -- & -- & -- \\" in tex and MISSING not in tex
    cell = table._cell(0.3, "qdiverse", "tid2013", "srcc")
    assert np.isnan(cell["mean"]) and cell["n_seeds"] == 0 and not cell["best"]
    wide = table.to_frame()
    assert wide.shape[0] == 4 and np.isnan(wide.loc[2, "kadid10k_srcc_mean"])
    # a lone value in a block is not bold (tid2013 at 10 %: random has no value)
    assert not table._cell(0.1, "qdiverse", "tid2013", "srcc")["best"]


def test_rows_and_columns_follow_the_supplement_order():
    methods = ["qdiverse", "zeta", "pgcs", "moderate", "full", "contextual_diversity",
               "kcenter", "herding", "random"]
    rng = np.random.default_rng(0)
    rows = [_rec(d, m, f, 0, float(rng.uniform(0.2, 0.9)))
            for d in ("flive", "proxy-tiny", "kadid10k", "tid2013") for m in methods
            for f in (0.5, 0.05)]
    runs = _runs(rows).sample(frac=1.0, random_state=1).drop_duplicates("run_id")
    table = paper_table(runs)
    expected = ["random", "herding", "kcenter", "contextual_diversity", "moderate", "pgcs",
                "zeta", "qdiverse"]
    assert table.rows == [(0.05, m) for m in expected] + [(0.5, m) for m in expected] + [
        (None, "full")]
    assert table.datasets == ["kadid10k", "tid2013", "flive", "proxy-tiny"]
    assert table.column_labels()[:6] == ["Dataset fraction", "Methods", "KADID-10K SRCC",
                                         "KADID-10K PLCC", "TID2013 SRCC", "TID2013 PLCC"]
    labels = [line.split("|")[2].strip() for line in table.to_markdown().splitlines()
              if line.startswith("| ") and "Methods" not in line]
    assert labels[:8] == ["Random", "Herding", "k-Center Greedy", "Contextual Diversity",
                          "Moderate", "PGCS", "zeta", "Q-Diverse"]
    assert labels[-1] == ""  # the Full row has its label in the fraction column
    assert order_methods(["qdiverse", "b", "a", "random"]) == ["random", "a", "b", "qdiverse"]
    chosen = paper_table(runs, methods=["qdiverse", "random"], datasets=["tid2013"],
                         method_names={"qdiverse": "Ours"}, dataset_names={"tid2013": "TID"})
    assert chosen.rows == [(0.05, "qdiverse"), (0.05, "random"), (0.5, "qdiverse"),
                           (0.5, "random"), (None, "full")]
    assert "| 5% | Ours |" in chosen.to_markdown() and "TID SRCC" in chosen.to_markdown()
    assert paper_table(runs, include_full=False).rows[-1] == (0.5, "qdiverse")


# -- LaTeX ----------------------------------------------------------------------------------
def _columns(row: str) -> int:
    """Columns a tabular row spans (\\multicolumn{n} counts n)."""
    cells = re.split(r"(?<!\\)&", row.rstrip().removesuffix(r"\\"))
    return sum(int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1
               for c in cells)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _latex_table():
    runs = _runs([_rec(d, m, f, s, 0.3 + 0.1 * s + 0.01 * i)
                  for d in ("kadid10k", "my_set&co 100%") for i, m in enumerate(
                      ["random", "qdiverse", "new_method", "full"])
                  for f in (0.1, 0.3) for s in (0, 1)]).drop_duplicates("run_id")
    gap = (runs["dataset"] != "kadid10k") & (runs["method"] == "new_method") & (
        runs["fraction"] == 0.3)
    return paper_table(runs[~gap])  # one missing cell pair


def test_latex_is_structurally_sound_and_escaped():
    table = _latex_table()
    tex = table.to_latex()
    assert _balanced(tex)
    assert tex.count(r"\begin{table*}") == tex.count(r"\end{table*}") == 1
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    lines = tex.splitlines()
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1)
    assert spec == "ll" + "c" * 4
    top, bottom = lines.index(r"\toprule"), lines.index(r"\bottomrule")
    mids = [i for i, line in enumerate(lines) if line == r"\midrule"]
    assert top < mids[0] < bottom and len(mids) == 3  # header, 30 % block, Full
    assert lines[top + 2] == r"\cmidrule(lr){3-4} \cmidrule(lr){5-6}"
    body = [line for line in lines[top + 1:bottom] if line.endswith(r"\\")]
    assert len(body) == 2 + len(table.rows)
    assert all(_columns(line) == len(spec) for line in body)
    assert r"\multicolumn{2}{c}{my\_set\&co 100\%}" in tex and "my_set&co" not in tex
    assert r"new\_method" in tex and r"10\% & Random" in tex and r"Full &  &" in tex
    assert tex.count(" & -- ") == 1 and tex.count(" & --") == 2
    assert tex.count(r"\textbf{") == int(table.cells["best"].sum())
    tabular = table.to_latex(environment=None)
    assert r"\begin{table" not in tabular and r"\caption" not in tabular and _balanced(tabular)
    assert latex_escape("a_b & 5% #1 {x} ~^\\") == (
        r"a\_b \& 5\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    md = table.to_markdown()
    header = next(line for line in md.splitlines() if line.startswith("| Dataset fraction"))
    assert r"my\_set&co 100% SRCC" in header
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert {len(re.split(r"(?<!\\)\|", r)) for r in rows} == {len(spec) + 2}


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path):
    table = _latex_table()
    doc = (r"\documentclass{article}\usepackage[T1]{fontenc}\usepackage[utf8]{inputenc}"
           r"\usepackage{booktabs}\begin{document}" + "\n" + table.to_latex()
           + r"\end{document}" + "\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


# -- refusals -------------------------------------------------------------------------------
def test_refuses_to_mix_test_splits_metric_variants_epoch_rules_and_models():
    base = [_rec("kadid10k", "random", 0.1, 0, 0.5), _rec("tid2013", "random", 0.1, 0, 0.5)]
    mixed = _runs(base + [_rec("kadid10k", "random", 0.1, 1, 0.6,
                               split="kadid10k-other-hash-999")])
    with pytest.raises(RunRecordError, match=r"test_split_hash.*'kadid10k'|'kadid10k'.*"
                                             r"test_split_hash") as err:
        paper_table(mixed)
    assert "kadid10k" in str(err.value) and "kadid10k-o" in str(err.value)
    cases = {"plcc_variant": ("raw", "logistic"), "epoch_rule": ("final", "best_on_test"),
             "label_norm": ("fixed_range", "zscore")}
    for column, (a, b) in cases.items():  # across datasets: one caption, one setting
        runs = _runs([base[0], {**base[1], column: b}])
        with pytest.raises(RunRecordError, match=column) as err:
            paper_table(runs)
        assert repr(a) in str(err.value) and repr(b) in str(err.value)
    policy = _runs(base + [_rec("kadid10k", "random", 0.1, 1, 0.6,
                                inference_policy=json.dumps({"test_crops": "center"}))])
    with pytest.raises(RunRecordError, match="inference_policy"):
        paper_table(policy)
    models = _runs(base + [_rec("kadid10k", "random", 0.1, 0, 0.7, model="musiq")])
    with pytest.raises(RunRecordError, match=r"maniqa/tiny, musiq/tiny.*pass model=|"
                                             r"maniqa/tiny, musiq/tiny.*Pass model="):
        paper_table(models)
    assert paper_table(models, model="musiq").model == "musiq"
    assert paper_table(models, model="maniqa/tiny").config == "tiny"
    configs = _runs(base + [_rec("kadid10k", "random", 0.1, 0, 0.7, config="small")])
    with pytest.raises(RunRecordError, match="maniqa/small, maniqa/tiny"):
        paper_table(configs)
    with pytest.raises(ValueError, match=r"'model' parameter must be one of \['maniqa', "
                                         r"'musiq'\]. Got 'musik'"):
        paper_table(models, model="musik")
    duplicate = _runs(base + [{**base[0], "run_id": "other-options"}])
    with pytest.raises(RunRecordError, match=r"share a table cell and seed.*other-options"):
        paper_table(duplicate)
    with pytest.raises(ValueError, match="'metrics' parameter"):
        paper_table(_runs(base), metrics=["srocc"])
    with pytest.raises(ValueError, match="'decimals' parameter"):
        paper_table(_runs(base), decimals=0)
    with pytest.raises(ValueError, match="lacks the column"):
        paper_table(_runs(base).drop(columns=["test_split_hash"]))
    with pytest.raises(ValueError, match="empty"):
        paper_table(pd.DataFrame())


def test_one_table_per_model_and_summary_input():
    runs = _runs([_rec("kadid10k", m, 0.1, s, 0.4 + 0.1 * s + (m == "qdiverse") * 0.2,
                       model=model)
                  for model in ("musiq", "maniqa") for m in ("random", "qdiverse")
                  for s in (0, 1)])
    tables = paper_tables(runs)
    assert list(tables) == ["maniqa-tiny", "musiq-tiny"]
    assert list(paper_tables(runs, models=["musiq"])) == ["musiq-tiny"]
    with pytest.raises(ValueError, match="'models' parameter"):
        paper_tables(runs, models=["basecnn"])
    from_summary = paper_table(summarise(runs), model="musiq")
    assert from_summary.cells["mean"].tolist() == pytest.approx(
        tables["musiq-tiny"].cells["mean"].tolist())
    assert from_summary.provenance["n_runs"] == 4
    with pytest.raises(ValueError, match="several rows per dataset, fraction and method"):
        paper_table(summarise(runs, by=("dataset", "model", "config", "fraction", "method",
                                        "seed")), model="musiq")


def test_proxy_tables_say_so():
    runs = _runs([_rec("proxy-tiny", m, 0.1, 0, 0.5, proxy=True)
                  for m in ("random", "qdiverse")])
    table = paper_table(runs)
    assert table.proxy and "**PROXY** benchmark" in table.to_markdown()
    assert r"\textbf{PROXY} benchmark" in table.to_latex()
    assert "% PROXY benchmark" in table.to_latex()
    real = paper_table(runs.assign(proxy=False))
    assert "PROXY" not in real.to_markdown() + real.to_latex()


def test_saved_files_and_provenance(tmp_path):
    runs = _runs([_rec("kadid10k", m, f, s, 0.5 + 0.01 * s, sweep="paper")
                  for m in ("random", "qdiverse", "full") for f in (0.1, 0.3) for s in (0, 2)]
                 ).drop_duplicates("run_id")
    table = paper_table(runs)
    paths = save_paper_table(table, "t2", folder=tmp_path)
    assert {k: p.name for k, p in paths.items()} == {
        "md": "t2.md", "tex": "t2.tex", "csv": "t2.csv", "long_csv": "t2_long.csv",
        "json": "t2.json"}
    assert paths["md"].read_text() == table.to_markdown()
    assert paths["tex"].read_text() == table.to_latex()
    prov = json.loads(paths["json"].read_text())
    assert prov["run_ids"] == sorted(runs["run_id"]) and prov["n_runs"] == 10
    assert prov["test_split_hashes"] == {"kadid10k": ["kadid10k-hash-0123456789"]}
    assert (prov["plcc_variant"], prov["epoch_rule"], prov["label_norm"]) == (
        "raw", "final", "fixed_range")
    assert (prov["model"], prov["config"], prov["seeds"]) == ("maniqa", "tiny", [0, 2])
    assert prov["methods"] == ["random", "qdiverse", "full"] and prov["fractions"] == [0.1, 0.3]
    assert prov["git_commits"] == ["abc123"] and prov["versions"] == [{"torch": "2.x"}]
    assert prov["inference_policy"] == {"kadid10k": {"test_crops": "five_point"}}
    assert prov["sweeps"] == ["paper"] and prov["proxy"] is False
    assert datetime.fromisoformat(prov["generated_at"]).tzinfo is not None
    assert prov["files"]["tex"] == "t2.tex" and "SRCC and PLCC" in prov["caption"]
    wide = pd.read_csv(paths["csv"])
    assert wide["method"].tolist() == ["random", "qdiverse", "random", "qdiverse", "full"]
    assert wide.loc[0, "kadid10k_srcc_mean"] == pytest.approx(np.mean([0.5, 0.52]))
    assert wide.loc[0, "kadid10k_srcc_std"] == pytest.approx(np.std([0.5, 0.52], ddof=1))
    long = pd.read_csv(paths["long_csv"])
    assert len(long) == 5 * 1 * 2 and set(long["metric"]) == {"srcc", "plcc"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
    with pytest.raises(ValueError, match="'name' parameter"):
        save_paper_table(table, "a/b", folder=tmp_path)


# -- real runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sweep(tiny_bench, tmp_path_factory):
    """Two finished tiny runs (MANIQA tiny, one epoch, pixel features) and their sweep file."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("table-runs")
    path = root.parent / f"{root.name}-tables.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tables", "datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
        "overrides": {"epochs": 1}, "fractions": [0.25], "seeds": [0],
        "features": {"source": "pixels"}, "executor": "python",
        "methods": ["kcenter", "random"]}))
    try:
        report = run_sweep(path, runs_root=root)
    finally:
        torch.set_num_threads(previous)
    assert report.counts["failed"] == 0
    return root, path, report


def test_table_from_real_runs(tiny_sweep, tiny_bench):
    root, path, report = tiny_sweep
    runs = collect_runs(root, sweep="tables")
    # every run says where it ran and how busy the machine was when it finished
    from qd_lib.utils.machine import machine_label, machine_record

    assert set(runs["machine"]) == {machine_label(machine_record())}
    assert (runs["load_15min"] >= 0).all()
    table = paper_table(runs)
    assert table.rows == [(0.25, "random"), (0.25, "kcenter")]
    assert table.datasets == ["proxy-tiny"] and table.proxy
    for record in report.records:
        for metric in ("srcc", "plcc"):
            cell = table._cell(0.25, record["method"], "proxy-tiny", metric)
            assert cell["mean"] == pytest.approx(record["metrics"][metric])
            assert cell["n_seeds"] == 1 and np.isnan(cell["std"])
    values = {r["method"]: r["metrics"]["srcc"] for r in report.records}
    winner = max(values, key=lambda m: round(values[m], 4))
    assert table._cell(0.25, winner, "proxy-tiny", "srcc")["best"]
    prov = table.provenance
    assert prov["test_split_hashes"] == {
        "proxy-tiny": [tiny_bench.manifest.split_hash("paper", "test")]}
    assert prov["plcc_variant"] == "raw" and prov["epoch_rule"] == "final"
    assert prov["run_ids"] == sorted(r["run_id"] for r in report.records)
    assert prov["versions"] and "torch" in prov["versions"][0]
    # a run of an older version of the sweep file (same name) is not part of its grid
    stale = root / "proxy-tiny__maniqa-tiny__random__f0.25__s0__stale0"
    stale.mkdir(exist_ok=True)
    record = json.loads((root / report.records[0]["run_id"] / "metrics.json").read_text())
    (stale / "metrics.json").write_text(json.dumps({**record, "run_id": stale.name}))
    try:
        assert len(collect_runs(root, sweep="tables")) == 3
        with pytest.raises(RunRecordError, match="share a table cell and seed"):
            paper_table(collect_runs(root, sweep="tables"))
        assert sorted(sweep_runs(path, root)["run_id"]) == prov["run_ids"]
    finally:
        shutil.rmtree(stale)


def test_cli_table_paper_layout(tiny_sweep, tmp_path, monkeypatch, capsys):
    root, path, _ = tiny_sweep
    monkeypatch.setenv("QD_FIGURES_DIR", str(tmp_path))
    assert cli_main(["table", str(path), "--runs-dir", str(root), "--layout", "paper"]) == 0
    out = capsys.readouterr().out
    assert "| 25% | Random |" in out and "|  | k-Center Greedy |" in out
    assert "**PROXY** benchmark" in out
    written = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert written == ["tables.csv", "tables.json", "tables.md",
                       "tables_table2_maniqa-tiny.csv", "tables_table2_maniqa-tiny.json",
                       "tables_table2_maniqa-tiny.md", "tables_table2_maniqa-tiny.tex",
                       "tables_table2_maniqa-tiny_long.csv"]
    prov = json.loads((tmp_path / "tables" / "tables_table2_maniqa-tiny.json").read_text())
    assert prov["n_runs"] == 2 and prov["model"] == "maniqa"
    assert cli_main(["table", str(path), "--runs-dir", str(root), "--layout", "paper",
                     "--latex", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert r"\toprule" in out and r"\multicolumn{2}{c}{proxy-tiny}" in out
    assert cli_main(["table", str(path), "--runs-dir", str(root), "--layout", "paper",
                     "--model", "musiq", "--no-save"]) == 2
    assert "'models' parameter" in capsys.readouterr().err
    assert cli_main(["table", str(path), "--runs-dir", str(root), "--no-save"]) == 0
    assert "| proxy-tiny | maniqa | tiny | 25% | kcenter |" in capsys.readouterr().out
