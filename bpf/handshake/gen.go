package handshake

// The event struct and the enums are defined once, in handshake.bpf.c; bpf2go
// generates their Go types. The generated files are committed, so building
// hookscope needs no clang: only `make generate` does.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -type event -type hello_event -type ledger_key -type ledger_entry -type event_kind -type counter -type phase handshake handshake.bpf.c -- -I/usr/include/x86_64-linux-gnu
