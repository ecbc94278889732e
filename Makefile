# mvd-workbench: two commands on a fresh machine with Python 3.11.
#   make run    the main job: every notebook in notebooks/, in order, at PROFILE (default quick; creates/refreshes .venv first)
#   make test   every test: pytest suite, each notebook under nbval, the real-browser test; CI runs this through .ci/run
# Also: make run PROFILE=laptop (the full laptop-scale runs), make strip (clear notebook outputs before committing),
# make demo (the short end-to-end command-line demo).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick
# pytest-xdist workers of `make test` (one per core of the 2-core machine the suite is sized for; see conftest.py)
TEST_WORKERS ?= 2
# torch and torchvision are pinned together in every install path (see pyproject.toml)
TORCH_PINS := torch==2.13.0 torchvision==0.28.0

.PHONY: run test env strip demo clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[notebooks,tests]" $(TORCH_PINS)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m mvd_lib.notebook_runner --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

strip: $(STAMP)
	$(PY) -m mvd_lib.notebook_runner --strip

demo: $(STAMP)
	$(PY) -m mvd_lib demo

clean:
	rm -rf $(VENV) .pytest_cache
