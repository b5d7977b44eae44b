package agentcmd

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube"
)

// apiServerAddrs are the addresses the API server connects from, as the
// kubernetes Service's endpoints in the default namespace name them (on
// EKS, the control plane's network interfaces in the cluster's VPC; on
// kind, the control-plane node). The SYN ledger counts the connections
// from them apart from a kubelet's probes or another client's.
type apiServerAddrs struct {
	addrs atomic.Pointer[map[netip.Addr]bool]
}

// watchAPIServerAddrs keeps the API server's addresses from its
// EndpointSlices. Until they are listed none is known, and the ledger
// counts every client's SYNs, as it does when the API server connects
// from addresses other than its endpoints.
func watchAPIServerAddrs(ctx context.Context, client kube.API, log *slog.Logger) *apiServerAddrs {
	a := &apiServerAddrs{}
	i := kube.NewInformer(client, discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), metav1.NamespaceDefault,
		func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes" },
		&discoveryv1.EndpointSlice{}, cache.Indexers{})
	update := func() {
		addrs := map[netip.Addr]bool{}
		for _, o := range i.GetStore().List() {
			if s, ok := o.(*discoveryv1.EndpointSlice); ok {
				for _, ep := range s.Endpoints {
					for _, text := range ep.Addresses {
						if addr, err := netip.ParseAddr(text); err == nil {
							addrs[addr.Unmap()] = true
						}
					}
				}
			}
		}
		if old := a.addrs.Swap(&addrs); old == nil || !maps.Equal(*old, addrs) {
			log.Info("the API server connects from its endpoints' addresses", "addresses", slices.SortedFunc(maps.Keys(addrs), netip.Addr.Compare))
		}
	}
	_, _ = i.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { update() },
		UpdateFunc: func(any, any) { update() },
		DeleteFunc: func(any) { update() },
	})
	go i.RunWithContext(ctx)
	return a
}

// has reports whether addr is one of the API server's.
func (a *apiServerAddrs) has(addr netip.Addr) bool {
	m := a.addrs.Load()
	return m != nil && (*m)[addr.Unmap()]
}
