# drillkit: `make drill` (the quarterly suite + report + evidence pack), `make test` (the harness's
# own tests). Both do all set-up themselves: Python venv, host tools, Docker engine, images.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
DRILL_ARGS ?=
TEST_ARGS ?=
TEST_JOBS ?= 2
# Drills side by side on the one engine (xdist workers; a drill tagged `solo` holds it alone).
# DRILL_JOBS=1 runs them one after the other.
DRILL_JOBS ?= 2
DRILL_XDIST := $(if $(filter-out 0 1,$(DRILL_JOBS)),-n $(DRILL_JOBS) --dist load)

.PHONY: all drill nightly test unit integration report clean bench bench-suites bench-engines lint venv engine images help toxiproxy-official

help:
	@echo "make drill    run every drill (quarterly suite), then the report and the evidence pack"
	@echo "make nightly  run the fast nightly subset"
	@echo "make test     run drillkit's own tests (unit + integration)"
	@echo "make report   build the offline Allure HTML report from the last results"
	@echo "make bench    run the benchmarks (results in reports/bench/)"
	@echo "make bench-suites  time the nightly-12 and quarterly-22 drill sets beside their floors"
	@echo "make clean    remove what runs whose harness is gone left behind (containers, networks, volumes, mounts)"

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

engine:
	@bash scripts/setup-host.sh

images: venv engine
	@$(PY) -m drillkit.cli build

drill: images
	@$(PY) -m drillkit.cli session-start > .run-session 2>/dev/null || true
	DRILLKIT_SESSION=$$(cat .run-session) $(PYTEST) drills -m quarterly -v -p no:randomly $(DRILL_XDIST) \
	    --alluredir=reports/allure-results $(DRILL_ARGS); status=$$?; \
	DRILLKIT_SESSION=$$(cat .run-session) $(PY) -m drillkit.cli finish; finished=$$?; \
	if [ $$finished -eq 6 ]; then exit 6; fi; exit $$status

nightly: images
	@$(PY) -m drillkit.cli session-start > .run-session 2>/dev/null || true
	DRILLKIT_SESSION=$$(cat .run-session) $(PYTEST) drills -m nightly -v $(DRILL_XDIST) \
	    --alluredir=reports/allure-results $(DRILL_ARGS); status=$$?; \
	DRILLKIT_SESSION=$$(cat .run-session) $(PY) -m drillkit.cli finish; finished=$$?; \
	if [ $$finished -eq 6 ]; then exit 6; fi; exit $$status

test: images
	$(PYTEST) tests -v -n $(TEST_JOBS) --dist loadscope --durations=30 $(TEST_ARGS)

unit: venv
	$(PYTEST) tests/unit -q

lint: venv
	$(VENV)/bin/ruff check drillkit drills tests bench images
	$(VENV)/bin/ruff format --check drillkit drills tests bench images

report: venv
	@$(PY) -m drillkit.cli report

bench: images
	$(PY) -m bench.run

# Issue 20's drill sets (12 nightly, 22 quarterly, as filed) timed as pytest on 2 workers, each
# beside its floor from its own records: reports/bench/suites.{json,md}.
bench-suites: images
	$(PY) -m bench.suites --repeat 3 --sets nightly-12,quarterly-22

# The nightly set on one engine and on three (two extra local dockerd processes): the cost of
# distributing on this machine. BENCH_ENGINES_ARGS=--drills a,b,c for a subset.
bench-engines: images
	$(PY) -m bench.engines $(BENCH_ENGINES_ARGS)

clean: venv
	@$(PY) -m drillkit.cli clean

# The Toxiproxy compatibility suite against the official image, where a registry serves it
# (it cannot here: no registry answers). Host networking so its proxies listen on 127.0.0.1.
TOXIPROXY_IMAGE ?= ghcr.io/shopify/toxiproxy:2.9.0
toxiproxy-official: venv engine
	docker run -d --rm --name drillkit-toxiproxy-official --label io.drillkit=true --network host \
	    $(TOXIPROXY_IMAGE) -host 127.0.0.1 -port 18474
	TOXIPROXY_EXTERNAL=127.0.0.1:18474 $(PYTEST) tests/unit/test_toxiproxy_compat.py -v; \
	    status=$$?; docker rm -f drillkit-toxiproxy-official >/dev/null; exit $$status
