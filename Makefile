# perstack-sandbox — see README.md.
CARGO ?= cargo
RUSTC ?= rustc
TARGET := x86_64-unknown-linux-gnu
BIN := target/$(TARGET)/release/perstack-sandbox
DEMO_WORKSPACE ?= demo-workspace

.PHONY: build test test-images test-registry demo lint fmt doctor bench clean-docker

## build: the static release binaries in target/x86_64-unknown-linux-gnu/release/: the controller,
## perstack-sandbox, and perstack-sandbox-roles beside it, which the images carry
build:
	$(CARGO) build --release --locked

## test: unit, doc, snapshot and Docker end-to-end tests against the local engine, after
## bringing up what they need: the test images and the test registry (each skipped when it is
## there already). On a fresh machine the images need root once (debootstrap): as root, with
## passwordless sudo, or after `sudo make test-images`. A missing package is named with its
## apt-get line.
test: test-images test-registry
	$(CARGO) test --locked

## test-images: the local Debian images perstack-sandbox/bookworm:local and
## perstack-sandbox/bookworm-node:local (debootstrap + docker import, no registry; skipped when
## up to date, else root or passwordless sudo). Base-skill's workspace image and the Python and
## Node skill bases in the tests; bases with a shell and python3 (+ node and npm) for your own
## [sandbox] settings.
test-images:
	scripts/build-bookworm-image.sh

## test-registry: a registry on 127.0.0.1:5000 for the versioned-image tests (Debian's
## docker-registry, no auth, storage in /tmp; skipped when one answers already)
test-registry:
	scripts/start-test-registry.sh

## demo: run the demo Expert (mock provider: no API key, no network) in ./demo-workspace
demo: build
	@mkdir -p $(DEMO_WORKSPACE)
	DEMO_TOKEN=demo-token-visible-only-to-the-inspector-skill \
		$(BIN) run --config examples/demo/perstack.toml --workspace $(DEMO_WORKSPACE) \
		demo "Show me what runs where, and leave a note in the workspace."
	@printf '\n--- %s/hello.md ---\n' "$(DEMO_WORKSPACE)"; cat $(DEMO_WORKSPACE)/hello.md

## lint: formatting and clippy, warnings are errors; no import cycle between top-level modules
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	# The executables without the Kubernetes backend (`kubernetes` feature off) must build clean too.
	$(CARGO) clippy --locked --no-default-features --bins -- -D warnings
	# No import cycle between src/'s top-level modules (ARCHITECTURE.md, "Layers"). The check
	# uses std alone, so rustc builds it in seconds without the crate; `cargo test` runs it too.
	mkdir -p target
	CARGO_MANIFEST_DIR=$(CURDIR) $(RUSTC) --edition 2024 --test src/tests/layering.rs -o target/layering-check
	target/layering-check --quiet

fmt:
	$(CARGO) fmt

## doctor: check the Docker engine and the images a run needs
doctor: build
	$(BIN) doctor --config examples/demo/perstack.toml

## bench: warm and cold start, teardown and image sizes of a two-skill Expert, against the same
## containers started with the docker CLI; writes BENCHMARKS.md (BENCH_RUNS, BENCH_COLD_RUNS).
## It measures copies of `make build`'s executables in target/bench/. `cargo bench` builds both
## executables again with the test-support feature (the tests' dev-dependency on this package)
## and puts them where `make build`'s were, and a `cargo build --release` that finds itself fresh
## leaves them there: so they are removed and the release ones put back, before and after.
BENCH_RUNS ?= 10
BENCH_COLD_RUNS ?= 3
ROLES := $(dir $(BIN))perstack-sandbox-roles
bench:
	$(CARGO) bench --locked --bench startup --no-run
	rm -f $(BIN) $(ROLES)
	$(CARGO) build --release --locked
	mkdir -p target/bench && cp $(BIN) $(ROLES) target/bench/
	$(CARGO) bench --locked --bench startup -- --binary target/bench/perstack-sandbox \
		--out BENCHMARKS.md --runs $(BENCH_RUNS) --cold-runs $(BENCH_COLD_RUNS); \
	status=$$?; rm -f $(BIN) $(ROLES); $(CARGO) build --release --locked && exit $$status

## clean-docker: remove every container, network, volume and image perstack-sandbox made (also
## those of runs still going, on this machine or any other sharing the engine; `perstack-sandbox
## gc` removes only what dead controllers left)
MANAGED := label=io.perstack.sandbox.managed=true
clean-docker:
	-docker ps -aq --filter $(MANAGED) | xargs -r docker rm -f -v
	-docker network ls -q --filter $(MANAGED) | xargs -r docker network rm
	-docker volume ls -q --filter $(MANAGED) | xargs -r docker volume rm -f
	-docker images -q --filter $(MANAGED) | sort -u | xargs -r docker rmi -f
