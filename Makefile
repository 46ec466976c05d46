# librechat-operator: `make demo` shows it working, `make test` proves it.
.PHONY: demo test bench build crds lint chart-check env-up env-down setup image clean plugin

# The local servers live in $LCO_ENV_DIR (default /tmp/librechat-operator-env); ports can be
# moved with LCO_MONGO_PORT, LCO_REDIS_PORT, ENVTEST_API_PORT, ENVTEST_ETCD_PORT.

## demo: start local servers, install the CRDs, apply examples/, run the operator, show the result
demo:
	bash hack/demo.sh

## test: the whole suite (lint, contract self-test, unit, end-to-end) against real servers
test:
	bash hack/test.sh

## bench: the figures of issue 13 (N=10000 accounts by default: `make bench N=1000`) on servers
## of its own; writes bench/results/latest.{json,md} and cold-start.svg, asserts nothing
N ?= 10000
bench:
	BENCH_N=$(N) bash hack/bench.sh

## build: compile the operator
build:
	cargo build --release

## plugin: build the release binary and install it as the kubectl plugin `kubectl librechat`:
##         $(PREFIX)/bin/librechat-operator plus the symlink kubectl-librechat (PREFIX default ~/.local)
PREFIX ?= $(HOME)/.local
PLUGIN_TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
plugin:
	cargo build --release
	mkdir -p "$(PREFIX)/bin"
	install -m 0755 "$(PLUGIN_TARGET_DIR)/release/librechat-operator" "$(PREFIX)/bin/librechat-operator"
	ln -sfn librechat-operator "$(PREFIX)/bin/kubectl-librechat"
	@echo "installed $(PREFIX)/bin/kubectl-librechat; with $(PREFIX)/bin on PATH, run: kubectl librechat --help"

## crds: regenerate crds/ from the Rust types (and the chart's copy, files/crds/, which its
## templates/crds.yaml renders so that helm upgrade upgrades the CRDs)
crds:
	cargo run --quiet -- crds --output-dir crds
	rm -f charts/librechat-operator/files/crds/*.yaml
	cp crds/*.yaml charts/librechat-operator/files/crds/

## chart-check: helm lint/template, values schema, and the rendered chart applied to $KUBECONFIG
chart-check:
	bash hack/chart-check.sh

## lint: formatting and clippy with warnings as errors
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## setup: install test servers, Node.js and the contract checks' packages (idempotent)
setup:
	bash hack/setup.sh

## env-up: start kube-apiserver, SecantusDB and Redis on 127.0.0.1; writes $LCO_ENV_DIR/env
env-up:
	bash tests/env/up.sh

## env-down: stop what env-up started
env-down:
	bash tests/env/down.sh

## image: build the container image locally with buildah (static binary FROM scratch) and start it
image:
	bash hack/image.sh

clean:
	cargo clean
