#!/bin/busybox sh
# /init of hookscope's kernel test VM (tools/kernels builds the initramfs).
# Mounts what the tests use, loads the modules, runs each package's test
# binary with -test.v and writes its output to the second serial port
# (ttyS1; the kernel's console is ttyS0), between markers the runner reads,
# then powers off. Settings come from the kernel command line, which hands
# unknown KEY=value words to /init as environment variables:
#   HOOKSCOPE_RUN      -test.run pattern (all tests when unset)
#   HOOKSCOPE_TIMEOUT  -test.timeout per package (default 8m)
/bin/busybox mkdir -p /bin
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpffs /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing

out=/dev/ttyS1
stty -F $out raw -echo 2>/dev/null
say() { echo "$*" >$out; }
uptime() { cut -d' ' -f1 /proc/uptime; } # seconds since boot, for the runner's timings

for m in /modules/*; do
	case $m in
	*'*') ;;
	*) insmod "$m" || echo "init: insmod $m failed" >&2 ;;
	esac
done
ip link set lo up
# The VM has no address but 127.0.0.1: give the "host" side one, or IPv4
# dials from here into the tests' namespaces find no source address.
ip addr add 192.168.77.1/32 dev lo

say "@@hookscope uname $(uname -r) $(uptime)"
while read -r pkg; do
	say "@@hookscope start $pkg $(uptime)"
	cd "/pkg/$pkg" || continue
	set -- -test.v -test.count=1 -test.timeout="${HOOKSCOPE_TIMEOUT:-8m}"
	[ -n "$HOOKSCOPE_RUN" ] && set -- "$@" -test.run="$HOOKSCOPE_RUN"
	./test.bin "$@" >$out 2>&1
	say "@@hookscope exit $pkg $? $(uptime)"
	cd /
done </packages
say "@@hookscope done"
sync
poweroff -f
