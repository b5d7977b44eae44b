//go:build linux

package tcpstate

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// LoadWithoutCast is Load with the programs' no_cast set: they read with
// bpf_probe_read_kernel what they would read through bpf_rdonly_cast, as on
// a kernel without the kfunc. Like LoadWithTransitions, it sends the syn
// and established records the state machine's tests read.
func LoadWithoutCast() (*Tracer, error) {
	return loadSetting(map[string]uint8{"no_cast": 1, "send_transitions": 1})
}

// LoadWithTransitions is Load with a record sent for each syn and
// established too, which Load only counts.
func LoadWithTransitions() (*Tracer, error) {
	return loadSetting(map[string]uint8{"send_transitions": 1})
}

// loadSetting loads the programs with the given read-only variables set.
func loadSetting(vars map[string]uint8) (*Tracer, error) {
	var setErr error
	tr, err := load(func(spec *ebpf.CollectionSpec) {
		for name, value := range vars {
			v, ok := spec.Variables[name]
			if !ok {
				setErr = errors.Join(setErr, fmt.Errorf("the programs have no %s variable", name))
				continue
			}
			setErr = errors.Join(setErr, v.Set(value))
		}
	}, nil)
	if err != nil {
		return nil, err
	}
	if setErr != nil {
		tr.Close()
		return nil, setErr
	}
	return tr, nil
}

// ServerSYNHasPeer says whether this kernel changes a new server socket to
// SYN_RECV after giving it its peer (Linux >= 6.15), so that its syn event
// can name the client; before, the change comes while the socket is cloned
// from the listener, with remote port 0, and the programs take the server
// side up at established. No BTF type tells the two apart, so it is read
// from the kernel's own text trace of the tracepoint (tracefs, in an
// instance of its own), independent of hookscope's programs: one loopback
// connection, and the SYN_RECV line's dport.
func ServerSYNHasPeer() (bool, error) {
	const tracing = "/sys/kernel/tracing"
	if _, err := os.Stat(tracing + "/instances"); err != nil {
		if err := unix.Mount("nodev", tracing, "tracefs", 0, ""); err != nil {
			return false, fmt.Errorf("mounting tracefs on %s: %w", tracing, err)
		}
		defer unix.Unmount(tracing, 0)
	}
	inst := fmt.Sprintf("%s/instances/hookscope-synprobe-%d", tracing, os.Getpid())
	if err := os.Mkdir(inst, 0o755); err != nil {
		return false, fmt.Errorf("creating a trace instance: %w", err)
	}
	defer os.Remove(inst)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	event := inst + "/events/sock/inet_sock_set_state"
	if err := os.WriteFile(event+"/filter", []byte(fmt.Sprintf("sport == %d", port)), 0); err != nil {
		return false, fmt.Errorf("filtering sock:inet_sock_set_state: %w", err)
	}
	if err := os.WriteFile(event+"/enable", []byte("1"), 0); err != nil {
		return false, fmt.Errorf("enabling sock:inet_sock_set_state: %w", err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return false, err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return false, err
	}
	s.Close()
	c.Close()
	os.WriteFile(event+"/enable", []byte("0"), 0)
	trace, err := os.ReadFile(inst + "/trace")
	if err != nil {
		return false, fmt.Errorf("reading the trace: %w", err)
	}
	for _, line := range strings.Split(string(trace), "\n") {
		if strings.Contains(line, "newstate=TCP_SYN_RECV") {
			return !strings.Contains(line, " dport=0 "), nil
		}
	}
	return false, fmt.Errorf("no SYN_RECV change of a server socket on port %d in the trace:\n%s", port, trace)
}
