# dynsweep: `make test` and `make sweep` set everything up on a fresh machine (Python 3.11 + PyPI).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# -n auto: one pytest worker per core (pytest-xdist); PYTEST_ARGS="-n 0" runs them in one process.
PYTEST_ARGS ?= -n auto
BENCH_ARGS ?=

.PHONY: install lint test bench bench-search sweep claims claims-ablation claims-report clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Reinstall when the declared dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Style, likely bugs and types (configured in pyproject.toml); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# glibc returns every large free to the OS and page-faults it back on the next allocation, which
# can cost more than the arithmetic of a 7x7 layer; keep freed memory in the heap instead
# (the same effect as the jemalloc/tcmalloc advice of PyTorch's CPU performance guide).
BENCH_ENV ?= MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736

bench: $(STAMP)
	$(BENCH_ENV) $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Multi-objective searches replayed on the recorded learning curves (benchmarks/curves_quickstart.json),
# no training: random, NSGA-II, TPE, the dominance rule, Syne Tune's MOASHA and ours (docs/search.md).
# Needs the bench extra (syne-tune); SEARCH_ARGS e.g. --repeats 5 or --no-syne-tune.
SEARCH_ARGS ?=
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench-search: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.compare_search $(SEARCH_ARGS)

# The README's main command: the quickstart sweep on the embedded digits, then its Pareto tables
# and figures (runs/quickstart/pareto/). SWEEP_STORAGE (a URL) serves both steps; SWEEP_ARGS
# goes to the run only (e.g. --n-trials 20 --workers 2).
SWEEP_SPEC ?= sweeps/quickstart.yaml
SWEEP_STORAGE ?=
SWEEP_ARGS ?=
SWEEP_WHERE = $(if $(SWEEP_STORAGE),--storage $(SWEEP_STORAGE))

sweep: $(STAMP)
	$(BIN)/dynsweep sweep run $(SWEEP_SPEC) --no-table $(SWEEP_WHERE) $(SWEEP_ARGS)
	$(BIN)/dynsweep sweep pareto $(SWEEP_SPEC) $(SWEEP_WHERE)

# The two claims (docs/claims.md): the six warm starts, 5 seeds each, on generated glyphs and on the
# data-poor digits, then each study's Pareto report with Dy against Fix and Dy against the baseline.
# The two sweeps run side by side, one core each (CLAIMS_JOBS); CLAIMS_RUNS sets where they write.
CLAIMS_SPECS ?= sweeps/claims_glyphs.yaml sweeps/claims_digits.yaml
CLAIMS_RUNS ?= runs
CLAIMS_COMPARE ?= --compare dy fix --compare dy baseline

claims-run-%: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/dynsweep sweep run sweeps/claims_$*.yaml --runs-dir $(CLAIMS_RUNS) --no-table

CLAIMS_JOBS ?= 2

claims: $(STAMP)
	$(MAKE) -j$(CLAIMS_JOBS) $(patsubst sweeps/claims_%.yaml,claims-run-%,$(CLAIMS_SPECS))
	for spec in $(CLAIMS_SPECS); do \
		$(BIN)/dynsweep sweep pareto $$spec --runs-dir $(CLAIMS_RUNS) $(CLAIMS_COMPARE) || exit 1; done

# One factor at a time (docs/claims.md): Dy-ResNet18's learning rate and predictor width, Dy-mobile's
# learning rate.
claims-ablation: claims-run-ablation_lr claims-run-ablation_reduction claims-run-ablation_mobile_lr

# The tables of docs/claims.md: points, the two claims and the ablations, from the studies in CLAIMS_RUNS.
claims-report: $(STAMP)
	$(BIN)/python -m benchmarks.claims_report --runs-dir $(CLAIMS_RUNS)

clean:
	rm -rf $(VENV) build *.egg-info
