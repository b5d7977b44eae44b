package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayout: the OCI layout's index names one manifest per architecture,
// every descriptor's digest and size match the blob it names, the config
// says the architecture and runs /hookscope agent, and the layer holds the
// binary; the docker archive names the same config and layer.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	bins := map[string][]byte{"amd64": []byte("amd64 binary"), "arm64": []byte("arm64 binary!")}
	var args []string
	for arch, b := range bins {
		p := filepath.Join(dir, arch)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, arch+"="+p)
	}
	out := filepath.Join(dir, "out")
	if err := run(out, "hookscope:test", args); err != nil {
		t.Fatal(err)
	}
	oci := filepath.Join(out, "oci")
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(oci, "index.json"), &index)
	if len(index.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(index.Manifests))
	}
	for _, m := range index.Manifests {
		var man struct {
			Config descriptor   `json:"config"`
			Layers []descriptor `json:"layers"`
		}
		readJSON(t, blobPath(t, oci, m), &man)
		var cfg struct {
			Architecture string `json:"architecture"`
			Config       struct {
				Entrypoint, Cmd []string
			} `json:"config"`
		}
		readJSON(t, blobPath(t, oci, man.Config), &cfg)
		if cfg.Architecture != m.Platform.Architecture || strings.Join(cfg.Config.Entrypoint, " ") != "/hookscope" || strings.Join(cfg.Config.Cmd, " ") != "agent" {
			t.Errorf("config %+v for platform %+v", cfg, m.Platform)
		}
		layer, err := os.ReadFile(blobPath(t, oci, man.Layers[0]))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(bytes.NewReader(layer))
		h, err := tr.Next()
		if err != nil || h.Name != "hookscope" || h.Mode&0o111 == 0 {
			t.Fatalf("layer entry %+v, %v", h, err)
		}
		body, _ := io.ReadAll(tr)
		if !bytes.Equal(body, bins[cfg.Architecture]) {
			t.Errorf("the %s layer holds %q", cfg.Architecture, body)
		}
	}
	ar, err := os.ReadFile(filepath.Join(out, "hookscope-arm64.tar"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(ar))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[h.Name] = true
	}
	if !names["manifest.json"] || len(names) != 3 {
		t.Errorf("docker archive holds %v", names)
	}
}

// blobPath is the blob d names, after checking its digest and size.
func blobPath(t *testing.T, oci string, d descriptor) string {
	t.Helper()
	p := filepath.Join(oci, "blobs", "sha256", strings.TrimPrefix(d.Digest, "sha256:"))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || len(b) != d.Size {
		t.Fatalf("blob %s: digest or size (%d) do not match its descriptor %+v", p, len(b), d)
	}
	return p
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
