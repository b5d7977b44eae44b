//go:build linux

// Package handshake traces TCP and TLS handshakes to admission webhook
// backends in the kernel (see handshake.bpf.c) and decodes what it sees.
//
// It knows nothing about Kubernetes: callers say which IP:port pairs are
// backends and which interfaces carry their traffic.
package handshake

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/internal/backendset"
	"github.com/hookscope/hookscope/bpf/internal/mapscan"
	"github.com/hookscope/hookscope/bpf/internal/ringread"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("handshake tracer closed")

// Tracer owns the loaded programs and maps, their links, and the ring
// buffer reader.
type Tracer struct {
	objs   handshakeObjects
	reader *ringbuf.Reader
	ring   *ringread.Reader
	clock  ringread.Clock

	backends *backendset.Set

	mu    sync.Mutex
	links map[int][]io.Closer // tcx links or cls_bpf filters, by interface index
}

// Load checks that the kernel can run the programs, then loads them. Its
// errors say what failed and what to do.
func Load() (*Tracer, error) {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return nil, fmt.Errorf("reading kernel BTF (/sys/kernel/btf/vmlinux): %w (hookscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)", err)
	}
	// Kernels >= 5.11 charge BPF memory to the cgroup and need no memlock
	// raise; RemoveMemlock detects that. When it fails, loading says why.
	memlockErr := rlimit.RemoveMemlock()
	t := &Tracer{links: map[int][]io.Closer{}, clock: ringread.NewClock()}
	if err := loadHandshakeObjects(&t.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading handshake programs: verifier rejected them:\n%+v", verr)
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			hint := "run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
			if memlockErr != nil {
				hint += "; kernels before 5.11 also need CAP_SYS_RESOURCE for the memlock limit"
			}
			// cilium/ebpf's own text blames MEMLOCK; the cause is privilege.
			return nil, fmt.Errorf("loading handshake programs: %w: not permitted to create BPF maps and programs (%s)", unix.EPERM, hint)
		}
		return nil, fmt.Errorf("loading handshake programs: %w", err)
	}
	t.backends = backendset.New(t.objs.Backends, t.objs.BackendPorts, t.objs.PortSummary)
	r, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.objs.Close()
		return nil, fmt.Errorf("opening the events ring buffer: %w", err)
	}
	t.reader = r
	t.ring = ringread.NewReader(r)
	return t, nil
}

// Attach attaches the program, ingress and egress, to the interface with
// the given index, once: with tcx where the kernel has it (Linux >= 6.6), else as cls_bpf
// filters on a clsact qdisc (AttachLegacy).
func (t *Tracer) Attach(ifindex int) error { return t.attach(ifindex, true) }

// AttachIngress attaches the program at ingress only, for an interface every
// packet crosses twice, leaving and arriving: loopback, which carries the
// connections to a backend on the host's own address from a client on
// the same host. Ingress alone sees both directions once.
func (t *Tracer) AttachIngress(ifindex int) error { return t.attach(ifindex, false) }

func (t *Tracer) attach(ifindex int, egress bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.links[ifindex]; ok {
		return nil
	}
	closers, err := t.attachTCX(ifindex, egress)
	if errors.Is(err, ebpf.ErrNotSupported) {
		closers, err = t.attachClsBPF(ifindex, egress)
	}
	if err != nil {
		return err
	}
	t.links[ifindex] = closers
	return nil
}

// AttachLegacy attaches the program, ingress and egress, as cls_bpf filters (direct action)
// on the interface's clsact qdisc, as kernels before 6.6 need; Attach
// falls back to it by itself. It needs CAP_NET_ADMIN too.
func (t *Tracer) AttachLegacy(ifindex int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.links[ifindex]; ok {
		return nil
	}
	closers, err := t.attachClsBPF(ifindex, true)
	if err != nil {
		return err
	}
	t.links[ifindex] = closers
	return nil
}

func (t *Tracer) attachTCX(ifindex int, withEgress bool) ([]io.Closer, error) {
	ingress, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: t.objs.Handshake, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, fmt.Errorf("attaching tcx ingress to interface %d: %w (needs CAP_NET_ADMIN)", ifindex, err)
	}
	if !withEgress {
		return []io.Closer{ingress}, nil
	}
	egress, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: t.objs.Handshake, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		ingress.Close()
		return nil, fmt.Errorf("attaching tcx egress to interface %d: %w", ifindex, err)
	}
	return []io.Closer{ingress, egress}, nil
}

// clsFilter is one cls_bpf filter hookscope added; Close deletes it.
type clsFilter struct{ f *netlink.BpfFilter }

func (c clsFilter) Close() error {
	if err := netlink.FilterDel(c.f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting the cls_bpf filter %s: %w", c.f.Name, err)
	}
	return nil
}

// clsPriority and clsHandle name hookscope's filters among others on the
// same qdisc: a late priority, so other filters' verdicts come first.
const (
	clsPriority = 0xc000
	clsHandle   = 0x4853 // "HS"
)

func (t *Tracer) attachClsBPF(ifindex int, withEgress bool) ([]io.Closer, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return nil, fmt.Errorf("adding the clsact qdisc to interface %d: %w (needs CAP_NET_ADMIN)", ifindex, err)
	}
	var out []io.Closer
	for _, a := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{
		{netlink.HANDLE_MIN_INGRESS, t.objs.Handshake, "hookscope_ingress"},
		{netlink.HANDLE_MIN_EGRESS, t.objs.Handshake, "hookscope_egress"},
	} {
		if a.parent == netlink.HANDLE_MIN_EGRESS && !withEgress {
			continue
		}
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: a.parent, Handle: clsHandle,
				Protocol: unix.ETH_P_ALL, Priority: clsPriority},
			Fd: a.prog.FD(), Name: a.name, DirectAction: true,
		}
		if err := netlink.FilterReplace(f); err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, fmt.Errorf("attaching %s as a cls_bpf filter to interface %d: %w", a.name, ifindex, err)
		}
		out = append(out, clsFilter{f})
	}
	return out, nil
}

// Detach removes the programs from an interface; a missing attachment is no error.
func (t *Tracer) Detach(ifindex int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, l := range t.links[ifindex] {
		errs = append(errs, l.Close())
	}
	delete(t.links, ifindex)
	return errors.Join(errs...)
}

// Attached lists the interface indexes the programs are attached to.
func (t *Tracer) Attached() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int, 0, len(t.links))
	for i := range t.links {
		out = append(out, i)
	}
	return out
}

// AddBackend makes connections to ap traced.
func (t *Tracer) AddBackend(ap netip.AddrPort) error { return t.backends.Add(ap) }

// RemoveBackend stops tracing connections to ap, those under way included;
// an unknown ap is no error.
func (t *Tracer) RemoveBackend(ap netip.AddrPort) error {
	if err := t.backends.Remove(ap); err != nil {
		return err
	}
	return t.forgetFlows(ap)
}

// forgetFlows deletes the state of connections to ap: the program finds a
// connection's segments after its SYN in `flows`, not in `backends`.
func (t *Tracer) forgetFlows(ap netip.AddrPort) error {
	server := backendset.KeyOf(ap)
	_, err := mapscan.DeleteWhere(t.objs.Flows, func(k *handshakeFlowKey, _ *handshakeFlowState) bool {
		return k.ServerAddr == server.Addr && k.ServerPort == server.Port
	})
	if err != nil {
		return fmt.Errorf("removing backend %s: forgetting its connections: %w", ap, err)
	}
	return nil
}

// PollInterval bounds how long a routine event (one that does not wake the
// reader at once) waits in the ring buffer.
const PollInterval = ringread.PollInterval

// ReaderPolls counts the event reader's returns from the ring buffer (a
// record, or a poll that found none): an idle node's reader adds none.
func (t *Tracer) ReaderPolls() uint64 { return t.ring.Polls() }

// Read blocks until the next event and decodes it. After Close it returns ErrClosed.
func (t *Tracer) Read() (Event, error) {
	raw, err := t.ring.Next()
	if errors.Is(err, ringread.ErrClosed) {
		return Event{}, ErrClosed
	}
	if err != nil {
		return Event{}, err
	}
	return t.decode(raw)
}

func (t *Tracer) decode(raw []byte) (Event, error) {
	e, err := DecodeEvent(raw)
	if err != nil {
		return Event{}, err
	}
	e.Time = t.clock.Wall(e.raw.TsNs)
	if e.raw.FlowStartNs != 0 {
		e.FlowStart = t.clock.Wall(e.raw.FlowStartNs)
	}
	return e, nil
}

// Counters reads the program's counters, summed over CPUs.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	for i := handshakeCounter(0); i < handshakeCounterCOUNTER_MAX; i++ {
		var perCPU []uint64
		if err := t.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("reading counter %d: %w", i, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		switch i {
		case handshakeCounterCOUNTER_PACKETS:
			c.Packets = sum
		case handshakeCounterCOUNTER_EVENTS_DROPPED:
			c.EventsDropped = sum
		case handshakeCounterCOUNTER_MALFORMED:
			c.MalformedRecords = sum
		case handshakeCounterCOUNTER_SPLIT:
			c.SplitRecords = sum
		case handshakeCounterCOUNTER_OUT_OF_ORDER:
			c.OutOfOrder = sum
		case handshakeCounterCOUNTER_UNPARSED:
			c.Unparsed = sum
		case handshakeCounterCOUNTER_HEADERS_PULLED:
			c.HeadersPulled = sum
		case handshakeCounterCOUNTER_CONNECTS:
			c.Connects = sum
		}
	}
	return c, nil
}

// Stats is the kernel's run statistics (bpf_stats) of the program, both
// directions together. They count only while statistics are enabled
// (ebpf.EnableStats or the sysctl kernel.bpf_stats_enabled).
func (t *Tracer) Stats() (ebpf.ProgramStats, error) {
	s, err := t.objs.Handshake.Stats()
	if err != nil {
		return ebpf.ProgramStats{}, fmt.Errorf("reading program statistics: %w", err)
	}
	return *s, nil
}

// ProgramStats returns the program's run statistics (bpf_stats) by its
// name, handshake, as the TCP tracepoints' are.
func (t *Tracer) ProgramStats() (map[string]ebpf.ProgramStats, error) {
	s, err := t.Stats()
	if err != nil {
		return nil, err
	}
	return map[string]ebpf.ProgramStats{"handshake": s}, nil
}

// Close detaches everything and frees the programs and maps.
func (t *Tracer) Close() error {
	t.mu.Lock()
	var errs []error
	for i, ls := range t.links {
		for _, l := range ls {
			errs = append(errs, l.Close())
		}
		delete(t.links, i)
	}
	t.mu.Unlock()
	errs = append(errs, t.reader.Close(), t.objs.Close())
	return errors.Join(errs...)
}
