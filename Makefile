# Two commands set up a fresh machine:
#   make example   install, build the example class's large models, grade it (reports/hw10/)
#   make test      install, run the whole test suite (what CI runs)
PYTHON ?= python3

.PHONY: install example test bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[dev]"

example: install
	$(PYTHON) examples/make_class.py --only-missing
	grade submissions/ --assignment hw10

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/regrade.py
