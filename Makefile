# One entry point for people and CI. Each target installs what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)

.PHONY: install redis-server test lint typecheck demo run bench clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# redis-server from Debian's packages when it is missing (tests start their own servers).
redis-server:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

lint: install
	$(VENV)/bin/ruff check supervisor tests bench examples
	$(VENV)/bin/ruff format --check supervisor tests bench examples

typecheck: install
	$(VENV)/bin/mypy supervisor

test: install redis-server lint typecheck
	$(PY) -m pytest

# First look: a throwaway redis-server, the seed's faults one by one, a summary table.
demo: install redis-server
	$(PY) -m supervisor demo

# The main job: supervise the targets of $(CONFIG) (redis://127.0.0.1:6379/0), /health and
# /metrics on 127.0.0.1:9121, every event one log line. Ctrl-C or SIGTERM stops it.
CONFIG ?= config/service.toml
run: install
	$(PY) -m supervisor run --config $(CONFIG)

bench: install redis-server
	$(PY) bench/hot_path.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
