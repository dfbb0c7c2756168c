# Corral — the two entry points are `make setup` and `make test` (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup install images test test-unit bench lint serve clean demo

setup: install images

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

images: install
	$(BIN)/corral images build

test: setup
	$(BIN)/pytest -q || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

test-unit: install
	$(BIN)/pytest -q -m "not docker and not browser"

bench: setup
	$(BIN)/python bench/sandbox.py

lint: install
	$(BIN)/ruff check sandbox runtime tests bench
	$(BIN)/ruff format --check sandbox runtime tests bench
	$(BIN)/mypy

serve: setup
	$(BIN)/corral serve

clean:
	rm -rf $(VENV) build *.egg-info
