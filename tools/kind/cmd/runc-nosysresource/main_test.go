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
