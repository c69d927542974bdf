# The two set-up commands: `make demo` (the main job) and `make test`.
# Each installs what it needs (Debian packages, a pinned .venv) by itself.
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATA ?= /var/lib/mailha-demo

.PHONY: bootstrap demo demo-down demo-standalone test lint imports typecheck unit proto bench chaos clean

bootstrap:
	@./scripts/bootstrap.sh

proto: bootstrap
	$(BIN)/python scripts/genproto.py

# The demo cluster: two nodes in network namespaces, ZooKeeper, one agent
# per node (needs root); `make demo-down` removes all of it again.
demo: bootstrap
	$(BIN)/mailha cluster up --config cluster.yaml

demo-down: bootstrap
	$(BIN)/mailha cluster down --config cluster.yaml

demo-standalone: bootstrap
	$(BIN)/mailha standalone --data $(DEMO_DATA) --demo-user \
		--imapd-metrics-listen 127.0.0.1:9111 --lmtpd-metrics-listen 127.0.0.1:9112

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layer and no-cycle contracts in pyproject.toml ([tool.importlinter]).
imports: bootstrap
	$(BIN)/lint-imports

typecheck: bootstrap
	$(BIN)/mypy

test: bootstrap lint imports typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: bootstrap
	$(BIN)/mailha bench store

# Every chaos scenario against the demo cluster (needs root; about 20-30 min).
# Brings the cluster up, writes the report to bench-results/chaos.json and
# takes the cluster down again at the end, whatever happened.
CHAOS_SECONDS ?= 75
chaos: bootstrap
	@mkdir -p bench-results
	$(BIN)/mailha cluster up --config cluster.yaml
	$(BIN)/mailha chaos run --config cluster.yaml --scenario all --seconds $(CHAOS_SECONDS) --min-faults 100 \
	  --out bench-results/chaos.json; status=$$?; \
	  $(BIN)/mailha cluster down --config cluster.yaml; exit $$status

clean:
	-[ -x $(BIN)/python ] && $(BIN)/python scripts/build_compiled.py --clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .import_linter_cache build
