# The two commands of the README bootstrap their own virtual environment.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test up lint typecheck unit eval bench clean
EVAL_STAMP := $(VENV)/.installed-eval

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aiops demo

up: $(STAMP)
	$(BIN)/aiops up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The official MCP conformance suite (pinned in tests/conformance/package.json), run by the tests.
CONFORMANCE := tests/conformance/node_modules/.installed
$(CONFORMANCE): tests/conformance/package.json tests/conformance/package-lock.json
	npm ci --prefix tests/conformance --no-audit --no-fund --loglevel=error
	touch $(CONFORMANCE)

unit: $(STAMP) $(CONFORMANCE)
	$(BIN)/python -m pytest -q -n 2

test: lint typecheck unit

$(EVAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,eval]"
	touch $(EVAL_STAMP)

# Scored scenarios and the fleet goodput study (writes evals/out/); never part of `make test`.
eval: $(EVAL_STAMP)
	$(BIN)/python -m evals.scenarios.report
	$(BIN)/python -m evals.goodput.study

# The performance suite (writes evals/out/); never part of `make test`.
bench: $(STAMP)
	$(BIN)/python -m evals.benchmarks.kmsg_path
	$(BIN)/python -m evals.benchmarks.first_action
	$(BIN)/python -m evals.benchmarks.claude_planner
	$(BIN)/python -m evals.benchmarks.mcp_latency
	$(BIN)/python -m evals.benchmarks.agent_throughput
	$(BIN)/python -m evals.benchmarks.twin_speed
	$(BIN)/python -m evals.benchmarks.exposition_parser
	$(BIN)/python -m evals.benchmarks.numerics_margin
	$(BIN)/python -m evals.benchmarks.node_agent
	$(BIN)/python -m evals.benchmarks.dcgm_fleet
	$(BIN)/python -m evals.benchmarks.replicas
	$(BIN)/python -m evals.benchmarks.report

clean:
	rm -rf $(VENV) .aiops .pytest_cache .mypy_cache .ruff_cache
