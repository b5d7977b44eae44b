#!/usr/bin/env bash
# Builds hookscope's offline toolchain from the Go module proxy into a cache:
#   $HOOKSCOPE_CACHE/bin/<tool>-<version>   (default cache: ~/.cache/hookscope)
# and prints one line per tool (n of all, built or cached, its build time),
# and a line before each build, which can take minutes. Idempotent: a tool already
# in the cache is not rebuilt. Prints the bin directory on the last line.
#
#   tools/build.sh          every tool (`make test`, `make lint`)
#   tools/build.sh chaos    only what the game day runs (`make chaos`): the
#                           control plane, kwok and Jaeger; with PROVIDER=kind
#                           also helm. No gotestsum, staticcheck or collector.
#
# Versions are pinned here and in the small modules beside this script
# (tools/k8s, tools/etcd, tools/jaeger), whose go.sum files pin every dependency.
set -euo pipefail

KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.5
KWOK_VERSION=v0.8.0
JAEGER_VERSION=v1.75.0
GOTESTSUM_VERSION=v1.13.0
STATICCHECK_VERSION=v0.8.2
HELM_VERSION=v3.21.4

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${HOOKSCOPE_CACHE:-$HOME/.cache/hookscope}"
bin="$cache/bin"
mkdir -p "$bin"

# Some collector-contrib versions that Jaeger pins are missing from the
# checksum database; their hashes are in tools/jaeger/go.sum.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/open-telemetry/opentelemetry-collector-contrib,go.opentelemetry.io/collector"
export CGO_ENABLED=0

# Progress: tools counts every tool this run builds or finds cached.
only=${1:-all}
case "$only" in
all) tools=11 ;;
chaos) tools=7 && [[ "${PROVIDER:-local}" == kind ]] && tools=8 ;;
*)
	echo "tools: unknown set $only (want all or chaos)" >&2
	exit 2
	;;
esac
n=0 at=
step() { n=$((n + 1)); at="[$n/$tools]"; }

# build NAME VERSION DIR PACKAGE [LDFLAGS]: go build PACKAGE inside module DIR.
build() {
	local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
	local out="$bin/$name-$version"
	step
	if [[ -x "$out" ]]; then
		echo "tools: $at $name $version cached ($out)" >&2
		return
	fi
	echo "tools: $at building $name $version (Go module proxy; minutes when cold)" >&2
	local start=$SECONDS
	(cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") || {
		echo "tools: building $name $version failed (needs the Go module proxy; see above)" >&2
		exit 1
	}
	mv "$out.tmp" "$out"
	echo "tools: $at $name $version built in $((SECONDS - start))s" >&2
}

kube_ld="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
build etcd "$ETCD_VERSION" "$here/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$KUBE_VERSION" "$here/k8s" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ld"
build kube-controller-manager "$KUBE_VERSION" "$here/k8s" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ld"
build kube-scheduler "$KUBE_VERSION" "$here/k8s" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ld"
build jaeger "$JAEGER_VERSION" "$here/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger

# install NAME VERSION PACKAGE: tools that `go install` takes as they are.
install() {
	local name=$1 version=$2 pkg=$3
	local out="$bin/$name-$version"
	step
	if [[ -x "$out" ]]; then
		echo "tools: $at $name $version cached ($out)" >&2
		return
	fi
	echo "tools: $at building $name $version (Go module proxy)" >&2
	local start=$SECONDS tmp
	tmp="$(mktemp -d)"
	GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "$pkg@$version" || {
		echo "tools: installing $name $version failed (needs the Go module proxy; see above)" >&2
		exit 1
	}
	mv "$tmp/$name" "$out"
	rmdir "$tmp"
	echo "tools: $at $name $version built in $((SECONDS - start))s" >&2
}

install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
install kwokctl "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl
if [[ "$only" == all ]]; then
	install gotestsum "$GOTESTSUM_VERSION" gotest.tools/gotestsum
	install staticcheck "$STATICCHECK_VERSION" honnef.co/go/tools/cmd/staticcheck
fi
# The kind game day deploys the agent with the project's chart (helm template).
if [[ "$only" == all || "${PROVIDER:-local}" == kind ]]; then
	install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
fi

# The OpenTelemetry Collector that checks deploy/collector (its own module).
if [[ "$only" == all ]]; then
	step
	HOOKSCOPE_TOOLS_STEP="$at" bash "$here/collector/build.sh"
fi

# Stable names for the harness: bin/current/<tool> -> the pinned version.
mkdir -p "$bin/current"
for t in etcd:$ETCD_VERSION kube-apiserver:$KUBE_VERSION kube-controller-manager:$KUBE_VERSION \
	kube-scheduler:$KUBE_VERSION jaeger:$JAEGER_VERSION kwok:$KWOK_VERSION kwokctl:$KWOK_VERSION \
	gotestsum:$GOTESTSUM_VERSION staticcheck:$STATICCHECK_VERSION helm:$HELM_VERSION; do
	if [[ -e "$bin/${t%%:*}-${t#*:}" ]]; then # a tool of another set may not be built yet
		ln -sfn "../${t%%:*}-${t#*:}" "$bin/current/${t%%:*}"
	fi
done
echo "$bin/current"
