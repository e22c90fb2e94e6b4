# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[all]'
	touch $(STAMP)

# The demo line: broker, worker, review app and edge agent, drawn parts, verdicts listed; it
# keeps running (drop photos into var/demo/inbox, review in the browser) until Ctrl-C.
# More options: make run DEMO_ARGS="--count 6"
DEMO_ARGS ?=

run: $(STAMP)
	$(BIN)/inspector demo --keep-running $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check inspector edge tests
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check inspector edge tests
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
