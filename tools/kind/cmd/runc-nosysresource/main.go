// Command runc-nosysresource is runc with CAP_SYS_RESOURCE taken out of every
// container's capabilities. Docker registers it as its default runtime on
// machines whose capability bounding set lacks CAP_SYS_RESOURCE: there a
// privileged container (every kind node is one) asks for all capabilities and
// runc fails with "unable to apply caps". The same machine cannot lower a
// process's oom_score_adj below its parent's without CAP_SYS_RESOURCE, so
// inside a kind node (where kubelet asks -998 for pod sandboxes and critical
// pods) runc fails with "can't get final child's PID from pipe"; a negative
// oomScoreAdj below this process's own is raised to it. And Debian's Docker
// (20.10) predates CAP_PERFMON, CAP_BPF and CAP_CHECKPOINT_RESTORE, so its
// privileged containers (kind's nodes) lack them and a pod inside a node
// cannot be given them ("unable to apply caps"); a privileged container (one
// that holds CAP_SYS_MODULE, which only --privileged grants) gets them in
// every set that holds CAP_SYS_ADMIN. Nothing else is changed.
//
// It edits the OCI bundle's config.json before `runc create` / `runc run`, and
// the process file of `runc exec --process FILE` (docker exec --privileged),
// then executes the real runc (HOOKSCOPE_REAL_RUNC, default /usr/sbin/runc)
// with the same arguments.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

const dropped = "CAP_SYS_RESOURCE"

// newer are the capabilities newer than Docker 20.10, which a privileged
// container gets from a newer Docker.
var newer = []string{"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

func main() {
	real := os.Getenv("HOOKSCOPE_REAL_RUNC")
	if real == "" {
		real = "/usr/sbin/runc"
	}
	if err := rewrite(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "runc-nosysresource: %v\n", err)
		os.Exit(1)
	}
	err := syscall.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-nosysresource: executing %s: %v\n", real, err)
	os.Exit(1)
}

// rewrite drops the capability from the files the runc command line names.
func rewrite(args []string) error {
	cmd, rest := subcommand(args)
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return dropFromFile(filepath.Join(bundle, "config.json"), func(doc map[string]any) map[string]any {
			p, _ := doc["process"].(map[string]any)
			return p
		})
	case "exec":
		if p := flagValue(rest, "--process", "-p"); p != "" {
			return dropFromFile(p, func(doc map[string]any) map[string]any { return doc })
		}
	}
	return nil
}

// subcommand finds runc's command after its global flags (those that take a
// value are listed; the rest are booleans).
func subcommand(args []string) (string, []string) {
	withValue := []string{"--root", "--log", "--log-format", "--criu", "--rootless"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 0 && a[0] != '-' {
			return a, args[i+1:]
		}
		if slices.Contains(withValue, a) {
			i++
		}
	}
	return "", nil
}

// flagValue returns the value of a flag given as "--f V", "--f=V" or "-f V".
func flagValue(args []string, long, short string) string {
	for i, a := range args {
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1]
		}
		if len(a) > len(long)+1 && a[:len(long)+1] == long+"=" {
			return a[len(long)+1:]
		}
	}
	return ""
}

// dropFromFile removes the capability from every set of the process object
// that process picks out of the JSON file, keeping all other fields.
func dropFromFile(path string, process func(map[string]any) map[string]any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	p := process(doc)
	caps, _ := p["capabilities"].(map[string]any)
	changed := false
	if adj, ok := p["oomScoreAdj"].(float64); ok {
		if floor := ownOOMScoreAdj(); adj < floor {
			p["oomScoreAdj"] = floor
			changed = true
		}
	}
	bounding, _ := caps["bounding"].([]any)
	privileged := slices.Contains(bounding, any("CAP_SYS_MODULE"))
	for set, v := range caps {
		list, _ := v.([]any)
		kept := slices.DeleteFunc(slices.Clone(list), func(c any) bool { return c == dropped })
		if privileged && slices.Contains(kept, any("CAP_SYS_ADMIN")) {
			for _, c := range newer {
				if !slices.Contains(kept, any(c)) {
					kept = append(kept, c)
				}
			}
		}
		if len(kept) != len(list) {
			caps[set] = kept
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, out, st.Mode().Perm()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ownOOMScoreAdj is this process's oom_score_adj: without CAP_SYS_RESOURCE a
// child may not go below it. An unreadable value is taken as 0.
func ownOOMScoreAdj() float64 {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return float64(v)
}
