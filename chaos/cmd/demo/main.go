//go:build linux

// Command demo brings up the game day's lab on this machine and leaves it
// running for a person to try hookscope on: a local cluster (real
// kube-apiserver and etcd, kwok nodes), Jaeger on loopback, the hookscope
// agent, and one broken admission webhook (its server presents an expired
// certificate, and it fails closed for the pods of one namespace only).
//
//	demo up   -agent bin/hookscope   # prints what to try, and how to stop it
//	demo down                        # stops all of it, and checks nothing is left
//
// up starts a background process that holds the lab (it also serves the
// webhook, from a network namespace) and returns once the agent has named
// the failure. Both keep their state under one directory
// ($HOOKSCOPE_CACHE/demo, else ~/.cache/hookscope/demo): state.json, the
// background process's log (demo.log) and the lab's files. Both are
// idempotent: up with a demo running says so, down with none says so; each
// exits 0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// roleEnv, set to "serve", makes the process the background one that holds
// the lab: up starts its own executable again with it.
const roleEnv = "HOOKSCOPE_DEMO_ROLE"

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is the command line: up, down, or (with roleEnv) the background
// process. It returns the exit code.
func run(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", defaultDir(), "where the demo keeps its state, logs and the lab's files")
	agent := fs.String("agent", "", "the hookscope binary the agent runs (empty: build ./cmd/hookscope)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: demo up|down [-dir DIR] [-agent BIN]")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	verb := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	if *agent != "" {
		if *agent, err = filepath.Abs(*agent); err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
	}
	if os.Getenv(roleEnv) == "serve" {
		return serve(abs, *agent)
	}
	switch verb {
	case "up":
		err = up(abs, *agent)
	case "down":
		err = down(abs)
	default:
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo %s: %v\n", verb, err)
		return 1
	}
	return 0
}

// defaultDir is $HOOKSCOPE_CACHE/demo, else ~/.cache/hookscope/demo.
func defaultDir() string {
	if c := os.Getenv("HOOKSCOPE_CACHE"); c != "" {
		return filepath.Join(c, "demo")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hookscope-demo")
	}
	return filepath.Join(home, ".cache", "hookscope", "demo")
}

// errNotRoot is what up says where the lab cannot run.
var errNotRoot = errors.New("the demo needs root: it creates network namespaces and loads eBPF programs")
