# nearrec developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help setup quickstart test lint fmt typecheck check bench rehearse clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, the CPU build pinned in pyproject.toml, so nothing pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## Create .venv with nearrec and the dev tools

quickstart: setup ## The main job on the embedded default: demo catalog, sync, recommendations, HTTP API
	$(BIN)/nearrec quickstart

test: setup ## Run the test suite (starts what it needs)
	$(BIN)/pytest -q

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup ## mypy, strict on the package
	$(BIN)/mypy

check: lint typecheck test ## Everything CI runs

rehearse: setup ## The compose topology as separate processes (migrate, API + worker, CLI ingest) on one Postgres
	$(BIN)/pytest -q tests/integration/test_rehearsal.py tests/integration/test_compose.py

bench: setup ## Run every benchmark (minutes; prints figures and ratios)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean: ## Remove the virtualenv and the embedded data dir
	rm -rf $(VENV) .nearrec
