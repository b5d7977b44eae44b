package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// initScript is the VM's /init (see init.sh).
//
//go:embed init.sh
var initScript string

// tree is the initramfs's content before it is written: path (no leading
// slash) -> entry. Parent directories are added by write.
type tree map[string]entry

type entry struct {
	mode    uint32 // permission bits; the type comes from the fields below
	dir     bool
	symlink string // target, for a symlink
	host    string // a file on this machine to copy
	data    []byte // or the file's bytes
}

func (t tree) file(dst, host string, mode uint32) {
	t[strings.TrimPrefix(dst, "/")] = entry{mode: mode, host: host}
}
func (t tree) bytes(dst string, b []byte, mode uint32) {
	t[strings.TrimPrefix(dst, "/")] = entry{mode: mode, data: b}
}
func (t tree) link(dst, target string) {
	t[strings.TrimPrefix(dst, "/")] = entry{mode: 0o777, symlink: target}
}
func (t tree) dir(dst string) { t[strings.TrimPrefix(dst, "/")] = entry{mode: 0o755, dir: true} }

// hostProgram adds the host's own program (found on PATH) at /usr/sbin/NAME
// with the shared libraries ldd lists at the paths it lists them.
func (t tree) hostProgram(name string) error {
	p, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("finding the host's %s: %w (install it: ip and tc are in iproute2, setpriv in util-linux)", name, err)
	}
	t.file("/usr/sbin/"+name, p, 0o755)
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		return fmt.Errorf("listing the shared libraries of %s (ldd): %w", p, err)
	}
	// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
	lib := regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := lib.FindStringSubmatch(line); m != nil {
			t.file(m[1], m[1], 0o755) // copied from its real file when m[1] is a symlink
		}
	}
	return nil
}

// write writes t as an uncompressed newc cpio archive (the kernel unpacks it
// without inflating, which matters under emulation).
func (t tree) write(w io.Writer) error {
	for p := range t {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := t[d]; !ok {
				t.dir(d)
			}
		}
	}
	names := make([]string, 0, len(t))
	for p := range t {
		names = append(names, p)
	}
	sort.Strings(names) // a parent sorts before its children
	cw := &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for i, name := range names {
		e := t[name]
		ino := uint32(i + 1)
		var err error
		switch {
		case e.dir:
			err = cw.header(name, ino, 0o040000|e.mode, 2, 0)
		case e.symlink != "":
			if err = cw.header(name, ino, 0o120000|e.mode, 1, int64(len(e.symlink))); err == nil {
				err = cw.body(strings.NewReader(e.symlink), int64(len(e.symlink)))
			}
		case e.host != "":
			err = cw.hostFile(name, ino, e)
		default:
			if err = cw.header(name, ino, 0o100000|e.mode, 1, int64(len(e.data))); err == nil {
				err = cw.body(bytes.NewReader(e.data), int64(len(e.data)))
			}
		}
		if err != nil {
			return fmt.Errorf("writing %s into the initramfs: %w", name, err)
		}
	}
	if err := cw.header("TRAILER!!!", 0, 0, 1, 0); err != nil {
		return err
	}
	return cw.w.Flush()
}

// cpioWriter writes the "newc" format (cpio -H newc), which the kernel's
// initramfs unpacker reads: a 110-byte ASCII header, the NUL-terminated
// name, the data, each padded to 4 bytes.
type cpioWriter struct {
	w   *bufio.Writer
	off int64
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) header(name string, ino, mode, nlink uint32, size int64) error {
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, 0, 0, len(name)+1, 0)
	if err := c.write([]byte(h + name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) body(r io.Reader, size int64) error {
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.off += n
	if err == nil && n != size {
		err = fmt.Errorf("read %d of %d bytes", n, size)
	}
	if err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) hostFile(name string, ino uint32, e entry) error {
	f, err := os.Open(e.host) // follows symlinks: the archive gets the file itself
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := c.header(name, ino, 0o100000|e.mode, 1, st.Size()); err != nil {
		return err
	}
	return c.body(f, st.Size())
}

// testPackage is one package's compiled test binary and its source directory
// (for testdata, which the tests read relative to their working directory).
type testPackage struct {
	Pkg    string // relative to the module: bpf/tcpstate
	Dir    string // its directory on this machine
	Binary string // the go test -c output
}

// buildInitramfs writes the VM's root: busybox, the host's ip/tc/setpriv
// with their libraries, the kernel's modules in load order, each package's
// test binary and testdata under /pkg/<pkg>, and /init.
func buildInitramfs(out string, busybox string, modules []string, pkgs []testPackage) (int64, error) {
	t := tree{}
	t.file("/bin/busybox", busybox, 0o755)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc", "/sbin", "/usr/bin"} {
		t.dir(d)
	}
	t.link("/var/run", "../run") // vishvananda/netns looks for /var/run/netns
	t.bytes("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	for _, name := range []string{"ip", "tc", "setpriv"} {
		if err := t.hostProgram(name); err != nil {
			return 0, err
		}
	}
	for i, m := range modules {
		t.file(fmt.Sprintf("/modules/%02d-%s", i, filepath.Base(m)), m, 0o644)
	}
	var list strings.Builder
	for _, p := range pkgs {
		t.file("/pkg/"+p.Pkg+"/test.bin", p.Binary, 0o755)
		td := filepath.Join(p.Dir, "testdata")
		err := filepath.WalkDir(td, func(f string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(p.Dir, f)
			t.file("/pkg/"+p.Pkg+"/"+filepath.ToSlash(rel), f, 0o644)
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return 0, fmt.Errorf("copying %s: %w", td, err)
		}
		list.WriteString(p.Pkg + "\n")
	}
	t.bytes("/packages", []byte(list.String()), 0o644)
	t.bytes("/init", []byte(initScript), 0o755)

	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	if err := t.write(f); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}
