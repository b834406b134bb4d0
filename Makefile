# SIPAS Workbench — `make help` lists the targets. Every target creates .venv when it is missing
# and installs nothing outside it (no global kernels, no global packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
YEAR   ?= 2025
SEED   ?= 2025
REPORT_LANG  ?= vi
RUN    ?= $(YEAR)-demo

.DEFAULT_GOAL := help
.PHONY: help venv demo report report-national report-en report-pdf pdf test test-fast bench bench-scale lab clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

EXTRAS ?= test
comma  := ,
# one stamp per set of extras: `make venv EXTRAS=test,spark` installs PySpark into an existing .venv too
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# uv installs the same packages as pip several times faster; pip installs them when uv cannot be had. Bytecode is
# written on first import (only what is used, about 25 s less than compiling .venv at install): where
# PYTHONDONTWRITEBYTECODE is set, every worker and kernel would otherwise compile all its imports again.
unexport PYTHONDONTWRITEBYTECODE
UV_INSTALL  = $(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet --python $(BIN)/python
PIP_INSTALL = $(BIN)/python -m pip install --quiet

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(UV_INSTALL) -e ".[$(EXTRAS)]" || $(PIP_INSTALL) -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv from pyproject.toml (only when missing or out of date; EXTRAS=test,spark adds PySpark)

demo: $(STAMP) ## Write the seeded demo year to data/demo/ if any file is missing
	$(BIN)/sipas demo --if-missing --year $(YEAR) --seed $(SEED)

report: demo ## Run the full annual pipeline on the demo data -> reports/$(RUN)/index.html
	$(BIN)/sipas report --year $(YEAR) --seed $(SEED) --lang $(REPORT_LANG) --run $(RUN)

report-national: $(STAMP) ## The ministry's national survey (34 provinces) -> reports/$(YEAR)-national/index.html
	$(BIN)/sipas demo --profile national --if-missing --year $(YEAR) --seed $(SEED)
	$(BIN)/sipas report --profile national --year $(YEAR) --seed $(SEED) --lang $(REPORT_LANG)

report-en: ## The same reports in English
	$(MAKE) report REPORT_LANG=en RUN=$(YEAR)-demo-en

report-pdf: demo ## The full report plus the annual report and scorecards as PDF -> reports/$(RUN)/downloads/pdf/
	$(BIN)/sipas report --year $(YEAR) --seed $(SEED) --lang $(REPORT_LANG) --run $(RUN) --pdf

pdf: report-pdf ## Same as report-pdf

test: demo ## Run the whole test suite (unit, parity, simulation, notebook tiers; Spark with pip install -e ".[spark]" and java)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP) ## Unit and parity tests: no kernel, no simulation, no Spark, no demo year built (about 60 s)
	$(BIN)/python -m pytest -n 2 -q -m "not notebooks and not kernel and not simulation and not slow and not spark"

bench: $(STAMP) ## Run every benchmark in bench/ (medians and ratios; R side when Rscript exists; not the national scale)
	@for f in bench/bench_*.py; do case $$f in *_scale.py) continue;; esac; echo "== $$f"; $(BIN)/python $$f || exit 1; done

bench-scale: $(STAMP) ## National scale: 3,921 units, 400,000 forms and 100M dossiers generated (bench/.data/), whole run timed
	$(BIN)/python bench/bench_scale.py --seed $(SEED)

lab: $(STAMP) ## Open JupyterLab with the project's environment as the python3 kernel
	$(BIN)/jupyter lab notebooks/

clean: ## Remove generated reports and caches (keeps .venv and data)
	rm -rf reports/*/ .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
