# arm64 (Graviton): the binary builds and vets for arm64, and the unit tests
# of the packages that need neither a kernel nor a cluster run under
# qemu-user (Debian's qemu-user-static). Included from the Makefile.

ARM64_UNIT_PACKAGES ?= ./callout/ ./findings/ ./apisignals/ ./risk/ ./dataplane/ ./probe/ ./api/

.PHONY: build-arm64 test-arm64

## build-arm64: bin/hookscope-arm64 and bin/hookscope-agent-arm64 (static), and go vet for arm64
build-arm64:
	GOARCH=arm64 go vet ./...
	GOARCH=arm64 CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/hookscope-arm64 ./cmd/hookscope
	GOARCH=arm64 CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/hookscope-agent-arm64 ./cmd/hookscope-agent

## test-arm64: the unit tests that need no kernel and no cluster, as arm64 binaries under qemu-user
test-arm64: build-arm64
	@command -v qemu-aarch64-static >/dev/null || { echo "test-arm64: installing qemu-user-static (Debian's package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null; }
	GOARCH=arm64 CGO_ENABLED=0 go test -count=1 -exec qemu-aarch64-static -skip 'AgainstAPIServer' $(ARM64_UNIT_PACKAGES)
