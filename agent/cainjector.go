package agent

import (
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

// caInjectionRisks are the risks of the call-outs whose caBundle
// cert-manager's cainjector is to write, judged with the Certificates the
// inventory reads once cert-manager's CRD exists.
func (a *Agent) caInjectionRisks(v *view) []risk.Risk {
	ws := make([]callout.Webhook, 0, len(v.webhooks))
	for _, w := range v.webhooks {
		if w.CAInjection != nil {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	return risk.CAInjections(ws, a.inv.Certificates())
}
