# pgflow: `make demo` and `make test` each do all their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/.pgflow
export PGFLOW_LOCALDB_DIR := $(STATE)/localdb
export DAGSTER_HOME := $(STATE)/dagster_home
export PGFLOW_CONFIG ?= $(CURDIR)/pipelines
LOCAL_ENV = eval "$$($(BIN)/pgflow localdb env)"
# polars and deltalake each bundle jemalloc, which keeps freed pages resident for a while: give
# them back sooner (README "Memory"). Every make run (demo, dev, test, bench) has it; a value
# set by the user wins. pgflow_tests/conftest.py and bench/ read it from here (runs without make).
export _RJEM_MALLOC_CONF ?= dirty_decay_ms:200,muzzy_decay_ms:0

.PHONY: help install postgres-check localdb demo dev test test-faults lint typecheck format bench stop clean

help:
	@echo "make demo   - install, start a local Postgres, seed the shop, materialize every asset"
	@echo "make dev    - the Dagster UI (http://127.0.0.1:3000) on the same local set-up"
	@echo "make test   - the test suite (starts its own throwaway clusters)"
	@echo "make test-faults - the slow part of the reliability suite (kills at every point of a load)"
	@echo "make bench  - the benchmark suite (bench/README.md)"
	@echo "make lint   - ruff and mypy --strict"
	@echo "make stop   - stop the local Postgres;  make clean - remove it, .venv and .pgflow"

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The bytecode pip writes for installed packages but not for an editable one (each run
	@# would otherwise compile pgflow again where PYTHONDONTWRITEBYTECODE is set).
	$(BIN)/python -m compileall -q pgflow
	touch $@

install: $(BIN)/.installed postgres-check

postgres-check:
	@if [ -z "$$PGFLOW_PG_BINDIR" ] && ! { command -v pg_config >/dev/null && [ -x "$$(pg_config --bindir)/initdb" ]; } \
	    && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found."; \
	  echo "Install them with:  sudo apt-get install -y postgresql-15   (Debian/Ubuntu)"; \
	  echo "or point PGFLOW_PG_BINDIR at their folder."; exit 1; fi

# The Postgres instance (instance/dagster.yaml) for make demo and make dev. Not at the root:
# there Dagster and dg read it whenever DAGSTER_HOME is unset, and it needs DAGSTER_PG_*.
$(DAGSTER_HOME)/dagster.yaml: instance/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/instance/dagster.yaml $@

localdb: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/pgflow localdb start --database shop --database warehouse --database dagster

# `dg launch --assets` (Dagster's front door) runs the selection in this process,
# as `dagster asset materialize`, which it supersedes, did.
demo: localdb
	@# A second make demo keeps the shop and goes on incrementally (re-created tables would
	@# stop the demo's CDC slot, as they would in production).
	$(BIN)/pgflow localdb seed --customers 2000 --keep-existing
	$(LOCAL_ENV) && $(BIN)/dg launch -f pipelines/definitions.py --assets \
	  'landing/customers,landing/orders,landing/order_items,landing/payments,landing/customer_contacts,delta/orders,reports/daily_revenue'
	@# Some orders change; the slot streams them into the Delta table, one commit per batch.
	$(BIN)/pgflow localdb activity
	$(LOCAL_ENV) && $(BIN)/dg launch -f pipelines/definitions.py --assets 'delta/orders,reports/daily_revenue'
	@# The schema-wide catalog spec's assets (`group:catalog` selects them too, with a BetaWarning).
	$(LOCAL_ENV) && $(BIN)/dg launch -m pgflow.definitions --assets 'key:"landing_catalog/*"'
	$(LOCAL_ENV) && $(BIN)/dg launch -m pgflow.definitions \
	  --assets landing/orders_monthly --partition-range 2024-01-01...2024-12-01
	$(LOCAL_ENV) && $(BIN)/pgflow report
	@echo "Browse it in the Dagster UI: make dev   |   query it: eval \"\$$($(BIN)/pgflow localdb env)\" && psql \"\$$PGFLOW_CONN_WAREHOUSE\""

dev: localdb
	$(LOCAL_ENV) && $(BIN)/dg dev -f pipelines/definitions.py -h 127.0.0.1 -p 3000

test: install
	$(BIN)/pytest -n 2 --durations=15 -m "not faults"

# The slow half of the suite (README "Guarantees": kill sweeps, restarts, concurrent runs, the
# Delta maintenance kills, a 100k-change CDC batch into Delta); CI runs it after make test.
test-faults: install
	$(BIN)/pytest -n 2 --durations=15 -m faults pgflow_tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# mypy --strict over pgflow/ ([tool.mypy] in pyproject.toml); part of lint.
typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# The suite (bench/README.md): one dataset, every tool side by side. BENCH_ROWS, BENCH_REPEAT,
# BENCH_SCENARIOS, BENCH_TOOLS, BENCH_CDC_CHANGES, BENCH_SERVER_SETTINGS size it. Deeper benches:
# python -m bench.cdc | .merge | .delta_sync. Then the schema-wide bench (BENCH_SCENARIOS `schema`)
# and CDC into Delta (`cdc_delta`), then pgflow against dagster-sling and dagster-dlt, each a
# whole Dagster process (`in_dagster`).
bench: install $(BIN)/.bench-installed
	$(BIN)/python -m bench.suite
	$(BIN)/python -m bench.schema_wide --if-asked
	$(BIN)/python -m bench.cdc_delta --if-asked
	$(BIN)/python -m bench.in_dagster --if-asked

stop:
	-$(BIN)/pgflow localdb stop

# destroy also removes the server's stand-in folder under /var/tmp (README "Local Postgres").
clean:
	-$(BIN)/pgflow localdb destroy
	rm -rf $(VENV) $(STATE) *.egg-info
