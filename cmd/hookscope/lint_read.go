package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// manifestObject is one Kubernetes object of lint's input, with where it
// was read.
type manifestObject struct {
	where    manifestPlace
	apiGroup string // from apiVersion: "" for v1, "apps", ...
	version  string
	kind     string
	name     string
	raw      json.RawMessage // the object as JSON
}

// manifestPlace is where an object was read: a file (or "-"), the
// document's index in it (from 1), the line the document starts on, and
// the template Helm rendered it from (its "# Source:" comment), if any.
type manifestPlace struct {
	file   string
	doc    int
	line   int
	source string
}

func (p manifestPlace) String() string {
	s := fmt.Sprintf("%s: document %d (line %d)", p.file, p.doc, p.line)
	if p.source != "" {
		s += " from " + p.source
	}
	return s
}

// readManifests reads every object of the inputs: files, directories
// (recursively: .yaml, .yml and .json files) and "-" (stdin). A document
// that does not parse is an error naming its file, index and line; the
// documents around it are read all the same.
func readManifests(inputs []string, stdin io.Reader) (objs []manifestObject, errs []error) {
	for _, in := range inputs {
		if in == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading stdin: %w", err))
				continue
			}
			o, e := parseManifest("-", b)
			objs, errs = append(objs, o...), append(errs, e...)
			continue
		}
		files, err := manifestFiles(in)
		if err != nil {
			errs = append(errs, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading %s: %w", f, err))
				continue
			}
			o, e := parseManifest(f, b)
			objs, errs = append(objs, o...), append(errs, e...)
		}
	}
	return objs, errs
}

// manifestFiles is path itself when it is a file, else the manifest files
// under it in lexical order (hidden directories, such as .git, skipped).
func manifestFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p != path && strings.HasPrefix(d.Name(), "."):
			return filepath.SkipDir
		case d.IsDir():
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return files, fmt.Errorf("reading directory %s: %w", path, err)
	}
	return files, nil
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	text []byte
	line int
}

// splitDocuments splits a multi-document YAML file at its "---" lines.
// Documents with nothing but comments and blank lines (Helm renders many)
// are kept, for the index of each document to be the one YAML tools
// count; the comments before the first "---" are not one.
func splitDocuments(b []byte) []document {
	var (
		docs []document
		cur  bytes.Buffer
		at   = 1
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	flush := func(next int) {
		docs = append(docs, document{text: bytes.Clone(cur.Bytes()), line: at})
		cur.Reset()
		at = next
	}
	n, seps := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t") {
			seps++
			if seps == 1 && empty(cur.Bytes()) {
				// Comments before the first "---" are no document.
				cur.Reset()
				at = n + 1
				continue
			}
			flush(n + 1)
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush(n + 1)
	return docs
}

// empty reports whether a document holds only comments and blank lines.
func empty(text []byte) bool {
	for _, l := range strings.Split(string(text), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// helmSource is the template a Helm-rendered document came from.
func helmSource(text []byte) string {
	for _, l := range strings.Split(string(text), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "# Source: "); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// parseManifest reads the objects of one file; a List (kubectl get -o
// yaml of several objects) gives its items.
func parseManifest(file string, b []byte) (objs []manifestObject, errs []error) {
	for i, d := range splitDocuments(b) {
		if empty(d.text) {
			continue
		}
		where := manifestPlace{file: file, doc: i + 1, line: d.line, source: helmSource(d.text)}
		j, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not YAML: %s", where, inFile(err, d.line)))
			continue
		}
		o, err := objectsOf(where, j)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		objs = append(objs, o...)
	}
	return objs, errs
}

// typeHead is what every object says of itself.
type typeHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func objectsOf(where manifestPlace, j []byte) ([]manifestObject, error) {
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, nil
	}
	var h typeHead
	if err := json.Unmarshal(j, &h); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if h.Kind == "" || h.APIVersion == "" {
		return nil, fmt.Errorf("not a Kubernetes object: no apiVersion or kind")
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		var out []manifestObject
		for n, item := range h.Items {
			o, err := objectsOf(where, item)
			if err != nil {
				return out, fmt.Errorf("item %d: %w", n, err)
			}
			out = append(out, o...)
		}
		return out, nil
	}
	group, version, ok := strings.Cut(h.APIVersion, "/")
	if !ok {
		group, version = "", h.APIVersion
	}
	return []manifestObject{{where: where, apiGroup: group, version: version, kind: h.Kind, name: h.Metadata.Name, raw: j}}, nil
}

// yamlLine is how the YAML parser names the line of an error: within
// the document.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// inFile is a YAML error with its line counted in the file, not the
// document that starts at line start.
func inFile(err error, start int) string {
	msg := err.Error()
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(m[1])
	return fmt.Sprintf("line %d: %s", start+n-1, msg[len(m[0]):])
}
