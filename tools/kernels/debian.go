package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A track is where a VM's kernel comes from: the newest linux-image-amd64
// of a Debian release, as apt offers it.
type track struct {
	Name  string // bookworm, trixie
	Suite string // the apt suite whose linux-image-amd64 is used
	// System: this machine's own apt sources have the suite (bookworm).
	// Otherwise a source list of its own, under the cache, is used for
	// `apt-get download` only; the machine's sources are left as they are.
	System bool
}

var tracks = map[string]track{
	"bookworm": {Name: "bookworm", Suite: "bookworm", System: true}, // Linux 6.1, as EKS's AL2023 and Bottlerocket run
	"trixie":   {Name: "trixie", Suite: "trixie"},                   // Linux 6.12
}

// The modules the tests need that Debian builds as modules: veth (pod
// networks), sch_ingress (clsact) and cls_bpf (the TC fallback before tcx),
// tun (paged packets), 8021q (VLAN devices: a branch ENI's pod). Their
// dependencies are found in their .modinfo.
var wantModules = []string{"veth", "sch_ingress", "cls_bpf", "tun", "8021q"}

// apt runs apt-get or apt-cache with extra options, in dir.
type apt struct {
	opts []string
}

func (a apt) run(dir, tool string, args ...string) (string, error) {
	cmd := exec.Command(tool, append(append([]string{"-o", "APT::Sandbox::User=root"}, a.opts...), args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// aptFor returns the apt options for the track: none for the machine's own
// sources, else a source list of the suite on the machine's Debian mirror,
// with package lists under cacheDir, refreshed once a day.
func aptFor(tr track, cacheDir string) (apt, error) {
	if tr.System {
		return apt{}, nil
	}
	dir := filepath.Join(cacheDir, "apt-"+tr.Name)
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return apt{}, err
		}
	}
	mirror, err := debianMirror()
	if err != nil {
		return apt{}, err
	}
	list := filepath.Join(dir, "sources.list")
	line := fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", mirror, tr.Suite)
	if err := os.WriteFile(list, []byte(line), 0o644); err != nil {
		return apt{}, err
	}
	a := apt{opts: []string{
		"-o", "Dir::Etc::SourceList=" + list,
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "none"),
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
	}}
	stamp := filepath.Join(dir, "updated")
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < 24*time.Hour {
		return a, nil
	}
	if _, err := a.run(dir, "apt-get", "update", "-qq"); err != nil {
		return apt{}, fmt.Errorf("reading %s's package lists: %w", tr.Suite, err)
	}
	return a, os.WriteFile(stamp, nil, 0o644)
}

// debianMirror is the Debian archive this machine's apt already uses (the
// URI of its bookworm main source), so no host is named here.
func debianMirror() (string, error) {
	out, err := apt{}.run("", "apt-cache", "policy")
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*\d+\s+(\S+)\s+bookworm/main\s`).FindStringSubmatch(out)
	if m == nil {
		return "", errors.New("finding the Debian archive in apt-cache policy: no bookworm/main source (this machine's apt sources must have Debian bookworm)")
	}
	return m[1], nil
}

// kernelPackage is the linux-image package the suite's linux-image-amd64
// depends on, e.g. linux-image-6.1.0-57-amd64.
func kernelPackage(a apt, tr track) (string, error) {
	re := regexp.MustCompile(`Depends: (linux-image-\S+-amd64)\b`)
	out, err := a.run("", "apt-cache", "depends", "linux-image-amd64")
	if (err != nil || !re.MatchString(out)) && tr.System {
		// A fresh machine may have no package lists yet.
		if _, uerr := a.run("", "apt-get", "update", "-qq"); uerr != nil {
			return "", fmt.Errorf("apt-get update: %w", uerr)
		}
		out, err = a.run("", "apt-cache", "depends", "linux-image-amd64")
	}
	if err != nil {
		return "", err
	}
	m := re.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("finding %s's kernel: linux-image-amd64 depends on no linux-image-*-amd64:\n%s", tr.Suite, out)
	}
	return m[1], nil
}

// fetchDeb downloads pkg's .deb into dir unless one is there, and unpacks
// it into dir/<pkg>. It returns that directory.
func fetchDeb(a apt, dir, pkg string) (root string, fetched bool, err error) {
	root = filepath.Join(dir, pkg)
	done := filepath.Join(root, ".unpacked")
	if _, err := os.Stat(done); err == nil {
		return root, false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		if _, err := a.run(dir, "apt-get", "download", "-qq", pkg); err != nil {
			return "", false, fmt.Errorf("downloading %s: %w", pkg, err)
		}
		fetched = true
		if debs, _ = filepath.Glob(filepath.Join(dir, pkg+"_*.deb")); len(debs) == 0 {
			return "", false, fmt.Errorf("downloading %s: apt-get left no %s_*.deb in %s", pkg, pkg, dir)
		}
	}
	os.RemoveAll(root)
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("unpacking %s: %w: %s", debs[0], err, out)
	}
	return root, fetched, os.WriteFile(done, nil, 0o644)
}

// kernelFiles finds the unpacked kernel's vmlinuz and the modules the tests
// need, with their dependencies first, decompressed (busybox's xzcat) where
// Debian compresses them: the VM's busybox insmod takes plain .ko files.
func kernelFiles(root, busybox string) (vmlinuz string, modules []string, err error) {
	vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vms) != 1 {
		return "", nil, fmt.Errorf("finding the kernel in %s/boot: %d vmlinuz files", root, len(vms))
	}
	var modDir string
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if m, _ := filepath.Glob(filepath.Join(root, d, "*")); len(m) == 1 {
			modDir = m[0]
		}
	}
	if modDir == "" {
		return vms[0], nil, fmt.Errorf("finding the kernel's modules in %s: no lib/modules/<release>", root)
	}
	files := map[string]string{} // module name -> path
	filepath.WalkDir(modDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			base := d.Name()
			if i := strings.Index(base, ".ko"); i > 0 {
				files[strings.ReplaceAll(base[:i], "-", "_")] = p
			}
		}
		return nil
	})
	builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	seen := map[string]bool{}
	var add func(name string) error
	add = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return nil
		}
		seen[name] = true
		src, ok := files[name]
		if !ok {
			if bytes.Contains(builtin, []byte("/"+name+".ko\n")) || bytes.Contains(builtin, []byte("/"+strings.ReplaceAll(name, "_", "-")+".ko\n")) {
				return nil // built into this kernel
			}
			return fmt.Errorf("module %s: neither in %s nor built in", name, modDir)
		}
		ko, err := plainModule(src, busybox)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := add(d); err != nil {
				return fmt.Errorf("%w (needed by %s)", err, name)
			}
		}
		modules = append(modules, ko)
		return nil
	}
	for _, m := range wantModules {
		if err := add(m); err != nil {
			return "", nil, err
		}
	}
	return vms[0], modules, nil
}

// plainModule returns an uncompressed copy of a .ko, .ko.xz or .ko.zst.
func plainModule(src, busybox string) (string, error) {
	switch {
	case strings.HasSuffix(src, ".ko"):
		return src, nil
	case strings.HasSuffix(src, ".ko.xz"):
		dst := strings.TrimSuffix(src, ".xz")
		if _, err := os.Stat(dst); err == nil {
			return dst, nil
		}
		out, err := exec.Command(busybox, "xzcat", src).Output()
		if err != nil {
			return "", fmt.Errorf("decompressing %s: %w", src, err)
		}
		return dst, os.WriteFile(dst, out, 0o644)
	}
	return "", fmt.Errorf("module %s: compression not handled (only .ko and .ko.xz)", src)
}

// moduleDepends reads "depends=" from a module's .modinfo section.
func moduleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("reading module %s: no .modinfo section", ko)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", ko, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
