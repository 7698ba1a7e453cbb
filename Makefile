# xpay-sim: `make run` and `make test` are all a newcomer needs (Python 3.11 and make).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lab bench bench-smoke bench-generator bank plan-validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,analysis]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/xpay run

test: $(STAMP)
	$(BIN)/python -m pytest -q

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m benchmarks.engine_throughput

plan-validate: $(STAMP)
	$(BIN)/python -m benchmarks.plan_validation

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks.engine_throughput --smoke

bank: $(STAMP)
	$(BIN)/python -m benchmarks.bank

bench-generator: $(STAMP)
	$(BIN)/python -m benchmarks.generator_throughput

clean:
	rm -rf runs .pytest_cache .hypothesis
