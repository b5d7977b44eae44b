// Package apisignals reads the API server's own signals of failed webhook
// calls: what it says when it cannot call a webhook. Two sources need
// nothing on the nodes and no access to the API server's logs: the Warning
// Events a controller records when its writes fail (the DaemonSet
// controller's FailedCreate, "Error creating: Internal error occurred:
// failed calling webhook ..."), and the admission webhook counters on the
// API server's /metrics. The same text parser also reads client errors and
// the API server's own log lines, e.g.
//
//	W1125 02:45:05.657908 23852 dispatcher.go:225] Failed calling webhook, failing closed NAME: failed calling webhook "NAME": failed to call webhook: Post "https://SVC.NS.svc:443/mutate?timeout=5s": service "SVC" not found
//
// which ParseWebhookFailure turns into {Webhook: NAME, URL: https://...,
// Class: ServiceNotFound, FailOpen: false}.
//
// ParseWebhookFailure reads one text and ParseWebhookMetrics one /metrics
// body; a Watcher follows both sources and reports each Failure.
package apisignals
