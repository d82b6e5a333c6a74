# One-command set-up on a fresh machine: every target below builds what it needs.
#   make demo   - run the guide's Complete Example headless (prints stats and results)
#   make test   - unit tests, notebooks (nbval) and the browser test
#   make lab    - open JupyterLab on the notebook tour
#   make bench  - benchmarks against dask, side by side
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lab bench lint system system-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# System packages, installed with apt-get where missing (as root, or with sudo; elsewhere a
# line says what to install): graphviz's `dot` (drawings) for every target (`system`), and
# Debian's chromium (the browser test) for `make test` only (`system-test`, in the same
# apt-get; SKIP_BROWSER=1 leaves it out).
CHROMIUM ?= /usr/bin/chromium
NEED_DOT = command -v dot >/dev/null 2>&1 || need="$$need graphviz"
NEED_CHROMIUM = [ -x "$(CHROMIUM)" ] || need="$$need chromium"
DOT_HINT = (conda: 'conda install graphviz'; macOS: 'brew install graphviz'); without graphviz drawings fall back to text
CHROMIUM_HINT = ; without chromium run 'make test SKIP_BROWSER=1'
APT_INSTALL = if [ -n "$$need" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$need"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else \
	    echo "Please install:$$need $$hint."; \
	  fi; \
	fi

system:
	@need=""; $(NEED_DOT); hint="$(DOT_HINT)"; $(APT_INSTALL)

system-test:
	@need=""; $(NEED_DOT); $(if $(filter 1,$(SKIP_BROWSER)),,$(NEED_CHROMIUM);) \
	hint="$(DOT_HINT)$(if $(filter 1,$(SKIP_BROWSER)),,$(CHROMIUM_HINT))"; $(APT_INSTALL)

demo: $(STAMP) system
	$(PY) -m codomyrmex_nb.demo

test: $(STAMP) system-test
	$(PY) -m ruff check codomyrmex_nb tests benchmarks
	$(PY) -m pytest -q $(if $(filter 1,$(SKIP_BROWSER)),-m "not browser")

# The tour, served from notebooks/ (their working folder). Open the printed
# http://127.0.0.1:PORT/lab/tree/01_quickstart.ipynb?token=... URL; Ctrl-C twice stops it.
# LAB_PORT picks the port (the next free one if taken); root needs --allow-root.
LAB_PORT ?= 8888
lab: $(STAMP) system
	@echo "JupyterLab is starting on the tour: open the URL with the token below."
	cd notebooks && ../$(VENV)/bin/jupyter lab --no-browser --ServerApp.open_browser=False \
	  --ip=127.0.0.1 --port=$(LAB_PORT) $$([ "$$(id -u)" = 0 ] && echo --allow-root) \
	  --LabApp.default_url=/lab/tree/01_quickstart.ipynb

# The benchmark suite (benchmarks/README.md): results.json and the README's tables.
# BENCH_ARGS="--quick" for small sizes only, "--only overhead" for one part.
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info test-artifacts
