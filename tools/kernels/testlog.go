package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// pkgRun is one test binary's run: its -test.v output and how it ended.
type pkgRun struct {
	Pkg    string // the package, relative to the module: bpf/tcpstate
	Output string // -test.v output (stdout and stderr)
	Exit   int    // the binary's exit status; -1: it never finished (crash, VM timeout)
	// Seconds it ran (in the VM: by the guest's clock); 0 if unknown.
	Seconds float64
}

// pkgResult is what one run says about the package's top-level tests.
type pkgResult struct {
	Tests   int      // top-level tests that ran (passed, failed, skipped or unfinished)
	Failed  []string // top-level tests that failed or never finished
	Skipped []string // top-level tests that skipped
}

// parseTestV reads go test -test.v output. A top-level test is one whose
// "=== RUN" line has no '/'; it counts as run once started, and as failed
// when its "--- FAIL" line says so or when no result line follows (the
// binary panicked, timed out, or the VM stopped under it). A run that ended
// non-zero with no failed test (a crash before or between tests, a build
// tag that left nothing) is reported as the package itself failing.
func parseTestV(run pkgRun) pkgResult {
	var order []string
	status := map[string]string{} // name -> "", PASS, FAIL, SKIP
	sc := bufio.NewScanner(strings.NewReader(run.Output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok {
			name = strings.TrimSpace(name)
			if strings.Contains(name, "/") {
				continue
			}
			if _, seen := status[name]; !seen {
				order = append(order, name)
			}
			status[name] = ""
			continue
		}
		// Result lines of top-level tests start at column 0; subtests' are indented.
		for _, verdict := range []string{"PASS", "FAIL", "SKIP"} {
			rest, ok := strings.CutPrefix(line, "--- "+verdict+": ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(rest, " ")
			if _, known := status[name]; known && !strings.Contains(name, "/") {
				status[name] = verdict
			}
		}
	}
	var r pkgResult
	for _, name := range order {
		r.Tests++
		switch status[name] {
		case "FAIL", "":
			r.Failed = append(r.Failed, run.Pkg+"."+name)
		case "SKIP":
			r.Skipped = append(r.Skipped, run.Pkg+"."+name)
		}
	}
	if run.Exit != 0 && len(r.Failed) == 0 {
		why := fmt.Sprintf("exit status %d", run.Exit)
		if run.Exit < 0 {
			why = "did not finish"
		}
		r.Failed = append(r.Failed, fmt.Sprintf("%s (%s)", run.Pkg, why))
	}
	return r
}

// Markers /init writes around each package on the VM's test port.
const (
	markUname = "@@hookscope uname "
	markStart = "@@hookscope start "
	markExit  = "@@hookscope exit "
	markDone  = "@@hookscope done"
)

// vmLog is what /init wrote on the VM's test port.
type vmLog struct {
	Release string   // uname -r
	Boot    float64  // seconds from boot to /init's first line
	Runs    []pkgRun // one per package /init started
	Done    bool     // /init reached its end
}

// splitVMLog cuts the VM's test port output into the kernel's release and
// one pkgRun per package /init started. A package with no exit marker (the
// VM stopped or timed out under it) gets Exit -1. Markers are
// "@@hookscope uname RELEASE UPTIME", "@@hookscope start PKG UPTIME",
// "@@hookscope exit PKG STATUS UPTIME" and "@@hookscope done".
func splitVMLog(r io.Reader) (vmLog, error) {
	var l vmLog
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur *pkgRun
	var started float64
	var out strings.Builder
	finish := func(exit int, at float64) {
		if cur != nil {
			cur.Output, cur.Exit = out.String(), exit
			if at > 0 {
				cur.Seconds = at - started
			}
			l.Runs = append(l.Runs, *cur)
			cur = nil
			out.Reset()
		}
	}
	// uptime reads a marker's last field, the guest's seconds since boot.
	uptime := func(f []string, i int) float64 {
		if len(f) <= i {
			return 0
		}
		v, _ := strconv.ParseFloat(f[i], 64)
		return v
	}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, markUname):
			f := strings.Fields(strings.TrimPrefix(line, markUname))
			if len(f) > 0 {
				l.Release, l.Boot = f[0], uptime(f, 1)
			}
		case strings.HasPrefix(line, markStart):
			finish(-1, 0)
			f := strings.Fields(strings.TrimPrefix(line, markStart))
			if len(f) == 0 {
				return l, fmt.Errorf("reading the VM's test log: unexpected line %q", line)
			}
			cur, started = &pkgRun{Pkg: f[0]}, uptime(f, 1)
		case strings.HasPrefix(line, markExit):
			f := strings.Fields(strings.TrimPrefix(line, markExit))
			code := 0
			var err error
			if len(f) >= 2 {
				code, err = strconv.Atoi(f[1])
			}
			if len(f) < 2 || err != nil || cur == nil || f[0] != cur.Pkg {
				return l, fmt.Errorf("reading the VM's test log: unexpected line %q", line)
			}
			finish(code, uptime(f, 2))
		case line == markDone:
			finish(-1, 0)
			l.Done = true
		default:
			if cur != nil {
				out.WriteString(line)
				out.WriteByte('\n')
			}
		}
	}
	finish(-1, 0)
	return l, sc.Err()
}

// summarize folds the packages' results into one kernel's entry.
func summarize(version string, runs []pkgRun, problems []string) (kernelResult, []string) {
	k := kernelResult{Version: version, Failed: []string{}}
	var skipped []string
	for _, run := range runs {
		r := parseTestV(run)
		k.Tests += r.Tests
		k.Failed = append(k.Failed, r.Failed...)
		skipped = append(skipped, r.Skipped...)
	}
	k.Failed = append(k.Failed, problems...)
	sort.Strings(skipped)
	k.Passed = len(k.Failed) == 0 && k.Tests > 0
	if k.Tests == 0 && len(k.Failed) == 0 {
		k.Failed = append(k.Failed, "no test ran")
	}
	return k, skipped
}
