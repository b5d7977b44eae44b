package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
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
	backends map[netip.AddrPort]int // backend -> interface index
}

// NewKernel wraps loaded tracers (tcp may be nil); Run starts reading
// their events into asm.
func NewKernel(t *handshake.Tracer, tcp *tcpstate.Tracer, asm *Assembler, log *slog.Logger) *Kernel {
	return &Kernel{tracer: t, tcp: tcp, asm: asm, log: log, backends: map[netip.AddrPort]int{}}
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
	go func() {
		t := time.NewTicker(PendingCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				k.asm.Tick(now)
			}
		}
	}()
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
		s := SYNs{SYNs: e.SYNs, Answered: e.Answered, Refused: e.Refused, LastSYN: e.LastSYN, LastAnswer: e.LastAnswer}
		if e.Own {
			a.Probes.add(s)
		} else {
			a.Clients.add(s)
		}
	}
	return a, nil
}

// MarkProbePort tells the kernel that connections from local port are
// this agent's probes.
func (k *Kernel) MarkProbePort(port uint16) error { return k.tracer.MarkOwnPort(port) }

// UnmarkProbePort forgets a probe's port.
func (k *Kernel) UnmarkProbePort(port uint16) error { return k.tracer.UnmarkOwnPort(port) }

// Traced reports whether the kernel traces a backend now.
func (k *Kernel) Traced(target netip.AddrPort) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.backends[target]
	return ok
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
		ifindex, err := routeInterface(t.Addr())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := k.backends[t]; ok && old == ifindex {
			continue
		}
		if err := k.tracer.Attach(ifindex); err != nil {
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
		k.backends[t] = ifindex
		k.log.Info("tracing backend", "backend", t, "ifindex", ifindex)
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
	for _, i := range k.backends {
		used[i] = true
	}
	for _, i := range k.tracer.Attached() {
		if !used[i] {
			errs = append(errs, k.tracer.Detach(i))
		}
	}
	return errors.Join(errs...)
}

// routeInterface is the interface the host sends packets for ip through.
func routeInterface(ip netip.Addr) (int, error) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("looking up the route to backend %s: %w", ip, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return 0, fmt.Errorf("looking up the route to backend %s: no interface", ip)
	}
	return routes[0].LinkIndex, nil
}
