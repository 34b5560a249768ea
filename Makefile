# dlhw — every target has a `## description`; `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/softmax.yaml

.DEFAULT_GOAL := help
.PHONY: help install data test reproduce bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	PYTHON=$(PYTHON) sh scripts/bootstrap.sh $(VENV)
	@touch $@

install: $(STAMP) ## create .venv and install dlhw with its test extra
	@$(BIN)/dlhw --version

data: $(STAMP) ## find or get Fashion-MNIST (local copy, download, or Debian's package)
	sh scripts/get_data.sh $(BIN)/dlhw

test: data ## set up and run the test suite
	$(BIN)/python -m pytest -q

reproduce: data ## set up and run the main job: the 4,096-setting grid, its retrain, test metrics and figures
	$(BIN)/dlhw grid --config $(CONFIG)

bench: data ## run the benchmarks under scripts/ (takes a while)
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_grid.py

clean: ## remove the virtualenv, caches and results (not the data)
	rm -rf $(VENV) results .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
