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

.PHONY: book test execute exercises vendor chromium clean

book: $(VENV_STAMP) $(VENDOR_STAMP)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Book built: $(CURDIR)/_build/html/index.html"

test: $(VENV_STAMP) $(VENDOR_STAMP) chromium
	$(BIN)/python -m pytest tests $(if $(NOTEBOOKS),--nbval-lax --nbval-sanitize-with book/sanitize.cfg $(NOTEBOOKS))

execute: $(VENV_STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False $(NOTEBOOKS)

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
