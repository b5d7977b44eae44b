//go:build linux

package tcpstate

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Floor is an empty program on each of the programs' tracepoints: what
// attaching costs before any of hookscope's own work (the trampoline, and
// under bpf_stats its two clock reads). Benchmarks read the programs'
// figures against it; a tracepoint that fires rarely runs with cold caches,
// so its floor is higher than a busy one's.
type Floor struct {
	progs map[string]*ebpf.Program
	links []link.Link
}

// AttachFloor loads and attaches the empty programs. It needs what Load
// needs.
func AttachFloor() (*Floor, error) {
	f := &Floor{progs: map[string]*ebpf.Program{}}
	for _, tp := range Programs {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "floor", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("loading an empty program for %s: %w", tp, err)
		}
		f.progs[tp] = p
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("attaching an empty program to %s: %w", tp, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

// Stats returns the empty programs' bpf_stats, keyed like Tracer.Stats.
func (f *Floor) Stats() (map[string]ebpf.ProgramStats, error) {
	out := map[string]ebpf.ProgramStats{}
	for tp, p := range f.progs {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading stats of the empty program on %s: %w", tp, err)
		}
		out[tp] = *s
	}
	return out, nil
}

// Close detaches and unloads the empty programs.
func (f *Floor) Close() error {
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	for _, p := range f.progs {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
