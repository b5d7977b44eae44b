// Package chaos is the game-day harness: it provisions a cluster with a real
// API server, adds nodes for the scenarios' pods, and collects the control
// plane's logs. Scenarios use the Provider interface and never know which
// provider (a local kwok cluster or kind) runs them.
package chaos

import "context"

// Provider provisions and tears down one cluster for a game-day scenario.
type Provider interface {
	// Name says which provider this is: "local" or "kind".
	Name() string
	// Create provisions the cluster and returns once the API server is ready.
	Create(ctx context.Context) error
	// Kubeconfig is the path of an admin kubeconfig for the cluster.
	Kubeconfig() string
	// AddNode adds a node that becomes Ready and takes pods.
	AddNode(ctx context.Context, name string) error
	// APIServerLog is the path of the kube-apiserver log ("" if there is none).
	APIServerLog() string
	// CollectLogs copies the control plane components' logs into dir.
	CollectLogs(dir string) error
	// Delete tears the cluster down; it is idempotent.
	Delete(ctx context.Context) error
}
