package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const template = "../../deploy/krew/hookscope.yaml"

// TestManifest packages two stand-in binaries with the repository's
// template and reads the result back as krew would: the manifest parses,
// names linux/amd64 and linux/arm64, each uri is the release URL of its
// archive, each sha256 is its archive's, and each archive holds that
// platform's binary as kubectl-hookscope (executable) and the LICENSE.
func TestManifest(t *testing.T) {
	dir := t.TempDir()
	bins := map[string][]byte{
		"linux/amd64": []byte("\x7fELF amd64 stand-in"),
		"linux/arm64": []byte("\x7fELF arm64 stand-in"),
	}
	var args []string
	for platform, data := range bins {
		f := filepath.Join(dir, strings.ReplaceAll(platform, "/", "-"))
		if err := os.WriteFile(f, data, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, platform+"="+f)
	}
	license := filepath.Join(dir, "LICENSE")
	if err := os.WriteFile(license, []byte("license text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "krew")
	if err := run(template, out, "v1.2.3", license, args); err != nil {
		t.Fatal(err)
	}
	got := checkManifest(t, filepath.Join(out, "hookscope.yaml"), "v1.2.3")
	if raw, _ := os.ReadFile(filepath.Join(out, "hookscope.yaml")); strings.Count(string(raw), "from: LICENSE") != 2 {
		t.Errorf("the manifest does not copy LICENSE out of both archives:\n%s", raw)
	}
	for platform, data := range bins {
		files := readArchive(t, got[platform])
		if !bytes.Equal(files["kubectl-hookscope"].data, data) || files["kubectl-hookscope"].mode != 0o755 {
			t.Errorf("%s: kubectl-hookscope in the archive is %q (mode %o), want %q (0755)", platform, files["kubectl-hookscope"].data, files["kubectl-hookscope"].mode, data)
		}
		if string(files["LICENSE"].data) != "license text\n" {
			t.Errorf("%s: LICENSE in the archive is %q", platform, files["LICENSE"].data)
		}
	}

	// The same binaries give the same archives.
	first, _ := os.ReadFile(got["linux/amd64"])
	if err := run(template, out, "v1.2.3", license, args); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(got["linux/amd64"]); !bytes.Equal(first, again) {
		t.Error("packaging the same binary twice gave two different archives")
	}
}

// TestManifestRefuses: a platform without its binary, a binary without a
// platform, and a version krew would reject all fail.
func TestManifestRefuses(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		version string
		args    []string
	}{
		"arm64 missing":   {"v1.0.0", []string{"linux/amd64=" + bin}},
		"darwin unknown":  {"v1.0.0", []string{"linux/amd64=" + bin, "linux/arm64=" + bin, "darwin/arm64=" + bin}},
		"not semver":      {"1.0", []string{"linux/amd64=" + bin, "linux/arm64=" + bin}},
		"no path":         {"v1.0.0", []string{"linux/amd64"}},
		"leading zero v0": {"v01.0.0", []string{"linux/amd64=" + bin, "linux/arm64=" + bin}},
	} {
		if err := run(template, filepath.Join(dir, "out"), c.version, "", c.args); err == nil {
			t.Errorf("%s: packaged, want an error", name)
		}
	}
}

// TestBuiltManifest checks what `make krew` wrote into bin/krew, when it
// has run: the same checks on the real archives.
func TestBuiltManifest(t *testing.T) {
	built := "../../bin/krew/hookscope.yaml"
	if _, err := os.Stat(built); err != nil {
		t.Skip("bin/krew/hookscope.yaml is not there: run `make krew`")
	}
	raw, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	var p Plugin
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for _, archive := range checkManifest(t, built, p.Spec.Version) {
		files := readArchive(t, archive)
		if bin := files["kubectl-hookscope"]; len(bin.data) < 4 || string(bin.data[:4]) != "\x7fELF" || bin.mode != 0o755 {
			t.Errorf("%s: kubectl-hookscope is not an executable ELF binary (mode %o)", archive, bin.mode)
		}
	}
}

// checkManifest parses the written manifest on its own terms and returns
// each platform's archive (beside the manifest, named by its uri) after
// checking its sha256.
func checkManifest(t *testing.T, manifest, version string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var p Plugin
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatalf("the written manifest does not parse: %v\n%s", err, raw)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "hookscope" {
		t.Errorf("manifest is %s %s %s", p.APIVersion, p.Kind, p.Metadata.Name)
	}
	if p.Spec.Version != version || !semver.MatchString(version) {
		t.Errorf("spec.version %q, want %q", p.Spec.Version, version)
	}
	archives := map[string]string{}
	var names []string
	for _, pl := range p.Spec.Platforms {
		names = append(names, pl.Name())
		wantURI := "https://github.com/hookscope/hookscope/releases/download/" + version + "/kubectl-hookscope_" + strings.ReplaceAll(pl.Name(), "/", "_") + ".tar.gz"
		if pl.URI != wantURI {
			t.Errorf("%s: uri %s, want %s", pl.Name(), pl.URI, wantURI)
		}
		if pl.Bin != "kubectl-hookscope" || len(pl.Files) == 0 || pl.Files[0].From != "kubectl-hookscope" {
			t.Errorf("%s: bin %q, files %+v", pl.Name(), pl.Bin, pl.Files)
		}
		archive := filepath.Join(filepath.Dir(manifest), path.Base(pl.URI))
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if pl.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: sha256 %s, but %s has %x", pl.Name(), pl.SHA256, archive, sum)
		}
		archives[pl.Name()] = archive
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", names)
	}
	return archives
}

// archived is one file of an archive.
type archived struct {
	data []byte
	mode int64
}

// readArchive reads a .tar.gz whole.
func readArchive(t *testing.T, archive string) map[string]archived {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]archived{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading %s: %v", archive, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = archived{data, hdr.Mode}
	}
}
