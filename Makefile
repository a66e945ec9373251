# The two commands: `make dev` serves the portal with demo data; `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
DAAS := target/debug/daas
# The private PostgreSQL of the tests, apart from the development one in .daas/.
TEST_DEV_DIR := .daas/test
# The fault drills' own PostgreSQL (drills stop it and fill disks: never the tests' or yours).
DRILLS_DEV_DIR := .daas/drills

.PHONY: dev test e2e deps build lint fmt stop help bench bench-launch bench-restart bench-db bench-proxies bench-recon bench-slurm bench-studio drills

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

deps: ## install what is missing (Debian packages, tools); idempotent
	@scripts/install-deps.sh

build: deps ## build the daas binary
	$(CARGO) build --bin daas

dev: build ## serve the portal with demo data at http://localhost:8080
	$(DAAS) dev

test: build ## run every test against a private PostgreSQL (or $$DATABASE_URL)
	@set -euo pipefail; \
	if [ -z "$${DATABASE_URL:-}" ]; then export DATABASE_URL="$$($(DAAS) --dev-dir $(TEST_DEV_DIR) dev-db)"; fi; \
	status=0; $(CARGO) nextest run --workspace --no-fail-fast || status=$$?; \
	(cd tests/e2e && npm test) || status=$$?; \
	.daas/venv/bin/python -m pytest -q tools/recon || status=$$?; \
	.daas/venv/bin/python -m pytest -q tools/jupyter || status=$$?; \
	if [ -n "$${CI:-}" ]; then $(DAAS) --dev-dir $(TEST_DEV_DIR) dev-db --stop || true; fi; \
	exit $$status

e2e: build ## only the browser end-to-end tests (screenshots in target/screenshots/)
	cd tests/e2e && npm test

bench: bench-launch bench-restart bench-db bench-proxies bench-recon bench-slurm bench-studio ## run every benchmark

# The control-plane benchmarks run `daas serve` from a release build, as a facility would.
BENCH_API = @set -euo pipefail; \
	if [ -z "$${DATABASE_URL:-}" ]; then export DATABASE_URL="$$($(DAAS) --dev-dir $(TEST_DEV_DIR) dev-db)"; fi; \
	$(CARGO) build --quiet --release --bin daas && $(CARGO) run --quiet --release --example bench_launch --

bench-launch: build ## launches vs JupyterHub 5 (real processes, then control planes alone): launches/s at BENCH_SESSIONS at once (100,500), one launch p50/p99, list p99, CPU per launch
	$(BENCH_API) launch

bench-restart: build ## daas restarted with BENCH_SESSIONS (1000) sessions running: s until ready and until all answer through the proxy
	$(BENCH_API) restart

bench-db: build ## the API on a facility's worth of rows (100,000 proposals, 1,000,000 sessions): p50/p99 per route at BENCH_RATE (1000) requests/s
	$(BENCH_API) db

bench-proxies: build ## desktop relay vs websockify, notebook proxy vs configurable-http-proxy, vs direct (release build)
	@set -euo pipefail; \
	if [ -z "$${DATABASE_URL:-}" ]; then export DATABASE_URL="$$($(DAAS) --dev-dir $(TEST_DEV_DIR) dev-db)"; fi; \
	$(CARGO) run --quiet --release --example bench_proxies

bench-slurm: build ## Slurm runtime: launches/s vs bare sbatch, controller RPCs per pass vs batchspawner's poll (N=$$BENCH_SESSIONS, default 100)
	$(CARGO) run --quiet --example bench_slurm

bench-studio: deps ## reconstruction studio: ms from slider change to slice drawn in chromium (tooth; 2048 px x 1500 angles), p50/p95
	.daas/venv/bin/python tools/recon/bench_studio.py

bench-recon: deps ## reconstruction: s per 2048-px slice vs scikit-image iradon, peak memory of a volume 4x its limit
	.daas/venv/bin/python tools/recon/bench.py

drills: build ## run the fault drills (long; not in make test)
	@set -uo pipefail; \
	trap '$(DAAS) --dev-dir $(DRILLS_DEV_DIR) dev-db --stop' EXIT; \
	DATABASE_URL="$$($(DAAS) --dev-dir $(DRILLS_DEV_DIR) dev-db)" || exit 1; export DATABASE_URL; \
	.daas/venv/bin/python tools/drills/drills.py --dev-dir $(DRILLS_DEV_DIR) $(DRILLS_ARGS)

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

stop: build ## stop the private PostgreSQL clusters
	$(DAAS) dev-db --stop
	$(DAAS) --dev-dir $(TEST_DEV_DIR) dev-db --stop
