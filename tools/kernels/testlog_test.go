package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTestV(t *testing.T) {
	for _, c := range []struct {
		name string
		run  pkgRun
		want pkgResult
	}{
		{
			name: "pass, fail, skip, subtests not counted",
			run: pkgRun{Pkg: "bpf/tcpstate", Exit: 1, Output: `=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/sub
    --- FAIL: TestB/sub (0.01s)
--- FAIL: TestB (0.01s)
=== RUN   TestC
    c_test.go:10: needs root
--- SKIP: TestC (0.00s)
=== RUN   FuzzD
--- PASS: FuzzD (0.00s)
FAIL
`},
			want: pkgResult{Tests: 4, Failed: []string{"bpf/tcpstate.TestB"}, Skipped: []string{"bpf/tcpstate.TestC"}},
		},
		{
			name: "a panic in a test: its FAIL line, then the panic",
			run:  pkgRun{Pkg: "p", Exit: 2, Output: "=== RUN   TestA\r\n--- PASS: TestA (0.00s)\r\n=== RUN   TestB\r\n--- FAIL: TestB (0.00s)\r\npanic: boom [recovered]\r\n"},
			want: pkgResult{Tests: 2, Failed: []string{"p.TestB"}},
		},
		{
			name: "the VM stopped under a test: it never finished",
			run:  pkgRun{Pkg: "p", Exit: -1, Output: "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n"},
			want: pkgResult{Tests: 2, Failed: []string{"p.TestB"}},
		},
		{
			name: "non-zero exit with no failed test",
			run:  pkgRun{Pkg: "p", Exit: 1, Output: "=== RUN   TestA\n--- PASS: TestA (0.00s)\nsomething broke\n"},
			want: pkgResult{Tests: 1, Failed: []string{"p (exit status 1)"}},
		},
		{
			name: "an indented result of a subtest named like a top-level test does not count",
			run:  pkgRun{Pkg: "p", Exit: 0, Output: "=== RUN   TestA\n    --- FAIL: TestA (0.00s)\n--- PASS: TestA (0.00s)\nPASS\n"},
			want: pkgResult{Tests: 1},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseTestV(c.run); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestSplitVMLog(t *testing.T) {
	log := strings.Join([]string{
		"noise before",
		"@@hookscope uname 6.1.0-57-amd64 2.25",
		"@@hookscope start bpf/handshake 2.50",
		"=== RUN   TestA",
		"--- PASS: TestA (0.00s)",
		"@@hookscope exit bpf/handshake 0 20.00",
		"@@hookscope start bpf/tcpstate 20.10",
		"=== RUN   TestB",
		"", // the VM timed out here
	}, "\r\n")
	l, err := splitVMLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	runs := l.Runs
	if l.Release != "6.1.0-57-amd64" || l.Boot != 2.25 || l.Done || len(runs) != 2 {
		t.Fatalf("log %+v", l)
	}
	if runs[0].Pkg != "bpf/handshake" || runs[0].Exit != 0 || runs[0].Seconds != 17.5 || runs[0].Output != "=== RUN   TestA\n--- PASS: TestA (0.00s)\n" {
		t.Errorf("first run %+v", runs[0])
	}
	if runs[1].Pkg != "bpf/tcpstate" || runs[1].Exit != -1 || runs[1].Seconds != 0 {
		t.Errorf("unfinished run %+v", runs[1])
	}
	k, _ := summarize(l.Release, runs, nil)
	if k.Passed || k.Tests != 2 || !reflect.DeepEqual(k.Failed, []string{"bpf/tcpstate.TestB"}) {
		t.Errorf("summary %+v", k)
	}
}

func TestSummarizeNoTests(t *testing.T) {
	k, _ := summarize("6.1", nil, nil)
	if k.Passed || len(k.Failed) != 1 {
		t.Errorf("a kernel that ran no test passed: %+v", k)
	}
}
