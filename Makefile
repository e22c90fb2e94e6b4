# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make run` installs what the demo line runs; `make test` adds the test and lint tools.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the demo line into $(VENV): torch, transformers, the SQL store, the review"
	@echo "app and the MQTT broker; about 6 GB the first time, most of it torch."
	$(BIN)/python -m pip install --progress-bar on --editable '.[worker,review,demo]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing everything and the test tools (pytest, mypy, ruff, Playwright…) into $(VENV)"
	$(BIN)/python -m pip install --progress-bar on --editable '.[all]'
	touch $@ $(RUN_STAMP)

# The demo line: broker, worker, review app and edge agent, drawn parts, verdicts listed; it
# keeps running (drop photos into var/demo/inbox, review in the browser) until Ctrl-C.
# More options: make run DEMO_ARGS="--count 6"
DEMO_ARGS ?=

run: $(RUN_STAMP)
	$(BIN)/inspector demo --keep-running $(DEMO_ARGS)

# lint-imports checks the layering contracts in pyproject.toml ([tool.importlinter]).
# mypy runs beside pytest: from a cold cache it takes minutes on one core, and pytest leaves
# a core idle while it waits on the workers, brokers and installs it starts. Its report
# follows pytest's; either one failing fails the target.
test: $(TEST_STAMP)
	$(BIN)/ruff check inspector edge tests
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@report=$$(mktemp); echo "$(BIN)/mypy (beside pytest)"; \
	$(BIN)/mypy >"$$report" 2>&1 & types=$$!; \
	echo "$(BIN)/python -m pytest -q"; $(BIN)/python -m pytest -q; tests=$$?; \
	wait $$types; typed=$$?; cat "$$report"; rm -f "$$report"; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

lint: $(TEST_STAMP)
	$(BIN)/ruff check inspector edge tests
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
