# Two commands on a fresh machine: `make book` and `make test`. Both create .venv from requirements.txt
# when it is missing or older than requirements.txt, and vendor the JavaScript the offline HTML needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/stamp
NPM_STAMP := node_modules/.package-lock.json
VENDOR_ROOT := book/_vendor
VENDOR := $(VENDOR_ROOT)/html/_static/vendor
VENDOR_STAMP := $(VENDOR_ROOT)/stamp
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NOTEBOOKS ?= $(wildcard book/*.ipynb)

NBVAL := --nbval-lax --nbval-sanitize-with book/sanitize.cfg

.PHONY: book test test-portable lint execute exercises vendor chromium clean

book: $(VENV_STAMP) $(VENDOR_STAMP)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Book built: $(CURDIR)/_build/html/index.html"

# The chapters are replayed once, by test-portable: their committed outputs come from this CPU's own kernels,
# and what would break a replay on them (nondeterminism, a changed library, an edited cell) breaks that one too.
test: $(VENV_STAMP) $(VENDOR_STAMP) chromium lint
	$(BIN)/python -m pytest tests
	$(MAKE) --no-print-directory test-portable

# The chapters replayed with PyTorch, MKL and oneDNN forced onto another instruction set than this CPU's best
# (AVX-512 -> AVX2; otherwise the generic kernels): their float results then differ in the last bits, as on
# another machine, so a checked cell that prints digits it cannot promise fails here first.
test-portable: $(VENV_STAMP)
	isa=$$($(BIN)/python -c "import torch; print('avx2' if torch.backends.cpu.get_cpu_capability() == 'AVX512' else 'default')"); \
	mkl=$$([ "$$isa" = avx2 ] && echo AVX2 || echo COMPATIBLE); \
	export ATEN_CPU_CAPABILITY=$$isa MKL_CBWR=$$mkl ONEDNN_MAX_CPU_ISA=$$([ "$$isa" = avx2 ] && echo AVX2 || echo SSE41); \
	echo "test-portable: nbval with ATEN_CPU_CAPABILITY=$$isa MKL_CBWR=$$mkl ONEDNN_MAX_CPU_ISA=$$ONEDNN_MAX_CPU_ISA \
	(torch uses $$($(BIN)/python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))"; \
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL) $(NOTEBOOKS)

# ruff (configured in pyproject.toml): pyflakes, import order, pycodestyle, 100 columns, formatting.
lint: $(VENV_STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check

# Kernels talk over Unix sockets in a private folder: with TCP, kernels started at the same moment by parallel
# runs can pick the same free port and one client then waits forever for replies that went to the other kernel.
execute: $(VENV_STAMP)
	ipc=$$(mktemp -d); trap 'rm -rf "$$ipc"' EXIT; \
	DGM_EXPLORERS=book $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 \
		--ExecutePreprocessor.record_timing=False --KernelManager.transport=ipc --KernelManager.ip="$$ipc/kernel" \
		$(NOTEBOOKS)

exercises: $(VENV_STAMP)
	$(BIN)/python -m dgm_lib.exercises.generate

# The virtual environment: exact pins, then dgm_lib itself (editable, no build isolation: no extra downloads).
$(VENV_STAMP): requirements.txt pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Offline HTML: MathJax 3, RequireJS and the Jupyter widget HTML manager, pinned in package-lock.json.
# _config.yml serves book/_vendor/html through html_extra_path, so these land in _build/html/_static/vendor/.
vendor: $(VENDOR_STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(VENDOR_STAMP): $(NPM_STAMP) book/widgets_offline.js Makefile
	rm -rf $(VENDOR_ROOT)
	mkdir -p $(VENDOR)/mathjax/output $(VENDOR)/requirejs $(VENDOR)/jupyter-widgets
	cp -r node_modules/mathjax/LICENSE node_modules/mathjax/es5/{tex-chtml.js,a11y,input,sre,ui} $(VENDOR)/mathjax/
	cp -r node_modules/mathjax/es5/output/{chtml,chtml.js} $(VENDOR)/mathjax/output/
	cp node_modules/requirejs/require.js $(VENDOR)/requirejs/
	cp node_modules/@jupyter-widgets/html-manager/dist/{embed-amd.js,*.woff,*.woff2,*.ttf,*.eot,*.svg} $(VENDOR)/jupyter-widgets/
	cp book/widgets_offline.js $(VENDOR)/jupyter-widgets/offline.js
	touch $@

# The browser test drives Debian's chromium (no browser download by playwright).
chromium:
	[ -x $(CHROMIUM) ] || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

clean:
	rm -rf _build $(VENDOR_ROOT)
