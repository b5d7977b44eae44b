package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// findingKey names one agent's finding across reads.
type findingKey struct{ agent, id string }

// findingState is what --watch compares between reads: a change in any of
// it prints the row again.
type findingState struct {
	class, effect, impact string
	resolved              bool
}

func stateOf(r NodeFinding) findingState {
	s := findingState{class: string(r.Class), effect: string(r.Effect), resolved: r.Resolved != nil}
	if r.Impact != nil {
		s.impact = r.Impact.Kind + " " + r.Impact.Object
	}
	return s
}

// changedFindings are the rows that are new or changed since seen, which it
// updates.
func changedFindings(seen map[findingKey]findingState, rows []NodeFinding) []NodeFinding {
	var out []NodeFinding
	for _, r := range rows {
		k, s := findingKey{r.Agent, r.ID}, stateOf(r)
		if old, ok := seen[k]; !ok || old != s {
			out = append(out, r)
		}
		seen[k] = s
	}
	return out
}

// watchFindings prints the list, then, every interval, the findings that
// opened, changed or resolved since the last read, until ctx ends. An agent
// that stops answering (or answers again) is said once on errw; a read
// where none answers is a warning, not the end: the API server may be
// away for a while.
func watchFindings(ctx context.Context, w, errw io.Writer, out *output, gather func(context.Context) (FindingList, error), interval time.Duration) error {
	list, err := gather(ctx)
	warnUnreachable(errw, list.Unreachable)
	if err != nil {
		return err
	}
	headers := true
	if len(list.Items) > 0 || out.structured() {
		if err := printFindings(w, out, list, headers, time.Now()); err != nil {
			return err
		}
		headers = false
	}
	seen := map[findingKey]findingState{}
	changedFindings(seen, list.Items)
	down := unreachableReasons(list.Unreachable)
	lastErr := ""
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		list, err := gather(ctx)
		if ctx.Err() != nil {
			return nil
		}
		down = warnChanges(errw, down, list.Unreachable)
		if err != nil {
			if err.Error() != lastErr {
				fmt.Fprintf(errw, "Warning: %v\n", err)
				lastErr = err.Error()
			}
			continue
		}
		lastErr = ""
		changed := changedFindings(seen, list.Items)
		if len(changed) == 0 {
			continue
		}
		if err := printFindings(w, out, FindingList{Items: changed}, headers, time.Now()); err != nil {
			return err
		}
		headers = false
	}
}

// unreachableReasons are the agents not read, by pod, with why.
func unreachableReasons(us []UnreachableAgent) map[string]string {
	m := map[string]string{}
	for _, u := range us {
		m[u.Agent] = u.Reason
	}
	return m
}

// warnChanges says which agents stopped answering (or changed reason) and
// which answer again since down, and returns the agents down now.
func warnChanges(errw io.Writer, down map[string]string, now []UnreachableAgent) map[string]string {
	var fresh []UnreachableAgent
	for _, u := range now {
		if down[u.Agent] != u.Reason {
			fresh = append(fresh, u)
		}
	}
	warnUnreachable(errw, fresh)
	next := unreachableReasons(now)
	for agent := range down {
		if _, still := next[agent]; !still {
			fmt.Fprintf(errw, "agent %s read again\n", agent)
		}
	}
	return next
}
