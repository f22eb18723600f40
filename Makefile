# shiftpool: `make demo` and `make test` work on a fresh machine (they create .venv if missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shiftpool-installed
# Development pins; the library itself needs only torch and numpy.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
SHARED_DATA := $(abspath ../shared/data)
export SHIFTPOOL_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shiftpool compare --config examples/demo.yaml

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples

bench: $(STAMP)
	$(VENV)/bin/shiftpool benchmark --out benchmarks/results

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
