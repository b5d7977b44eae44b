package findings

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// findingID derives a finding's ID from what the failure is (webhook,
// scope, backend or impact, class) and when its episode began, so that the
// same failure keeps its ID across the store's restarts (see Restore).
func findingID(k Key, class Class, began time.Time) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%s|%s|%d", k.Webhook, k.Scope, k.Backend, k.Impact, class, began.UnixMilli()))
	return hex.EncodeToString(h[:6])
}

// stateVersion is the state file's format.
const stateVersion = 1

// state is what the state file holds.
type state struct {
	Version int          `json:"version"`
	Saved   time.Time    `json:"saved"`
	Open    []savedEntry `json:"open"`
}

type savedEntry struct {
	Scope   Scope   `json:"scope"`
	Impact  string  `json:"impactKey,omitempty"`
	Finding Finding `json:"finding"`
}

// persist writes the open findings to the state file (temp file, then
// rename: a crash leaves the old file or the new one, never half of one).
// Errors are logged: the findings themselves go on.
func (s *Store) persist() {
	if s.cfg.StatePath == "" {
		return
	}
	s.mu.Lock()
	s.dirty = false
	st := state{Version: stateVersion, Saved: s.cfg.Clock.Now()}
	for k, e := range s.open {
		st.Open = append(st.Open, savedEntry{Scope: k.Scope, Impact: k.Impact, Finding: cloneFinding(e.Finding)})
	}
	s.mu.Unlock()
	b, err := json.Marshal(st)
	if err == nil {
		err = writeFileAtomic(s.cfg.StatePath, b)
	}
	if err != nil {
		s.cfg.Log.Warn("saving open findings: a restart will open them again under new IDs", "path", s.cfg.StatePath, "err", err)
	}
}

// Save writes the state file now (on shutdown).
func (s *Store) Save() { s.persist() }

// saveIfBehind writes the state file when changes are not in it yet.
func (s *Store) saveIfBehind() {
	s.mu.Lock()
	dirty := s.dirty
	s.mu.Unlock()
	if dirty {
		s.persist()
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".findings-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Restore loads the findings a previous run left open. Each is held until
// a producer observes it again (it goes on, same ID) or Config.RestoreGrace
// passes (it resolves, saying why): a restart never drops a finding
// silently, and never leaves its span without a resolution. A missing file
// is no error; an unreadable one is, and the store starts empty.
func (s *Store) Restore() (int, error) {
	if s.cfg.StatePath == "" {
		return 0, nil
	}
	b, err := os.ReadFile(s.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the findings state %s: %w", s.cfg.StatePath, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("reading the findings state %s: %w (starting empty)", s.cfg.StatePath, err)
	}
	if st.Version != stateVersion {
		return 0, fmt.Errorf("reading the findings state %s: format %d, want %d (starting empty)", s.cfg.StatePath, st.Version, stateVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	n := 0
	for _, se := range st.Open {
		f := se.Finding
		if f.ID == "" || f.Resolved != nil || len(s.open) >= maxOpen {
			continue
		}
		k := Key{Webhook: f.Webhook, Scope: se.Scope, Backend: f.Backend, Impact: se.Impact}
		s.open[k] = &entry{Finding: f, key: k, held: now, holdReason: heldRestored}
		n++
	}
	return n, nil
}
