# Two entry points for a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LISTEN ?= 127.0.0.1:5353

.PHONY: venv run test lint typecheck unit schema bench scale clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: venv
	$(BIN)/kubedns serve --snapshot config/demo-cluster.yaml --listen $(LISTEN) --log-format text

# bench/ may not exist yet; ruff fails on a missing path, so lint only what is there.
LINT_PATHS := $(wildcard kubedns tests bench)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

test: lint typecheck unit

# The chart's values.schema.json: its properties.config is generated from kubedns/config.py
# (the rest of the file is written by hand and kept as it is). Run after changing a setting;
# tests/test_config_schema.py fails until the file is regenerated.
schema: venv
	$(BIN)/kubedns config-schema --update charts/kubedns/values.schema.json

# The end-to-end scale benchmark of issue 3 (about a minute; not part of `make test`):
# writes bench/results/scale.json. Override the shape, e.g. make scale SCALE_ARGS='--seconds 5'.
SCALE_ARGS ?=
scale: venv
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# Not part of `make test`: minutes of dnsperf against kubedns, nsd, unbound and dnsmasq on
# loopback; regenerates BENCHMARKS.md and bench/results/. Needs dnsperf nsd unbound dnsmasq.
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
