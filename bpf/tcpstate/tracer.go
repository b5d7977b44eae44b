//go:build linux

// Package tcpstate follows the TCP life of connections to admission webhook
// backends in the kernel (see tcpstate.bpf.c): SYN, established, refused,
// reset mid-call, retransmissions, who closed first and how long it lasted.
//
// It knows nothing about Kubernetes: callers say which IP:port pairs are
// backends. The programs attach to BTF tracepoints (tp_btf), so they need
// neither kprobes nor a mounted tracefs; the kernel must have BTF.
//
// Capabilities: CAP_BPF (maps, programs, BTF) and CAP_PERFMON (tracing
// programs, bpf_probe_read_kernel); nothing else. Enabling bpf_stats
// (benchmarks only) also needs CAP_SYS_ADMIN.
package tcpstate

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/internal/backendset"
	"github.com/hookscope/hookscope/bpf/internal/mapscan"
	"github.com/hookscope/hookscope/bpf/internal/ringread"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("tcpstate tracer closed")

// The programs, by the tracepoint each one attaches to; Stats is keyed by these names.
const (
	ProgramSetState       = "inet_sock_set_state"
	ProgramReceiveReset   = "tcp_receive_reset"
	ProgramSendReset      = "tcp_send_reset"
	ProgramRetransmit     = "tcp_retransmit_skb"
	capabilityHint        = "run as root, or grant CAP_BPF and CAP_PERFMON"
	kernelBTFRequirement  = "hookscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
	tracepointRequirement = "needs Linux >= 5.5 with BTF tracepoints"
)

// Programs lists the program names in a fixed order.
var Programs = []string{ProgramSetState, ProgramReceiveReset, ProgramSendReset, ProgramRetransmit}

// Tracer owns the loaded programs and maps, their links, and the ring
// buffer reader.
type Tracer struct {
	maps     tcpstateMaps
	progs    map[string]*ebpf.Program // by tracepoint (Programs); only those loaded
	variants []Variant
	features Features
	links    []link.Link
	reader   *ringbuf.Reader
	ring     *ringread.Reader
	clock    ringread.Clock
	reasons  map[uint32]string // enum sk_rst_reason of this kernel
	backends *backendset.Set
}

// Load checks that the kernel can run the programs, loads them and attaches
// them to their tracepoints. Where a tracepoint's arguments changed across
// kernels it loads the program that matches this kernel (Variants says
// which). Its errors are one line saying what failed and what to do.
func Load() (*Tracer, error) { return load(nil, nil) }

// load is Load with a chance to change the collection before it is loaded
// (tests shrink the ring buffer) and other load options (tests ask for
// verifier statistics).
func load(edit func(*ebpf.CollectionSpec), opts *ebpf.CollectionOptions) (*Tracer, error) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("reading kernel BTF (/sys/kernel/btf/vmlinux): %w (%s)", err, kernelBTFRequirement)
	}
	// Kernels >= 5.11 charge BPF memory to the cgroup and need no memlock
	// raise; RemoveMemlock detects that. When it fails, loading says why.
	memlockErr := rlimit.RemoveMemlock()

	spec, err := loadTcpstate()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded tcpstate programs: %w", err)
	}
	t := &Tracer{
		clock:    ringread.NewClock(),
		reasons:  resetReasons(kernel),
		features: kernelFeatures(kernel),
		progs:    map[string]*ebpf.Program{},
	}
	if t.variants, err = chooseVariants(spec, kernel); err != nil {
		return nil, fmt.Errorf("loading tcpstate programs: %w (%s)", err, tracepointRequirement)
	}
	if edit != nil {
		edit(spec)
	}
	if opts == nil {
		opts = &ebpf.CollectionOptions{}
	}
	opts.Programs.KernelTypes = kernel
	coll, err := ebpf.NewCollectionWithOptions(spec, *opts)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("loading tcpstate programs: verifier rejected them:\n%+v", verr)
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			hint := capabilityHint
			if memlockErr != nil {
				hint += "; kernels before 5.11 also need CAP_SYS_RESOURCE for the memlock limit"
			}
			// cilium/ebpf's own text blames MEMLOCK; the cause is privilege.
			return nil, fmt.Errorf("loading tcpstate programs: %w: not permitted to create BPF maps and programs (%s)", unix.EPERM, hint)
		}
		return nil, fmt.Errorf("loading tcpstate programs: %w", err)
	}
	defer coll.Close() // what was not taken below: the .rodata map, which the programs hold
	if err := coll.Assign(&t.maps); err != nil {
		return nil, fmt.Errorf("loading tcpstate programs: %w", err)
	}
	for _, v := range t.variants {
		if v.Loaded {
			t.progs[v.Tracepoint] = coll.DetachProgram(v.Program)
		}
	}
	t.backends = backendset.New(t.maps.Backends, t.maps.BackendPorts, t.maps.PortSummary)
	for _, tp := range Programs {
		p := t.progs[tp]
		if p == nil {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			t.closeAll()
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("attaching to tracepoint %s: %w (%s)", tp, err, capabilityHint)
			}
			return nil, fmt.Errorf("attaching to tracepoint %s: %w (%s)", tp, err, tracepointRequirement)
		}
		t.links = append(t.links, l)
	}
	r, err := ringbuf.NewReader(t.maps.Events)
	if err != nil {
		t.closeAll()
		return nil, fmt.Errorf("opening the events ring buffer: %w", err)
	}
	t.reader = r
	t.ring = ringread.NewReader(r)
	return t, nil
}

// Variants says, per tracepoint in Programs' order, which program loaded
// and why, and what this kernel lacks there. Log it once (each Variant's
// String is one phrase); a tracepoint with Loaded false is not traced.
func (t *Tracer) Variants() []Variant { return append([]Variant(nil), t.variants...) }

// Features is what this kernel lets the programs see (read from its BTF).
func (t *Tracer) Features() Features { return t.features }

// resetReasons names this kernel's enum sk_rst_reason values (Linux >= 6.10).
func resetReasons(kernel *btf.Spec) map[uint32]string {
	out := map[uint32]string{}
	var e *btf.Enum
	if err := kernel.TypeByName("sk_rst_reason", &e); err != nil {
		return out
	}
	for _, v := range e.Values {
		out[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SK_RST_REASON_")
	}
	return out
}

// AddBackend makes connections to and from ap traced.
func (t *Tracer) AddBackend(ap netip.AddrPort) error { return t.backends.Add(ap) }

// RemoveBackend stops tracing connections to ap, and forgets the state of
// those under way (their closes, no longer matched, would not delete it);
// an unknown ap is no error.
func (t *Tracer) RemoveBackend(ap netip.AddrPort) error {
	if err := t.backends.Remove(ap); err != nil {
		return err
	}
	server, port := ap.Addr().Unmap().As16(), ap.Port()
	_, err := mapscan.DeleteWhere(t.maps.Conns, func(_ *uint64, c *tcpstateConn) bool {
		return c.Ep.ServerAddr == server && c.Ep.ServerPort == port
	})
	if err != nil {
		return fmt.Errorf("removing backend %s: forgetting its connections: %w", ap, err)
	}
	return nil
}

// PollInterval bounds how long a routine event (one that does not wake the
// reader at once) waits in the ring buffer.
const PollInterval = ringread.PollInterval

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
	if e.raw.StartNs != 0 {
		e.Start = t.clock.Wall(e.raw.StartNs)
	}
	if e.Kind == KindResetSent || (e.Kind == KindRefused && e.Side == SideServer) {
		e.ResetReason = t.reasons[e.ResetReasonCode]
	}
	return e, nil
}

// Counters reads the program's counters, summed over CPUs.
func (t *Tracer) Counters() (Counters, error) {
	c := Counters{Matched: map[string]uint64{}}
	for i := tcpstateCounter(0); i < tcpstateCounterCOUNTER_MAX; i++ {
		var perCPU []uint64
		if err := t.maps.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("reading counter %d: %w", i, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		switch i {
		case tcpstateCounterCOUNTER_EVENTS_DROPPED:
			c.EventsDropped = sum
		case tcpstateCounterCOUNTER_MATCHED_SET_STATE:
			c.Matched[ProgramSetState] = sum
		case tcpstateCounterCOUNTER_MATCHED_RECEIVE_RESET:
			c.Matched[ProgramReceiveReset] = sum
		case tcpstateCounterCOUNTER_MATCHED_SEND_RESET:
			c.Matched[ProgramSendReset] = sum
		case tcpstateCounterCOUNTER_MATCHED_RETRANSMIT:
			c.Matched[ProgramRetransmit] = sum
		case tcpstateCounterCOUNTER_NO_STATE:
			c.ClosedWithoutState = sum
		case tcpstateCounterCOUNTER_SYN:
			c.SYNs = sum
		case tcpstateCounterCOUNTER_ESTABLISHED:
			c.Established = sum
		}
	}
	return c, nil
}

// Stats reads the kernel's run statistics (bpf_stats) of each loaded
// program, by program name. They count only while statistics are enabled
// (ebpf.EnableStats or the sysctl kernel.bpf_stats_enabled).
func (t *Tracer) Stats() (map[string]ebpf.ProgramStats, error) {
	out := map[string]ebpf.ProgramStats{}
	for name, p := range t.progs {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading statistics of %s: %w", name, err)
		}
		out[name] = *s
	}
	return out, nil
}

// Close detaches the programs and frees them and the maps.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	errs = append(errs, t.closeAll())
	return errors.Join(errs...)
}

func (t *Tracer) closeAll() error {
	var errs []error
	for i := len(t.links) - 1; i >= 0; i-- {
		errs = append(errs, t.links[i].Close())
	}
	t.links = nil
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	t.progs = nil
	errs = append(errs, t.maps.Close())
	return errors.Join(errs...)
}
