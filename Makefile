# dhctl: build, test, lint. Tools are built from pinned Go modules into a cache outside the
# checkout, so a second run is quick.
SHELL := /bin/bash
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/dhctl-dev
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, not the clock's: the same commit builds the same binaries.
DATE ?= $(shell git show -s --format=%cI HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
# An execution count, not a duration: with a duration, Go 1.26's fuzz coordinator can end a
# clean run with a spurious "context deadline exceeded" under load (golang/go#75804).
FUZZTIME ?= 10000x

.PHONY: all build release image test fuzz deps artifacts lint clean demo demo-down

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/dhctl ./cmd/dhctl

# Static binaries for every platform operators run dhctl on, stamped with version, commit and
# date, and their sha256 sums, in dist/.
release:
	@rm -rf dist && mkdir -p dist
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=dist/dhctl_$(VERSION)_$${os}_$${arch}; \
	  echo "release: $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/dhctl; \
	done
	cd dist && sha256sum dhctl_* > SHA256SUMS && cat SHA256SUMS

deps:
	@scripts/ensure-deps.sh

# Every binary and image a test cluster needs (Kubernetes, etcd, CoreDNS, CNI, flannel, pause,
# platform controller), the infrastructure engines (OpenTofu, Terraform) and the vSphere provider
# mirror, built from pinned Go modules and Debian packages into $(CACHE).
# Cold: ~50 min on 2 busy cores (the engines and provider ~15 of them); warm: about a second.
artifacts: deps
	$(GO) run ./e2e/cmd/rig artifacts

# Unit and integration tests (real sshd in namespaces, real etcd + kube-apiserver, nspawn machines
# and a registry: needs root), then a bounded fuzz run of the configuration loader.
# The installer image (dhctl, OpenTofu, the vSphere provider mirror, CA certificates, busybox; user
# 65532), built without a container engine from this machine's offline builds, as a bundle:
# dist/installer/platform.tar is an OCI layout tarball; `dhctl mirror push dist/installer <repo>`
# puts it in a registry. internal/installerimage/Dockerfile builds the same file system.
image: deps artifacts
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/dhctl_$(VERSION)_linux_amd64 ./cmd/dhctl
	$(GO) run ./e2e/cmd/rig image -dhctl dist/dhctl_$(VERSION)_linux_amd64 -version $(VERSION) -out dist/installer

test: deps artifacts
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/mirror

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-ed:"; echo "$$unformatted"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

clean:
	rm -rf bin

# The README's first command: rig machines (MASTERS x master + WORKERS x worker) and a registry
# with the offline artifacts, then `dhctl bootstrap` against them as a user runs it; prints
# `kubectl get nodes -o wide` and the kubeconfig path. The machines stay up until `make demo-down`.
# Needs root (network namespaces, systemd-nspawn). Log: $(DEMO_DIR)/demo.log.
MASTERS ?= 1
WORKERS ?= 1
DEMO_DIR ?= $(CACHE)/demo
DEMO_WAIT ?= 1800
demo: deps artifacts build
	@mkdir -p $(DEMO_DIR)
	@if [ -f $(DEMO_DIR)/demo.pid ] && kill -0 $$(cat $(DEMO_DIR)/demo.pid) 2>/dev/null; then \
	  echo "a demo is already running (pid $$(cat $(DEMO_DIR)/demo.pid)): make demo-down first" >&2; exit 2; fi
	@$(GO) build -o $(DEMO_DIR)/demo ./e2e/bootstrap/demo
	@: > $(DEMO_DIR)/demo.log
	@setsid $(DEMO_DIR)/demo -dir $(DEMO_DIR) -masters $(MASTERS) -workers $(WORKERS) >> $(DEMO_DIR)/demo.log 2>&1 < /dev/null & \
	  pid=$$!; tail -n +1 -f $(DEMO_DIR)/demo.log --pid=$$pid & tailpid=$$!; \
	  for i in $$(seq $(DEMO_WAIT)); do \
	    if grep -q '^DEMO READY' $(DEMO_DIR)/demo.log; then kill $$tailpid; exit 0; fi; \
	    if grep -q '^DEMO FAILED' $(DEMO_DIR)/demo.log || ! kill -0 $$pid 2>/dev/null; then sleep 1; kill $$tailpid 2>/dev/null; exit 1; fi; \
	    sleep 1; done; kill $$tailpid; echo "make demo: no result after $(DEMO_WAIT) s; see $(DEMO_DIR)/demo.log" >&2; exit 1

# Removes what `make demo` started: the demo process tears its rig down on SIGTERM (bounded
# wait), then `rig sweep` removes leftovers of a demo that was killed.
demo-down:
	@if [ -f $(DEMO_DIR)/demo.pid ]; then pid=$$(cat $(DEMO_DIR)/demo.pid); \
	  if kill -TERM $$pid 2>/dev/null; then echo "stopping the demo (pid $$pid)"; \
	    for i in $$(seq 120); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
	    if kill -0 $$pid 2>/dev/null; then echo "the demo did not stop in 120 s" >&2; exit 1; fi; fi; fi
	$(GO) run ./e2e/cmd/rig sweep
	rm -rf $(DEMO_DIR)
