package risk_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/risk"
)

func TestAggregatedAPIs(t *testing.T) {
	pod := func(name, node string) callout.Backend {
		return callout.Backend{Addr: netip.MustParseAddrPort("10.0.1.5:10250"), Ready: true, Pod: &callout.PodRef{Namespace: "kube-system", Name: name, Node: node}}
	}
	api := func(insecure bool, bs ...callout.Backend) callout.Webhook {
		return callout.Webhook{Ref: callout.Ref{Kind: callout.KindAPIService, Configuration: "v1beta1.metrics.k8s.io", Name: "v1beta1.metrics.k8s.io"},
			API: "metrics.k8s.io/v1beta1", InsecureSkipTLSVerify: insecure, Backends: bs}
	}
	webhook := callout.Webhook{Ref: callout.Ref{Kind: callout.KindValidating, Configuration: "c", Name: "v.example.com"}, Backends: []callout.Backend{pod("w", "n1")}}
	for _, tc := range []struct {
		name string
		w    callout.Webhook
		want []string // kind: a phrase of its detail
	}{
		{"metrics-server as it ships: one pod, insecure", api(true, pod("metrics-server-1", "n1")),
			[]string{"SingleReplica: is served by one pod (kube-system/metrics-server-1)", "InsecureSkipTLSVerify: does not verify the certificate"}},
		{"two pods on one node", api(false, pod("m-1", "n1"), pod("m-2", "n1")), []string{"SingleReplica: 2 pods all on node n1"}},
		{"two pods on two nodes, verified", api(false, pod("m-1", "n1"), pod("m-2", "n2")), nil},
		{"no backends: the objects' finding says so", api(false), nil},
		{"a webhook is not judged here", webhook, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := risk.AggregatedAPIs([]callout.Webhook{tc.w})
			if len(got) != len(tc.want) {
				t.Fatalf("risks %+v, want %v", got, tc.want)
			}
			for i, want := range tc.want {
				kind, phrase, _ := strings.Cut(want, ": ")
				if string(got[i].Kind) != kind || !strings.Contains(got[i].Detail, phrase) || !strings.Contains(got[i].Detail, "aggregated API metrics.k8s.io/v1beta1") || got[i].Fix == "" {
					t.Errorf("risk %d: %+v, want %s", i, got[i], want)
				}
			}
		})
	}
}
