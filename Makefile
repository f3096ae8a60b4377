# Every workflow a person or CI runs: set-up, stubs, checks, tests, the demo, benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The shared evaluation data lives beside the checkout when it exists; otherwise the default
# data home (~/.cache/mfrec) or an explicit MFREC_DATA_HOME is used.
ifneq ($(wildcard ../shared/data),)
export MFREC_DATA_HOME ?= $(abspath ../shared/data)
endif

PROTO_SRC := protos/mfrec/v1/recommender.proto

.PHONY: venv bench-venv proto lint check test demo bench bench-quality clean

venv: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./client -e '.[dev]'
	touch $(STAMP)

# Regenerates the committed stubs in client/mfrec/v1 from the contract.
proto: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=client --grpc_python_out=client \
		--mypy_out=client --mypy_grpc_out=client $(PROTO_SRC)

# Fixes what the linter and formatter can fix by themselves.
lint: $(STAMP)
	$(VENV)/bin/ruff format server client/mfrec/client training tests bench
	$(VENV)/bin/ruff check --fix server client/mfrec/client training tests bench

# Read-only checks: formatting, lint rules and types.
check: $(STAMP)
	$(VENV)/bin/ruff format --check server client/mfrec/client training tests bench
	$(VENV)/bin/ruff check server client/mfrec/client training tests bench
	$(VENV)/bin/mypy -p mfrec.client -p mfrec.server -p mfrec.training

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m mfrec.server.cli demo

# The benchmarks compare against Surprise and implicit, which are installed into a separate
# environment only: they are never dependencies of mfrec itself.
BENCH_VENV := .bench-venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -e ./client -e . scikit-surprise implicit
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) bench/serve.py

bench-quality: $(BENCH_STAMP)
	$(BENCH_PY) bench/quality.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info client/*.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
