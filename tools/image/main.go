// Command image assembles hookscope's container image for amd64 and arm64
// from the static binaries, with no builder, no base image and no emulation
// (the image is the one file /hookscope, as the Dockerfile's FROM scratch
// makes it):
//
//	image -out bin/image -tag hookscope:dev amd64=bin/hookscope-agent arm64=bin/hookscope-agent-arm64
//
// writes an OCI image layout (bin/image/oci: an index with one manifest per
// architecture, which `skopeo copy oci:bin/image/oci docker://REGISTRY/...`
// or any OCI tool pushes as one multi-arch image) and one `docker load`
// archive per architecture (bin/image/hookscope-<arch>.tar).
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// created is the images' creation time: fixed, so the same binaries give
// the same digests.
var created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// blob is one piece of content, named by its digest.
type blob struct {
	data   []byte
	digest string // sha256:<hex>
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, digest: "sha256:" + hex.EncodeToString(sum[:])}
}

func (b blob) hex() string { return strings.TrimPrefix(b.digest, "sha256:") }

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType string            `json:"mediaType"`
	Digest    string            `json:"digest"`
	Size      int               `json:"size"`
	Platform  *platform         `json:"platform,omitempty"`
	Annots    map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// image is one architecture's image: its layer, config and manifest.
type image struct {
	arch                    string
	layer, config, manifest blob
}

// build makes the image of one architecture from its binary.
func build(arch string, binary []byte) (image, error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "hookscope", Mode: 0o755, Size: int64(len(binary)), ModTime: created, Typeflag: tar.TypeReg}); err != nil {
		return image{}, err
	}
	if _, err := tw.Write(binary); err != nil {
		return image{}, err
	}
	if err := tw.Close(); err != nil {
		return image{}, err
	}
	img := image{arch: arch, layer: newBlob(tb.Bytes())}
	cfg, err := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux", "created": created,
		"config": map[string]any{"Entrypoint": []string{"/hookscope"}, "Cmd": []string{"agent"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{img.layer.digest}},
	})
	if err != nil {
		return image{}, err
	}
	img.config = newBlob(cfg)
	man, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: img.config.digest, Size: len(img.config.data)},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: img.layer.digest, Size: len(img.layer.data)}},
	})
	if err != nil {
		return image{}, err
	}
	img.manifest = newBlob(man)
	return img, nil
}

// writeLayout writes the OCI image layout of imgs under dir, tagged tag.
func writeLayout(dir, tag string, imgs []image) error {
	var manifests []descriptor
	for _, img := range imgs {
		for _, b := range []blob{img.layer, img.config, img.manifest} {
			if err := writeFile(filepath.Join(dir, "blobs", "sha256", b.hex()), b.data); err != nil {
				return err
			}
		}
		manifests = append(manifests, descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: img.manifest.digest,
			Size: len(img.manifest.data), Platform: &platform{Architecture: img.arch, OS: "linux"},
			Annots: map[string]string{"org.opencontainers.image.ref.name": tag}})
	}
	index, err := json.MarshalIndent(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "index.json"), index); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
}

// dockerArchive is the `docker load` tar of one image, tagged tag.
func dockerArchive(img image, tag string) ([]byte, error) {
	man, err := json.Marshal([]map[string]any{{"Config": img.config.hex() + ".json", "RepoTags": []string{tag}, "Layers": []string{img.layer.hex() + "/layer.tar"}}})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct {
		name string
		data []byte
	}{{img.config.hex() + ".json", img.config.data}, {img.layer.hex() + "/layer.tar", img.layer.data}, {"manifest.json", man}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: created, Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), tw.Close()
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func main() {
	out := flag.String("out", "bin/image", "where the OCI layout (oci/) and the docker archives go")
	tag := flag.String("tag", "hookscope:dev", "the image's name and tag")
	flag.Parse()
	if err := run(*out, *tag, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// run builds one image per ARCH=BINARY argument.
func run(out, tag string, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("name the binaries: ARCH=PATH ... (e.g. amd64=bin/hookscope-agent arm64=bin/hookscope-agent-arm64)")
	}
	var imgs []image
	for _, a := range args {
		arch, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want ARCH=PATH", a)
		}
		bin, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading the %s binary: %w", arch, err)
		}
		img, err := build(arch, bin)
		if err != nil {
			return fmt.Errorf("building the %s image: %w", arch, err)
		}
		ar, err := dockerArchive(img, tag+"-"+arch)
		if err != nil {
			return fmt.Errorf("writing the %s archive: %w", arch, err)
		}
		if err := writeFile(filepath.Join(out, "hookscope-"+arch+".tar"), ar); err != nil {
			return err
		}
		fmt.Printf("image: %s-%s: manifest %s, %d MB\n", tag, arch, img.manifest.digest[:19], len(img.layer.data)>>20)
		imgs = append(imgs, img)
	}
	if err := writeLayout(filepath.Join(out, "oci"), tag, imgs); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	fmt.Printf("image: %s: OCI layout with %d architectures in %s\n", tag, len(imgs), filepath.Join(out, "oci"))
	return nil
}
