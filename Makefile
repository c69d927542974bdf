# The two set-up commands: `make demo` (the main job) and `make test`.
# Each installs what it needs (Debian packages, a pinned .venv) by itself.
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATA ?= /var/lib/mailha-demo

.PHONY: bootstrap demo demo-down demo-standalone test lint typecheck unit proto bench chaos clean

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
	$(BIN)/mailha standalone --data $(DEMO_DATA) --demo-user

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

test: bootstrap lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: bootstrap
	$(BIN)/mailha bench store

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
