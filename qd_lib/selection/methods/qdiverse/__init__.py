"""Q-Diverse: quality- and content-aware coreset selection by spectral log-determinant diversity.

Pipeline, per batch of ``b`` rows (design note ``qdiverse.md`` §2):

1. Squared Euclidean distances in the content and the quality embedding (one float32 GEMM each),
   each scaled by its largest off-diagonal distance, combined as
   ``D = γ·D_content + (1 − γ)·D_quality``.
2. RBF affinities ``W = exp(−D² / 2σ²)`` with ``σ`` = median distance, self-loops kept.
3. ``S = D^{-1/2} W D^{-1/2}`` (the symmetric normalised graph Laplacian is ``I − S``).
4. Nyström spectral embedding from ``l`` landmark columns of ``S``; the dimension ``r`` is the
   smallest one holding ``energy`` of the landmark block's spectrum.
5. A second RBF kernel ``K`` on the embedding (median bandwidth).
6. Greedy maximisation of ``log det(K_S + ε·I)`` by incremental Cholesky until the batch's
   budget is met.

Where each section of ``qdiverse.md`` lives:

============================  ==============================================================
module                        sections
============================  ==============================================================
:mod:`.options`               §3 stated vs inferred (one option per inferred choice), §4
                              hyperparameters and per-dataset presets; option validation
:mod:`.batches`               §2.2 batching / non-batch mode, §2.3 per-batch budget,
                              §2.12 per-batch seeds
:mod:`.affinity`              §2.4 distances, §2.5 combining content and quality,
                              §2.6 RBF affinity graph
:mod:`.spectral`              §2.7 normalised Laplacian, §2.8 Nyström landmarks and the
                              energy rule, §2.9 kernel on the spectral embedding
:mod:`.greedy`                §2.10 greedy log-det (DPP MAP) by incremental Cholesky
:mod:`.pipeline`              one batch, §2.4 → §2.10 in order (+ §2.11's trivial batches)
:mod:`.backends`              §5 "numpy; torch is equivalent": the kernels the pipeline calls
                              (numpy reference) and how a backend is chosen
:mod:`.torch_backend`         the same kernels in torch on a CPU or CUDA device
:mod:`.parallel`              §2.12 / §5 execution: serial, process pool, Dask-like client;
                              memory-mapped inputs shipped by path
:mod:`.method`                §1 inputs/outputs, §2.11 assembly; the registered selector
:mod:`.extensions`            not in the paper: two labelled extensions (quality × diversity
                              DPP, density-compensated kernel); :mod:`.extension_methods`
                              registers them as ``qdiverse_qdpp`` and ``qdiverse_density``,
                              and the variant ``qdiverse_rownorm`` (unit-length spectral rows)
============================  ==============================================================

The total budget is split across batches by the largest-remainder rule (exact total, each
share within 1 of its proportional quota). Batches are independent: batch ``i`` draws its
randomness (the landmarks) from ``SeedSequence(seed).spawn`` child ``i``, so a serial run, a
process pool (``n_jobs``) and a Dask-like ``client`` give identical results, in any order.

The paper's main text was not available: the distance normalisation, the RBF bandwidths, the
Laplacian normalisation, the landmark sampling, the batch order, the first pick and the budget
allocation are inferred. Each is a named option whose default is the design note's
recommendation; :data:`QDIVERSE_PRESETS` holds the per-dataset hyperparameters of the
supplement (§E.1, §F.3), with the values it does not state marked as inferred.

Out-of-core use: pass ``numpy.load(path, mmap_mode="r")`` arrays, float16, float32 or float64.
Each batch's rows are read (and copied; float16 rows cast to float32) only while that batch
runs, so the memory beyond the mapped file is ``O(b² + b·d)``; with ``n_jobs > 1`` the
workers receive the file name and the batch's rows and map the file themselves, instead of
receiving pickled arrays.

Every batch runs its BLAS calls on a single thread (float32 GEMM results depend on the thread
count); that is what makes serial and parallel runs bit-identical. Use ``n_jobs`` to use more
cores, or ``backend="torch", device="cuda"`` to run the kernels on a GPU (the same coreset up
to round-off; see :mod:`.torch_backend`).
"""
from qd_lib.selection.methods.qdiverse.extension_methods import (
    NAMED_VARIANTS,
    qdiverse_density_selection,
    qdiverse_qdpp_selection,
    qdiverse_rownorm_selection,
)
from qd_lib.selection.methods.qdiverse.method import qdiverse_selection
from qd_lib.selection.methods.qdiverse.options import (
    QDIVERSE_DEFAULTS,
    QDIVERSE_PRESETS,
    QDiversePreset,
    qdiverse_preset,
)

__all__ = ["qdiverse_selection", "qdiverse_preset", "QDIVERSE_PRESETS", "QDiversePreset",
           "QDIVERSE_DEFAULTS", "NAMED_VARIANTS", "qdiverse_density_selection",
           "qdiverse_qdpp_selection", "qdiverse_rownorm_selection"]
