//go:build linux

package tcpstate

import (
	"errors"

	"github.com/cilium/ebpf"
)

// LoadWithoutCast is Load with the programs' no_cast set: they read with
// bpf_probe_read_kernel what they would read through bpf_rdonly_cast, as on
// a kernel without the kfunc.
func LoadWithoutCast() (*Tracer, error) {
	setErr := errors.New("the programs have no no_cast variable")
	tr, err := load(func(spec *ebpf.CollectionSpec) {
		if v, ok := spec.Variables["no_cast"]; ok {
			setErr = v.Set(uint8(1))
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
