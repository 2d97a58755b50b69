# Everything a fresh machine needs, in two targets: `make campaign` (the main job) and `make test`.
# Both create the virtual environment on first use. torch is installed first, pinned, because a bare
# `torch` requirement on a machine without it pulls a multi-GB CUDA build.
VENV     ?= .venv
PYTHON   ?= python3
TORCH    ?= torch==2.13.0
CAMPAIGN ?= studies/rnn_vs_lstm.toml
WORKERS  ?= 2
PY       := $(VENV)/bin/python
CLI      := $(VENV)/bin/ml-rnn-names

.PHONY: venv campaign smoke test test-fast lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

## The main job: search both models, finalize the best of each on test over three seeds, write the report.
campaign: venv
	$(CLI) run $(CAMPAIGN) --workers $(WORKERS)
	$(CLI) finalize $(CAMPAIGN) --workers $(WORKERS)
	$(CLI) report $(CAMPAIGN)

## The same pipeline on the one-minute campaign.
smoke:
	$(MAKE) campaign CAMPAIGN=studies/smoke.toml

## The whole test suite (what CI runs).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: venv
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/workers.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
