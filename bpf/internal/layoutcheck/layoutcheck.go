// Package layoutcheck compares a Go struct that decodes a BPF record with
// the C struct's BTF in the compiled object: the kernel writes what the C
// says, so the Go side is checked against that, not against itself.
package layoutcheck

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Struct checks that goValue (a struct) has the size of the C struct
// named name in spec's BTF, and a field at each member's offset, of the
// member's size, named as bpf2go names it (client_addr: ClientAddr). It
// returns every difference.
func Struct(spec *ebpf.CollectionSpec, name string, goValue any) []error {
	var st *btf.Struct
	if err := spec.Types.TypeByName(name, &st); err != nil {
		return []error{fmt.Errorf("struct %s in the object's BTF: %w", name, err)}
	}
	gt := reflect.TypeOf(goValue)
	var errs []error
	if gt.Size() != uintptr(st.Size) {
		errs = append(errs, fmt.Errorf("struct %s is %d bytes in C, %s is %d in Go", name, st.Size, gt, gt.Size()))
	}
	for _, m := range st.Members {
		if m.Name == "" || m.Offset%8 != 0 {
			continue // padding, bit fields
		}
		f, ok := gt.FieldByName(goName(m.Name))
		if !ok {
			errs = append(errs, fmt.Errorf("member %s.%s: no Go field %s", name, m.Name, goName(m.Name)))
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s.%s: %w", name, m.Name, err))
			continue
		}
		if uint32(f.Offset) != m.Offset.Bytes() || int(f.Type.Size()) != size {
			errs = append(errs, fmt.Errorf("member %s.%s at byte %d, %d bytes in C; Go field %s at %d, %d bytes",
				name, m.Name, m.Offset.Bytes(), size, f.Name, f.Offset, f.Type.Size()))
		}
	}
	return errs
}

// goName is bpf2go's name for a C member: snake_case to CamelCase.
func goName(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(c, "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
