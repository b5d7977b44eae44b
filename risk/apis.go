package risk

import (
	"fmt"
	"slices"

	"github.com/hookscope/hookscope/callout"
)

// AggregatedAPIs judges the aggregated APIs among ws (APIService
// call-outs): one backend pod or every pod on one node, which a rollout or
// a drain takes down with discovery and namespace deletion; and a
// certificate the API server does not verify.
func AggregatedAPIs(ws []callout.Webhook) []Risk {
	var out []Risk
	for _, w := range ws {
		if !w.IsAPIService() {
			continue
		}
		what := fmt.Sprintf("aggregated API %s (APIService %s)", w.API, w.Ref.Name)
		if one, ok := onePlace(w.Backends); ok {
			out = append(out, Risk{Webhook: w.Ref, Kind: SingleReplica, Severity: Warning,
				Detail: what + " is served by " + one + ": a rollout, eviction or node drain leaves it with no backend, and then requests to it and discovery fail, and namespaces cannot finish deleting.",
				Fix:    "run at least 2 replicas spread across nodes (topologySpreadConstraints or pod anti-affinity) with a PodDisruptionBudget of minAvailable 1"})
		}
		if w.InsecureSkipTLSVerify {
			out = append(out, Risk{Webhook: w.Ref, Kind: InsecureSkipTLSVerify, Severity: Info,
				Detail: what + " has insecureSkipTLSVerify: the API server does not verify the certificate of whatever answers at its Service's endpoints.",
				Fix:    "serve a certificate its caBundle verifies (cert-manager can inject the CA: cert-manager.io/inject-ca-from) and set insecureSkipTLSVerify: false"})
		}
	}
	sortRisks(out)
	return out
}

// onePlace says whether the backends are one pod, or pods all on one node,
// and which.
func onePlace(backends []callout.Backend) (string, bool) {
	var pods, nodes []string
	for _, b := range backends {
		if b.Pod == nil {
			return "", false // an address with no pod: placement unknown
		}
		pods = append(pods, b.Pod.Namespace+"/"+b.Pod.Name)
		nodes = append(nodes, b.Pod.Node)
	}
	slices.Sort(pods)
	pods = slices.Compact(pods)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	switch {
	case len(pods) == 1:
		return "one pod (" + pods[0] + ")", true
	case len(pods) > 1 && len(nodes) == 1 && nodes[0] != "":
		return fmt.Sprintf("%d pods all on node %s", len(pods), nodes[0]), true
	}
	return "", false
}
