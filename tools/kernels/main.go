// Command kernels runs the BPF packages' compiled tests on several kernels:
// this machine's own (natively) and Debian's kernels booted in qemu (TCG,
// no KVM needed), and writes report.json:
//
//	{"kernels":[{"version":"6.1.0-57-amd64","passed":true,"tests":52,"failed":[]}]}
//
// version is `uname -r` as seen by the tests; tests counts top-level tests
// run (from -test.v); failed names them (package.Test). It exits non-zero
// when a kernel fails. Everything comes from Debian's packages (qemu,
// linux-image-*, busybox-static) and is cached under -cache, from which it
// is fetched again when missing. Must run as root (the tests load BPF
// programs and create network namespaces).
//
//	go run ./tools/kernels -kernels host,bookworm,trixie -out kernels-report
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type report struct {
	Kernels []kernelResult `json:"kernels"`
}

type kernelResult struct {
	Version string   `json:"version"`
	Passed  bool     `json:"passed"`
	Tests   int      `json:"tests"`
	Failed  []string `json:"failed"`
}

type config struct {
	kernels   []string
	pkgs      string
	out       string
	cache     string
	run       string
	vmTimeout time.Duration
	pkgTime   time.Duration
	memory    string
	cpus      int
}

func main() {
	home, _ := os.UserHomeDir()
	defCache := filepath.Join(home, ".cache", "hookscope")
	if c := os.Getenv("HOOKSCOPE_CACHE"); c != "" {
		defCache = c
	}
	var c config
	kernels := flag.String("kernels", "host,bookworm,trixie", "comma-separated: host (this machine's kernel, natively) and Debian releases whose kernel boots in qemu: bookworm (6.1), trixie (6.12)")
	flag.StringVar(&c.pkgs, "pkgs", "./bpf/... ./dataplane", "packages whose tests run (those with test files; space-separated patterns)")
	flag.StringVar(&c.out, "out", "kernels-report", "report directory (report.json and one log per kernel)")
	flag.StringVar(&c.cache, "cache", filepath.Join(defCache, "kernels"), "download cache")
	flag.StringVar(&c.run, "run", os.Getenv("RUN"), "-test.run pattern (all tests when empty)")
	flag.DurationVar(&c.vmTimeout, "vm-timeout", 12*time.Minute, "bound on one VM run, boot to power-off")
	flag.DurationVar(&c.pkgTime, "pkg-timeout", 8*time.Minute, "-test.timeout of each package")
	flag.StringVar(&c.memory, "memory", "2G", "VM memory")
	// One vCPU: with two, qemu's TCG (7.2, multi-threaded) hung the 6.1
	// guest in cross-CPU code patching (text_poke_bp waiting for the other
	// vCPU's IPI answer: 3 soft lockups in 17 boots; none in 14 boots with one).
	flag.IntVar(&c.cpus, "cpus", 1, "VM vCPUs")
	flag.Parse()
	c.kernels = strings.Split(*kernels, ",")
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "kernels:", err)
		os.Exit(1)
	}
}

// step prints one progress line with the time since start.
func step(start time.Time, format string, args ...any) {
	fmt.Printf("kernels: %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(start).Seconds())
}

func run(c config) error {
	total := time.Now()
	if os.Geteuid() != 0 {
		return errors.New("the tests load BPF programs and create network namespaces: run as root")
	}
	for _, k := range c.kernels {
		if _, ok := tracks[k]; !ok && k != "host" {
			return fmt.Errorf("unknown kernel %q: want host, bookworm or trixie", k)
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	os.Remove(filepath.Join(c.out, "report.json")) // never leave an old verdict behind
	if err := os.MkdirAll(c.cache, 0o755); err != nil {
		return err
	}

	start := time.Now()
	build, err := os.MkdirTemp("", "hookscope-kernels-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	pkgs, err := buildTests(c.pkgs, build)
	if err != nil {
		return err
	}
	names := make([]string, len(pkgs))
	for i, p := range pkgs {
		names[i] = p.Pkg
	}
	step(start, "test binaries built: %s", strings.Join(names, " "))

	var rep report
	for _, k := range c.kernels {
		var res kernelResult
		var skipped []string
		if k == "host" {
			res, skipped = runHost(c, pkgs)
		} else {
			res, skipped = runVM(c, tracks[k], pkgs, build)
		}
		rep.Kernels = append(rep.Kernels, res)
		if len(skipped) > 0 {
			fmt.Printf("kernels: %s: skipped: %s\n", res.Version, strings.Join(skipped, " "))
		}
	}

	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	failed := 0
	for _, k := range rep.Kernels {
		if !k.Passed {
			failed++
		}
	}
	step(total, "%s: %d kernels, %d failed", filepath.Join(c.out, "report.json"), len(rep.Kernels), failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d kernels failed (logs in %s)", failed, len(rep.Kernels), c.out)
	}
	return nil
}

// buildTests compiles each package's tests (CGO_ENABLED=0: static, so they
// run in the VM's busybox root) into dir.
func buildTests(pattern, dir string) ([]testPackage, error) {
	args := append([]string{"list", "-f", "{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}"}, strings.Fields(pattern)...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("listing the packages %s: %w", pattern, stderrOf(err))
	}
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return nil, fmt.Errorf("reading the module path: %w", stderrOf(err))
	}
	var pkgs []testPackage
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		imp, d, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(imp, strings.TrimSpace(string(mod))), "/")
		pkgs = append(pkgs, testPackage{Pkg: rel, Dir: d, Binary: filepath.Join(dir, filepath.Base(imp)+".test")})
		paths = append(paths, imp)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("no package in %s has tests", pattern)
	}
	seen := map[string]string{}
	for _, p := range pkgs {
		if other, dup := seen[p.Binary]; dup {
			return nil, fmt.Errorf("packages %s and %s would build the same %s", other, p.Pkg, p.Binary)
		}
		seen[p.Binary] = p.Pkg
	}
	cmd := exec.Command("go", append([]string{"test", "-c", "-o", dir + "/"}, paths...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the test binaries: %w\n%s", err, b)
	}
	return pkgs, nil
}

func stderrOf(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// runHost runs the binaries on this machine's kernel, each in its source
// directory (for testdata), one after another.
func runHost(c config, pkgs []testPackage) (kernelResult, []string) {
	var u syscall.Utsname
	syscall.Uname(&u)
	var rel []byte
	for _, b := range u.Release {
		if b == 0 {
			break
		}
		rel = append(rel, byte(b))
	}
	version := string(rel)
	logPath := filepath.Join(c.out, "host-"+version+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return kernelResult{Version: version, Failed: []string{"creating " + logPath + ": " + err.Error()}}, nil
	}
	defer log.Close()
	var runs []pkgRun
	for _, p := range pkgs {
		start := time.Now()
		args := []string{"-test.v", "-test.count=1", "-test.timeout=" + c.pkgTime.String()}
		if c.run != "" {
			args = append(args, "-test.run="+c.run)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.pkgTime+time.Minute)
		cmd := exec.CommandContext(ctx, p.Binary, args...)
		cmd.Dir = p.Dir
		out, err := cmd.CombinedOutput()
		cancel()
		exit := 0
		if err != nil {
			exit = -1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() >= 0 {
				exit = ee.ExitCode()
			}
		}
		fmt.Fprintf(log, "%s%s\n%s%s%s %d\n", markStart, p.Pkg, out, markExit, p.Pkg, exit)
		r := pkgRun{Pkg: p.Pkg, Output: string(out), Exit: exit}
		runs = append(runs, r)
		pr := parseTestV(r)
		step(start, "host %s: %s: %d tests, %d failed", version, p.Pkg, pr.Tests, len(pr.Failed))
	}
	return summarize(version, runs, nil)
}
