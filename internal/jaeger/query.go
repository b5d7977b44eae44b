//go:build linux

package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// FindTraces returns the traces of service whose spans carry all of tags
// (attribute name to stringified value; nil for any), newest first, at
// most 100, through GET /api/traces.
func (s *Server) FindTraces(ctx context.Context, service string, tags map[string]string) ([]Trace, error) {
	q := url.Values{}
	q.Set("service", service)
	if len(tags) > 0 {
		t, err := json.Marshal(tags)
		if err != nil {
			return nil, fmt.Errorf("finding traces: encoding tags: %w", err)
		}
		q.Set("tags", string(t))
	}
	// Jaeger v2 ignores lookback on /api/traces (it searches the last two
	// days unless start is set); the UI sends it, so do we.
	q.Set("lookback", "1h")
	q.Set("limit", "100")
	u := s.QueryURL() + "/api/traces?" + q.Encode()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("finding traces: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("finding traces: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("finding traces: reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("finding traces: GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("finding traces: decoding the answer to GET %s: %w", u, err)
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("finding traces: GET %s: jaeger says %q", u, r.Errors[0].Msg)
	}
	traces := make([]Trace, 0, len(r.Data))
	for _, at := range r.Data {
		traces = append(traces, convertTrace(at))
	}
	return traces, nil
}

// GetTrace returns one trace by its ID, through GET /api/traces/{id}.
func (s *Server) GetTrace(ctx context.Context, traceID string) (Trace, error) {
	u := s.QueryURL() + "/api/traces/" + url.PathEscape(traceID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Trace{}, fmt.Errorf("getting trace %s: GET %s: %s: %s", traceID, u, resp.Status, bytes.TrimSpace(body))
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: decoding: %w", traceID, err)
	}
	if len(r.Data) != 1 {
		return Trace{}, fmt.Errorf("getting trace %s: %d traces in the answer, want 1", traceID, len(r.Data))
	}
	return convertTrace(r.Data[0]), nil
}

// WaitForTraces polls FindTraces until it returns at least min traces, and
// returns them, or fails when ctx ends.
func (s *Server) WaitForTraces(ctx context.Context, service string, tags map[string]string, min int) ([]Trace, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var (
		found   int
		lastErr error
	)
	for {
		traces, err := s.FindTraces(ctx, service, tags)
		if err == nil && len(traces) >= min {
			return traces, nil
		}
		if err != nil {
			lastErr = err
		} else {
			found, lastErr = len(traces), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d traces of service %q with tags %v: found %d before %w (last error: %v)",
				min, service, tags, found, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}
