# Everything a fresh machine needs is installed by these targets themselves:
# the venv and Python packages, the Kafka jars (Maven Central) and redis-server (apt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install stack-install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

stack-install: $(STAMP)
	$(BIN)/rtba stack install

demo: stack-install
	$(BIN)/rtba demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: stack-install lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .rtba .pytest_cache .ruff_cache
