# One entry point for people and CI. Each target installs what it needs.
SHELL := /bin/bash
# The interpreters the suite runs on; `make test PYTHONS=3.12` picks one. The first one
# also runs lint, typecheck, demo, run and bench.
PYTHONS ?= 3.11 3.12 3.13
PYVER ?= $(firstword $(PYTHONS))
VENV ?= .venv-$(PYVER)
PY := $(VENV)/bin/python
# pythonX.Y: pyenv's build when pyenv has one, else the one on PATH (a pyenv shim that
# cannot run it is skipped quietly)
python_for = $(shell for p in "$$(pyenv prefix $(1) 2>/dev/null)/bin/python$(1)" python$(1); do \
	"$$p" -c '' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

.PHONY: install redis-server test test-one test-redis-py lint typecheck demo run bench bench-staleness dashboard clean

# editable_mode=compat: a path entry, which mypy and IDEs follow, rather than setuptools'
# import hook, which they cannot see (mypy then types `supervisor` as Any)
EDITABLE := --config-settings editable_mode=compat

.venv-%/.installed: pyproject.toml Makefile
	@p="$(call python_for,$*)"; test -n "$$p" || { \
		echo "python$* is not installed: install it (pyenv install $*) or choose others," \
		"e.g. make test PYTHONS=$(firstword $(PYTHONS))"; exit 1; }; \
	"$$p" -m venv .venv-$* && \
	.venv-$*/bin/python -m pip install --quiet --upgrade pip && \
	.venv-$*/bin/python -m pip install --quiet -e '.[test]' $(EDITABLE)
	touch $@

install: $(VENV)/.installed

# The runtime alone, for `make run`: no test or lint tool.
RUN_VENV := .venv-run
$(RUN_VENV)/.installed: pyproject.toml Makefile
	@p="$(call python_for,$(PYVER))"; test -n "$$p" || { echo "python$(PYVER) is not installed"; exit 1; }; \
	"$$p" -m venv $(RUN_VENV) && \
	$(RUN_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	$(RUN_VENV)/bin/python -m pip install --quiet -e . $(EDITABLE)
	touch $@

# redis-server from Debian's packages when it is missing (tests start their own servers).
redis-server:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

lint: install
	$(VENV)/bin/ruff check supervisor tests bench examples config
	$(VENV)/bin/ruff format --check supervisor tests bench examples config

typecheck: install
	$(VENV)/bin/mypy supervisor

# The first Python's run prints as it goes; the others run side by side (the suite mostly
# waits on servers, so two runs share 2 cores well) and print when they are done.
# redis-py's own asyncio suite runs beside them, once, on the first Python.
OTHERS := $(wordlist 2,$(words $(PYTHONS)),$(PYTHONS))
test: install redis-server lint typecheck
	@$(MAKE) --no-print-directory test-one PYVER=$(PYVER)
	@for v in $(OTHERS); do $(MAKE) --no-print-directory .venv-$$v/.installed || exit 1; done
	@jobs="$(OTHERS) redis-py"; for v in $(OTHERS); do \
		$(MAKE) --no-print-directory test-one PYVER=$$v > .test-$$v.log 2>&1 & \
	done; $(MAKE) --no-print-directory test-redis-py > .test-redis-py.log 2>&1 & \
	failed=0; for v in $$jobs; do wait -n || failed=1; done; \
	for v in $$jobs; do cat .test-$$v.log; rm -f .test-$$v.log; done; exit $$failed

# redis-py's asyncio test suite (pinned, fetched from PyPI once into .cache/) on plain
# redis-py and on sup.client: fails when a test passes on the one and not on the other
test-redis-py: install redis-server
	@echo "== redis-py's asyncio suite: plain redis-py vs sup.client (Python $(PYVER))"
	@timeout -k 10 $(PYTEST_BOUND) $(PY) tests/redis_py/run.py

# pytest-timeout fails a hung test after 90 s; this bounds the whole run even if a hang
# swallowed that signal
PYTEST_BOUND ?= 900
test-one: install
	@echo "== pytest on Python $(PYVER)"
	@timeout -k 10 $(PYTEST_BOUND) $(PY) -m pytest; rc=$$?; \
	if [ $$rc = 124 ] || [ $$rc = 137 ]; then \
		echo "pytest on Python $(PYVER) ran past $(PYTEST_BOUND) s and was stopped"; fi; exit $$rc

# First look: a throwaway redis-server, the seed's faults one by one, a summary table.
demo: install redis-server
	$(PY) -m supervisor demo

# The main job: supervise the targets of $(CONFIG) (redis://127.0.0.1:6379/0), /health and
# /metrics on 127.0.0.1:9121, every event one log line. Ctrl-C or SIGTERM stops it.
CONFIG ?= config/service.toml
run: $(RUN_VENV)/.installed
	$(RUN_VENV)/bin/python -m supervisor run --config $(CONFIG)

bench: install redis-server
	$(PY) bench/hot_path.py
	$(PY) bench/recovery.py
	$(PY) bench/pressure.py
	$(PY) bench/scale.py
	$(PY) bench/cache.py
	$(PY) bench/cluster_pubsub.py

# the staleness torture on client_cache and on redis-py's own cache (fetches Redis 7.4 once)
bench-staleness: install
	$(PY) bench/staleness.py

# config/grafana/supervisor.json from its builder (a test keeps them in sync)
dashboard: install
	$(PY) config/grafana/dashboard.py

clean:
	rm -rf .venv .venv-* .mypy_cache .ruff_cache .pytest_cache *.egg-info
