package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCPIOWrite writes a small tree and reads it back as the kernel would:
// newc headers, names, data, 4-byte padding, parents before children.
func TestCPIOWrite(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(host, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tree{}
	tr.file("/usr/sbin/ip", host, 0o755)
	tr.bytes("/init", []byte("x"), 0o755)
	tr.link("/var/run", "../run")
	var buf bytes.Buffer
	if err := tr.write(&buf); err != nil {
		t.Fatal(err)
	}
	type rec struct {
		mode uint64
		data string
	}
	got := map[string]rec{}
	var order []string
	b := buf.Bytes()
	for off := 0; ; {
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		data := string(b[off : off+size])
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			break
		}
		got[name] = rec{mode, data}
		order = append(order, name)
	}
	want := map[string]rec{
		"init":        {0o100755, "x"},
		"usr":         {0o040755, ""},
		"usr/sbin":    {0o040755, ""},
		"usr/sbin/ip": {0o100755, "#!/bin/sh\n"},
		"var":         {0o040755, ""},
		"var/run":     {0o120777, "../run"},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: mode %o data %q, want %o %q", name, got[name].mode, got[name].data, w.mode, w.data)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %d", order, len(want))
	}
	seen := map[string]bool{}
	for _, name := range order {
		if d := filepath.Dir(name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", name, d)
		}
		seen[name] = true
	}
}
