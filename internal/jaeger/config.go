//go:build linux

package jaeger

import (
	"bytes"
	"text/template"
)

// configTemplate is Jaeger's all-in-one.yaml (cmd/jaeger/internal in
// jaegertracing/jaeger v1.75.0) reduced to what hookscope uses: OTLP in,
// memory storage, the query API out. The Jaeger/Zipkin receivers,
// remote_sampling, healthcheckv2, expvar and zpages are left out so they
// open no listener at all; every listener that remains is on 127.0.0.1 and
// a port picked for this run.
var configTemplate = template.Must(template.New("config").Parse(`# Written by hookscope internal/jaeger for one test run.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {{.Metrics}}
    logs:
      level: info

extensions:
  jaeger_query:
    storage:
      traces: some_storage
    # On by default in v2, it would send Jaeger's own spans to the OTLP
    # default localhost:4317, i.e. to whatever else listens there.
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{{.QueryHTTP}}
    grpc:
      endpoint: 127.0.0.1:{{.QueryGRPC}}

  jaeger_storage:
    backends:
      some_storage:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{.OTLPHost}}:{{.OTLPGRPC}}
      http:
        endpoint: {{.OTLPHost}}:{{.OTLPHTTP}}

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: some_storage
`))

// Pod ports of PodConfig: Jaeger's usual ones.
const (
	PodOTLPGRPCPort  = 4317
	PodOTLPHTTPPort  = 4318
	PodQueryHTTPPort = 16686
)

// PodConfig is the configuration for a Jaeger in a pod: OTLP on every
// address of the pod (its Service's), the query API and metrics on the
// pod's loopback only (reached through a port-forward).
func PodConfig() ([]byte, error) {
	var cfg bytes.Buffer
	err := configTemplate.Execute(&cfg, ports{OTLPHost: "0.0.0.0", OTLPGRPC: PodOTLPGRPCPort, OTLPHTTP: PodOTLPHTTPPort,
		QueryHTTP: PodQueryHTTPPort, QueryGRPC: 16685, Metrics: 8888})
	return cfg.Bytes(), err
}
