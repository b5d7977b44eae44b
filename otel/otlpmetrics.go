package otel

import (
	"context"
	"fmt"
	"google.golang.org/grpc"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newOTLPMetricReader pushes the metrics to cfg.Endpoint over cfg.Protocol
// every cfg.MetricsInterval. A push the collector misses is retried within
// the interval and then given up: counters and histograms are cumulative,
// so the next push carries everything.
func newOTLPMetricReader(cfg Config) (sdkmetric.Reader, error) {
	// Retry at most until the next push is due.
	retryFor := min(cfg.MetricsInterval, cfg.RetryFor)
	timeout := min(cfg.MetricsInterval, requestTimeout)
	var (
		exp sdkmetric.Exporter
		err error
	)
	// The exporters connect lazily; the context only carries values.
	ctx := context.Background()
	switch cfg.Protocol {
	case "", "grpc":
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithEndpoint(cfg.Endpoint),
			otlpmetricgrpc.WithDialOption(grpc.WithConnectParams(reconnect)),
			otlpmetricgrpc.WithTimeout(timeout),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{
				Enabled: true, InitialInterval: retryInitial, MaxInterval: retryMax, MaxElapsedTime: retryFor,
			}),
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	case "http":
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithEndpoint(cfg.Endpoint),
			otlpmetrichttp.WithTimeout(timeout),
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{
				Enabled: true, InitialInterval: retryInitial, MaxInterval: retryMax, MaxElapsedTime: retryFor,
			}),
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("protocol %q: want grpc or http", cfg.Protocol)
	}
	if err != nil {
		return nil, err
	}
	return sdkmetric.NewPeriodicReader(exp,
		sdkmetric.WithInterval(cfg.MetricsInterval),
		sdkmetric.WithTimeout(max(timeout, time.Second)),
	), nil
}
