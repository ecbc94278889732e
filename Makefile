# mvd-workbench: two commands on a fresh machine with Python 3.11.
#   make run    the main job (creates/refreshes .venv first)
#   make test   every test (creates/refreshes .venv first); CI runs this through .ci/run
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch and torchvision are pinned together in every install path (see pyproject.toml)
TORCH_PINS := torch==2.13.0 torchvision==0.28.0

.PHONY: run test env clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[notebooks,tests]" $(TORCH_PINS)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m mvd_lib demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
