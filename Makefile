# Two commands do all the set-up on a fresh machine (Debian, Python >= 3.11, root or sudo):
#   make demo   installs what is missing, then runs `touchpoint demo` on the embedded stack
#   make test   installs what is missing, then runs the whole test suite (what CI runs)
VENV  := .venv
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup demo test test-unit stack-down clean

$(STAMP): pyproject.toml requirements.lock scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/touchpoint demo

test: setup
	$(VENV)/bin/python -m pytest

test-unit: setup
	$(VENV)/bin/python -m pytest -m "not integration"

stack-down:
	$(VENV)/bin/touchpoint stack down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
