# Two commands set up a fresh machine:
#   make example   install, build the example classes' large models and data, grade hw10 (reports/hw10/)
#   make test      install, run the whole test suite (what CI runs)
PYTHON ?= python3

.PHONY: install example test bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[dev]"

example: install
	$(PYTHON) examples/make_class.py --only-missing
	$(PYTHON) examples/make_image_classes.py --only-missing
	grade submissions/ --assignment hw10

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/regrade.py
