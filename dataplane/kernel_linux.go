package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/internal/pace"
)

// Kernel traces backends with the handshake programs: each backend IP:port
// goes into the BPF map, and the programs are attached to the interface
// the host routes that IP through (for a pod, its veth). With the TCP
// tracepoints it also sees retransmissions, resets and who closed first.
// Its events go to an Assembler.
type Kernel struct {
	tracer *handshake.Tracer
	tcp    *tcpstate.Tracer // nil when the tracepoints did not load
	asm    *Assembler
	log    *slog.Logger

	mu       sync.Mutex
	backends map[netip.AddrPort]traced
}

// traced is one traced backend: where its packets are seen, and since
// when for which pod.
type traced struct {
	points []attachPoint
	Tracing
}

// attachPoint is an interface the programs are attached to for a backend.
type attachPoint struct {
	ifindex int
	// ingressOnly: loopback, which every packet crosses twice.
	ingressOnly bool
}

// NewKernel wraps loaded tracers (tcp may be nil); Run starts reading
// their events into asm.
func NewKernel(t *handshake.Tracer, tcp *tcpstate.Tracer, asm *Assembler, log *slog.Logger) *Kernel {
	return &Kernel{tracer: t, tcp: tcp, asm: asm, log: log, backends: map[netip.AddrPort]traced{}}
}

// Run reads the ring buffers into the Assembler, and ticks it, until ctx
// ends; it then closes the tracers.
func (k *Kernel) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		k.tracer.Close()
		if k.tcp != nil {
			k.tcp.Close()
		}
	}()
	if k.tcp != nil {
		go k.readTCP()
	}
	// The Assembler is ticked while something waits for its time (a
	// request, a hello, a call's tail); an idle node's agent sleeps until
	// the next event.
	ticks := pace.New()
	go ticks.Run(ctx, PendingCheck, k.asm.Tick)
	for {
		e, err := k.tracer.Read()
		if errors.Is(err, handshake.ErrClosed) {
			return
		}
		if err != nil {
			k.log.Warn("reading eBPF event", "err", err)
			continue
		}
		k.asm.HandleTLS(e)
		ticks.Wake()
	}
}

func (k *Kernel) readTCP() {
	for {
		e, err := k.tcp.Read()
		if errors.Is(err, tcpstate.ErrClosed) {
			return
		}
		if err != nil {
			k.log.Warn("reading TCP tracepoint event", "err", err)
			continue
		}
		k.asm.HandleTCP(e)
	}
}

// EventsDropped is how many events the kernel could not queue.
func (k *Kernel) EventsDropped() (uint64, error) {
	c, err := k.tracer.Counters()
	if err != nil || k.tcp == nil {
		return c.EventsDropped, err
	}
	tc, err := k.tcp.Counters()
	return c.EventsDropped + tc.EventsDropped, err
}

// Counted is the events the kernel counts and does not send, by kind as
// Output.Event names them: a client's SYN to a backend (connect), and a
// traced connection's start (tcp_syn) and completed handshake
// (tcp_established) per socket. The events that follow carry their times.
func (k *Kernel) Counted() (map[string]uint64, error) {
	hc, err := k.tracer.Counters()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{handshake.KindConnect.String(): hc.Connects}
	if k.tcp == nil {
		return out, nil
	}
	c, err := k.tcp.Counters()
	if err != nil {
		return nil, err
	}
	out["tcp_"+tcpstate.KindSYN.String()] = c.SYNs
	out["tcp_"+tcpstate.KindEstablished.String()] = c.Established
	return out, nil
}

// Unparsed counts what the TC program could not read, by reason: TLS
// record headers that were not (malformed_record), record headers split
// across segments (split_record), segments after a gap, where record
// parsing stopped for that direction (out_of_order), and IP fragments or
// IPv6 extension headers (unparsed_packet). A rising count means the data
// plane sees less of the handshakes than it should.
func (k *Kernel) Unparsed() (map[string]uint64, error) {
	c, err := k.tracer.Counters()
	if err != nil {
		return nil, err
	}
	return map[string]uint64{
		"malformed_record": c.MalformedRecords,
		"split_record":     c.SplitRecords,
		"out_of_order":     c.OutOfOrder,
		"unparsed_packet":  c.Unparsed,
	}, nil
}

// Arrivals reads the kernel's SYN ledger for backend.
func (k *Kernel) Arrivals(backend netip.AddrPort) (Arrivals, error) {
	entries, err := k.tracer.Ledger()
	if err != nil {
		return Arrivals{}, err
	}
	var a Arrivals
	for _, e := range entries {
		if e.Server != backend {
			continue
		}
		s := SYNs{SYNs: e.SYNs, Answered: e.Answered, Refused: e.Refused, LastSYN: e.LastSYN, LastAnswer: e.LastAnswer,
			Untracked: e.Untracked, LastUntracked: e.LastUntracked}
		if e.Own {
			a.Probes.add(s)
		} else {
			a.AddClient(e.Client, s)
		}
	}
	return a, nil
}

// MarkProbePort tells the kernel that connections from local port are
// this agent's probes.
func (k *Kernel) MarkProbePort(port uint16) error { return k.tracer.MarkOwnPort(port) }

// UnmarkProbePort forgets a probe's port.
func (k *Kernel) UnmarkProbePort(port uint16) error { return k.tracer.UnmarkOwnPort(port) }

// Tracing says how the kernel traces a backend now; ok is false when it
// does not.
func (k *Kernel) Tracing(target netip.AddrPort) (_ Tracing, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.backends[target]
	return t.Tracing, ok
}

// SetBackends traces bs and no others: a backend whose route is not there
// yet (the CNI has not set up the pod's network) is an error, and the
// others are traced anyway; call again to retry.
func (k *Kernel) SetBackends(bs []Backend) error {
	k.asm.SetBackends(bs)
	k.mu.Lock()
	defer k.mu.Unlock()
	want := map[netip.AddrPort]bool{}
	var errs []error
	for _, b := range bs {
		t := b.Addr
		want[t] = true
		points, err := attachPoints(t.Addr())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := k.backends[t]; ok && slices.Equal(old.points, points) {
			if !old.SamePod(b.Pod) {
				// Another pod took the address over behind the same
				// interface (host network): its connections begin now.
				k.backends[t] = traced{points, Tracing{Pod: b.Pod, Since: time.Now()}}
			}
			continue
		}
		if err := k.attach(points); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := k.tracer.AddBackend(t); err != nil {
			errs = append(errs, err)
			continue
		}
		if k.tcp != nil {
			if err := k.tcp.AddBackend(t); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		k.backends[t] = traced{points, Tracing{Pod: b.Pod, Since: time.Now()}}
		k.log.Info("tracing backend", "backend", t, "interfaces", describePoints(points))
	}
	for t := range k.backends {
		if !want[t] {
			if err := k.tracer.RemoveBackend(t); err != nil {
				errs = append(errs, err)
			}
			if k.tcp != nil {
				if err := k.tcp.RemoveBackend(t); err != nil {
					errs = append(errs, err)
				}
			}
			delete(k.backends, t)
		}
	}
	// Detach from interfaces no backend routes through any more.
	used := map[int]bool{}
	for _, tb := range k.backends {
		for _, p := range tb.points {
			used[p.ifindex] = true
		}
	}
	for _, i := range k.tracer.Attached() {
		if !used[i] {
			errs = append(errs, k.tracer.Detach(i))
		}
	}
	return errors.Join(errs...)
}

// attach attaches the programs at points.
func (k *Kernel) attach(points []attachPoint) error {
	for _, p := range points {
		attach := k.tracer.Attach
		if p.ingressOnly {
			attach = k.tracer.AttachIngress
		}
		if err := attach(p.ifindex); err != nil {
			return err
		}
	}
	return nil
}

// attachPoints are where a backend's packets cross: for a pod, the
// interface the host routes its IP through (its veth). For a backend on
// the host's own address (a hostNetwork pod), the interface that holds the
// address, where a remote API server's packets arrive, and loopback, where
// a client on the same host talks to it (ingress only: loopback sees each
// packet leave and arrive). The programs then run for every packet of
// those interfaces, each costing the rejected path's few tens of ns
// unless it is the backend's; they stay only while such a backend lives
// on the node.
func attachPoints(ip netip.Addr) ([]attachPoint, error) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("looking up the route to backend %s: %w", ip, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return nil, fmt.Errorf("looking up the route to backend %s: no interface", ip)
	}
	if routes[0].Type != unix.RTN_LOCAL {
		return []attachPoint{{ifindex: routes[0].LinkIndex}}, nil
	}
	points := []attachPoint{{ifindex: routes[0].LinkIndex, ingressOnly: true}} // loopback
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("finding the interface that holds backend address %s: %w", ip, err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip.Unmap() && a.LinkIndex != routes[0].LinkIndex {
			points = append(points, attachPoint{ifindex: a.LinkIndex})
		}
	}
	slices.SortFunc(points, func(x, y attachPoint) int { return x.ifindex - y.ifindex })
	return slices.Compact(points), nil
}

// OnNode reports whether the API server reaches ip on this node: the
// node's own address (a hostNetwork server), or a pod's, whose route goes
// through the host side of a veth pair with its peer in another network
// namespace (every CNI that gives pods a veth: the VPC CNI, kindnet,
// Calico). It is how a webhook that calls a URL holding an address, not a
// Service, is found on the node that serves it. A pod behind another kind
// of interface (a VLAN branch ENI, ipvlan) is not recognised: such a URL
// is probed, not traced.
func (*Kernel) OnNode(ip netip.Addr) bool {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].LinkIndex == 0 {
		return false
	}
	if routes[0].Type == unix.RTN_LOCAL {
		return true
	}
	if routes[0].Gw != nil {
		return false
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return false
	}
	return link.Type() == "veth" && link.Attrs().NetNsID >= 0
}

// describePoints names the interfaces for the log.
func describePoints(points []attachPoint) string {
	var out []string
	for _, p := range points {
		name := strconv.Itoa(p.ifindex)
		if l, err := netlink.LinkByIndex(p.ifindex); err == nil {
			name = l.Attrs().Name
		}
		if p.ingressOnly {
			name += " (ingress)"
		}
		out = append(out, name)
	}
	return strings.Join(out, ", ")
}
