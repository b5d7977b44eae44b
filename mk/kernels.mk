# Kernel matrix: the BPF packages' compiled tests on this machine's kernel
# (natively) and on Debian's kernels booted in qemu (TCG: no KVM needed).
# Included from the Makefile; nothing here runs unless asked for by name.
# tools/kernels fetches qemu-system-x86, the kernels and busybox-static from
# Debian's packages into $(HOOKSCOPE_CACHE)/kernels and prints one line per step.

# host: this machine's kernel; bookworm: Linux 6.1 (as EKS's AL2023 and
# Bottlerocket); trixie: Linux 6.12.
KERNELS ?= host,bookworm,trixie
# RUN: a -test.run pattern (all tests when empty), e.g. RUN='^TestResetMidCall$$'
RUN ?=
KERNELS_VM_TIMEOUT ?= 12m

.PHONY: test-kernels

## test-kernels: the BPF packages' tests on this machine's kernel and in qemu on Debian's 6.1 and 6.12; writes kernels-report/report.json
test-kernels: host-deps
	@command -v setpriv >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux; }
	@command -v dpkg-deb >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg; }
	nice -n 10 go run ./tools/kernels -kernels $(KERNELS) -out $(CURDIR)/kernels-report \
		-vm-timeout $(KERNELS_VM_TIMEOUT) $(if $(RUN),-run '$(RUN)')
