package chaos

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"time"
)

// timelineMark is one moment on a scenario's timeline.
type timelineMark struct {
	Label string
	At    time.Time
	Color string
}

// timelineRow is one drawn mark: x in pixels, and its label.
type timelineRow struct {
	X      float64
	Label  string
	Color  string
	Offset string // seconds from the injection
	Y      int
	Anchor string // "start", or "end" for marks on the right so labels stay inside
	DX     int
}

type htmlScenario struct {
	*ScenarioResult
	Width, Height int
	Scale         string
	Rows          []timelineRow
}

// timeline lays out the marks of a scenario on a log-like axis: the first
// seconds matter most, the baselines come a minute or two later.
func timeline(s *ScenarioResult) htmlScenario {
	const width, left, right = 900, 20, 160
	marks := []timelineMark{{"injection", s.InjectedAt, "#555"}}
	if !s.FirstFailedCallAt.IsZero() {
		label := "first write"
		if s.WriteFailed {
			label = "first failed write"
		}
		marks = append(marks, timelineMark{label, s.FirstFailedCallAt, "#c0392b"})
	}
	if !s.DetectedAt.IsZero() {
		marks = append(marks, timelineMark{"hookscope: " + s.DetectedClass, s.DetectedAt, "#27ae60"})
	}
	if b := s.Baselines; b != nil {
		marks = append(marks, timelineMark{"15 s metrics alert", b.MetricsAlertAt, "#e67e22"},
			timelineMark{"log filter + 1-min alarm", b.LogFilterAlarmAt, "#8e44ad"})
	}
	if !s.RecoveredAt.IsZero() {
		marks = append(marks, timelineMark{"writes recover", s.RecoveredAt, "#2980b9"})
	}
	if !s.ResolvedAt.IsZero() {
		marks = append(marks, timelineMark{"finding resolved", s.ResolvedAt, "#16a085"})
	}
	var maxSec float64 = 1
	for _, m := range marks {
		maxSec = math.Max(maxSec, m.At.Sub(s.InjectedAt).Seconds())
	}
	// x = log10(1 + 10 t) scaled: 0.1 s and 100 s both readable.
	pos := func(t float64) float64 {
		return left + (width-left-right)*math.Log10(1+10*math.Max(t, 0))/math.Log10(1+10*maxSec)
	}
	h := htmlScenario{ScenarioResult: s, Width: width, Scale: fmt.Sprintf("log scale, 0 to %.0f s after the injection", maxSec)}
	for i, m := range marks {
		t := m.At.Sub(s.InjectedAt).Seconds()
		row := timelineRow{X: pos(t), Label: m.Label, Color: m.Color, Offset: fmt.Sprintf("%+.3f s", t), Y: 30 + 18*i, Anchor: "start", DX: 4}
		if row.X > width/2 {
			row.Anchor, row.DX = "end", -4
		}
		h.Rows = append(h.Rows, row)
	}
	h.Height = 40 + 18*len(marks)
	return h
}

var reportHTML = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>hookscope game day</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}
.pass{color:#27ae60}.fail{color:#c0392b}code,pre{background:#f4f4f4}pre{padding:.5em;white-space:pre-wrap}
svg{border:1px solid #ddd;background:#fcfcfc}</style></head><body>
<h1>hookscope game day: {{if .Passed}}<span class="pass">PASSED</span>{{else}}<span class="fail">FAILED</span>{{end}}</h1>
<p>Provider {{.Provider}}, {{len .Scenarios}} scenarios, started {{.Started.UTC.Format "2006-01-02 15:04:05"}} UTC. Each timeline runs from the injection of the failure: the first write it hit, hookscope's finding, the two usual alerts computed from the same API server log, the recovery.</p>
{{range .HTML}}
<h2>{{.Name}} {{if .Passed}}<span class="pass">pass</span>{{else}}<span class="fail">FAIL</span>{{end}}</h2>
<p>Expected <b>{{.ExpectedClass}}</b>, detected <b>{{.DetectedClass}}</b>{{if .DetectedBy}} by {{range $i, $s := .DetectedBy}}{{if $i}} + {{end}}{{$s}}{{end}}{{end}}. Fix: {{.Remediation}}.</p>
<svg width="{{.Width}}" height="{{.Height}}" role="img" aria-label="timeline of {{.Name}}">
<line x1="20" y1="18" x2="740" y2="18" stroke="#999"/>
<text x="20" y="12" font-size="10" fill="#777">{{.Scale}}</text>
{{range .Rows}}<line x1="{{.X}}" y1="18" x2="{{.X}}" y2="{{.Y}}" stroke="{{.Color}}" stroke-dasharray="2,2"/>
<circle cx="{{.X}}" cy="18" r="4" fill="{{.Color}}"/>
<text x="{{.X}}" y="{{.Y}}" dx="{{.DX}}" dy="4" text-anchor="{{.Anchor}}" font-size="12" fill="{{.Color}}">{{.Label}} ({{.Offset}})</text>
{{end}}</svg>
{{if .FailedCallError}}<pre>{{.FailedCallError}}</pre>{{end}}
{{if .Evidence}}<ul>{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{range .Failures}}<p class="fail">FAILED: {{.}}</p>{{end}}
{{end}}</body></html>
`))

func (r *Report) html() ([]byte, error) {
	data := struct {
		*Report
		HTML []htmlScenario
	}{Report: r}
	for _, s := range r.Scenarios {
		data.HTML = append(data.HTML, timeline(s))
	}
	var b bytes.Buffer
	if err := reportHTML.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("rendering report.html: %w", err)
	}
	return b.Bytes(), nil
}
