// Command krew packages `kubectl hookscope` as a krew plugin from locally
// built binaries: one archive per platform of the manifest template
// (deploy/krew/hookscope.yaml), holding the binary as kubectl-hookscope
// (and LICENSE, when given), and the manifest with the version and each
// archive's sha256 filled in:
//
//	krew -manifest deploy/krew/hookscope.yaml -out bin/krew -version v0.1.0 \
//	    linux/amd64=bin/hookscope linux/arm64=bin/hookscope-arm64
//
// writes bin/krew/kubectl-hookscope_linux_amd64.tar.gz (the name is the
// last part of the platform's uri), ..._arm64.tar.gz and
// bin/krew/hookscope.yaml. The archives carry fixed times and owners, so the
// same binaries give the same sha256.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Plugin is the part of krew's v1alpha2 Plugin this tool reads and fills;
// the template is read strictly, so a misspelt field fails here.
type Plugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string     `json:"version"`
		Homepage         string     `json:"homepage,omitempty"`
		ShortDescription string     `json:"shortDescription"`
		Description      string     `json:"description,omitempty"`
		Caveats          string     `json:"caveats,omitempty"`
		Platforms        []Platform `json:"platforms"`
	} `json:"spec"`
}

// Platform is one archive of the plugin and the platforms it serves.
type Platform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string `json:"uri"`
	SHA256 string `json:"sha256"`
	Files  []File `json:"files"`
	Bin    string `json:"bin"`
}

// File is one file krew copies out of the archive.
type File struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Name is "os/arch", as the command line names binaries.
func (p Platform) Name() string {
	return p.Selector.MatchLabels["os"] + "/" + p.Selector.MatchLabels["arch"]
}

// versionPlaceholder is what the template's version and uris hold.
const versionPlaceholder = "{{version}}"

// semver is krew's rule for spec.version: v, then a semantic version.
var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// archiveTime is every archive entry's modification time: fixed, so the
// same binaries give the same archives.
var archiveTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	manifest := flag.String("manifest", "deploy/krew/hookscope.yaml", "the manifest template")
	out := flag.String("out", "bin/krew", "where the archives and the manifest go")
	version := flag.String("version", "v0.0.0-dev", "the plugin's version (v and a semantic version)")
	license := flag.String("license", "", "a LICENSE file to put in each archive (none when empty)")
	flag.Parse()
	if err := run(*manifest, *out, *version, *license, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "krew: %v\n", err)
		os.Exit(1)
	}
}

// run builds the archives for the binaries ("os/arch=path") and writes the
// filled manifest into out.
func run(manifest, out, version, license string, binaries []string) error {
	if !semver.MatchString(version) {
		return fmt.Errorf("version %q: krew needs v and a semantic version (v1.2.3, v0.0.0-dev)", version)
	}
	bins := map[string]string{}
	for _, b := range binaries {
		platform, file, ok := strings.Cut(b, "=")
		if !ok {
			return fmt.Errorf("%q: want os/arch=path", b)
		}
		bins[platform] = file
	}
	p, err := readTemplate(manifest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	p.Spec.Version = version
	for i := range p.Spec.Platforms {
		pl := &p.Spec.Platforms[i]
		bin, ok := bins[pl.Name()]
		if !ok {
			return fmt.Errorf("no binary for platform %s of %s", pl.Name(), manifest)
		}
		delete(bins, pl.Name())
		pl.URI = strings.ReplaceAll(pl.URI, versionPlaceholder, version)
		if pl.SHA256, err = writeArchive(filepath.Join(out, path.Base(pl.URI)), pl.Bin, bin, license); err != nil {
			return err
		}
		if license != "" {
			pl.Files = append(pl.Files, File{From: "LICENSE", To: "."})
		}
	}
	if len(bins) > 0 {
		return fmt.Errorf("%s names no platform %s", manifest, strings.Join(slices.Sorted(maps.Keys(bins)), ", "))
	}
	raw, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	dst := filepath.Join(out, filepath.Base(manifest))
	if err := os.WriteFile(dst, raw, 0o644); err != nil {
		return fmt.Errorf("writing the manifest: %w", err)
	}
	fmt.Printf("krew: %s (version %s, %d platforms)\n", dst, version, len(p.Spec.Platforms))
	return nil
}

// readTemplate reads the manifest template strictly and checks what the
// tool relies on.
func readTemplate(manifest string) (*Plugin, error) {
	raw, err := os.ReadFile(manifest)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest template: %w", err)
	}
	var p Plugin
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", manifest, err)
	}
	if p.Kind != "Plugin" || p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" {
		return nil, fmt.Errorf("%s is a %s %s, not a krew v1alpha2 Plugin", manifest, p.APIVersion, p.Kind)
	}
	if len(p.Spec.Platforms) == 0 {
		return nil, fmt.Errorf("%s has no platforms", manifest)
	}
	for _, pl := range p.Spec.Platforms {
		if !strings.Contains(pl.URI, versionPlaceholder) || pl.Bin == "" {
			return nil, fmt.Errorf("%s: platform %s needs a uri with %s and a bin", manifest, pl.Name(), versionPlaceholder)
		}
	}
	return &p, nil
}

// writeArchive writes a .tar.gz at dst holding bin as name (mode 0755) and,
// if license is set, that file as LICENSE; it returns the archive's sha256.
func writeArchive(dst, name, bin, license string) (string, error) {
	type entry struct {
		name, src string
		mode      int64
	}
	entries := []entry{{name, bin, 0o755}}
	if license != "" {
		entries = append(entries, entry{"LICENSE", license, 0o644})
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf) // no name, no time in the header
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		data, err := os.ReadFile(e.src)
		if err != nil {
			return "", fmt.Errorf("archiving %s: %w", e.src, err)
		}
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(data)), ModTime: archiveTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return "", fmt.Errorf("archiving %s: %w", bin, err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}
