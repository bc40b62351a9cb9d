# icefloe: every target sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-postgres test-fast balancer lint bench clean airflow browser

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# Iceberg's Spark runtime and JDBC drivers from Maven Central (Spark's native path).
	$(BIN)/python -m icefloe.compute.jars
	@touch $(STAMP)

airflow:
	bash airflow-provider/install-airflow.sh .venv-airflow

demo: install airflow
	@# As root, demo jobs run as 'nobody': let it reach this Python (prints what it changes).
	@$(BIN)/python -c 'from icefloe.home import let_jobs_reach_python as f; \
		[print("made traversable for the job user:", c) for c in f()]'
	$(BIN)/icefloe demo

# The web UI's browser tests drive Debian's Chromium (Playwright cannot download one here).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ) && \
		{ $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }; }; } || \
		{ echo "the browser tests need Chromium: install Debian's 'chromium' package"; exit 1; }

# The multi-node test puts Debian's HAProxy in front of three control planes.
balancer:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || { command -v apt-get >/dev/null && \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ) && \
		{ $$SUDO apt-get install -y -qq haproxy >/dev/null 2>&1 || \
		  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq haproxy >/dev/null; }; }; } || \
		{ echo "the multi-node test needs HAProxy: install Debian's 'haproxy' package"; exit 1; }

# Two processes, each module whole in one of them (see tests/conftest.py).
test: install browser balancer
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The API, jobs and serving suites again with every store in PostgreSQL (one database per
# home): needs ICEFLOE_TEST_POSTGRES_URL (.ci/postgres starts a throwaway server).
PG_SUITES = tests/integration/test_control_plane.py tests/integration/test_cde.py \
	tests/integration/test_serving.py
test-postgres: install
	@test -n "$$ICEFLOE_TEST_POSTGRES_URL" || { echo "set ICEFLOE_TEST_POSTGRES_URL (bash .ci/postgres prints one)"; exit 1; }
	ICEFLOE_TEST_STORES=postgres $(BIN)/python -m pytest -n 2 --dist loadfile $(PG_SUITES)

test-fast: install
	$(BIN)/python -m pytest -m "not e2e"

lint: install
	$(BIN)/ruff check src tests bench airflow-provider
	$(BIN)/mypy src
	@# The provider alone (Airflow is not installed here: its imports are not followed).
	cd airflow-provider && ../$(BIN)/mypy --ignore-missing-imports icefloe_provider

bench: install
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y wrk >/dev/null; } || \
		{ echo "bench/serving.py needs wrk: install the 'wrk' package"; exit 1; }
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/lakehouse.py --spark
	$(BIN)/python bench/training.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/monitoring.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/spark_native.py

clean:
	rm -rf $(VENV) .venv-airflow .icefloe .pytest_cache .mypy_cache .ruff_cache
