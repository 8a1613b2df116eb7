"""The evidence study: does a coreset method pick better training sets, with what confidence?

:mod:`qd_lib.study.stats`
    Bootstrap intervals, paired comparisons with Random (Wilcoxon signed-rank), markers.
:mod:`qd_lib.study.report`
    Trained runs → ``figures/study/runs.csv`` → ``summary.csv`` (computed from that file only).
:mod:`qd_lib.study.diagnostics`
    Training-free diagnostics per method × fraction × seed, and their correlation with
    trained SRCC.
:mod:`qd_lib.study.ablation`
    Q-Diverse's inferred options and labelled extensions, training-free first.
:mod:`qd_lib.study.epochs`
    How many epochs the study trains (validation split only).

``python -m qd_lib.study --help`` lists the commands; ``make study`` runs the whole study
(resumable) and rewrites ``figures/study/`` and the README's evidence section.
"""
from qd_lib.study.report import study_runs, summarise_study, summary_markdown, write_study_tables
from qd_lib.study.stats import bootstrap_ci, paired_comparison, significance_marker

__all__ = ["bootstrap_ci", "paired_comparison", "significance_marker", "study_runs",
           "summarise_study", "summary_markdown", "write_study_tables"]
