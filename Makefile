# One command each: `make demo` runs the whole pipeline locally, `make test` installs and runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install test lint unit integration demo kafka-start kafka-stop clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "==> installing pushstream and its dev tools into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

install: $(VENV)/.installed

# Installs the system packages the tests need (scripts/install-test-deps: Prometheus, Chromium), starts local
# Kafka if it is not running, runs lint and the whole suite, stops Kafka if it started it.
test: install
	scripts/install-test-deps
	VENV=$(VENV) scripts/run-tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy pushstream tests benchmarks

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	scripts/install-test-deps
	VENV=$(VENV) scripts/run-tests tests/integration

demo: install
	VENV=$(VENV) scripts/demo $(ARGS)

kafka-start:
	scripts/kafka/ctl start

kafka-stop:
	scripts/kafka/ctl stop

clean:
	rm -rf $(VENV) var demo-run
