#!/usr/bin/env bash
# docker.sh up|down: a Docker daemon for the kind provider, from Debian's
# packages, with what this machine needs.
#
#   up    installs docker.io when dockerd is missing; builds the runc wrapper
#         that drops CAP_SYS_RESOURCE (outside this machine's capability
#         bounding set, so a --privileged container, every kind node, fails
#         with "unable to apply caps" under plain runc) and registers it as
#         dockerd's default runtime; starts dockerd in the background with its
#         log and pid under $HOOKSCOPE_CACHE/docker/; waits for `docker info`;
#         then keeps containers on docker's bridges from forwarding anywhere
#         but to another bridge (nothing leaves this machine).
#   down  stops the dockerd that `up` started (by its pid file) and removes
#         those forwarding rules. Images and containers stay in /var/lib/docker.
#
# A dockerd that is already running and was not started here is left alone
# (up says so and uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${HOOKSCOPE_CACHE:-$HOME/.cache/hookscope}"
state="$cache/docker"
pidfile="$state/dockerd.pid"
log="$state/dockerd.log"
wrapper="$state/runc-nosysresource"
runtime=hookscope-runc

log() { echo "docker: $*" >&2; }

# forward_rules -I|-D: in docker's DOCKER-USER chain (consulted first for all
# forwarded packets), traffic from a docker bridge may go only to a docker
# bridge. Without it, a container that tries to pull an image would route to
# the default gateway through docker's masquerade. ip6tables: FORWARD itself
# (Debian's docker 20.10 manages no IPv6 chains).
forward_rules() {
	local op=$1 ipt
	for ipt in iptables ip6tables; do
		command -v $ipt >/dev/null || continue
		local chain=DOCKER-USER
		[[ $ipt == ip6tables ]] && chain=FORWARD
		$ipt -n -L $chain >/dev/null 2>&1 || continue
		for in in docker0 br-+; do
			if [[ $op == -I ]]; then
				$ipt -C $chain -i $in ! -o br-+ -j DROP 2>/dev/null || $ipt -I $chain -i $in ! -o br-+ -j DROP
			else
				$ipt -D $chain -i $in ! -o br-+ -j DROP 2>/dev/null || true
			fi
		done
		# docker0 to docker0 (default bridge network) stays allowed.
		if [[ $op == -I ]]; then
			$ipt -C $chain -i docker0 -o docker0 -j ACCEPT 2>/dev/null || $ipt -I $chain -i docker0 -o docker0 -j ACCEPT
		else
			$ipt -D $chain -i docker0 -o docker0 -j ACCEPT 2>/dev/null || true
		fi
	done
}

up() {
	mkdir -p "$state"
	if ! command -v dockerd >/dev/null; then
		log "installing docker.io from Debian's packages"
		# Keep the package's init script from starting a daemon of its own.
		local own_policy=
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
			own_policy=1
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
		[[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
	fi
	local real_runc
	real_runc="$(command -v runc || true)"
	[[ -n $real_runc ]] || { log "runc missing after installing docker.io"; exit 1; }
	# Rebuilt when its source changes: dockerd runs it for each container, so
	# a running daemon picks it up too.
	if [[ ! -x $wrapper || $here/cmd/runc-nosysresource/main.go -nt $wrapper ]]; then
		(cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$wrapper.tmp" ./cmd/runc-nosysresource && mv "$wrapper.tmp" "$wrapper")
	fi
	if docker info >/dev/null 2>&1; then
		if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			log "dockerd already running (pid $(cat "$pidfile"), log $log)"
		else
			log "a Docker daemon not started by this script is running: using it as it is (its runtime may lack the CAP_SYS_RESOURCE wrapper)"
		fi
		forward_rules -I
		return
	fi
	# dockerd hands runtime flags through; the wrapper finds the real runc by env.
	log "starting dockerd (log $log)"
	# With only stdin, stdout and stderr: a descriptor inherited from the
	# caller (a lock, a pipe to a test runner) would be held for as long as
	# dockerd runs.
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
		done
		HOOKSCOPE_REAL_RUNC="$real_runc" exec setsid dockerd \
			--add-runtime "$runtime=$wrapper" --default-runtime "$runtime" \
			--pidfile "$state/dockerd.daemon.pid"
	) >>"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	local i
	for i in $(seq 1 60); do
		if docker info >/dev/null 2>&1; then
			forward_rules -I
			log "dockerd up (pid $(cat "$pidfile"), default runtime $runtime; $(docker version --format 'server {{.Server.Version}}' 2>/dev/null))"
			return
		fi
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			log "dockerd exited; last lines of $log:"; tail -20 "$log" >&2; exit 1
		fi
		sleep 0.5
	done
	log "dockerd did not answer in 30s; see $log"; exit 1
}

down() {
	if [[ ! -f $pidfile ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		log "no dockerd started by docker.sh is running"
		rm -f "$pidfile"
		return
	fi
	local pid
	pid="$(cat "$pidfile")"
	forward_rules -D
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "dockerd stopped"; return; }
		sleep 0.5
	done
	log "dockerd (pid $pid) still running after 30s; see $log"; exit 1
}

case "${1:-}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
