package impact

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// A namespace whose deletion needs the discovery of an aggregated API that
// is down stays Terminating: the namespace controller sets the condition
// NamespaceDeletionDiscoveryFailure, whose message names the group/version
// ("Discovery failed for some groups, 1 failing: unable to retrieve the
// complete list of server APIs: metrics.k8s.io/v1beta1: stale
// GroupVersion discovery: metrics.k8s.io/v1beta1").

// APIs finds the aggregated APIs by the group/version they serve.
type APIs interface {
	// APIServiceFor is the APIService call-out serving group/version gv.
	APIServiceFor(gv string) (callout.Webhook, bool)
	// HasAPIServices reports whether any aggregated API is a call-out:
	// until one is, the Namespaces are not watched.
	HasAPIServices() bool
}

// terminating is one namespace a failing aggregated API keeps Terminating.
type terminating struct {
	api   callout.Webhook
	imp   findings.Impact
	cause string // the namespace controller's message
}

// stuckNamespaces lists the Terminating namespaces whose deletion waits on
// the discovery of an aggregated API hookscope knows.
func (c *cluster) stuckNamespaces(apis APIs, now time.Time) []terminating {
	if apis == nil || !apis.HasAPIServices() {
		return nil
	}
	i := c.informer("Namespace") // started here, the first time
	if i == nil || !i.HasSynced() {
		return nil
	}
	var out []terminating
	for _, o := range i.GetStore().List() {
		ns, ok := o.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp == nil {
			continue
		}
		for _, cond := range ns.Status.Conditions {
			if cond.Type != corev1.NamespaceDeletionDiscoveryFailure || cond.Status != corev1.ConditionTrue {
				continue
			}
			for _, gv := range failingGroupVersions(cond.Message) {
				api, ok := apis.APIServiceFor(gv)
				if !ok {
					continue
				}
				since := ns.DeletionTimestamp.Time
				out = append(out, terminating{api: api, cause: cond.Message, imp: findings.Impact{
					Kind: findings.ImpactNamespaceTerminating, Object: "Namespace " + ns.Name, Since: since,
					Detail: fmt.Sprintf("namespace %s has been Terminating since %s (%s when found): the namespace controller cannot discover %s, which APIService %s serves, so it cannot delete what the namespace holds",
						ns.Name, since.UTC().Format(time.RFC3339), now.Sub(since).Round(time.Second), gv, api.Ref.Name)}})
			}
		}
	}
	return out
}

// failingGroupVersions reads the group/versions a discovery failure names:
// "...: unable to retrieve the complete list of server APIs: g/v: why,
// g2/v2: why".
func failingGroupVersions(msg string) []string {
	const mark = "unable to retrieve the complete list of server APIs: "
	_, rest, ok := strings.Cut(msg, mark)
	if !ok {
		return nil
	}
	var out []string
	for _, part := range strings.Split(rest, ", ") {
		gv, _, ok := strings.Cut(part, ": ")
		if !ok || strings.Count(gv, "/") != 1 || strings.ContainsAny(gv, " \t") {
			continue
		}
		out = append(out, gv)
	}
	return out
}
