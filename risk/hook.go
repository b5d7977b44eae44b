package risk

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hookscope/hookscope/callout"
)

func orEverything(s *metav1.LabelSelector) *metav1.LabelSelector {
	if s == nil {
		return &metav1.LabelSelector{}
	}
	return s
}

// hook is one webhook with the API server's defaults applied and its
// selectors parsed once: the selector provider the API server's
// predicates ask.
type hook struct {
	callout.Hook

	ref        callout.Ref
	mutating   bool
	reinvoke   bool // reinvocationPolicy IfNeeded: called a second time
	failClosed bool
	equivalent bool // matchPolicy Equivalent
	timeout    int32
	conditions int // matchConditions, which hookscope does not evaluate
	// nsSel and objSel are the parsed selectors; nil when unevaluable.
	nsSel, objSel labels.Selector
	// groups are the API groups the rules name; anyGroup is set when one
	// rule names "*". Used to skip rule evaluation that cannot match.
	groups   map[string]bool
	anyGroup bool

	invalid     []Risk
	unevaluable bool // a selector does not parse: nothing else can be said
}

func newHook(wh callout.Hook) *hook {
	h := &hook{
		Hook:       wh,
		ref:        wh.Ref,
		mutating:   wh.Mutating,
		reinvoke:   wh.Reinvoke,
		timeout:    defaultTimeout,
		conditions: len(wh.MatchConditions),
		groups:     map[string]bool{},
	}
	h.failClosed = wh.FailurePolicy == nil || *wh.FailurePolicy != admissionv1.Ignore
	// v1 defaults matchPolicy to Equivalent.
	h.equivalent = wh.MatchPolicy == nil || *wh.MatchPolicy == admissionv1.Equivalent
	if wh.TimeoutSeconds != nil {
		h.timeout = max(*wh.TimeoutSeconds, 0)
	}
	for _, r := range wh.Rules {
		for _, g := range r.APIGroups {
			if g == "*" {
				h.anyGroup = true
			}
			h.groups[g] = true
		}
	}
	h.validate()
	return h
}

// risk is a Risk of h.
func (h *hook) risk(kind Kind, sev Severity, detail, fix string) Risk {
	return Risk{Webhook: h.ref, Kind: kind, Severity: sev, Detail: detail, Fix: fix}
}

// service is the Service h calls, or nil for a URL.
func (h *hook) service() *admissionv1.ServiceReference { return h.GetClientConfig().Service }

// whileDown is what happens to the writes h matches when it cannot be
// called.
func (h *hook) whileDown() string {
	if h.failClosed {
		return "every write it matches is rejected"
	}
	return "every write it matches passes unchecked"
}

// The accessor methods the API server's predicates and the checks read.

// GetRules is the webhook's rules.
func (h *hook) GetRules() []admissionv1.RuleWithOperations { return h.Rules }

// GetClientConfig is how the API server calls the webhook.
func (h *hook) GetClientConfig() admissionv1.WebhookClientConfig { return h.ClientConfig }

// GetTimeoutSeconds is the webhook's timeoutSeconds as written.
func (h *hook) GetTimeoutSeconds() *int32 { return h.TimeoutSeconds }

// GetFailurePolicy is the webhook's failurePolicy as written.
func (h *hook) GetFailurePolicy() *admissionv1.FailurePolicyType { return h.FailurePolicy }

// GetNamespaceSelector is the namespaceSelector, {} (everything) when unset,
// as the API server defaults it.
func (h *hook) GetNamespaceSelector() *metav1.LabelSelector { return orEverything(h.NamespaceSelector) }

// GetObjectSelector is the objectSelector, {} when unset.
func (h *hook) GetObjectSelector() *metav1.LabelSelector { return orEverything(h.ObjectSelector) }

// GetParsedObjectSelector is the objectSelector parsed once.
func (h *hook) GetParsedObjectSelector() (labels.Selector, error) { return h.objSel, nil }
