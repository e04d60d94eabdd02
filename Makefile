# Two commands set everything up on a fresh clone: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch==2.13.0 comes from constraints.txt. Our machines keep its CPU wheel on disk; elsewhere
# PyPI's Linux wheel is a CUDA build of several GB, so without an NVIDIA GPU set, once:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: run test test-slow test-all lint bench dist clean venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[testing]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m napari_propsam.devtools.demo

# `make test` is the development loop: every test but the ones marked slow (tests/conftest.py
# lists them), plus ruff. `make test-slow` runs the slow ones; `make test-all` (CI) runs both.
# Both spread test files over the machine's cores (pytest-xdist); a file stays on one worker so
# its module fixtures are built once.
PYTEST := QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n auto --dist loadfile

test: $(STAMP)
	$(PYTEST) -m "not slow"
	$(BIN)/ruff check src tests benchmarks

test-slow: $(STAMP)
	$(PYTEST) -m slow

test-all: test test-slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_speed.py

# The sdist and wheel that go to PyPI, in dist/ (tests/test_packaging.py checks both).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) build dist src/*.egg-info
