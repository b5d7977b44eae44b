//go:build linux

package tcpstate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Variant says which program was loaded on one tracepoint and why: where a
// tracepoint's arguments changed across kernels, tcpstate.bpf.c has one
// program per prototype, and Load picks the one that matches the kernel's
// BTF (the verifier rejects a program that reads an argument the
// tracepoint does not pass). One binary thus loads from Linux 6.1 to 6.18.
type Variant struct {
	// Tracepoint is the program's name in Programs (and in Stats).
	Tracepoint string
	// Program is the C function loaded, e.g. tcp_send_reset_noreason; empty
	// when none could be (then Loaded is false).
	Program string
	// Loaded says the tracepoint is traced.
	Loaded bool
	// Why is what the kernel's BTF said, e.g. "btf_trace_tcp_send_reset
	// passes 2 arguments" (sk, skb: no reason).
	Why string
	// Lacks lists what this kernel does not show through this tracepoint
	// (each a short phrase with the kernel that first has it); empty when
	// nothing is missing.
	Lacks []string
}

// String is the variant in one line, for a log.
func (v Variant) String() string {
	s := v.Tracepoint + "=" + v.Program
	if !v.Loaded {
		s = v.Tracepoint + "=not loaded"
	}
	s += " (" + v.Why
	if len(v.Lacks) > 0 {
		s += "; lacks " + strings.Join(v.Lacks, ", ")
	}
	return s + ")"
}

// Features is what this kernel lets the programs see, read from its BTF
// before loading. Each field is named after what the agent (and the tests)
// can expect to see.
type Features struct {
	// ResetReasons: tcp_send_reset passes enum sk_rst_reason (Linux >=
	// 6.10), so reset_sent and server-side refused events carry
	// ResetReason. Without it ResetReason is "".
	ResetReasons bool
	// ResetWithoutSocket: tcp_send_reset fires for a RST the kernel sends
	// with no socket, such as the answer to a SYN for a closed port, so the
	// backend's node reports the refusal (KindRefused, SideServer). It came
	// with the tracepoint's own event class (trace_event_raw_tcp_send_reset,
	// Linux >= 6.10); before, the tracepoint fired only with a full socket.
	ResetWithoutSocket bool
	// RetransmitErrors: tcp_retransmit_skb passes err and fires for failed
	// attempts too (which the programs skip); before, it fired only for sent
	// retransmissions. Either way retransmissions are counted the same.
	RetransmitErrors bool
	// RdonlyCast: the kernel has the bpf_rdonly_cast kfunc (Linux >= 6.2);
	// without it the programs read a socket's own port and a RST's segment
	// ports with bpf_probe_read_kernel (same results, a helper call each).
	RdonlyCast bool
}

// programVariant is one program of tcpstate.bpf.c for a tracepoint whose
// prototype passes args arguments (the btf_trace_ typedef's parameters less
// the leading context pointer).
type programVariant struct {
	args    int
	program string
	lacks   []string
}

var programVariants = map[string][]programVariant{
	ProgramSetState:     {{args: 3, program: "inet_sock_set_state"}},
	ProgramReceiveReset: {{args: 1, program: "tcp_receive_reset"}},
	ProgramSendReset: {
		{args: 3, program: "tcp_send_reset"},
		{args: 2, program: "tcp_send_reset_noreason", lacks: []string{"reset reasons (Linux >= 6.10)"}},
	},
	ProgramRetransmit: {
		{args: 3, program: "tcp_retransmit_skb"},
		{args: 2, program: "tcp_retransmit_skb_noerr"},
	},
}

// tracepointArgs reads how many arguments the BTF tracepoint passes to a
// tp_btf program, from the kernel's typedef btf_trace_<name>: a pointer to
// a function whose first parameter is the tracepoint's context.
func tracepointArgs(kernel *btf.Spec, tracepoint string) (int, error) {
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_"+tracepoint, &td); err != nil {
		return 0, fmt.Errorf("no btf_trace_%s in the kernel's BTF: %w", tracepoint, err)
	}
	ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s is a %s, not a function pointer", tracepoint, td.Type)
	}
	proto, ok := btf.UnderlyingType(ptr.Target).(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return 0, fmt.Errorf("btf_trace_%s points to a %s, not a tracepoint prototype", tracepoint, ptr.Target)
	}
	return len(proto.Params) - 1, nil
}

// kernelFeatures reads Features from the kernel's BTF.
func kernelFeatures(kernel *btf.Spec) Features {
	var f Features
	if n, err := tracepointArgs(kernel, ProgramSendReset); err == nil && n == 3 {
		f.ResetReasons = true
	}
	if n, err := tracepointArgs(kernel, ProgramRetransmit); err == nil && n == 3 {
		f.RetransmitErrors = true
	}
	var st *btf.Struct
	f.ResetWithoutSocket = kernel.TypeByName("trace_event_raw_tcp_send_reset", &st) == nil
	var fn *btf.Func
	f.RdonlyCast = kernel.TypeByName("bpf_rdonly_cast", &fn) == nil
	return f
}

// chooseVariants decides, per tracepoint, which program of spec loads on
// this kernel, and deletes the others from spec. A tracepoint the kernel
// lacks, or whose prototype no program matches, loses its program (Loaded
// false, and Why says what was found); the rest still load.
func chooseVariants(spec *ebpf.CollectionSpec, kernel *btf.Spec) ([]Variant, error) {
	f := kernelFeatures(kernel)
	var out []Variant
	for _, tp := range Programs {
		v := Variant{Tracepoint: tp}
		n, err := tracepointArgs(kernel, tp)
		if err != nil {
			v.Why = err.Error()
		} else {
			v.Why = fmt.Sprintf("btf_trace_%s passes %d argument%s", tp, n, map[bool]string{true: "s"}[n != 1])
		}
		var have []string
		for _, pv := range programVariants[tp] {
			have = append(have, fmt.Sprint(pv.args))
			if _, ok := spec.Programs[pv.program]; !ok {
				return nil, fmt.Errorf("the embedded programs have no %s", pv.program)
			}
			if err == nil && pv.args == n && !v.Loaded {
				v.Program, v.Loaded, v.Lacks = pv.program, true, pv.lacks
				continue
			}
			delete(spec.Programs, pv.program)
		}
		if err == nil && !v.Loaded {
			v.Why += fmt.Sprintf("; hookscope has programs for %s", strings.Join(have, " or "))
		}
		if tp == ProgramSendReset && v.Loaded && !f.ResetWithoutSocket {
			v.Lacks = append(v.Lacks, "RSTs sent with no socket, such as a refused SYN on the backend's node (Linux >= 6.10)")
		}
		out = append(out, v)
	}
	if len(spec.Programs) == 0 {
		return out, errors.New("no tracepoint of this kernel matches a tcpstate program")
	}
	return out, nil
}
