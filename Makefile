# Developer entry points. Everything runs from the project virtualenv in $(VENV); `make help` lists targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: a bare `torch` requirement would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# Rebuilt whenever the packaging metadata changes; otherwise `make install` is a no-op.
STAMP := $(VENV)/.installed
PACKAGING := setup.py setup.cfg pyproject.toml package.xml

.DEFAULT_GOAL := help
# A recipe that fails leaves no half-made target (venv marker, install stamp) behind.
.DELETE_ON_ERROR:
.PHONY: help venv install mcu-deps test test-slow lint demo bench bench-deps clean
# apt-get as root directly, otherwise through sudo.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	@touch $@

venv: $(VENV)/pyvenv.cfg ## Create the virtualenv (.venv) if missing, with an up-to-date pip

$(STAMP): $(VENV)/pyvenv.cfg $(PACKAGING)
	$(BIN)/pip install '$(TORCH_SPEC)'
	$(BIN)/pip install -e '.[dev]'
	@touch $@

install: $(STAMP) ## Install torch (CPU) and the package in editable mode with the dev extras

# Cross compiler, newlib and QEMU for the firmware tests. --no-install-recommends: the recommends pull
# ~1.5 GB (libstdc++ for ARM, QEMU GUI/EFI blobs) that nothing here uses.
MCU_APT := gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi qemu-system-arm

mcu-deps: ## Install the ARM toolchain and QEMU (apt) when missing; firmware tests skip locally without them
	@if ! command -v dpkg >/dev/null 2>&1; then \
		echo "warning: no dpkg; install $(MCU_APT) by hand for the firmware tests" >&2; exit 0; fi; \
	missing=""; for p in $(MCU_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; fi

test: install mcu-deps ## Run the fast test suite
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

test-slow: install mcu-deps ## Run the slow tests (learning, emulators)
	@$(BIN)/python -m pytest -m slow $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no slow tests" >&2; fi; exit $$rc

lint: install ## Run ruff on the whole repository and the type checker (pyright, basic mode) on the package
	$(BIN)/ruff check .
	$(BIN)/basedpyright

demo: install ## Train the default quadrotor task, export, evaluate and print the result
	$(BIN)/sim2real demo

bench-deps: ## System packages the peers need (OpenBLAS, so the RLtools peer links its BLAS backend)
	@dpkg -s libopenblas-dev >/dev/null 2>&1 || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends libopenblas-dev; }

bench: install bench-deps mcu-deps ## Run every benchmark in benchmarks/ (each prints a comparison table; exit 77 = skipped, e.g. needs CUDA)
	@set -e; found=0; for f in benchmarks/*.py; do \
		case "$$(basename "$$f")" in _*) continue;; esac; \
		[ -f "$$f" ] || continue; found=1; \
		echo "==> $$f"; rc=0; $(BIN)/python "$$f" || rc=$$?; \
		if [ $$rc -eq 77 ]; then echo "    (skipped on this machine)"; elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done; \
	if [ $$found -eq 0 ]; then echo "error: no benchmarks in benchmarks/" >&2; exit 1; fi

clean: ## Remove the virtualenv and build artefacts (keeps runs/)
	rm -rf $(VENV) build dist install log .eggs *.egg-info .pytest_cache .ruff_cache
	find . -path ./runs -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
