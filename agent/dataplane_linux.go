package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
)

// KernelDataPlane traces backends with the handshake programs: each backend
// IP:port goes into the BPF map, and the programs are attached to the
// interface the host routes that IP through (for a pod, its veth).
type KernelDataPlane struct {
	tracer *handshake.Tracer
	log    *slog.Logger
	events chan handshake.Event
	// tcp, when loaded, adds the TCP tracepoints: retransmissions, resets
	// and who closed first, on both the backend's and a local client's
	// sockets.
	tcp       *tcpstate.Tracer
	tcpEvents chan tcpstate.Event

	mu       sync.Mutex
	backends map[netip.AddrPort]int // backend -> interface index
}

// NewKernelDataPlane wraps a loaded tracer; Run starts reading its events.
func NewKernelDataPlane(t *handshake.Tracer, log *slog.Logger) *KernelDataPlane {
	return &KernelDataPlane{tracer: t, log: log, events: make(chan handshake.Event, 4096), backends: map[netip.AddrPort]int{}}
}

// WithTCP adds the TCP tracepoints; call before Run.
func (k *KernelDataPlane) WithTCP(t *tcpstate.Tracer) *KernelDataPlane {
	k.tcp, k.tcpEvents = t, make(chan tcpstate.Event, 4096)
	return k
}

// TCPEvents delivers the TCP tracepoints' events; nil without WithTCP.
func (k *KernelDataPlane) TCPEvents() <-chan tcpstate.Event { return k.tcpEvents }

// Events implements DataPlane.
func (k *KernelDataPlane) Events() <-chan handshake.Event { return k.events }

// Run reads the ring buffer until the tracer is closed or ctx ends.
func (k *KernelDataPlane) Run(ctx context.Context) {
	defer close(k.events)
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
	for {
		e, err := k.tracer.Read()
		if errors.Is(err, handshake.ErrClosed) {
			return
		}
		if err != nil {
			k.log.Warn("reading eBPF event", "err", err)
			continue
		}
		select {
		case k.events <- e:
		default:
			k.log.Warn("agent is behind the kernel: event dropped", "kind", e.Kind.String())
		}
	}
}

func (k *KernelDataPlane) readTCP() {
	defer close(k.tcpEvents)
	for {
		e, err := k.tcp.Read()
		if errors.Is(err, tcpstate.ErrClosed) {
			return
		}
		if err != nil {
			k.log.Warn("reading TCP tracepoint event", "err", err)
			continue
		}
		select {
		case k.tcpEvents <- e:
		default:
			k.log.Warn("agent is behind the kernel: TCP event dropped", "kind", e.Kind.String())
		}
	}
}

// EventsDropped is how many events the kernel could not queue.
func (k *KernelDataPlane) EventsDropped() (uint64, error) {
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
func (k *KernelDataPlane) Unparsed() (map[string]uint64, error) {
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

// Traced implements DataPlane.
func (k *KernelDataPlane) Traced(target netip.AddrPort) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.backends[target]
	return ok
}

// SetBackends implements DataPlane.
func (k *KernelDataPlane) SetBackends(targets []netip.AddrPort) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	want := map[netip.AddrPort]bool{}
	var errs []error
	for _, t := range targets {
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
