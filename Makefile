# The two commands of the README: `make demo` and `make test`.
# Each creates the project's virtualenv (.venv) and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: browser demo test lint typecheck check install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	# bytecode, as a wheel install writes it (an editable install does not): every process
	# starts faster, most of all where PYTHONDONTWRITEBYTECODE is set
	$(BIN)/python -m compileall -q pgjobs > /dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jobctl demo

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck
	$(BIN)/jobctl db check

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,embedded,bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	-$(BIN)/jobctl dev down
	rm -rf $(VENV) .dev

# The dashboard's browser tests need Chromium and its driver: installed when missing and we are
# root on a Debian-like system; otherwise those tests skip (or fail with PGJOBS_REQUIRE_BROWSER=1).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "no chromium/chromedriver: the browser tests will skip"; fi; fi
