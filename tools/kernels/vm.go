package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runVM boots the track's kernel in qemu with the test binaries in its
// initramfs and reads their results from the VM's second serial port.
// Whatever goes wrong (download, boot, timeout) makes the kernel fail, with
// what went wrong in its failed list.
func runVM(c config, tr track, pkgs []testPackage, build string) (kernelResult, []string) {
	fail := func(version string, err error) (kernelResult, []string) {
		fmt.Printf("kernels: %s: %v\n", tr.Name, err)
		return kernelResult{Version: version, Failed: []string{err.Error()}}, nil
	}
	vmlinuz, initrd, version, err := prepareVM(c, tr, pkgs, build)
	if err != nil {
		return fail(version, err)
	}
	start := time.Now()
	l, problems, err := bootVM(c, tr, vmlinuz, initrd)
	if err != nil {
		return fail(version, err)
	}
	if l.Release != "" {
		version = l.Release
		fmt.Printf("kernels: %s: %s reached /init %.1fs after boot (guest clock)\n", tr.Name, version, l.Boot)
	}
	for _, run := range l.Runs {
		pr := parseTestV(run)
		fmt.Printf("kernels: %s: %s: %d tests, %d failed (%.1fs, guest clock)\n", tr.Name, run.Pkg, pr.Tests, len(pr.Failed), run.Seconds)
	}
	res, skipped := summarize(version, l.Runs, problems)
	step(start, "%s: %s booted and tested: %d tests, %d failed", tr.Name, version, res.Tests, len(res.Failed))
	return res, skipped
}

// prepareVM fetches the track's kernel and busybox (cached) and builds the
// initramfs with the test binaries; version is the package's until the VM
// says its uname -r.
func prepareVM(c config, tr track, pkgs []testPackage, build string) (vmlinuz, initrd, version string, err error) {
	start := time.Now()
	if err := ensureQemu(); err != nil {
		return "", "", tr.Name, err
	}
	debs := filepath.Join(c.cache, "debs")
	pkg, root, fetched, err := fetchKernel(tr, c.cache, debs, false)
	if err != nil {
		// Package lists older than the archive name a kernel it no longer
		// has: read them again, once.
		fmt.Printf("kernels: %s: %v; reading the package lists again\n", tr.Name, err)
		pkg, root, fetched, err = fetchKernel(tr, c.cache, debs, true)
	}
	if err != nil {
		return "", "", tr.Name, err
	}
	version = strings.TrimPrefix(pkg, "linux-image-")
	bbRoot, _, err := fetchDeb(apt{}, debs, "busybox-static")
	if err != nil {
		return "", "", version, err
	}
	busybox := filepath.Join(bbRoot, "bin", "busybox")
	vmlinuz, modules, err := kernelFiles(root, busybox)
	if err != nil {
		return "", "", version, err
	}
	how := "cached"
	if fetched {
		how = "downloaded"
	}
	step(start, "%s: %s %s, %d modules", tr.Name, pkg, how, len(modules))

	start = time.Now()
	initrd = filepath.Join(build, tr.Name+".cpio")
	size, err := buildInitramfs(initrd, busybox, modules, pkgs)
	if err != nil {
		return "", "", version, fmt.Errorf("building the initramfs: %w", err)
	}
	step(start, "%s: initramfs %d MiB", tr.Name, size>>20)
	return vmlinuz, initrd, version, nil
}

// bootVM boots the kernel with the initramfs in qemu, bounded by the VM
// timeout, and reads what /init wrote to the second serial port; problems
// are what went wrong besides failed tests.
func bootVM(c config, tr track, vmlinuz, initrd string) (vmLog, []string, error) {
	consoleLog := filepath.Join(c.out, tr.Name+"-console.log")
	testLog := filepath.Join(c.out, tr.Name+"-tests.log")
	// A soft lockup panics (and qemu exits at once: -no-reboot) instead of
	// hanging until -vm-timeout; the console keeps the kernel's messages,
	// stack traces included.
	cmdline := []string{"console=ttyS0", "panic=-1", "softlockup_panic=1", "HOOKSCOPE_TIMEOUT=" + c.pkgTime.String()}
	if c.run != "" {
		if strings.ContainsAny(c.run, " \"") {
			return vmLog{}, nil, fmt.Errorf("-run %q: no spaces or quotes on a kernel command line", c.run)
		}
		cmdline = append(cmdline, "HOOKSCOPE_RUN="+c.run)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.vmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-m", c.memory, "-smp", strconv.Itoa(c.cpus), "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
		"-kernel", vmlinuz, "-initrd", initrd, "-append", strings.Join(cmdline, " "),
		"-serial", "file:"+consoleLog, "-serial", "file:"+testLog)
	out, qerr := cmd.CombinedOutput()
	var problems []string
	switch {
	case ctx.Err() != nil:
		problems = append(problems, fmt.Sprintf("VM timed out after %s (see %s)", c.vmTimeout, testLog))
	case qerr != nil:
		problems = append(problems, fmt.Sprintf("qemu: %v: %s", qerr, strings.TrimSpace(string(out))))
	}
	f, err := os.Open(testLog)
	if err != nil {
		return vmLog{}, nil, fmt.Errorf("reading the VM's test log: %w", err)
	}
	defer f.Close()
	l, err := splitVMLog(f)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if l.Release == "" {
		problems = append(problems, fmt.Sprintf("the VM never reached /init's tests (kernel console: %s)", consoleLog))
	}
	if !l.Done && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("/init did not finish (kernel console: %s)", consoleLog))
	}
	return l, problems, nil
}

// fetchKernel resolves the track's kernel package and downloads and unpacks
// it into debs; refresh reads the package lists again first.
func fetchKernel(tr track, cache, debs string, refresh bool) (pkg, root string, fetched bool, err error) {
	if refresh {
		if tr.System {
			if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
				return "", "", false, fmt.Errorf("apt-get update: %w: %s", err, lastLines(string(out), 5))
			}
		} else {
			os.Remove(filepath.Join(cache, "apt-"+tr.Name, "updated"))
		}
	}
	a, err := aptFor(tr, cache)
	if err != nil {
		return "", "", false, err
	}
	if pkg, err = kernelPackage(a, tr); err != nil {
		return "", "", false, err
	}
	root, fetched, err = fetchDeb(a, debs, pkg)
	return pkg, root, fetched, err
}

// ensureQemu installs Debian's qemu-system-x86 when qemu is missing.
func ensureQemu() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		return nil
	}
	start := time.Now()
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install qemu-system-x86: %w: %s", err, lastLines(string(out), 5))
		}
		return nil
	}
	if err := install(); err != nil {
		if out, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %w: %s", uerr, lastLines(string(out), 5))
		}
		if err := install(); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return errors.New("qemu-system-x86 installed, but no qemu-system-x86_64 on PATH")
	}
	step(start, "qemu-system-x86 installed")
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
