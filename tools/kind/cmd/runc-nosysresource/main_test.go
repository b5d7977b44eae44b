package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRewriteBundle drops CAP_SYS_RESOURCE from every capability set and
// raises an oomScoreAdj below this process's own, keeping every other field.
func TestRewriteBundle(t *testing.T) {
	own := ownOOMScoreAdj()
	dir := t.TempDir()
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"args":        []any{"/pause"},
			"oomScoreAdj": own - 998,
			"capabilities": map[string]any{
				"bounding":  []any{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"},
				"effective": []any{"CAP_SYS_RESOURCE"},
			},
		},
		"root": map[string]any{"path": "rootfs"},
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite([]string{"--root", "/run/x", "--systemd-cgroup", "create", "--bundle", dir, "id"}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	b, _ = os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	p := got["process"].(map[string]any)
	caps := p["capabilities"].(map[string]any)
	for set, v := range caps {
		if slices.Contains(v.([]any), any("CAP_SYS_RESOURCE")) {
			t.Errorf("%s still has CAP_SYS_RESOURCE: %v", set, v)
		}
	}
	if n := len(caps["bounding"].([]any)); n != 2 {
		t.Errorf("bounding has %d capabilities, want the other 2", n)
	}
	if adj := p["oomScoreAdj"].(float64); adj != own {
		t.Errorf("oomScoreAdj %v, want it raised to this process's %v", adj, own)
	}
	if got["root"].(map[string]any)["path"] != "rootfs" || p["args"].([]any)[0] != "/pause" {
		t.Errorf("other fields changed: %s", b)
	}
	for _, c := range newer {
		if slices.Contains(caps["bounding"].([]any), any(c)) {
			t.Errorf("%s given to a container that is not privileged", c)
		}
	}

	// A privileged container (Docker 20.10's list, which ends before
	// CAP_PERFMON) gets the newer capabilities where it has CAP_SYS_ADMIN.
	priv := map[string]any{"process": map[string]any{"capabilities": map[string]any{
		"bounding":  []any{"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RESOURCE", "CAP_AUDIT_READ"},
		"effective": []any{"CAP_SYS_ADMIN", "CAP_SYS_MODULE"},
		"ambient":   []any{},
	}}}
	b, _ = json.Marshal(priv)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite([]string{"create", "--bundle", dir, "id"}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "config.json"))
	_ = json.Unmarshal(b, &got)
	pcaps := got["process"].(map[string]any)["capabilities"].(map[string]any)
	for _, set := range []string{"bounding", "effective"} {
		for _, c := range newer {
			if !slices.Contains(pcaps[set].([]any), any(c)) {
				t.Errorf("privileged %s lacks %s: %v", set, c, pcaps[set])
			}
		}
	}
	if slices.Contains(pcaps["bounding"].([]any), any("CAP_SYS_RESOURCE")) || len(pcaps["ambient"].([]any)) != 0 {
		t.Errorf("privileged sets %v", pcaps)
	}

	// Nothing to change: the file is left as it is.
	st, _ := os.Stat(filepath.Join(dir, "config.json"))
	if err := rewrite([]string{"run", "-b", dir, "id"}); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(filepath.Join(dir, "config.json")); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("a bundle with nothing to drop was rewritten")
	}
	// Commands without a bundle are passed through.
	if err := rewrite([]string{"delete", "--force", "id"}); err != nil {
		t.Error(err)
	}
}
