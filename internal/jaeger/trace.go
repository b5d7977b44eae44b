//go:build linux

package jaeger

import (
	"bytes"
	"encoding/json"
	"sort"
	"time"
)

// Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	TraceID string
	Spans   []Span
}

// Span is one span of a Trace. Attribute values are stringified: an int
// attribute 8443 reads "8443", a bool reads "true".
type Span struct {
	TraceID       string
	SpanID        string
	OperationName string
	Start         time.Time
	Duration      time.Duration
	// Tags are the span's attributes plus what Jaeger derives from the span:
	// otel.status_code ("ERROR", "OK"), otel.status_description, error,
	// span.kind, otel.scope.name.
	Tags map[string]string
	// Events are the span's events (Jaeger calls them logs).
	Events []SpanEvent
	// Process is the resource: the service name under "service.name" plus
	// the process tags (the other resource attributes).
	Process map[string]string
	// References are the span's parent and its links (OTel span links
	// arrive as FOLLOWS_FROM references).
	References []Reference
}

// Reference is a span's reference to another span.
type Reference struct {
	RefType string // CHILD_OF or FOLLOWS_FROM
	TraceID string
	SpanID  string
}

// SpanEvent is one span event.
type SpanEvent struct {
	Time       time.Time
	Name       string
	Attributes map[string]string
}

// The query API's JSON, as Jaeger's internal/uimodel defines it.
type (
	apiResponse struct {
		Data   []apiTrace `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	apiTrace struct {
		TraceID   string                `json:"traceID"`
		Spans     []apiSpan             `json:"spans"`
		Processes map[string]apiProcess `json:"processes"`
	}
	apiSpan struct {
		TraceID       string        `json:"traceID"`
		SpanID        string        `json:"spanID"`
		OperationName string        `json:"operationName"`
		StartTime     int64         `json:"startTime"` // µs since the epoch
		Duration      int64         `json:"duration"`  // µs
		Tags          []apiKeyValue `json:"tags"`
		Logs          []apiLog      `json:"logs"`
		ProcessID     string        `json:"processID"`
		Process       *apiProcess   `json:"process"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	}
	apiProcess struct {
		ServiceName string        `json:"serviceName"`
		Tags        []apiKeyValue `json:"tags"`
	}
	apiLog struct {
		Timestamp int64         `json:"timestamp"` // µs since the epoch
		Fields    []apiKeyValue `json:"fields"`
	}
	apiKeyValue struct {
		Key   string          `json:"key"`
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
)

// convertTrace turns a trace of the query API into a Trace: each span with
// its process (inline, or by processID from the trace's processes) and its
// logs as events, oldest first.
func convertTrace(at apiTrace) Trace {
	t := Trace{TraceID: at.TraceID, Spans: make([]Span, 0, len(at.Spans))}
	for _, as := range at.Spans {
		proc := as.Process
		if proc == nil {
			if p, ok := at.Processes[as.ProcessID]; ok {
				proc = &p
			}
		}
		sp := Span{
			TraceID:       as.TraceID,
			SpanID:        as.SpanID,
			OperationName: as.OperationName,
			Start:         time.UnixMicro(as.StartTime),
			Duration:      time.Duration(as.Duration) * time.Microsecond,
			Tags:          keyValues(as.Tags),
			Process:       map[string]string{},
		}
		if proc != nil {
			sp.Process = keyValues(proc.Tags)
			sp.Process["service.name"] = proc.ServiceName
		}
		for _, r := range as.References {
			sp.References = append(sp.References, Reference{RefType: r.RefType, TraceID: r.TraceID, SpanID: r.SpanID})
		}
		for _, l := range as.Logs {
			ev := SpanEvent{Time: time.UnixMicro(l.Timestamp), Attributes: keyValues(l.Fields)}
			// OTel's event name travels as the field "event".
			ev.Name = ev.Attributes["event"]
			delete(ev.Attributes, "event")
			sp.Events = append(sp.Events, ev)
		}
		sort.SliceStable(sp.Events, func(i, j int) bool { return sp.Events[i].Time.Before(sp.Events[j].Time) })
		t.Spans = append(t.Spans, sp)
	}
	return t
}

// keyValues turns the query API's typed key-values into a map of
// stringified values (see stringValue).
func keyValues(kvs []apiKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = stringValue(kv.Value)
	}
	return m
}

// stringValue keeps a JSON string's contents and any other JSON value's
// text as is, so an int64 keeps every digit.
func stringValue(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}
