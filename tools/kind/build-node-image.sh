#!/usr/bin/env bash
# build-node-image.sh: a kind node image built with no image registry, from
# Debian's packages and the Go module proxy only. Needs a running Docker
# daemon (tools/kind/docker.sh up) and root (debootstrap, chroot).
#
# What it makes, each cached and rebuilt only when its inputs change:
#   1. binaries ($cache/kind/bin): kubelet, kubeadm, kubectl, kube-proxy and
#      the control plane at the Kubernetes version tools/build.sh pins (module
#      tools/kind/k8s), etcd (tools/etcd), crictl (sigs.k8s.io/cri-tools),
#      CoreDNS, and tools/kind's pause and runc wrapper; all static.
#   2. the base image hookscope.local/kind-base: a Debian bookworm rootfs by
#      debootstrap (systemd, containerd, runc, CNI plugins, nftables,
#      iptables, ...) with kind's own node files (entrypoint, systemd units,
#      containerd config: read from the kind module in the Go module cache,
#      the version chaos/ builds with), set up as kind's base Dockerfile does.
#   3. the images kubeadm and the node need, under the names kubeadm asks for
#      (`kubeadm config images list`): control plane, etcd, CoreDNS and pause
#      FROM scratch with one static binary; kube-proxy on the base rootfs
#      (it needs nft and conntrack).
#   4. the node image $KIND_NODE_IMAGE: the base with the node binaries in
#      /usr/bin and every image of step 3 imported into its containerd, as
#      `kind build node-image` does, without its pulls.
#
# The image carries the label dev.hookscope.inputs: a hash of this script,
# the versions and the go.sum files. A node image whose label matches is
# kept (prints "cached"). Prints one line per step with its time.
set -euo pipefail

KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.5
CRICTL_VERSION=v1.34.0
COREDNS_VERSION=v1.12.1
KIND_VERSION=v0.33.0
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$(dirname "$here")"
cache="${HOOKSCOPE_CACHE:-$HOME/.cache/hookscope}/kind"
bin="$cache/bin-$KUBE_VERSION"
image="${KIND_NODE_IMAGE:-hookscope.local/kind-node:$KUBE_VERSION}"
export CGO_ENABLED=0

log() { echo "kind-image: $*" >&2; }
die() { log "$*"; exit 1; }
step() { # step NAME START: one line with the time since START
	log "$1 in $((SECONDS - $2))s"
}

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and chroot)"
if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap (Debian's package)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
		die "installing debootstrap failed (it needs Debian's package mirror)"
fi
docker info >/dev/null 2>&1 || die "no Docker daemon: run 'make docker-up' first"

inputs="$( {
	cat "${BASH_SOURCE[0]}"
	echo "$KUBE_VERSION $ETCD_VERSION $CRICTL_VERSION $COREDNS_VERSION $KIND_VERSION $DEBIAN_SUITE"
	cat "$here/k8s/go.sum" "$here/go.mod" "$here"/cmd/*/main.go
} | sha256sum | cut -c1-16)"
if [[ $(docker image inspect -f '{{index .Config.Labels "dev.hookscope.inputs"}}' "$image" 2>/dev/null || true) == "$inputs" ]]; then
	log "$image cached (inputs $inputs)"
	exit 0
fi
mkdir -p "$bin"

# --- 1. binaries -------------------------------------------------------------
start=$SECONDS
kube_ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
gobuild() { # gobuild DIR OUT PKG [LDFLAGS]
	local dir=$1 out=$2 pkg=$3 ld=${4:--s -w}
	[[ -x "$bin/$out" ]] && return
	(cd "$dir" && go build -trimpath -ldflags "$ld" -o "$bin/$out.tmp" "$pkg") || die "building $out failed"
	mv "$bin/$out.tmp" "$bin/$out"
	log "built $out"
}
for c in kubelet kubeadm kubectl kube-proxy kube-apiserver kube-controller-manager kube-scheduler; do
	gobuild "$here/k8s" "$c" "k8s.io/kubernetes/cmd/$c" "$kube_ld"
done
gobuild "$tools/etcd" etcd go.etcd.io/etcd/server/v3
gobuild "$here" pause ./cmd/pause
rm -f "$bin/runc-nosysresource" # small, and its source changes with this machine's quirks
gobuild "$here" runc-nosysresource ./cmd/runc-nosysresource
goinstall() { # goinstall NAME PKG@VERSION
	local name=$1 pkg=$2 tmp
	[[ -x "$bin/$name" ]] && return
	tmp="$(mktemp -d)"
	GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "$pkg" || die "installing $pkg failed"
	mv "$tmp/$(basename "${pkg%@*}")" "$bin/$name"
	rmdir "$tmp"
	log "built $name"
}
goinstall crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
goinstall coredns "github.com/coredns/coredns@$COREDNS_VERSION"
step "binaries ready ($bin)" $start

# --- 2. base image -----------------------------------------------------------
kindfiles="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files"
if [[ ! -d $kindfiles ]]; then
	(cd "$tools/.." && go mod download "sigs.k8s.io/kind@$KIND_VERSION") || die "downloading sigs.k8s.io/kind $KIND_VERSION"
fi
base_inputs="$(cat "${BASH_SOURCE[0]}" "$here"/cmd/*/main.go <(find "$kindfiles" -type f -exec cat {} +) | sha256sum | cut -c1-16)"
base="hookscope.local/kind-base:$base_inputs"
if ! docker image inspect "$base" >/dev/null 2>&1; then
	start=$SECONDS
	rootfs="$cache/rootfs"
	rm -rf "$rootfs"
	# Packages as kind's base image installs them, with containerd, runc and
	# the CNI plugins from Debian instead of kind's own builds.
	pkgs=systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz
	pkgs+=,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat,ebtables
	debootstrap --variant=minbase --include="$pkgs" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed; see $cache/debootstrap.log"
	# kind's node files.
	install -d -m 0755 "$rootfs/kind" "$rootfs/kind/bin" "$rootfs/LICENSES" "$rootfs/etc/kubernetes/manifests" "$rootfs/opt/cni/bin"
	install -m 0755 "$kindfiles"/usr/local/bin/* "$rootfs/usr/local/bin/"
	install -m 0755 "$kindfiles"/kind/bin/* "$rootfs/kind/bin/"
	install -m 0644 "$kindfiles"/kind/README.txt "$rootfs/kind/"
	install -m 0644 "$kindfiles"/etc/crictl.yaml "$rootfs/etc/"
	install -d "$rootfs/etc/containerd" "$rootfs/etc/default" "$rootfs/etc/sysctl.d" "$rootfs/etc/systemd/system/kubelet.service.d"
	install -m 0644 "$kindfiles"/etc/containerd/* "$rootfs/etc/containerd/"
	install -m 0644 "$kindfiles"/etc/default/* "$rootfs/etc/default/"
	install -m 0644 "$kindfiles"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
	find "$kindfiles/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$rootfs/etc/systemd/system/" \;
	install -m 0644 "$kindfiles"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
	# kind's units run containerd from /usr/local/bin; Debian puts it in /usr/bin.
	for b in containerd ctr containerd-shim-runc-v2; do ln -sf "/usr/bin/$b" "$rootfs/usr/local/bin/$b"; done
	# The CNI plugins where kind's containerd config looks for them.
	for p in "$rootfs"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$rootfs/opt/cni/bin/"; done
	# runc: the wrapper first on PATH (this machine lacks CAP_SYS_RESOURCE,
	# so privileged pods need it inside the node too), Debian's behind it.
	install -m 0755 "$bin/runc-nosysresource" "$rootfs/usr/local/sbin/runc"
	install -m 0755 "$bin/crictl" "$rootfs/usr/local/bin/crictl"
	# As kind's Dockerfile: no services but ours, no kmsg, no tmpfiles at boot.
	chroot "$rootfs" /bin/bash -euc '
		find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
		rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
			/lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
			/lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
		echo ReadKMsg=no >>/etc/systemd/journald.conf
		ln -sf /usr/lib/systemd/systemd /sbin/init
		systemctl enable kubelet.service containerd.service undo-mount-hacks.service
		systemctl mask systemd-binfmt.service
		ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" |
			jq "del(.process.rlimits)" >/etc/containerd/cri-base.json
		apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log
	' >"$cache/base-setup.log" 2>&1 || die "setting up the base rootfs failed; see $cache/base-setup.log"
	# docker import takes no STOPSIGNAL: a one-line build adds it.
	tar -C "$rootfs" --numeric-owner -c . | docker import -c 'ENV container=docker' - "$base-rootfs" >/dev/null
	printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' "$base-rootfs" |
		docker build -q -t "$base" - >/dev/null
	docker rmi "$base-rootfs" >/dev/null
	rm -rf "$rootfs"
	step "base image $base built" $start
fi

# --- 3. the images kubeadm and the node use -----------------------------------
start=$SECONDS
images="$cache/images"
rm -rf "$images" && mkdir -p "$images"
mapfile -t wanted < <("$bin/kubeadm" config images list --kubernetes-version "$KUBE_VERSION")
sandbox="$(sed -n 's/^ *sandbox_image *= *"\(.*\)"/\1/p' "$kindfiles/etc/containerd/config.toml")"
[[ -n $sandbox ]] || die "no sandbox_image in kind's containerd config"
scratch_image() { # scratch_image REF BINARY ENTRYPOINT_JSON
	local ref=$1 binary=$2 entry=$3 d
	d="$(mktemp -d)"
	install -D -m 0755 "$bin/$binary" "$d/usr/local/bin/$binary"
	[[ $binary == coredns ]] && ln -s usr/local/bin/coredns "$d/coredns"
	[[ $binary == pause ]] && ln -s usr/local/bin/pause "$d/pause"
	tar -C "$d" --numeric-owner --owner=0 --group=0 -c . | docker import \
		-c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c "ENTRYPOINT $entry" - "$ref" >/dev/null
	rm -rf "$d"
}
refs=()
for ref in "${wanted[@]}" "$sandbox"; do
	name="${ref##*/}" name="${name%%:*}"
	case $name in
	kube-apiserver | kube-controller-manager | kube-scheduler | etcd)
		scratch_image "$ref" "$name" "[\"/usr/local/bin/$name\"]" ;;
	coredns) scratch_image "$ref" coredns '["/coredns"]' ;;
	pause) scratch_image "$ref" pause '["/pause"]' ;;
	kube-proxy)
		printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$base" |
			docker build -q -t "$ref" -f - "$bin" >/dev/null ;;
	*) die "kubeadm wants an image this script does not build: $ref" ;;
	esac
	refs+=("$ref")
done
docker save -o "$images/all.tar" "${refs[@]}"
step "images ${refs[*]}" $start

# --- 4. the node image ---------------------------------------------------------
start=$SECONDS
ctr=""
cleanup() { [[ -n $ctr ]] && docker rm -f -v "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
ctr="$(docker run -d --privileged --entrypoint sleep "$base" infinity)"
for b in kubelet kubeadm kubectl; do
	docker cp "$bin/$b" "$ctr:/usr/bin/$b"
done
docker exec "$ctr" bash -c "echo $KUBE_VERSION >/kind/version"
docker cp "$images/all.tar" "$ctr:/kind/images.tar"
# containerd in the build container, only to import the images (as kind's
# image builder does); no snapshots are made (--no-unpack).
docker exec "$ctr" bash -euc '
	mkdir -p /run/containerd
	containerd >/tmp/containerd.log 2>&1 &
	for i in $(seq 1 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
	ctr -n k8s.io images import --no-unpack --all-platforms /kind/images.tar
	ctr -n k8s.io images ls -q
	kill %1; wait || true
	rm -f /kind/images.tar /tmp/containerd.log
' >"$cache/import.log" 2>&1 || die "importing the images into the node's containerd failed; see $cache/import.log"
docker commit \
	-c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' -c 'CMD []' \
	-c "LABEL dev.hookscope.inputs=$inputs" "$ctr" "$image" >/dev/null
step "node image $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))" $start
