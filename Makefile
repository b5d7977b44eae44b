# hookscope: see README.md. Every target installs what it needs; nothing is
# downloaded but Go modules (the Go module proxy) and Debian packages.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

export HOOKSCOPE_CACHE ?= $(HOME)/.cache/hookscope
export HOOKSCOPE_TOOLS_BIN ?= $(HOOKSCOPE_CACHE)/bin/current
GOTESTSUM := $(HOOKSCOPE_TOOLS_BIN)/gotestsum
STATICCHECK := $(HOOKSCOPE_TOOLS_BIN)/staticcheck

# Tests load BPF programs, create network namespaces and run clusters: one
# package at a time (2 cores, and routes are machine-wide).
GOTEST_FLAGS ?= -count=1 -p 1 -timeout 30m

.PHONY: all build image tools tools-chaos host-deps generate test chaos bench fuzz lint clean

all: build

# VERSION is what `hookscope version` prints: the commit's tag, else its short hash
# (-dirty for a modified tree). Nothing else varies, so one commit builds the same bytes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X main.version=$(VERSION)

## build: the hookscope CLI (which also runs `hookscope agent`) and the agent as the image ships it
## (bin/hookscope-agent: the agent alone, without the CLI's Kubernetes clients) into bin/
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/hookscope ./cmd/hookscope
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/hookscope-agent ./cmd/hookscope-agent
	ln -sf hookscope bin/kubectl-hookscope # on the PATH: `kubectl hookscope`

IMAGE ?= hookscope:dev
## image: the image for amd64 and arm64 (an OCI layout in bin/image/oci and a docker archive per
## architecture, assembled with no builder); where a Docker daemon runs, both are loaded and the amd64 one run
image: build build-arm64
	go run ./tools/image -out bin/image -tag $(IMAGE) amd64=bin/hookscope-agent arm64=bin/hookscope-agent-arm64
	@docker info >/dev/null 2>&1 || { echo "image: no Docker daemon here: loading skipped (docker load -i bin/image/hookscope-amd64.tar)"; exit 0; }; \
		docker load -i bin/image/hookscope-amd64.tar && docker load -i bin/image/hookscope-arm64.tar && \
		docker image inspect -f '{{.RepoTags}} {{.Architecture}}' $(IMAGE)-amd64 $(IMAGE)-arm64 && \
		docker run --rm $(IMAGE)-amd64 --help | head -5

## tools: the offline toolchain (kube-apiserver, etcd, kwok, Jaeger, ...) into $(HOOKSCOPE_CACHE)
tools: host-deps
	bash tools/build.sh >/dev/null

## tools-chaos: only the tools the game day runs (no linters, test runner or collector)
tools-chaos: host-deps
	bash tools/build.sh chaos >/dev/null

## host-deps: the Debian packages the tests use (iproute2; iptables, for the game day's firewall stand-ins), when missing
host-deps:
	@command -v ip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; }
	@command -v iptables >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; }

## generate: rebuild the BPF objects and their Go bindings (needs clang-14, libbpf-dev)
generate:
	@command -v clang-14 >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 llvm libbpf-dev; }
	go generate ./bpf/...

## test: every test, as root: unit, kernel (eBPF), Jaeger, local cluster, game day
test: tools build
	@mkdir -p bin
	HOOKSCOPE_BIN=$(CURDIR)/bin/hookscope HOOKSCOPE_AGENT_BIN=$(CURDIR)/bin/hookscope-agent HOOKSCOPE_REPORT_DIR=$(CURDIR)/bin/test-chaos-report \
		$(GOTESTSUM) --format testname --jsonfile bin/test.json -- $(GOTEST_FLAGS) ./...
	@# deploy/verify is its own module (Helm and Prometheus stay out of the agent's).
	cd deploy/verify && HOOKSCOPE_BIN=$(CURDIR)/bin/hookscope HOOKSCOPE_AGENT_BIN=$(CURDIR)/bin/hookscope-agent \
		$(GOTESTSUM) --format testname --jsonfile $(CURDIR)/bin/test-deploy.json -- $(GOTEST_FLAGS) ./...
	@# tools/kind: the kind node image's helpers (runc wrapper), their own module.
	cd tools/kind && $(GOTESTSUM) --format testname -- -count=1 ./...

## chaos: the game day on the local cluster; writes chaos-report/report.{json,md}
## (PROVIDER=kind: the same game day on a kind cluster built here, with Docker started and stopped around it)
PROVIDER ?= local
export PROVIDER
# With PROVIDER=kind, the Docker daemon this run starts is stopped on every
# way out (a failed image build, a failed test, an interrupt).
chaos: tools-chaos build
	@if [ "$(PROVIDER)" = kind ]; then \
		trap 'bash tools/kind/docker.sh down' EXIT; trap 'exit 130' INT TERM; \
		bash tools/kind/docker.sh up && KIND_NODE_IMAGE=$(KIND_NODE_IMAGE) bash tools/kind/build-node-image.sh || exit $$?; \
	fi; \
	status=0; HOOKSCOPE_BIN=$(CURDIR)/bin/hookscope HOOKSCOPE_AGENT_BIN=$(CURDIR)/bin/hookscope-agent HOOKSCOPE_REPORT_DIR=$(CURDIR)/chaos-report \
		go test -count=1 -timeout 30m -v ./scenarios/ 2>&1 | tee bin/chaos.log | grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok|lab:|game day)' || status=$$?; \
	echo; cat chaos-report/report.md; exit $$status

SCALE ?= small
## bench: benchmarks, measured side by side in one run; writes bench-report/report.{json,md}
## (SCALE=small: 100 nodes/3,000 pods in a few minutes; SCALE=full: 1,000 nodes/30,000 pods)
bench: tools build
	rm -f bench-report/report.json bench-report/report.md
	HOOKSCOPE_BENCH_REPORT=$(CURDIR)/bench-report go test -count=1 -run '^TestBenchReport$$' -v ./bench/ | grep -E '^(---|ok|FAIL)|bench_test'
	HOOKSCOPE_BIN=$(CURDIR)/bin/hookscope HOOKSCOPE_AGENT_BIN=$(CURDIR)/bin/hookscope-agent HOOKSCOPE_BENCH_REPORT=$(CURDIR)/bench-report SCALE=$(SCALE) \
		go test -count=1 -timeout 90m -run '^TestBenchScale$$' -v ./bench/ | grep -E '^(---|ok|FAIL)|scale_test'
	go test -run '^$$' -bench '^Benchmark(Tracepoints|ProgramSegment|TracingOverhead|DecodeEvent)$$' -benchtime 2000x -count 1 ./bpf/...
	go test -run '^$$' -bench '^BenchmarkRemoveBackend$$' -benchtime 20x -count 1 ./bpf/handshake/
	go test -run '^$$' -bench '^BenchmarkKernelPerCall$$' -benchtime 3000x -count 1 ./dataplane/
	go test -run '^$$' -bench . -benchtime 1s -count 1 ./inventory/ ./probe/ ./risk/ ./apisignals/
	@echo; cat bench-report/report.md

FUZZTIME ?= 60s
## fuzz: run each fuzz target for FUZZTIME (the seed corpora also run in `make test`)
fuzz:
	go test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./bpf/handshake/
	go test -run '^$$' -fuzz '^FuzzProgram$$' -fuzztime $(FUZZTIME) ./bpf/handshake/
	go test -run '^$$' -fuzz '^FuzzParseHello$$' -fuzztime $(FUZZTIME) ./bpf/handshake/
	go test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./bpf/tcpstate/
	go test -run '^$$' -fuzz '^FuzzParseWebhookFailure$$' -fuzztime $(FUZZTIME) ./apisignals/
	go test -run '^$$' -fuzz '^FuzzParseWebhookMetrics$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./apisignals/

## lint: gofmt, go vet, staticcheck
lint: tools
	@test -z "$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'))" || { gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'); exit 1; }
	go vet ./...
	$(STATICCHECK) ./...
	cd deploy/verify && go vet ./... && $(STATICCHECK) ./...
	cd tools/kind && go vet ./... && $(STATICCHECK) ./...

clean:
	rm -rf bin chaos-report bench-report

include mk/kind.mk
include mk/kernels.mk
include mk/arm64.mk
include mk/demo.mk
