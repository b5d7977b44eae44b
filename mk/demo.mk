# The demo: the game day's lab left running to try hookscope on, and the
# krew plugin manifest. Included from the Makefile.

DEMO_DIR ?= $(HOOKSCOPE_CACHE)/demo

.PHONY: demo demo-down krew

## demo: a local cluster, Jaeger, the agent and one broken webhook, left running; prints what to try (stop: make demo-down)
demo:
	@start=$$(date +%s%N); \
	$(MAKE) --no-print-directory tools-chaos build; \
	go build -o bin/hookscope-demo ./chaos/cmd/demo; \
	bin/hookscope-demo up -dir $(DEMO_DIR) -agent $(CURDIR)/bin/hookscope; \
	echo; echo "make demo: up in $$(( ($$(date +%s%N) - start) / 1000000 )) ms"

## demo-down: stop everything make demo started, and check nothing is left
demo-down:
	@if [ -x bin/hookscope-demo ]; then bin/hookscope-demo down -dir $(DEMO_DIR); \
	else go build -o bin/hookscope-demo ./chaos/cmd/demo && bin/hookscope-demo down -dir $(DEMO_DIR); fi

# KREW_VERSION: the plugin's version in the manifest and its release URLs;
# the commit's tag when it is one (v1.2.3), else v0.0.0-dev.
KREW_VERSION ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null || echo v0.0.0-dev)

## krew: the krew plugin's archives for linux/amd64 and linux/arm64 and its manifest with their sha256, in bin/krew/ (install: see deploy/krew/hookscope.yaml)
krew: build
	GOARCH=arm64 CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/hookscope-arm64 ./cmd/hookscope
	rm -rf bin/krew
	go run ./tools/krew -manifest deploy/krew/hookscope.yaml -out bin/krew -version $(KREW_VERSION) \
		$(if $(wildcard LICENSE),-license LICENSE) linux/amd64=bin/hookscope linux/arm64=bin/hookscope-arm64
	go test -count=1 -run 'TestBuiltManifest' ./tools/krew/
