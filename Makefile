# Borne: `make demo` runs the virtual site, `make test` runs every test, `make bench` prints figures.
# Each target installs what it needs: the virtual environment, Python packages and system packages.

VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NPM_PROJECT := simulator/virtual_board
NODE_INSTALLED := $(NPM_PROJECT)/node_modules/.package-lock.json
SYSTEM_PACKAGES := mosquitto:mosquitto

.PHONY: demo test bench soak lint vectors clean

$(INSTALLED): pyproject.toml scripts/bootstrap
	scripts/bootstrap $(SYSTEM_PACKAGES)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test,bench]'
	touch $@

# The real MicroPython VM for the virtual board, pinned by package-lock.json.
$(NODE_INSTALLED): $(NPM_PROJECT)/package.json $(NPM_PROJECT)/package-lock.json $(INSTALLED)
	cd $(NPM_PROJECT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(INSTALLED) $(NODE_INSTALLED)
	$(VENV)/bin/borne demo

# Two workers, the HIL scenarios on one of them from the start (conftest.py says why).
test: $(INSTALLED) $(NODE_INSTALLED) lint
	$(PYTHON) -m pytest -n 2 --dist loadscope --no-loadscope-reorder

lint: $(INSTALLED)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(VENV)/bin/borne codec export-mpy --check

bench: $(INSTALLED)
	$(PYTHON) -m bench

# The virtual site through 10,000 check-ins and a schedule of faults (about an hour and three quarters:
# 24 doors, each with a visitor every 15 s on average, which its duty cycle carries even one check-in
# per frame; a concentrator beside the bridge, so that one receiver listens while the other sends an
# ACK); prints what was lost.
soak: $(INSTALLED) $(NODE_INSTALLED)
	$(VENV)/bin/borne sim soak --checkins 10000 --doors 24 --every 15 --concentrator

vectors: $(INSTALLED)
	$(VENV)/bin/borne codec vectors

clean:
	rm -rf $(VENV) $(NPM_PROJECT)/node_modules .pytest_cache .hypothesis
