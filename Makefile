# Two commands do all the set-up on a fresh machine (Debian, Python >= 3.11, root or sudo):
#   make demo   installs what is missing, then runs `touchpoint demo` on the embedded stack
#   make test   installs what is missing, then lints, type-checks the core and runs every test and
#               doctest (what CI runs)
VENV  := .venv
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup demo test check test-unit stack-down clean

$(STAMP): pyproject.toml requirements.lock scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/touchpoint demo

test: check
	$(VENV)/bin/python -m pytest

# Lint and type check: fast, so they run first and a style or type error fails before the suite.
check: setup
	$(VENV)/bin/ruff check streams touchpoint_tools tests
	$(VENV)/bin/python -m mypy

test-unit: setup
	$(VENV)/bin/python -m pytest -m "not integration"

stack-down:
	$(VENV)/bin/touchpoint stack down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
