# ActSync developer entry points.  On a fresh machine: `make demo`, `make test`.
.PHONY: setup test demo clean

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp makes `setup` idempotent: pip only reruns when a requirements file changes.
STAMP := $(VENV)/.installed

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not gpu" tests

# CPU demo: generate the demo dataset with previews, then evaluate its ground-truth test videos.
demo: setup
	$(PY) main.py data -e demo --preview
	$(PY) main.py evaluate -e demo --ground-truth

# Removes generated data and run outputs (not the virtualenv).
clean:
	rm -rf runs cache outputs .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
