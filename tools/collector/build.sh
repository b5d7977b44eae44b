#!/usr/bin/env bash
# Builds otelcol-hookscope, the OpenTelemetry Collector of tools/collector
# (OTLP receiver, batch processor, OTLP/OTLP-HTTP/debug/file/awsxray/awsemf
# exporters), from the Go module proxy into the tools cache:
#   $HOOKSCOPE_CACHE/bin/otelcol-hookscope-<version>   (default cache: ~/.cache/hookscope)
#   $HOOKSCOPE_CACHE/bin/current/otelcol-hookscope -> that binary
# Idempotent like tools/build.sh: a binary already in the cache is not rebuilt.
# About 4 minutes cold on 2 cores; the tests in otel/ skip when it is absent.
set -euo pipefail

# The collector-contrib version of the exporters in go.mod; it names the binary.
COLLECTOR_VERSION=v0.141.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${HOOKSCOPE_CACHE:-$HOME/.cache/hookscope}"
bin="$cache/bin"
mkdir -p "$bin/current"

# Some collector(-contrib) versions and the X-Ray SDK module these exporters
# pin are missing from the checksum database; go.sum holds their hashes.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/open-telemetry/opentelemetry-collector-contrib,go.opentelemetry.io/collector,github.com/aws/aws-sdk-go-v2/service/xray"
export CGO_ENABLED=0

out="$bin/otelcol-hookscope-$COLLECTOR_VERSION"
if [[ -x "$out" ]]; then
	echo "tools: ${HOOKSCOPE_TOOLS_STEP:+$HOOKSCOPE_TOOLS_STEP }otelcol-hookscope $COLLECTOR_VERSION cached ($out)" >&2
else
	start=$SECONDS
	(cd "$here" && go build -trimpath -ldflags "-s -w -X main.version=$COLLECTOR_VERSION" -o "$out.tmp" .) || {
		echo "tools: ${HOOKSCOPE_TOOLS_STEP:+$HOOKSCOPE_TOOLS_STEP }building otelcol-hookscope $COLLECTOR_VERSION failed (needs the Go module proxy; see above)" >&2
		exit 1
	}
	mv "$out.tmp" "$out"
	echo "tools: ${HOOKSCOPE_TOOLS_STEP:+$HOOKSCOPE_TOOLS_STEP }otelcol-hookscope $COLLECTOR_VERSION built in $((SECONDS - start))s" >&2
fi
ln -sfn "../otelcol-hookscope-$COLLECTOR_VERSION" "$bin/current/otelcol-hookscope"
