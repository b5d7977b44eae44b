//go:build linux

package tcpstate

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// fakeKernel is a kernel BTF with the tracepoint prototypes given (number
// of arguments after the context pointer; 0: no such tracepoint) and, when
// asked, the types the features are read from.
func fakeKernel(t *testing.T, args map[string]int, sendResetClass, rdonlyCast bool) *btf.Spec {
	t.Helper()
	ptr := &btf.Pointer{Target: &btf.Void{}}
	var types []btf.Type
	for tp, n := range args {
		if n == 0 {
			continue
		}
		params := []btf.FuncParam{{Name: "__data", Type: ptr}}
		for range n {
			params = append(params, btf.FuncParam{Type: ptr})
		}
		proto := &btf.FuncProto{Return: &btf.Void{}, Params: params}
		types = append(types, &btf.Typedef{Name: "btf_trace_" + tp, Type: &btf.Pointer{Target: proto}})
	}
	if sendResetClass {
		types = append(types, &btf.Struct{Name: "trace_event_raw_tcp_send_reset"})
	}
	if rdonlyCast {
		types = append(types, &btf.Func{Name: "bpf_rdonly_cast", Type: &btf.FuncProto{Return: ptr}, Linkage: btf.GlobalFunc})
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := b.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestChooseVariants: the program chosen for each tracepoint follows the
// prototype in the kernel's BTF, the other variant is deleted, and a kernel
// without a tracepoint (or with an unknown prototype) loses only that one.
func TestChooseVariants(t *testing.T) {
	for _, c := range []struct {
		name          string
		args          map[string]int
		sendResetFull bool
		want          map[string]string // tracepoint -> program ("" : not loaded)
		lacks         string            // in the send_reset variant's Lacks
		features      Features
	}{
		{
			name:          "6.18",
			args:          map[string]int{ProgramSetState: 3, ProgramReceiveReset: 1, ProgramSendReset: 3, ProgramRetransmit: 3},
			sendResetFull: true,
			want: map[string]string{ProgramSetState: "inet_sock_set_state", ProgramReceiveReset: "tcp_receive_reset",
				ProgramSendReset: "tcp_send_reset", ProgramRetransmit: "tcp_retransmit_skb"},
			features: Features{ResetReasons: true, ResetWithoutSocket: true, RetransmitErrors: true, RdonlyCast: true},
		},
		{
			name: "6.1",
			args: map[string]int{ProgramSetState: 3, ProgramReceiveReset: 1, ProgramSendReset: 2, ProgramRetransmit: 2},
			want: map[string]string{ProgramSetState: "inet_sock_set_state", ProgramReceiveReset: "tcp_receive_reset",
				ProgramSendReset: "tcp_send_reset_noreason", ProgramRetransmit: "tcp_retransmit_skb_noerr"},
			lacks:    "reset reasons",
			features: Features{RdonlyCast: true},
		},
		{
			name: "no retransmit tracepoint, unknown send_reset prototype",
			args: map[string]int{ProgramSetState: 3, ProgramReceiveReset: 1, ProgramSendReset: 5},
			want: map[string]string{ProgramSetState: "inet_sock_set_state", ProgramReceiveReset: "tcp_receive_reset",
				ProgramSendReset: "", ProgramRetransmit: ""},
			features: Features{RdonlyCast: true},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			kernel := fakeKernel(t, c.args, c.sendResetFull, true)
			spec, err := loadTcpstate()
			if err != nil {
				t.Fatal(err)
			}
			vs, err := chooseVariants(spec, kernel)
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != len(Programs) {
				t.Fatalf("%d variants, want one per tracepoint: %v", len(vs), vs)
			}
			loaded := 0
			for i, v := range vs {
				if v.Tracepoint != Programs[i] {
					t.Errorf("variant %d is for %s, want %s", i, v.Tracepoint, Programs[i])
				}
				want := c.want[v.Tracepoint]
				if v.Program != want || v.Loaded != (want != "") {
					t.Errorf("%s: program %q loaded %v, want %q (%s)", v.Tracepoint, v.Program, v.Loaded, want, v)
				}
				if want != "" {
					loaded++
					if _, ok := spec.Programs[want]; !ok {
						t.Errorf("%s: the chosen %s was deleted from the spec", v.Tracepoint, want)
					}
				}
				if v.Why == "" {
					t.Errorf("%s: no reason given", v.Tracepoint)
				}
				if v.Tracepoint == ProgramSendReset && c.lacks != "" && !strings.Contains(v.String(), c.lacks) {
					t.Errorf("%s: %q does not say it lacks %s", v.Tracepoint, v, c.lacks)
				}
			}
			if len(spec.Programs) != loaded {
				t.Errorf("spec keeps %d programs, want only the %d chosen: %v", len(spec.Programs), loaded, spec.Programs)
			}
			if f := kernelFeatures(kernel); f != c.features {
				t.Errorf("features %+v, want %+v", f, c.features)
			}
		})
	}
}

// TestVariantsOfThisKernel loads the programs on the running kernel and
// checks that every tracepoint got the program its BTF prototype calls for
// and that Features agrees with the kernel's own types. It logs both: the
// kernel matrix (make test-kernels) shows each kernel's in its log.
func TestVariantsOfThisKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	tr, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	f := tr.Features()
	t.Logf("features: %+v", f)
	for _, v := range tr.Variants() {
		t.Logf("variant: %s", v)
		if !v.Loaded {
			t.Errorf("%s: not loaded on this kernel: %s", v.Tracepoint, v)
			continue
		}
		n, err := tracepointArgs(kernel, v.Tracepoint)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		switch {
		case v.Tracepoint == ProgramSendReset && n == 2, v.Tracepoint == ProgramRetransmit && n == 2:
			want = v.Tracepoint + map[string]string{ProgramSendReset: "_noreason", ProgramRetransmit: "_noerr"}[v.Tracepoint]
		default:
			want = v.Tracepoint
		}
		if v.Program != want {
			t.Errorf("%s passes %d arguments: loaded %s, want %s", v.Tracepoint, n, v.Program, want)
		}
	}
	// Reset reasons come as enum sk_rst_reason, with the reason argument.
	var reasons *btf.Enum
	if hasEnum := kernel.TypeByName("sk_rst_reason", &reasons) == nil; hasEnum != f.ResetReasons {
		t.Errorf("enum sk_rst_reason in BTF: %v, but ResetReasons %v", hasEnum, f.ResetReasons)
	}
	if f.ResetWithoutSocket && !f.ResetReasons {
		t.Errorf("tcp_send_reset fires with no socket but passes no reason: the features disagree with Linux's history: %+v", f)
	}
}
